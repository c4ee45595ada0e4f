import CZlib
import Foundation
import PARTEngine

/// An IDX file that could not be read; `description` names the file and what is wrong.
public struct IDXError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The contents of an IDX file: its dimensions and its unsigned-byte elements, row-major.
public struct IDXArray: Sendable {
    public let dimensions: [Int]
    public let bytes: [UInt8]

    public init(dimensions: [Int], bytes: [UInt8]) {
        self.dimensions = dimensions
        self.bytes = bytes
    }

    /// The 32-bit magic number of the file: `0x0000_08nn` for `nn` dimensions (2049 for a
    /// label file, 2051 for an image file).
    public var magic: Int { 0x0800 | dimensions.count }
}

/// The IDX format of MNIST and Fashion-MNIST: two zero bytes, a type byte (only `0x08`,
/// unsigned byte, is supported), a dimension-count byte, one big-endian `UInt32` per
/// dimension, then the elements. Files may be gzipped.
public enum IDX {
    /// What an IDX header says.
    struct Header {
        let dimensions: [Int]
        /// Bytes of the header (4 + 4 per dimension).
        let size: Int
        /// Bytes of data the dimensions call for.
        let dataSize: Int
    }

    /// Reads the header at the start of `prefix`; nil when `prefix` is too short to hold it
    /// (at most 1,024 bytes are ever needed). The data size must fit in `Int`.
    static func header(_ prefix: ArraySlice<UInt8>, source: String, expectedDimensions: Int?) throws -> Header? {
        func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }
        let p = prefix.startIndex
        guard prefix.count >= 4 else { return nil }
        guard prefix[p] == 0, prefix[p + 1] == 0 else {
            throw fail(String(format: "bad magic number 0x%02X%02X%02X%02X: not an IDX file (it should start with two zero bytes)",
                              prefix[p], prefix[p + 1], prefix[p + 2], prefix[p + 3]))
        }
        guard prefix[p + 2] == 0x08 else {
            throw fail(String(format: "unsupported element type 0x%02X (only 0x08, unsigned byte, is supported)", prefix[p + 2]))
        }
        let rank = Int(prefix[p + 3])
        let magic = 0x0800 | rank
        if let expected = expectedDimensions, rank != expected {
            throw fail("magic number \(magic) means \(rank) dimension\(rank == 1 ? "" : "s"), expected \(expected) (magic \(0x0800 | expected))")
        }
        guard rank > 0 else { throw fail("magic number \(magic) declares no dimensions") }
        let size = 4 + 4 * rank
        guard prefix.count >= size else { return nil }
        var dimensions = [Int]()
        dimensions.reserveCapacity(rank)
        var product = 1
        var overflow = false
        for d in 0..<rank {
            let o = p + 4 + 4 * d
            let value = Int(prefix[o]) << 24 | Int(prefix[o + 1]) << 16 | Int(prefix[o + 2]) << 8 | Int(prefix[o + 3])
            dimensions.append(value)
            let (q, over) = product.multipliedReportingOverflow(by: value)
            product = q
            overflow = overflow || over
        }
        if overflow {
            throw fail("truncated: header says more than \(Int.max) bytes of data (dimensions \(dimensions))")
        }
        return Header(dimensions: dimensions, size: size, dataSize: product)
    }

    /// Parses an (uncompressed) IDX file. When `expectedDimensions` is given, a file with
    /// another number of dimensions is an error. The data must be exactly as long as the
    /// dimensions say: truncated data or trailing bytes are errors.
    public static func parse(_ data: [UInt8], source: String, expectedDimensions: Int? = nil) throws -> IDXArray {
        func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }
        guard !data.isEmpty else { throw fail("empty file") }
        guard let header = try header(data[...], source: source, expectedDimensions: expectedDimensions) else {
            let rank = data.count >= 4 ? Int(data[3]) : nil
            if let rank {
                throw fail("truncated header: \(rank) dimensions need a \(4 + 4 * rank)-byte header, file has \(data.count) bytes")
            }
            throw fail("truncated header: \(data.count) bytes, an IDX header needs at least 4")
        }
        let available = data.count - header.size
        if header.dataSize > available {
            throw fail("truncated: header says \(header.dataSize) bytes of data, file has \(available) (dimensions \(header.dimensions))")
        }
        if header.dataSize < available {
            let extra = available - header.dataSize
            throw fail("\(extra) trailing byte\(extra == 1 ? "" : "s") after the \(header.dataSize) bytes of data the header declares (dimensions \(header.dimensions))")
        }
        return IDXArray(dimensions: header.dimensions, bytes: Array(data[header.size...]))
    }

    /// Reads an IDX file, raw or gzipped (see `decode`). Errors name the file by its last path
    /// component.
    public static func read(contentsOf url: URL, expectedDimensions: Int? = nil) throws -> IDXArray {
        let source = url.lastPathComponent
        let raw: [UInt8]
        do {
            raw = try FileInput.read(url)
        } catch let error as FileInputError {
            throw IDXError(error.description)
        }
        return try decode(raw, source: source, expectedDimensions: expectedDimensions)
    }

    /// Decodes an IDX file held in memory: gunzipped first when it starts with the gzip magic
    /// `1f 8b`, then parsed as `parse` does.
    ///
    /// A gzipped file is inflated header first: its first bytes say how much data follows, so
    /// the stream is never inflated beyond that (a small stream that inflates to gigabytes
    /// stops as soon as it passes the declared size), and a declared size that no gzip
    /// stream of this length can hold is refused before anything is allocated for it.
    public static func decode(_ bytes: [UInt8], source: String, expectedDimensions: Int? = nil) throws -> IDXArray {
        guard bytes.count >= 2, bytes[0] == 0x1F, bytes[1] == 0x8B else {
            return try parse(bytes, source: source, expectedDimensions: expectedDimensions)
        }
        func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }
        let inflater = try Inflater(bytes, source: source)

        // The header: at most 4 + 4 * 255 bytes, inflated a few bytes at a time.
        var prefix = [UInt8]()
        var header: Header?
        while header == nil {
            let want = prefix.count < 4 ? 4 : 4 + 4 * Int(prefix[3])
            let got = try inflater.inflate(count: want - prefix.count)
            prefix += got
            if prefix.count < want {
                if prefix.isEmpty { throw fail("empty file (the gzip stream holds no data)") }
                throw fail("truncated header: the decompressed file has \(prefix.count) bytes, the header needs \(want)")
            }
            header = try self.header(prefix[...], source: source, expectedDimensions: expectedDimensions)
        }
        guard let header else { throw fail("unreadable header") }

        let limit = Inflater.maximumOutput(compressedCount: bytes.count)
        guard header.dataSize <= limit - header.size else {
            throw fail("truncated: header says \(header.dataSize) bytes of data (dimensions \(header.dimensions)), "
                       + "more than a \(bytes.count)-byte gzip file can hold")
        }
        let data = try inflater.inflate(count: header.dataSize)
        guard data.count == header.dataSize else {
            throw fail("truncated: header says \(header.dataSize) bytes of data, the decompressed file has \(data.count) "
                       + "(dimensions \(header.dimensions))")
        }
        // The stream must end here; reading to its end also checks the gzip CRC.
        let extra = try inflater.inflate(count: Inflater.probeSize)
        if !extra.isEmpty {
            throw fail("the gzip stream holds more than the \(header.dataSize) bytes of data the header declares "
                       + "(dimensions \(header.dimensions)): trailing bytes; the file is corrupt")
        }
        try inflater.finish()
        return IDXArray(dimensions: header.dimensions, bytes: data)
    }

    /// Decompresses a gzip (or zlib) stream, including concatenated gzip members, refusing to
    /// produce more than `limit` bytes (by default the most any valid stream of this length
    /// can expand to).
    public static func gunzip(_ compressed: [UInt8], source: String, limit: Int? = nil) throws -> [UInt8] {
        let maximum = limit ?? Inflater.maximumOutput(compressedCount: compressed.count)
        let inflater = try Inflater(compressed, source: source)
        var output = [UInt8]()
        while true {
            let want = Swift.min(1 << 20, maximum - output.count + 1)
            let piece = try inflater.inflate(count: want)
            output += piece
            if output.count > maximum {
                throw IDXError("\(source): the gzip stream decompresses to more than \(maximum) bytes")
            }
            if piece.count < want { break }
        }
        try inflater.finish()
        return output
    }
}

