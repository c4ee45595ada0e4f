import PARTTestSupport
import Foundation
import XCTest
import PARTEngine
@testable import PARTData

final class DatasetTests: XCTestCase {
    private func assertDatasetError<T>(_ body: @autoclosure () throws -> T, contains fragments: [String],
                                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertTrue(error is DatasetError || error is IDXError, "unexpected \(type(of: error))", file: file, line: line)
            let text = "\(error)"
            for f in fragments {
                XCTAssertTrue(text.contains(f), "\"\(text)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    // MARK: ImageDataset

    func testInitValidatesCounts() throws {
        assertDatasetError(try ImageDataset(name: "toy", images: [UInt8](repeating: 0, count: 10), labels: [0, 1],
                                            height: 2, width: 2, channels: 1, classes: 2),
                           contains: ["toy", "2 labels", "10 image bytes"])
        assertDatasetError(try ImageDataset(name: "toy", images: [], labels: [], height: 0, width: 2, channels: 1, classes: 2),
                           contains: ["toy", "positive"])
    }

    func testInitValidatesLabelRange() throws {
        assertDatasetError(try ImageDataset(name: "toy", images: [UInt8](repeating: 0, count: 12), labels: [0, 3, 1],
                                            height: 2, width: 2, channels: 1, classes: 3),
                           contains: ["toy", "label 3", "example 1", "0..<3"])
        assertDatasetError(try ImageDataset(name: "toy", images: [UInt8](repeating: 0, count: 4), labels: [-1],
                                            height: 2, width: 2, channels: 1, classes: 3),
                           contains: ["label -1"])
    }

    func testBatchScalesAndKeepsNHWC() throws {
        // 3 images of 2x2x3; byte value encodes (image, y, x, c).
        var images = [UInt8]()
        for n in 0..<3 { for y in 0..<2 { for x in 0..<2 { for c in 0..<3 { images.append(UInt8(n * 64 + y * 24 + x * 8 + c)) } } } }
        images[0] = 255
        let ds = try ImageDataset(name: "toy", images: images, labels: [4, 5, 6], height: 2, width: 2, channels: 3, classes: 10)
        XCTAssertEqual(ds.count, 3)
        let (t, labels) = ds.batch([2, 0])
        XCTAssertEqual(t.shape, [2, 2, 2, 3])
        XCTAssertEqual(labels, [6, 4])
        func at(_ b: Int, _ y: Int, _ x: Int, _ c: Int) -> Float { t[flat: ((b * 2 + y) * 2 + x) * 3 + c] }
        XCTAssertEqual(at(0, 1, 0, 2), Float(2 * 64 + 24 + 2) / 255)
        XCTAssertEqual(at(0, 0, 1, 1), Float(2 * 64 + 8 + 1) / 255)
        XCTAssertEqual(at(1, 0, 0, 0), 1)
        XCTAssertEqual(at(1, 1, 1, 2), Float(24 + 8 + 2) / 255)
        XCTAssertTrue(t.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })

        let empty = ds.batch([])
        XCTAssertEqual(empty.images.shape, [0, 2, 2, 3])
        XCTAssertEqual(empty.labels, [])
    }

    func testPrefix() throws {
        let ds = try ImageDataset(name: "toy", images: Array(0..<8), labels: [0, 1, 0, 1], height: 1, width: 2,
                                  channels: 1, classes: 2)
        let two = ds.prefix(2)
        XCTAssertEqual(two.count, 2)
        XCTAssertEqual(two.images, [0, 1, 2, 3])
        XCTAssertEqual(two.labels, [0, 1])
        XCTAssertEqual(two.name, "toy")
        XCTAssertEqual(ds.prefix(100).count, 4)
        XCTAssertEqual(ds.prefix(-3).count, 0)
    }

    // MARK: MNIST format

    private func writeSplit(_ dir: URL, prefix: String, images: Int, labels: [UInt8], gzip: Bool,
                            imageDims: [Int]? = nil) throws {
        let imageBytes = makeIDX(dims: imageDims ?? [images, 4, 3])
        let labelBytes = makeIDX(dims: [labels.count], data: labels)
        let ext = gzip ? ".gz" : ""
        try Data(gzip ? gzipBytes(imageBytes) : imageBytes)
            .write(to: dir.appendingPathComponent("\(prefix)-images-idx3-ubyte\(ext)"))
        try Data(gzip ? gzipBytes(labelBytes) : labelBytes)
            .write(to: dir.appendingPathComponent("\(prefix)-labels-idx1-ubyte\(ext)"))
    }

    func testLoadsBothSplitsRawAndGzipped() throws {
        let dir = try makeTemporaryDirectory(self).appendingPathComponent("toy-mnist")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try writeSplit(dir, prefix: "train", images: 5, labels: [0, 1, 2, 9, 3], gzip: false)
        try writeSplit(dir, prefix: "t10k", images: 2, labels: [7, 8], gzip: true)

        let train = try MNISTFormat.load(directory: dir, split: .train)
        XCTAssertEqual(train.name, "toy-mnist")
        XCTAssertEqual([train.count, train.height, train.width, train.channels, train.classes], [5, 4, 3, 1, 10])
        XCTAssertEqual(train.labels, [0, 1, 2, 9, 3])
        XCTAssertEqual(train.images, Array(makeIDX(dims: [5, 4, 3])[16...]))

        let test = try MNISTFormat.load(directory: dir, split: .test)
        XCTAssertEqual(test.count, 2)
        XCTAssertEqual(test.labels, [7, 8])
    }

    func testMismatchedCounts() throws {
        let dir = try makeTemporaryDirectory(self)
        try writeSplit(dir, prefix: "train", images: 4, labels: [0, 1, 2], gzip: false)
        assertDatasetError(try MNISTFormat.load(directory: dir, split: .train),
                           contains: ["train-images-idx3-ubyte has 4 images", "train-labels-idx1-ubyte has 3 labels"])
    }

    func testLabelOutOfRange() throws {
        let dir = try makeTemporaryDirectory(self)
        try writeSplit(dir, prefix: "t10k", images: 3, labels: [0, 12, 1], gzip: true)
        assertDatasetError(try MNISTFormat.load(directory: dir, split: .test),
                           contains: ["t10k-labels-idx1-ubyte.gz", "label 12", "index 1", "< 10"])
    }

    func testImagesWithWrongDimensionCount() throws {
        let dir = try makeTemporaryDirectory(self)
        try writeSplit(dir, prefix: "train", images: 2, labels: [0, 1], gzip: false, imageDims: [2, 12])
        assertDatasetError(try MNISTFormat.load(directory: dir, split: .train),
                           contains: ["train-images-idx3-ubyte", "magic number 2050", "expected 3"])
    }

    func testMissingFileMessage() throws {
        let dir = try makeTemporaryDirectory(self)
        assertDatasetError(try MNISTFormat.load(directory: dir, split: .test),
                           contains: ["test images not found", dir.path, "t10k-images-idx3-ubyte and t10k-images-idx3-ubyte.gz",
                                      "apt-get install dataset-fashion-mnist"])
        // Images present, labels missing.
        try Data(makeIDX(dims: [1, 2, 2])).write(to: dir.appendingPathComponent("train-images-idx3-ubyte"))
        assertDatasetError(try MNISTFormat.load(directory: dir, split: .train),
                           contains: ["train labels not found", "train-labels-idx1-ubyte and train-labels-idx1-ubyte.gz"])
    }

    func testFashionMNISTTestSplitIfInstalled() throws {
        let dir = FashionMNIST.defaultDirectory
        guard FileManager.default.fileExists(atPath: dir.path) else {
            throw XCTSkip("\(dir.path) not installed (apt-get install dataset-fashion-mnist)")
        }
        let test = try FashionMNIST.load(split: .test)
        XCTAssertEqual(test.name, "fashion-mnist")
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual([test.height, test.width, test.channels], [28, 28, 1])
        XCTAssertEqual(test.images.count, 10_000 * 784)
        XCTAssertTrue(test.labels.allSatisfy { $0 >= 0 && $0 < 10 })
        XCTAssertEqual(Set(test.labels).count, 10)
        XCTAssertEqual(FashionMNIST.classNames.count, 10)
        let (batch, _) = test.batch([0, 1])
        XCTAssertEqual(batch.shape, [2, 28, 28, 1])
        XCTAssertGreaterThan(batch.scalars.max() ?? 0, 0.5)
    }

    // MARK: BatchSampler

    func testSamplerCoversEveryIndexOnce() throws {
        var rng = RNG(seed: 1)
        let sampler = BatchSampler(count: 103, batchSize: 10, shuffle: true, rng: &rng)
        let batches = Array(sampler)
        XCTAssertEqual(batches.count, 11)
        XCTAssertEqual(sampler.batchCount, 11)
        XCTAssertEqual(batches.dropLast().map(\.count), Array(repeating: 10, count: 10))
        XCTAssertEqual(batches.last?.count, 3)
        let all = batches.flatMap { $0 }
        XCTAssertEqual(all.sorted(), Array(0..<103))
        XCTAssertNotEqual(all, Array(0..<103), "shuffled order")
        // Iterating again gives the same epoch.
        XCTAssertEqual(Array(sampler), batches)
    }

    func testSamplerDropLastAndSequential() throws {
        var rng = RNG(seed: 1)
        let before = rng
        let sequential = BatchSampler(count: 7, batchSize: 3, shuffle: false, rng: &rng, dropLast: true)
        XCTAssertEqual(rng, before, "a sequential sampler draws nothing")
        XCTAssertEqual(Array(sequential), [[0, 1, 2], [3, 4, 5]])
        XCTAssertEqual(sequential.batchCount, 2)
        XCTAssertEqual(Array(BatchSampler(count: 7, batchSize: 3, shuffle: false, rng: &rng)), [[0, 1, 2], [3, 4, 5], [6]])
        XCTAssertEqual(Array(BatchSampler(count: 0, batchSize: 3, shuffle: true, rng: &rng)), [])
        XCTAssertEqual(Array(BatchSampler(count: 2, batchSize: 3, shuffle: true, rng: &rng, dropLast: true)), [])
    }

    func testSamplerSeeds() throws {
        func epoch(_ seed: UInt64) -> [[Int]] {
            var rng = RNG(seed: seed)
            return Array(BatchSampler(count: 50, batchSize: 8, shuffle: true, rng: &rng))
        }
        XCTAssertEqual(epoch(42), epoch(42))
        XCTAssertNotEqual(epoch(42), epoch(43))
        // Consecutive epochs from one generator differ.
        var rng = RNG(seed: 42)
        let first = Array(BatchSampler(count: 50, batchSize: 8, shuffle: true, rng: &rng))
        let second = Array(BatchSampler(count: 50, batchSize: 8, shuffle: true, rng: &rng))
        XCTAssertEqual(first, epoch(42))
        XCTAssertNotEqual(first, second)
    }
}
