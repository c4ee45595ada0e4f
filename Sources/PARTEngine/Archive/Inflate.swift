import CZlib
import Foundation

/// Streaming zlib decompression over bytes in memory: gzip files (`.tar.gz`), zlib streams
/// (compressed MATLAB elements) and raw deflate (zip members).
public final class Inflater {
    public enum Wrapper: Sendable {
        /// gzip, with concatenated members.
        case gzip
        /// A zlib header and Adler-32 trailer.
        case zlib
        /// Bare deflate data.
        case raw
    }

    private let stream: UnsafeMutablePointer<z_stream>
    private let input: UnsafeRawBufferPointer
    private let wrapper: Wrapper
    public let source: String
    /// True once the compressed stream has ended.
    public private(set) var finished = false

    public init(_ input: UnsafeRawBufferPointer, wrapper: Wrapper, source: String) throws {
        self.input = input
        self.wrapper = wrapper
        self.source = source
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let bits: Int32
        switch wrapper {
        case .gzip: bits = 15 + 16
        case .zlib: bits = 15
        case .raw: bits = -15
        }
        let status = inflateInit2_(stream, bits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            throw ArchiveError("\(source): cannot initialise zlib (error \(status))")
        }
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress?.assumingMemoryBound(to: UInt8.self))
        stream.pointee.avail_in = 0
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Compressed bytes consumed so far.
    public var consumed: Int {
        guard let start = input.baseAddress, let next = stream.pointee.next_in else { return 0 }
        return UnsafeRawPointer(next) - start
    }

    private func fail(_ message: String) -> ArchiveError { ArchiveError("\(source): \(message)") }

    /// Decompresses into `destination` until `count` bytes are written or the stream ends;
    /// returns the number written (fewer than `count` only at the end of the stream).
    public func read(into destination: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var written = 0
        while written < count && !finished {
            // zlib counts in 32 bits: feed and drain at most 1 GiB at a time.
            let remainingInput = input.count - consumed
            stream.pointee.avail_in = UInt32(Swift.min(remainingInput, 1 << 30))
            let want = Swift.min(count - written, 1 << 30)
            stream.pointee.next_out = (destination + written).assumingMemoryBound(to: UInt8.self)
            stream.pointee.avail_out = UInt32(want)
            let status = inflate(stream, Z_NO_FLUSH)
            written += want - Int(stream.pointee.avail_out)
            switch status {
            case Z_OK:
                continue
            case Z_STREAM_END:
                let rest = input.count - consumed
                if wrapper == .gzip && rest >= 2 {
                    let next = input.baseAddress! + consumed
                    if next.load(as: UInt8.self) == 0x1F && next.load(fromByteOffset: 1, as: UInt8.self) == 0x8B {
                        guard inflateReset(stream) == Z_OK else { throw fail("cannot reset zlib") }
                        continue
                    }
                }
                finished = true
            case Z_BUF_ERROR:
                // Output space is always offered, so no progress means the input ran out.
                throw fail("truncated compressed data: the stream ends early (\(consumed) compressed bytes read)")
            case Z_NEED_DICT:
                throw fail("corrupt compressed data: it asks for a preset dictionary")
            case Z_MEM_ERROR:
                throw fail("out of memory while decompressing")
            default:
                let message = stream.pointee.msg.map { String(cString: $0) } ?? "error \(status)"
                throw fail("corrupt compressed data (\(message))")
            }
        }
        return written
    }

    /// Everything left in the stream, in one `malloc`ed block the caller frees (`sizeHint` bytes
    /// reserved first).
    public func readAll(sizeHint: Int = 1 << 20) throws -> (pointer: UnsafeMutableRawPointer, count: Int) {
        var capacity = Swift.max(sizeHint, 1 << 16)
        guard var storage = malloc(capacity) else { throw fail("out of memory: cannot allocate \(capacity) bytes") }
        var used = 0
        do {
            while !finished {
                if used == capacity {
                    guard let bigger = realloc(storage, capacity * 2) else {
                        throw fail("out of memory: cannot allocate \(capacity * 2) bytes")
                    }
                    storage = bigger
                    capacity *= 2
                }
                used += try read(into: storage + used, count: capacity - used)
            }
        } catch {
            free(storage)
            throw error
        }
        return (realloc(storage, Swift.max(used, 1)) ?? storage, used)
    }

    /// Throws unless the stream has ended and only zero padding follows it.
    public func expectEnd(what: String) throws {
        if !finished {
            var probe: UInt8 = 0
            if try read(into: &probe, count: 1) != 0 {
                throw fail("\(what) holds more compressed data than its header declares")
            }
        }
        let rest = UnsafeRawBufferPointer(rebasing: input[consumed...])
        if wrapper == .gzip, rest.contains(where: { $0 != 0 }) {
            throw fail("corrupt gzip file: \(rest.count) bytes of trailing garbage after the compressed data")
        }
    }
}