/// A zlib inflate stream over bytes in memory that hands out its output in pieces of the
/// size asked for, so the caller decides how much is ever decompressed.
final class Inflater {
    /// Deflate expands at most 1032:1 (a 258-byte match per 2 bits at best); with a margin
    /// for headers this bounds what a stream of `n` bytes can produce.
    static func maximumOutput(compressedCount n: Int) -> Int {
        let (p, overflow) = n.multipliedReportingOverflow(by: 1032)
        return overflow ? Int.max : p + 1024
    }

    /// Bytes inflated past the expected end to see whether more would come.
    static let probeSize = 64

    private let stream: UnsafeMutablePointer<z_stream>
    private let input: UnsafeMutableBufferPointer<UInt8>
    private let source: String
    /// The last member ended and no input is left.
    private(set) var finished = false
    /// Bytes handed out so far.
    private(set) var total = 0

    init(_ compressed: [UInt8], source: String) throws {
        self.source = source
        // zlib keeps pointers into the stream and the input, so neither may move.
        input = UnsafeMutableBufferPointer.allocate(capacity: Swift.max(compressed.count, 1))
        _ = input.initialize(from: compressed)
        stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        let status = inflateInit2_(stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard status == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            input.deallocate()
            throw IDXError("\(source): cannot initialise zlib (error \(status))")
        }
        stream.pointee.next_in = input.baseAddress
        stream.pointee.avail_in = UInt32(compressed.count)
        if compressed.count > Int(UInt32.max) {
            // One call takes at most 4 GiB of input; larger files are not gzipped datasets.
            inflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
            input.deallocate()
            throw IDXError("\(source): gzip files over 4 GiB are not supported; decompress it first")
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
        input.deallocate()
    }

    private func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }

