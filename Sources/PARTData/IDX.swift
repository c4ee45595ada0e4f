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
        return try bytes.withUnsafeBytes { raw in
            try gzipErrors {
                let inflater = try Inflater(raw, wrapper: .gzip, source: source)
                // The header: at most 4 + 4 * 255 bytes, inflated a few bytes at a time.
                var prefix = [UInt8]()
                var header: Header?
                while header == nil {
                    let want = prefix.count < 4 ? 4 : 4 + 4 * Int(prefix[3])
                    prefix += try inflate(inflater, count: want - prefix.count)
                    if prefix.count < want {
                        if prefix.isEmpty { throw fail("empty file (the gzip stream holds no data)") }
                        throw fail("truncated header: the decompressed file has \(prefix.count) bytes, the header needs \(want)")
                    }
                    header = try self.header(prefix[...], source: source, expectedDimensions: expectedDimensions)
                }
                guard let header else { throw fail("unreadable header") }

                let limit = maximumInflated(compressedCount: bytes.count)
                guard header.dataSize <= limit - header.size else {
                    throw fail("truncated: header says \(header.dataSize) bytes of data (dimensions \(header.dimensions)), "
                               + "more than a \(bytes.count)-byte gzip file can hold")
                }
                let data = try inflate(inflater, count: header.dataSize)
                guard data.count == header.dataSize else {
                    throw fail("truncated: header says \(header.dataSize) bytes of data, the decompressed file has \(data.count) "
                               + "(dimensions \(header.dimensions))")
                }
                // The stream must end here; reading to its end also checks the gzip CRC.
                guard try inflate(inflater, count: probeSize).isEmpty else {
                    throw fail("the gzip stream holds more than the \(header.dataSize) bytes of data the header declares "
                               + "(dimensions \(header.dimensions)): trailing bytes; the file is corrupt")
                }
                try inflater.expectEnd(what: "the gzip file")
                return IDXArray(dimensions: header.dimensions, bytes: data)
            }
        }
    }

    /// Decompresses a gzip stream, including concatenated members, refusing to produce more
    /// than `limit` bytes (by default the most any valid stream of this length can expand to).
    public static func gunzip(_ compressed: [UInt8], source: String, limit: Int? = nil) throws -> [UInt8] {
        let maximum = limit ?? maximumInflated(compressedCount: compressed.count)
        return try compressed.withUnsafeBytes { raw in
            try gzipErrors {
                let inflater = try Inflater(raw, wrapper: .gzip, source: source)
                var output = [UInt8]()
                while true {
                    let want = Swift.min(1 << 20, maximum - output.count + 1)
                    let piece = try inflate(inflater, count: want)
                    output += piece
                    if output.count > maximum {
                        throw IDXError("\(source): the gzip stream decompresses to more than \(maximum) bytes")
                    }
                    if piece.count < want { break }
                }
                try inflater.expectEnd(what: "the gzip file")
                return output
            }
        }
    }

    /// Deflate expands at most 1032:1 (a 258-byte match per 2 bits at best); with a margin for
    /// headers this bounds what a stream of `n` bytes can produce.
    static func maximumInflated(compressedCount n: Int) -> Int {
        let (p, overflow) = n.multipliedReportingOverflow(by: 1032)
        return overflow ? Int.max : p + 1024
    }

    /// Bytes inflated past the declared end to see whether more would come.
    static let probeSize = 64

    /// Up to `count` more bytes of `inflater`'s output; fewer only when the stream has ended.
    static func inflate(_ inflater: Inflater, count: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        var produced = 0
        let out = try [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            defer { initialized = produced }
            produced = try inflater.read(into: UnsafeMutableRawPointer(buffer.baseAddress!), count: count)
        }
        return out
    }

    /// Errors of the shared inflater, as this reader's own type.
    static func gzipErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DatasetError {
            throw IDXError(error.description)
        } catch let error as ArchiveError {
            throw IDXError(error.description)
        }
    }
}
