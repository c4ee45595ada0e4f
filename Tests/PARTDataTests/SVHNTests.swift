import PARTTestSupport
import CZlib
import Foundation
import XCTest
@testable import PARTData

/// A MATLAB level-5 file built byte by byte: each variable a miMATRIX element (optionally
/// wrapped in miCOMPRESSED), little- or big-endian.
struct MATBuilder {
    var bigEndian = false
    var elements: [UInt8] = []

    func u16(_ v: UInt16) -> [UInt8] { withUnsafeBytes(of: bigEndian ? v.bigEndian : v.littleEndian, Array.init) }
    func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: bigEndian ? v.bigEndian : v.littleEndian, Array.init) }

    func element(_ type: UInt32, _ data: [UInt8]) -> [UInt8] {
        let padding = (8 - data.count % 8) % 8
        return u32(type) + u32(UInt32(data.count)) + data + [UInt8](repeating: 0, count: padding)
    }

    /// `values` are already in the storage type's bytes, in this file's byte order.
    mutating func add(_ name: String, classID: UInt8, dims: [Int32], storage: UInt32, values: [UInt8], compress: Bool = false) {
        var body = element(6, u32(UInt32(classID)) + u32(0))
        body += element(5, dims.flatMap { u32(UInt32(bitPattern: $0)) })
        body += element(1, Array(name.utf8))
        body += element(storage, values)
        let matrix = u32(14) + u32(UInt32(body.count)) + body
        if compress {
            var bound = compressBound(uLong(matrix.count))
            var out = [UInt8](repeating: 0, count: Int(bound))
            _ = out.withUnsafeMutableBufferPointer { o in matrix.withUnsafeBufferPointer { compress2(o.baseAddress, &bound, $0.baseAddress, uLong(matrix.count), 6) } }
            elements += u32(15) + u32(UInt32(bound)) + out.prefix(Int(bound))
        } else {
            elements += matrix
        }
    }

    var bytes: [UInt8] {
        var header = Array("MATLAB 5.0 MAT-file, written by the PART tests".utf8)
        header += [UInt8](repeating: 0x20, count: 116 - header.count)
        header += [UInt8](repeating: 0, count: 8)
        header += u16(0x0100)
        header += bigEndian ? [UInt8(ascii: "M"), UInt8(ascii: "I")] : [UInt8(ascii: "I"), UInt8(ascii: "M")]
        return header + elements
    }

    /// SVHN's two variables: X (32x32x3xN uint8, column-major) and y (Nx1 double).
    static func svhn(images: [[UInt8]], labels: [Double], bigEndian: Bool = false, labelsAsBytes: Bool = false,
                     compress: Bool = false) -> [UInt8] {
        var b = MATBuilder(bigEndian: bigEndian)
        var x = [UInt8](repeating: 0, count: images.count * 3072)
        for (n, image) in images.enumerated() {  // image is HWC
            for r in 0..<32 { for c in 0..<32 { for k in 0..<3 {
                x[r + 32 * c + 1024 * k + 3072 * n] = image[(r * 32 + c) * 3 + k]
            } } }
        }
        b.add("X", classID: 9, dims: [32, 32, 3, Int32(images.count)], storage: 2, values: x, compress: compress)
        if labelsAsBytes {
            // MATLAB stores a double array whose values fit in bytes as miUINT8.
            b.add("y", classID: 6, dims: [Int32(labels.count), 1], storage: 2, values: labels.map { UInt8($0) }, compress: compress)
        } else {
            let raw = labels.flatMap { v -> [UInt8] in
                let bits = v.bitPattern
                return withUnsafeBytes(of: bigEndian ? bits.bigEndian : bits.littleEndian, Array.init)
            }
            b.add("y", classID: 6, dims: [Int32(labels.count), 1], storage: 9, values: raw, compress: compress)
        }
        return b.bytes
    }
}

final class SVHNTests: XCTestCase {
    func request(_ location: URL, extra: Bool = false) -> DatasetRequest {
        var r = DatasetRequest(name: .svhn, location: location)
        r.svhnExtra = extra
        return r
    }

    func testSciPyFilesMatchNumPy() throws {
        // train and extra are compressed (savemat do_compression), test is not.
        let warnings = Warnings()
        let folder = Fixtures.url("data_svhn")
        for split in DatasetSplit.allCases {
            let d = try DatasetRegistry.load(request(folder), split: split, warn: warnings.callAsFunction)
            assertMatches(d, Fixtures.value("svhn", split.rawValue))
            XCTAssertEqual(d.augmentation, .none, "SVHN trains without augmentation")
            XCTAssertEqual(d.classNames, (0...9).map(String.init))
        }
        XCTAssertEqual(d0label(folder), 0, "label 10 is the digit 0")
        assertMatches(try DatasetRegistry.load(request(folder, extra: true), split: .train),
                      Fixtures.value("svhn-extra", "train"))
        XCTAssertEqual(try DatasetRegistry.load(request(folder, extra: true), split: .test).count, 5, "extra joins training only")
        XCTAssertTrue(warnings.lines.contains { $0.contains("train_32x32.mat: MD5") && $0.contains("e26dedcc434d2e4c54c9b2d4a06d8373") })
    }

