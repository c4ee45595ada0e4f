import Foundation
import XCTest
import PARTEngine
@testable import PARTData

final class AugmentationTests: XCTestCase {
    /// The crop and flip of a known image against torchvision's pad, crop and hflip.
    func testCropAndFlipMatchTorchvision() throws {
        guard let a = Fixtures.value("augmentation") as? [String: Any], let image = a["image"] as? [Int],
              let shape = a["shape"] as? [Int], let cases = a["cases"] as? [[String: Any]] else {
            return XCTFail("no augmentation fixture")
        }
        let d = try ImageDataset(name: "known", images: image.map { UInt8($0) }, labels: [0], height: shape[0],
                                 width: shape[1], channels: shape[2], classes: 1)
        XCTAssertEqual(cases.count, 5)
        for c in cases {
            let t = CropFlip(top: c["top"] as! Int, left: c["left"] as! Int, flip: c["flip"] as! Bool)
            for threaded in [false, true] {
                let out = d.gather([0], transforms: [t], threaded: threaded)
                XCTAssertEqual(out.shape, [1] + shape)
                XCTAssertEqual(out.scalars, (c["output"] as! [Int]).map { Float($0) / 255 }, "\(t)")
            }
        }
    }

    func testDrawsAreKeyedAndCoverTheRange() {
        let policy = Augmentation.cropFlip
        XCTAssertEqual(policy.transform(seed: 3, index: 17, epoch: 2), policy.transform(seed: 3, index: 17, epoch: 2))
        var tops = Set<Int>(), lefts = Set<Int>(), flips = 0
        var differ = 0
        for i in 0..<2000 {
            let t = policy.transform(seed: 3, index: i, epoch: 1)
            tops.insert(t.top)
            lefts.insert(t.left)
            flips += t.flip ? 1 : 0
            if t != policy.transform(seed: 3, index: i, epoch: 2) { differ += 1 }
        }
        XCTAssertEqual(tops, Set(-4...4))
        XCTAssertEqual(lefts, Set(-4...4))
        XCTAssertEqual(Double(flips) / 2000, 0.5, accuracy: 0.05)
        XCTAssertGreaterThan(differ, 1800, "another epoch draws again")
        XCTAssertEqual(Augmentation.none.transform(seed: 3, index: 5, epoch: 1), .identity)
        XCTAssertEqual(Augmentation(padding: 0, flip: true).transform(seed: 3, index: 5, epoch: 1).top, 0)
    }
}