    /// Up to `count` more bytes of output; fewer only when the stream has ended.
    func inflate(count: Int) throws -> [UInt8] {
        guard count > 0, !finished else { return [] }
        var produced = 0
        let output = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            defer { initialized = produced }
            while produced < count && !finished {
                let room = Swift.min(count - produced, Int(UInt32.max))
                stream.pointee.next_out = buffer.baseAddress! + produced
                stream.pointee.avail_out = UInt32(room)
                let status = CZlib.inflate(stream, Z_NO_FLUSH)
                produced += room - Int(stream.pointee.avail_out)
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    let remaining = Int(stream.pointee.avail_in)
                    if remaining == 0 { finished = true; break }
                    let next = stream.pointee.next_in!
                    if remaining >= 2, next[0] == 0x1F, next[1] == 0x8B {
                        // Another gzip member follows.
                        guard inflateReset(stream) == Z_OK else { throw fail("cannot reset zlib") }
                        continue
                    }
                    throw fail("corrupt gzip stream: \(remaining) bytes of trailing garbage after the compressed data")
                case Z_BUF_ERROR:
                    // Output space was offered, so no progress means the input ran out.
                    if stream.pointee.avail_out == 0 { continue }
                    throw fail("truncated gzip stream: compressed data ends early (\(total + produced) bytes decompressed so far)")
                case Z_NEED_DICT:
                    throw fail("corrupt gzip stream: it asks for a preset dictionary")
                case Z_MEM_ERROR:
                    throw fail("out of memory while decompressing")
                default:
                    let message = stream.pointee.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw fail("corrupt gzip stream: \(message)")
                }
            }
        }
        total += output.count
        return output
    }

    /// Runs the stream to its end (checking the trailer's CRC and length); output past this
    /// point is an error.
    func finish() throws {
        if finished { return }
        let rest = try inflate(count: Inflater.probeSize)
        guard rest.isEmpty, finished else {
            throw fail("the gzip stream holds more data than expected")
        }
    }
}
