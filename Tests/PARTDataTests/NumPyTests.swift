import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

/// An .npy file built byte by byte (format 1.0).
func npy(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false) -> [UInt8] {
    let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
    var header = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': (\(dims)), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    let length = UInt16(header.utf8.count)
    return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(header.utf8) + data
}

func floatBytes(_ values: [Float]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }

final class NumPyTests: XCTestCase {
    func request(_ location: URL, layout: NumPyData.Layout? = nil, classes: Int? = nil) -> DatasetRequest {
        var r = DatasetRequest(name: .npy, location: location)
        r.layout = layout
        r.classes = classes
        return r
    }

    func testNPZFilesMatchNumPy() throws {
        // train.npz: numpy.savez (stored), uint8 NHWC; test.npz: savez_compressed, float32 NCHW.
        let folder = Fixtures.url("data_npy")
        for split in DatasetSplit.allCases {
            let d = try DatasetRegistry.load(request(folder), split: split)
            assertMatches(d, Fixtures.value("npy", split.rawValue))
            XCTAssertEqual(d.classes, 7, "the largest label of either split, plus one")
            XCTAssertEqual(d.pixelType, split == .train ? .uint8 : .float32)
        }
        let pairs = folder.appendingPathComponent("pairs")
        for split in DatasetSplit.allCases {
            // [N, H, W] uint8 with uint8 labels; val_x [N, 1, H, W] float32 with [N, 1] int64 labels.
            assertMatches(try DatasetRegistry.load(request(pairs), split: split), Fixtures.value("npy", "pairs", split.rawValue))
        }
        XCTAssertEqual(try DatasetRegistry.load(request(folder, classes: 12), split: .train).classes, 12)
        assertFails(try DatasetRegistry.load(self.request(folder, classes: 5), split: .train), "label 6", "--classes 5")
    }

    func testFloatImagesReadBackExactly() throws {
        // Adversarial examples as a single .npz: every split reads it, values untouched.
        let dir = try makeTemporaryDirectory(self)
        let values: [Float] = (0..<(2 * 4 * 4 * 3)).map { Float($0 % 97) / 96 * 0.999 + 1e-7 }
        let file = dir.appendingPathComponent("adv.npy")
        try write(npy(descr: "<f4", shape: [2, 4, 4, 3], data: floatBytes(values)), to: file)
        let x = try NPY.parse(try ByteBuffer.mapping(file), source: file.path)
        let decoded = try NumPyData.images(x, layout: nil, source: file.path)
        XCTAssertEqual(decoded.type, .float32)
        let back = Array(UnsafeBufferPointer(start: decoded.storage.pointer.assumingMemoryBound(to: Float.self), count: values.count))
        XCTAssertEqual(back, values, "float32 pixels are kept bit for bit")
        let npz = Fixtures.url("data_npy/test.npz")
        let one = try DatasetRegistry.load(request(npz), split: .train)
        XCTAssertEqual(one.count, 4)
        XCTAssertEqual(one.name, "test")
        XCTAssertEqual(one.batch([0]).images[flat: 0], 1.0)
        XCTAssertEqual(one.batch([0]).images[flat: 3], 0.0, "NCHW [0, 0, 0, 1] is NHWC [0, 0, 1, 0]")
    }

    func testLayoutDetection() throws {
        let dir = try makeTemporaryDirectory(self)
        func load(_ shape: [Int], layout: NumPyData.Layout? = nil) throws -> [Int] {
            let n = shape.reduce(1, *)
            try write(npy(descr: "|u1", shape: shape, data: (0..<n).map { UInt8(truncatingIfNeeded: $0) }),
                      to: dir.appendingPathComponent("train_x.npy"))
            try write(npy(descr: "<i8", shape: [shape[0]], data: [UInt8](repeating: 0, count: 8 * shape[0])),
                      to: dir.appendingPathComponent("train_y.npy"))
            return try DatasetRegistry.load(request(dir, layout: layout), split: .train).shape
        }
        XCTAssertEqual(try load([2, 5, 6, 3]), [5, 6, 3])
        XCTAssertEqual(try load([2, 3, 5, 6]), [5, 6, 3])
        XCTAssertEqual(try load([2, 1, 5, 6]), [5, 6, 1])
        XCTAssertEqual(try load([2, 5, 6]), [5, 6, 1])
        assertFails(try load([2, 3, 5, 3]), "could be NHWC or NCHW", "--layout")
        XCTAssertEqual(try load([2, 3, 5, 3], layout: .nchw), [5, 3, 3])
        // NCHW reordered: pixel (y, x, c) of image 0 is the value at c * H * W + y * W + x.
        let d = try DatasetRegistry.load(request(dir, layout: .nchw), split: .train)
        XCTAssertEqual(d.images[(1 * 3 + 2) * 3 + 1], UInt8(1 * 15 + 1 * 3 + 2))
        assertFails(try load([2, 5, 6, 7]), "no channel axis of size 1 or 3")
    }