final class BatcherTests: XCTestCase {
    func dataset(count: Int = 37, augmentation: Augmentation = .cropFlip) throws -> ImageDataset {
        let size = 6 * 5 * 3
        let pixels = (0..<(count * size)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 / size) }
        return try ImageDataset(name: "toy", images: pixels, labels: (0..<count).map { Int32($0 % 4) }, height: 6,
                                width: 5, channels: 3, classes: 4, augmentation: augmentation)
    }

    func epoch(_ d: ImageDataset, batchSize: Int, prefetch: Bool, seed: UInt64 = 9, epoch: Int = 1) -> [Batch] {
        var rng = RNG(seed: 5)
        let batches = Array(BatchSampler(count: d.count, batchSize: batchSize, shuffle: true, rng: &rng))
        return Array(Batcher(d, batches: batches, seed: seed, epoch: epoch, prefetch: prefetch))
    }

    func testPrefetchingGivesTheSameBatches() throws {
        let d = try dataset()
        let plain = epoch(d, batchSize: 8, prefetch: false)
        let ahead = epoch(d, batchSize: 8, prefetch: true)
        XCTAssertEqual(plain.count, 5)
        XCTAssertEqual(ahead.count, 5)
        for (a, b) in zip(plain, ahead) {
            XCTAssertEqual(a.indices, b.indices)
            XCTAssertEqual(a.labels, b.labels)
            XCTAssertEqual(a.images.scalars, b.images.scalars)
        }
        XCTAssertEqual(plain[0].labels, plain[0].indices.map { Int32($0 % 4) })
        XCTAssertTrue(Batcher(d, batches: [[0], [1]], seed: 1, epoch: 1, prefetch: true).prefetches)
    }

    /// An example's augmented image depends on (seed, index, epoch) only, not on its batch nor
    /// on the subset it was taken in.
    func testAnExampleIsTheSameInAnyBatch() throws {
        let d = try dataset()
        func images(_ batches: [Batch]) -> [Int: [Float]] {
            var out: [Int: [Float]] = [:]
            for b in batches {
                let size = b.images.count / max(b.indices.count, 1)
                for (row, index) in b.indices.enumerated() { out[index] = Array(b.images.scalars[(row * size)..<((row + 1) * size)]) }
            }
            return out
        }
        let small = images(epoch(d, batchSize: 3, prefetch: true))
        let large = images(epoch(d, batchSize: 37, prefetch: false))
        XCTAssertEqual(small.count, 37)
        XCTAssertEqual(small, large)
        // A subset that is not a prefix (a class-balanced --train-limit) changes no example: the
        // batch names each by its index in the split, and the draws follow it.
        let chosen = [3, 10, 22, 30]
        let fromSubset = images(Array(Batcher(try d.subset(chosen), batches: [[2, 0], [3, 1]], seed: 9, epoch: 1)))
        XCTAssertEqual(fromSubset.keys.sorted(), chosen)
        for k in chosen { XCTAssertEqual(fromSubset[k], large[k], "example \(k)") }
        let plain = d.batch(Array(0..<37)).images.scalars
        let augmented = (0..<37).flatMap { large[$0]! }
        XCTAssertNotEqual(augmented, plain, "the images are augmented")
        XCTAssertNotEqual(images(epoch(d, batchSize: 8, prefetch: true, epoch: 2)), large, "each epoch draws anew")
        // No augmentation: the batch is the stored image.
        let none = images(epoch(try dataset(augmentation: .none), batchSize: 8, prefetch: true))
        XCTAssertEqual((0..<37).flatMap { none[$0]! }, plain)
        XCTAssertEqual(images(Array(Batcher(d, batches: [Array(0..<37)], seed: 9, epoch: 1, augment: false))).count, 37)
    }

    func testAnAbandonedPrefetcherStops() throws {
        let d = try dataset(count: 400)
        let batches = (0..<100).map { [$0 * 4, $0 * 4 + 1, $0 * 4 + 2, $0 * 4 + 3] }
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0 }
        _ = Array(Batcher(d, batches: Array(batches.prefix(2)), seed: 1, epoch: 1, prefetch: true))
        let threadsBefore = threads()
        for _ in 0..<20 {
            let batcher = Batcher(d, batches: batches, seed: 1, epoch: 1, prefetch: true)
            XCTAssertEqual(batcher.next()?.indices, [0, 1, 2, 3])
            // Dropped after one batch: its thread must end rather than wait for ever.
        }
        // 20 abandoned producers that kept waiting would be 20 more threads of the process.
        var threadsAfter = threads()
        for _ in 0..<50 where threadsAfter > threadsBefore + 2 {
            usleep(100_000)
            threadsAfter = threads()
        }
        XCTAssertGreaterThan(threadsBefore, 0, "/proc/self/task lists the threads")
        XCTAssertLessThanOrEqual(threadsAfter, threadsBefore + 2, "abandoned prefetchers left their threads running")
        let before = Batcher.waitStatistics.value.batches
        _ = Array(Batcher(d, batches: Array(batches.prefix(3)), seed: 1, epoch: 1, prefetch: true))
        XCTAssertGreaterThanOrEqual(Batcher.waitStatistics.value.batches - before, 2, "all batches but the first are timed")
    }

    func testFloatDatasetsAugmentToo() throws {
        let values: [Float] = (0..<(2 * 3 * 3)).map { Float($0) / 20 }
        let storage = try values.withUnsafeBytes { try ByteBuffer.copying($0) }
        let d = try ImageDataset(name: "f", storage: storage, pixelType: .float32, labels: [0, 1], height: 3, width: 3,
                                 channels: 1, classes: 2)
        let flipped = d.gather([1], transforms: [CropFlip(top: 0, left: 0, flip: true)], threaded: false)
        XCTAssertEqual(flipped.scalars, [11, 10, 9, 14, 13, 12, 17, 16, 15].map { Float($0) / 20 })
        let shifted = d.gather([0], transforms: [CropFlip(top: 1, left: -1, flip: false)], threaded: true)
        XCTAssertEqual(shifted.scalars, [0, 3, 4, 0, 6, 7, 0, 0, 0].map { Float($0) / 20 })
    }
}

final class ChecksumTests: XCTestCase {
    func testMD5KnownValuesAndFixtures() throws {
        func md5(_ s: String) -> String { Array(s.utf8).withUnsafeBytes { MD5.hex($0) } }
        // RFC 1321, appendix A.5.
        XCTAssertEqual(md5(""), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(md5("abc"), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(md5("message digest"), "f96b697d7cb7938d525a2f31aaf161d0")
        XCTAssertEqual(md5(String(repeating: "1234567890", count: 8)), "57edf4a22be3c955ac49da2e2107b67a")
        for (path, digest) in Fixtures.value("md5") as? [String: String] ?? [:] {
            let file = try ByteBuffer.mapping(Fixtures.url(path))
            XCTAssertEqual(MD5.hex(file.bytes), digest, "hashlib's MD5 of \(path)")
        }
        XCTAssertEqual((Fixtures.value("md5") as? [String: String])?.count, 3)
    }
}
