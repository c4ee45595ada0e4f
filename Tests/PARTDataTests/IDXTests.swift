import PARTTestSupport
import CZlib
import PARTEngine
import Foundation
import XCTest
@testable import PARTData

/// An IDX file: `dims` big-endian, then `data` (or `dataCount` bytes of a pattern).
func makeIDX(dims: [Int], data: [UInt8]? = nil, type: UInt8 = 0x08) -> [UInt8] {
    var out: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims {
        out += [UInt8(truncatingIfNeeded: d >> 24), UInt8(truncatingIfNeeded: d >> 16),
                UInt8(truncatingIfNeeded: d >> 8), UInt8(truncatingIfNeeded: d)]
    }
    if let data { return out + data }
    return out + (0..<dims.reduce(1, *)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
}

/// gzip-compresses `bytes` with zlib (window bits 31 = gzip wrapper).
func gzipBytes(_ bytes: [UInt8]) -> [UInt8] {
    let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    stream.initialize(to: z_stream())
    defer { stream.deinitialize(count: 1); stream.deallocate() }
    precondition(deflateInit2_(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY,
                               ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(stream) }
    var input = bytes
    let bound = Int(deflateBound(stream, uLong(bytes.count))) + 64
    var output = [UInt8](repeating: 0, count: bound)
    let written: Int = input.withUnsafeMutableBufferPointer { inp in
        output.withUnsafeMutableBufferPointer { out in
            stream.pointee.next_in = inp.baseAddress
            stream.pointee.avail_in = UInt32(inp.count)
            stream.pointee.next_out = out.baseAddress
            stream.pointee.avail_out = UInt32(out.count)
            precondition(deflate(stream, Z_FINISH) == Z_STREAM_END)
            return out.count - Int(stream.pointee.avail_out)
        }
    }
    return Array(output[..<written])
}


final class IDXTests: XCTestCase {
    private func assertIDXError(_ body: @autoclosure () throws -> IDXArray, contains fragments: [String],
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let e = error as? IDXError else {
                return XCTFail("expected IDXError, got \(type(of: error)): \(error)", file: file, line: line)
            }
            for f in fragments {
                XCTAssertTrue(e.description.contains(f), "\"\(e.description)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    func testParseValidImages() throws {
        let bytes = makeIDX(dims: [2, 3, 4])
        let array = try IDX.parse(bytes, source: "images")
        XCTAssertEqual(array.dimensions, [2, 3, 4])
        XCTAssertEqual(array.bytes, Array(bytes[16...]))
        XCTAssertEqual(array.magic, 2051)
    }

    func testParseBigEndianDimensions() throws {
        let array = try IDX.parse(makeIDX(dims: [70_000]), source: "labels", expectedDimensions: 1)
        XCTAssertEqual(array.dimensions, [70_000])
        XCTAssertEqual(array.bytes.count, 70_000)
        XCTAssertEqual(array.magic, 2049)
    }

    func testReadRawAndGzippedFiles() throws {
        let dir = try makeTemporaryDirectory(self)
        let bytes = makeIDX(dims: [5, 28, 28])
        let raw = dir.appendingPathComponent("images-idx3-ubyte")
        let gz = dir.appendingPathComponent("images-idx3-ubyte.gz")
        try Data(bytes).write(to: raw)
        let compressed = gzipBytes(bytes)
        XCTAssertEqual(Array(compressed.prefix(2)), [0x1F, 0x8B])
        try Data(compressed).write(to: gz)

        let a = try IDX.read(contentsOf: raw)
        let b = try IDX.read(contentsOf: gz, expectedDimensions: 3)
        XCTAssertEqual(a.dimensions, [5, 28, 28])
        XCTAssertEqual(b.dimensions, [5, 28, 28])
        XCTAssertEqual(a.bytes, b.bytes)
        XCTAssertEqual(a.bytes, Array(bytes[16...]))
    }

    func testGunzipLargeAndConcatenatedMembers() throws {
        // Larger than one inflate chunk, and two gzip members back to back (as `cat a.gz b.gz`).
        let first = (0..<700_000).map { UInt8(truncatingIfNeeded: ($0 * 31) ^ ($0 >> 9)) }
        let second: [UInt8] = Array("tail".utf8)
        let out = try IDX.gunzip(gzipBytes(first) + gzipBytes(second), source: "x.gz")
        XCTAssertEqual(out, first + second)
    }

    func testBadMagic() throws {
        var bytes = makeIDX(dims: [2])
        bytes[0] = 0x12
        assertIDXError(try IDX.parse(bytes, source: "f.idx"), contains: ["f.idx", "bad magic"])
    }

    func testWrongTypeByte() throws {
        let bytes = makeIDX(dims: [2], data: [0, 0, 0, 0, 0, 0, 0, 0], type: 0x0D)
        assertIDXError(try IDX.parse(bytes, source: "f.idx"), contains: ["f.idx", "0x0D", "unsupported element type"])
    }

    func testTruncatedHeader() throws {
        assertIDXError(try IDX.parse([0, 0, 8], source: "f.idx"), contains: ["f.idx", "truncated header"])
        let bytes = Array(makeIDX(dims: [2, 3, 4]).prefix(10))
        assertIDXError(try IDX.parse(bytes, source: "f.idx"), contains: ["f.idx", "truncated header", "16-byte"])
    }

    func testTruncatedData() throws {
        let bytes = Array(makeIDX(dims: [10, 28, 28]).prefix(16 + 1000))
        assertIDXError(try IDX.parse(bytes, source: "train-images-idx3-ubyte.gz"),
                       contains: ["train-images-idx3-ubyte.gz: truncated: header says 7840 bytes of data, file has 1000"])
    }

    func testHugeDimensionsDoNotOverflow() throws {
        let bytes = makeIDX(dims: [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], data: [1, 2, 3])
        assertIDXError(try IDX.parse(bytes, source: "f.idx"), contains: ["truncated"])
    }

    func testTrailingBytes() throws {
        let bytes = makeIDX(dims: [4]) + [9, 9]
        assertIDXError(try IDX.parse(bytes, source: "f.idx"), contains: ["f.idx", "2 trailing bytes"])
    }

    func testEmptyFile() throws {
        assertIDXError(try IDX.parse([], source: "f.idx"), contains: ["f.idx", "empty file"])
        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent("empty-idx1-ubyte")
        try Data().write(to: url)
        assertIDXError(try IDX.read(contentsOf: url), contains: ["empty-idx1-ubyte", "empty file"])
    }

    func testWrongDimensionCountForImages() throws {
        // A label file (magic 2049) where an image file (2051) is expected.
        assertIDXError(try IDX.parse(makeIDX(dims: [6]), source: "t10k-images-idx3-ubyte", expectedDimensions: 3),
                       contains: ["t10k-images-idx3-ubyte", "magic number 2049", "expected 3", "2051"])
    }

    func testZeroDimensions() throws {
        assertIDXError(try IDX.parse([0, 0, 8, 0, 1], source: "f.idx"), contains: ["no dimensions"])
    }

    func testCorruptGzip() throws {
        let dir = try makeTemporaryDirectory(self)
        var compressed = gzipBytes(makeIDX(dims: [100, 10]))
        for i in 12..<min(40, compressed.count - 8) { compressed[i] ^= 0x5A }
        let url = dir.appendingPathComponent("corrupt.gz")
        try Data(compressed).write(to: url)
        assertIDXError(try IDX.read(contentsOf: url), contains: ["corrupt.gz", "corrupt compressed data"])

        // Only the gzip magic.
        let tiny = dir.appendingPathComponent("tiny.gz")
        try Data([0x1F, 0x8B]).write(to: tiny)
        assertIDXError(try IDX.read(contentsOf: tiny), contains: ["tiny.gz", "truncated compressed data"])

        // Trailing garbage after a complete member.
        let garbage = dir.appendingPathComponent("garbage.gz")
        try Data(gzipBytes(makeIDX(dims: [3])) + [1, 2, 3]).write(to: garbage)
        assertIDXError(try IDX.read(contentsOf: garbage), contains: ["garbage.gz", "trailing garbage"])
    }

    func testTruncatedGzip() throws {
        let dir = try makeTemporaryDirectory(self)
        let compressed = gzipBytes(makeIDX(dims: [50, 50]))
        let url = dir.appendingPathComponent("cut.gz")
        try Data(compressed.prefix(compressed.count / 2)).write(to: url)
        assertIDXError(try IDX.read(contentsOf: url), contains: ["cut.gz", "truncated compressed data"])
    }

    func testMissingFile() throws {
        let url = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/labels-idx1-ubyte")
        assertIDXError(try IDX.read(contentsOf: url), contains: ["labels-idx1-ubyte", "no such file"])
    }

    // MARK: Hostile gzip files

    private static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz")

    /// A fuzz regression input of the idx-gzip target without its mode byte: the file as on disk.
    private func gzipRegression(_ name: String) throws -> [UInt8] {
        Array([UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("idx-gzip/\(name)"))).dropFirst())
    }

    func testGzipBombStopsAtTheDeclaredSize() throws {
        // One 28x28 image declared, 64 MiB of zeros in the stream (65 KB on disk).
        let bomb = try gzipRegression("bomb")
        XCTAssertLessThan(bomb.count, 100_000)
        assertIDXError(try IDX.decode(bomb, source: "train-images-idx3-ubyte.gz"),
                       contains: ["train-images-idx3-ubyte.gz", "holds more than the 784 bytes of data the header declares",
                                  "[1, 28, 28]"])
        // The same stream through a file, as `part train --data` reads it.
        let dir = try makeTemporaryDirectory(self)
        let url = dir.appendingPathComponent("train-images-idx3-ubyte.gz")
        try Data(bomb).write(to: url)
        assertIDXError(try IDX.read(contentsOf: url, expectedDimensions: 3), contains: ["holds more than the 784 bytes"])
    }

    func testInflationIsBoundedByTheHeaderNotTheStream() throws {
        // The reader hands out what is asked and no more, whatever the stream holds.
        let bomb = try gzipRegression("bomb")
        try bomb.withUnsafeBytes { raw in
            let inflater = try Inflater(raw, wrapper: .gzip, source: "bomb")
            XCTAssertEqual(try IDX.inflate(inflater, count: 16).count, 16)
            XCTAssertEqual(try IDX.inflate(inflater, count: 1000).count, 1000)
            XCTAssertFalse(inflater.finished)
            XCTAssertLessThan(inflater.consumed, bomb.count / 100, "1,016 bytes come from the first compressed bytes")
        }
    }

    func testDeclaredSizeNoStreamOfThisLengthCanHoldIsRefusedBeforeInflating() throws {
        let bytes = try gzipRegression("impossible-size")
        assertIDXError(try IDX.decode(bytes, source: "big.gz"),
                       contains: ["big.gz", "header says 100000000000 bytes of data", "more than a \(bytes.count)-byte gzip file can hold"])
    }

    func testGzipTruncatedAfterTheHeaderAndCorruptChecksum() throws {
        // A whole stream that holds less than its header declares.
        assertIDXError(try IDX.decode(gzipBytes(makeIDX(dims: [10], data: [1, 2, 3])), source: "short.gz"),
                       contains: ["short.gz", "header says 10 bytes of data, the decompressed file has 3"])
        // A correct body whose CRC was damaged: the stream is read to its end, so it is noticed.
        var damaged = gzipBytes(makeIDX(dims: [4, 4]))
        damaged[damaged.count - 6] ^= 0xFF
        assertIDXError(try IDX.decode(damaged, source: "crc.gz"), contains: ["crc.gz", "corrupt compressed data (incorrect data check)"])
        // Garbage after a complete member that looks like another member.
        assertIDXError(try IDX.decode(try gzipRegression("concatenated-garbage"), source: "g.gz"), contains: ["g.gz", "corrupt compressed data"])
    }

    func testHeaderSplitAcrossGzipMembersAndEmptyStreams() throws {
        let whole = makeIDX(dims: [3, 3])
        let read = try IDX.decode(gzipBytes(Array(whole[..<3])) + gzipBytes(Array(whole[3...])), source: "two.gz")
        XCTAssertEqual(read.dimensions, [3, 3])
        XCTAssertEqual(read.bytes, Array(whole[12...]))
        assertIDXError(try IDX.decode(gzipBytes([]), source: "nothing.gz"), contains: ["nothing.gz", "empty file"])
        assertIDXError(try IDX.decode(gzipBytes([0, 0, 8, 3, 0]), source: "cut.gz"), contains: ["truncated header", "needs 16"])
    }

    func testGunzipRefusesToGoBeyondItsLimit() throws {
        let compressed = gzipBytes([UInt8](repeating: 7, count: 1000))
        XCTAssertEqual(try IDX.gunzip(compressed, source: "x.gz", limit: 1000).count, 1000)
        XCTAssertThrowsError(try IDX.gunzip(compressed, source: "x.gz", limit: 999)) { error in
            XCTAssertEqual(error as? IDXError, IDXError("x.gz: the gzip stream decompresses to more than 999 bytes"))
        }
        XCTAssertEqual(IDX.maximumInflated(compressedCount: 10), 10 * 1032 + 1024)
    }

    func testRawRegressionInputs() throws {
        let huge = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("idx/huge-dimensions")))
        assertIDXError(try IDX.parse(huge, source: "f"), contains: ["truncated", "[4294967295, 4294967295, 4294967295]"])
        let rank = [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("idx/rank-255-truncated")))
        assertIDXError(try IDX.parse(rank, source: "f"), contains: ["truncated header", "255 dimensions need a 1024-byte header"])
    }

    func testReadRefusesADirectoryAndAFIFO() throws {
        let dir = try makeTemporaryDirectory(self)
        let sub = dir.appendingPathComponent("train-images-idx3-ubyte")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: false)
        assertIDXError(try IDX.read(contentsOf: sub), contains: ["train-images-idx3-ubyte", "is a directory"])
        let fifo = dir.appendingPathComponent("t10k-labels-idx1-ubyte")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        assertIDXError(try IDX.read(contentsOf: fifo), contains: ["t10k-labels-idx1-ubyte", "FIFO"])
    }
}