    func testBadFiles() throws {
        let dir = try makeTemporaryDirectory(self)
        let x = dir.appendingPathComponent("train_x.npy"), y = dir.appendingPathComponent("train_y.npy")
        try write(npy(descr: "<i8", shape: [2], data: [UInt8](repeating: 0, count: 16)), to: y)
        func fails(_ file: [UInt8], _ fragments: String..., line: UInt = #line) throws {
            try write(file, to: x)
            XCTAssertThrowsError(try DatasetRegistry.load(request(dir), split: .train), line: line) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(x.path), text, line: line)
                for f in fragments { XCTAssertTrue(text.contains(f), "\(text) should mention \(f)", line: line) }
            }
        }
        let good = npy(descr: "|u1", shape: [2, 4, 4, 1], data: [UInt8](repeating: 5, count: 32))
        try fails(Array(good.prefix(good.count - 3)), "truncated", "needs 32 bytes of data, the file has 29")
        try fails(good + [0], "1 bytes after the 32 bytes")
        try fails(Array("not numpy at all".utf8), "not a NumPy .npy file")
        try fails(Array(good.prefix(9)), "not a NumPy .npy file")
        try fails(npy(descr: "|u1", shape: [2, 4, 4, 1], data: [UInt8](repeating: 5, count: 32), fortran: true), "Fortran order")
        try fails(npy(descr: "<i4", shape: [2, 4, 4, 1], data: [UInt8](repeating: 0, count: 128)), "int32", "uint8")
        var floats = [Float](repeating: 0.5, count: 32)
        floats[20] = 1.5
        try fails(npy(descr: "<f4", shape: [2, 4, 4, 1], data: floatBytes(floats)), "value 1.5 in image 1", "[0, 1]")
        floats[20] = .nan
        try fails(npy(descr: "<f4", shape: [2, 4, 4, 1], data: floatBytes(floats)), "nan", "finite")
        // Labels.
        try write(good, to: x)
        try write(npy(descr: "<f8", shape: [2], data: [UInt8](repeating: 0, count: 16)), to: y)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), y.path, "float64", "integers")
        try write(npy(descr: "<i8", shape: [3], data: [UInt8](repeating: 0, count: 24)), to: y)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), "3 labels for 2 images")
        try write(npy(descr: "<i2", shape: [2], data: [0, 0, 0xFF, 0xFF]), to: y)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), "label -1 of example 1")
        try FileManager.default.removeItem(at: y)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), "train_y.npy: missing")
    }

    func testCorruptNPZ() throws {
        let file = try Fixtures.copy("data_npy/train.npz", into: self)
        let content = try bytes(file)
        var flipped = content
        flipped[200] ^= 0xFF  // inside x.npy's stored data
        try write(flipped, to: file)
        assertFails(try DatasetRegistry.load(self.request(file), split: .train), file.path, "CRC-32")
        try write(Array(content.prefix(content.count - 30)), to: file)
        assertFails(try DatasetRegistry.load(self.request(file), split: .train), file.path)
        let compressed = try Fixtures.copy("data_npy/test.npz", into: self)
        let raw = try bytes(compressed)
        var broken = raw
        for i in stride(from: 100, to: 300, by: 5) { broken[i] ^= 0x3C }
        try write(broken, to: compressed)
        assertFails(try DatasetRegistry.load(self.request(compressed), split: .test), compressed.path)
        // The archive's name does not matter (the split is the request's, not "train" in a name).
        let dir = try makeTemporaryDirectory(self)
        let odd = dir.appendingPathComponent("odd.npz")
        try write(try bytes(Fixtures.url("data_npy/train.npz")), to: odd)
        XCTAssertNoThrow(try DatasetRegistry.load(request(odd), split: .train))
        assertFails(try DatasetRegistry.load(self.request(dir.appendingPathComponent("x.npy")), split: .train), "no such file")
        try write(npy(descr: "|u1", shape: [1, 2, 2], data: [1, 2, 3, 4]), to: dir.appendingPathComponent("x.npy"))
        assertFails(try DatasetRegistry.load(self.request(dir.appendingPathComponent("x.npy")), split: .train),
                    "images without labels", "x_labels.npy")
        // Images alone, as part eval --save-adversarial writes them, with their labels beside them.
        try write(npy(descr: "<i8", shape: [1], data: [2, 0, 0, 0, 0, 0, 0, 0]), to: dir.appendingPathComponent("x_labels.npy"))
        let lone = try DatasetRegistry.load(request(dir.appendingPathComponent("x.npy")), split: .test)
        XCTAssertEqual(lone.labels, [2])
        XCTAssertEqual(lone.images, [1, 2, 3, 4])
        XCTAssertEqual(lone.name, "x")
    }
}