    func d0label(_ folder: URL) -> Int32? {
        try? DatasetRegistry.load(request(folder), split: .train).labels.first
    }

    /// Hand-built files: little- and big-endian, labels stored as bytes, compressed or not.
    func testHandBuiltVariants() throws {
        let images = (0..<3).map { n in (0..<3072).map { UInt8(truncatingIfNeeded: $0 * 7 + n * 31) } }
        let labels: [Double] = [10, 3, 7]
        let test = try MATBuilder.svhn(images: [images[0]], labels: [1]).withUnsafeBytes { try ByteBuffer.copying($0) }
        for (big, asBytes, compress) in [(false, false, false), (true, false, false), (false, true, true), (true, true, true)] {
            let dir = try makeTemporaryDirectory(self)
            try write(MATBuilder.svhn(images: images, labels: labels, bigEndian: big, labelsAsBytes: asBytes, compress: compress),
                      to: dir.appendingPathComponent("train_32x32.mat"))
            try Data(test.bytes).write(to: dir.appendingPathComponent("test_32x32.mat"))
            let d = try DatasetRegistry.load(request(dir), split: .train)
            XCTAssertEqual(d.labels, [0, 3, 7], "big-endian \(big), bytes \(asBytes), compressed \(compress)")
            XCTAssertEqual(d.images, images.flatMap { $0 }, "pixels in NHWC order")
        }
    }

    func testVersionsAndHeaders() throws {
        let dir = try makeTemporaryDirectory(self)
        let file = dir.appendingPathComponent("train_32x32.mat")
        var hdf5 = Array("MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00".utf8)
        hdf5 += [UInt8](repeating: 0x20, count: 128 - hdf5.count)
        try write(hdf5, to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), file.path, "MATLAB 7.3 (HDF5)")
        try write([UInt8](repeating: 0, count: 200), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), file.path, "not a MATLAB level-5 MAT-file")
        try write(Array("MATLAB 5.0".utf8), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), file.path, "truncated")
        try FileManager.default.removeItem(at: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .train), "train_32x32.mat: missing")
    }

    func testTruncatedAndCorruptFiles() throws {
        let folder = try Fixtures.copy("data_svhn", into: self)
        let train = folder.appendingPathComponent("train_32x32.mat")
        let content = try bytes(train)
        try write(Array(content.prefix(content.count - 500)), to: train)
        assertFails(try DatasetRegistry.load(self.request(folder), split: .train), train.path, "truncated")
        var flipped = content
        for i in stride(from: 400, to: 900, by: 13) { flipped[i] ^= 0xA5 }
        try write(flipped, to: train)
        assertFails(try DatasetRegistry.load(self.request(folder), split: .train), train.path, "corrupt")
        // Uncompressed: cut inside X's values.
        let test = folder.appendingPathComponent("test_32x32.mat")
        let raw = try bytes(test)
        try write(Array(raw.prefix(4000)), to: test)
        assertFails(try DatasetRegistry.load(self.request(folder), split: .test), test.path, "truncated")
    }

    func testMislabelledAndMisshapen() throws {
        let dir = try makeTemporaryDirectory(self)
        let file = dir.appendingPathComponent("test_32x32.mat")
        let image = [UInt8](repeating: 9, count: 3072)
        try write(MATBuilder.svhn(images: [image, image], labels: [0, 4]), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "label 0 of image 0", "1...10")
        try write(MATBuilder.svhn(images: [image, image], labels: [4, 11]), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "label 11 of image 1")
        try write(MATBuilder.svhn(images: [image, image], labels: [4, 2.5]), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "label 2.5")
        try write(MATBuilder.svhn(images: [image, image], labels: [4]), to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "y has size 1x1 for 2 images")
        var b = MATBuilder()
        b.add("X", classID: 9, dims: [28, 28, 1, 1], storage: 2, values: [UInt8](repeating: 0, count: 784))
        b.add("y", classID: 6, dims: [1, 1], storage: 2, values: [1])
        try write(b.bytes, to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "X has size 28x28x1x1", "32x32x3xN")
        var c = MATBuilder()
        c.add("X", classID: 9, dims: [32, 32, 3, 1], storage: 2, values: [UInt8](repeating: 0, count: 3072))
        try write(c.bytes, to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "no variable y")
        // A size field that disagrees with the dimensions.
        var d = MATBuilder()
        d.add("X", classID: 9, dims: [32, 32, 3, 2], storage: 2, values: [UInt8](repeating: 0, count: 3072))
        try write(d.bytes, to: file)
        assertFails(try DatasetRegistry.load(self.request(dir), split: .test), file.path, "variable X", "3072 bytes of values for dimensions 32x32x3x2")
    }
}
