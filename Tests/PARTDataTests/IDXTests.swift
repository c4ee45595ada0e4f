import CZlib
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

/// A fresh directory removed when the test ends.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("partdata-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
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
        assertIDXError(try IDX.read(contentsOf: url), contains: ["corrupt.gz", "gzip"])

        // Only the gzip magic.
        let tiny = dir.appendingPathComponent("tiny.gz")
        try Data([0x1F, 0x8B]).write(to: tiny)
        assertIDXError(try IDX.read(contentsOf: tiny), contains: ["tiny.gz", "gzip"])

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
        assertIDXError(try IDX.read(contentsOf: url), contains: ["cut.gz", "truncated gzip stream"])
    }

    func testMissingFile() throws {
        let url = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/labels-idx1-ubyte")
        assertIDXError(try IDX.read(contentsOf: url), contains: ["labels-idx1-ubyte", "no such file"])
    }
}
