import CZlib
import Foundation

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
    /// Parses an (uncompressed) IDX file. When `expectedDimensions` is given, a file with
    /// another number of dimensions is an error. The data must be exactly as long as the
    /// dimensions say: truncated data or trailing bytes are errors.
    public static func parse(_ data: [UInt8], source: String, expectedDimensions: Int? = nil) throws -> IDXArray {
        func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }
        guard !data.isEmpty else { throw fail("empty file") }
        guard data.count >= 4 else {
            throw fail("truncated header: \(data.count) bytes, an IDX header needs at least 4")
        }
        guard data[0] == 0, data[1] == 0 else {
            throw fail(String(format: "bad magic number 0x%02X%02X%02X%02X: not an IDX file (it should start with two zero bytes)",
                              data[0], data[1], data[2], data[3]))
        }
        guard data[2] == 0x08 else {
            throw fail(String(format: "unsupported element type 0x%02X (only 0x08, unsigned byte, is supported)", data[2]))
        }
        let rank = Int(data[3])
        let magic = 0x0800 | rank
        if let expected = expectedDimensions, rank != expected {
            throw fail("magic number \(magic) means \(rank) dimension\(rank == 1 ? "" : "s"), expected \(expected) (magic \(0x0800 | expected))")
        }
        guard rank > 0 else { throw fail("magic number \(magic) declares no dimensions") }
        let headerSize = 4 + 4 * rank
        guard data.count >= headerSize else {
            throw fail("truncated header: \(rank) dimensions need a \(headerSize)-byte header, file has \(data.count) bytes")
        }
        var dimensions = [Int]()
        dimensions.reserveCapacity(rank)
        var product = 1
        var overflow = false
        for d in 0..<rank {
            let o = 4 + 4 * d
            let value = Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3])
            dimensions.append(value)
            let (p, over) = product.multipliedReportingOverflow(by: value)
            product = p
            overflow = overflow || over
        }
        let available = data.count - headerSize
        if overflow || product > available {
            let wanted = overflow ? "more than \(Int.max)" : "\(product)"
            throw fail("truncated: header says \(wanted) bytes of data, file has \(available) (dimensions \(dimensions))")
        }
        if product < available {
            let extra = available - product
            throw fail("\(extra) trailing byte\(extra == 1 ? "" : "s") after the \(product) bytes of data the header declares (dimensions \(dimensions))")
        }
        return IDXArray(dimensions: dimensions, bytes: Array(data[headerSize...]))
    }

    /// Reads an IDX file, gunzipping it first when it starts with the gzip magic `1f 8b`.
    /// Errors name the file by its last path component.
    public static func read(contentsOf url: URL, expectedDimensions: Int? = nil) throws -> IDXArray {
        let source = url.lastPathComponent
        let raw: [UInt8]
        do {
            raw = [UInt8](try Data(contentsOf: url))
        } catch {
            let exists = FileManager.default.fileExists(atPath: url.path)
            throw IDXError("\(source): \(exists ? "cannot read" : "no such file") \(url.path) (\(error.localizedDescription))")
        }
        if raw.count >= 2, raw[0] == 0x1F, raw[1] == 0x8B {
            return try parse(gunzip(raw, source: source), source: source, expectedDimensions: expectedDimensions)
        }
        return try parse(raw, source: source, expectedDimensions: expectedDimensions)
    }

    /// Decompresses a gzip (or zlib) stream, including concatenated gzip members.
    public static func gunzip(_ compressed: [UInt8], source: String) throws -> [UInt8] {
        func fail(_ message: String) -> IDXError { IDXError("\(source): \(message)") }
        // zlib keeps a pointer back to the stream, so it must not move: keep it on the heap.
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }

        let initStatus = inflateInit2_(stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initStatus == Z_OK else { throw fail("cannot initialise zlib (error \(initStatus))") }
        defer { inflateEnd(stream) }

        // The gzip trailer's ISIZE (length mod 2^32) is a good first guess for the output size.
        var output = [UInt8]()
        if compressed.count >= 18 {
            let n = compressed.count
            let isize = Int(compressed[n - 4]) | Int(compressed[n - 3]) << 8 | Int(compressed[n - 2]) << 16 | Int(compressed[n - 1]) << 24
            output.reserveCapacity(Swift.min(isize, 1 << 30))
        }
        let chunkSize = 1 << 18
        let chunk = UnsafeMutablePointer<UInt8>.allocate(capacity: chunkSize)
        defer { chunk.deallocate() }

        return try compressed.withUnsafeBufferPointer { input -> [UInt8] in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.pointee.avail_in = UInt32(input.count)
            while true {
                stream.pointee.next_out = chunk
                stream.pointee.avail_out = UInt32(chunkSize)
                let status = inflate(stream, Z_NO_FLUSH)
                let produced = chunkSize - Int(stream.pointee.avail_out)
                if produced > 0 {
                    output.append(contentsOf: UnsafeBufferPointer(start: chunk, count: produced))
                }
                switch status {
                case Z_OK:
                    continue
                case Z_STREAM_END:
                    let remaining = Int(stream.pointee.avail_in)
                    if remaining == 0 { return output }
                    let next = stream.pointee.next_in!
                    if remaining >= 2, next[0] == 0x1F, next[1] == 0x8B {
                        // Another gzip member follows.
                        guard inflateReset(stream) == Z_OK else { throw fail("cannot reset zlib") }
                        continue
                    }
                    throw fail("corrupt gzip stream: \(remaining) bytes of trailing garbage after the compressed data")
                case Z_BUF_ERROR:
                    // Output space is always offered, so no progress means the input ran out.
                    throw fail("truncated gzip stream: compressed data ends early (\(output.count) bytes decompressed so far)")
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
    }
}
