import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

/// CIFAR-10 in image-folder layout (`--dataset cifar10` on a folder with train/ and test/) and
/// the class-balanced subsets of `--balanced`.
final class CIFARFolderTests: XCTestCase {
    /// A folder of `perClass` 32x32 PNGs per class and split; image n of the class that sorts
    /// k-th has every byte k * 20 + n.
    func makeFolder(classes: [String], perClass: Int = 2, side: Int = 32) throws -> URL {
        let root = try makeTemporaryDirectory(self)
        for split in ["train", "test"] {
            for name in classes {
                let k = classes.sorted().firstIndex(of: name)!
                let folder = root.appendingPathComponent(split).appendingPathComponent(name)
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                for n in 0..<perClass {
                    let pixels = [UInt8](repeating: UInt8(k * 20 + n), count: side * side * 3)
                    let png = try PNGCodec.encode(pixels, width: side, height: side, channels: 3)
                    try Data(png).write(to: folder.appendingPathComponent(String(format: "%04d.png", n)))
                }
            }
        }
        return root
    }

    func request(_ root: URL) throws -> DatasetRequest {
        var r = DatasetRequest(name: .cifar10, location: root)
        r.cache = try makeTemporaryDirectory(self)
        return r
    }

    func testReadsTheImageFolderLayoutInCIFARLabelOrder() throws {
        let root = try makeFolder(classes: CIFAR.cifar10Names.shuffled())
        XCTAssertTrue(CIFAR.isImageFolder(root))
        for split in DatasetSplit.allCases {
            let d = try DatasetRegistry.load(try request(root), split: split)
            XCTAssertEqual(d.name, "cifar10")
            XCTAssertEqual(d.classNames, CIFAR.cifar10Names)
            XCTAssertEqual(d.shape, [32, 32, 3])
            XCTAssertEqual(d.count, 20)
            XCTAssertEqual(d.labels, (0..<10).flatMap { [Int32($0), Int32($0)] }, "sorted by class")
            XCTAssertEqual(d.augmentation, .cropFlip, "CIFAR-10's augmentation")
            // Class 3 ("cat"), image 1: every byte 3 * 20 + 1.
            let (x, _) = d.batch([7])
            XCTAssertEqual(x.scalars.first!, Float(61) / 255, accuracy: 1e-7)
        }
    }

    func testOtherClassesOrSizesAreRefused() throws {
        let wrong = try makeFolder(classes: ["a", "b"])
        XCTAssertThrowsError(try DatasetRegistry.load(try request(wrong), split: .train)) { error in
            XCTAssert("\(error)".contains("needs the ten folders airplane, automobile"), "\(error)")
        }
        let small = try makeFolder(classes: CIFAR.cifar10Names, perClass: 1, side: 16)
        XCTAssertThrowsError(try DatasetRegistry.load(try request(small), split: .test)) { error in
            XCTAssert("\(error)".contains("16x16 images; CIFAR-10's are 32x32"), "\(error)")
        }
    }

    /// A data folder without any write bit is not written into, even by root: the cache goes
    /// to the next place.
    func testReadOnlyDataFolderIsNotWritten() throws {
        let root = try makeTemporaryDirectory(self)
        XCTAssertFalse(DecodedCache.markedReadOnly(root))
        XCTAssertFalse(DecodedCache.markedReadOnly(root.appendingPathComponent(".part-cache")))
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: root.path)
        addTeardownBlock { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.path) }
        XCTAssertTrue(DecodedCache.markedReadOnly(root.appendingPathComponent(".part-cache")))
    }

    /// The same as a user meets it: `part data inspect` of a folder copy without write bits
    /// leaves the folder as it was and writes its decoded-image cache to `$XDG_CACHE_HOME/part`.
    func testTheCacheOfAReadOnlyFolderGoesToTheUserCache() throws {
        let data = try makeFolder(classes: CIFAR.cifar10Names, perClass: 1)
        let cache = try makeTemporaryDirectory(self)
        func entries(_ url: URL) throws -> [String] {
            try FileManager.default.subpathsOfDirectory(atPath: url.path).sorted()
        }
        let before = try entries(data)
        let folders = [data] + before.map { data.appendingPathComponent($0) }.filter {
            var isFolder: ObjCBool = false
            return FileManager.default.fileExists(atPath: $0.path, isDirectory: &isFolder) && isFolder.boolValue
        }
        XCTAssertEqual(folders.count, 1 + 2 + 2 * 10, "the folder, train/ and test/, a folder per class in each")
        for folder in folders { try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: folder.path) }
        addTeardownBlock {
            for folder in folders { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path) }
        }
        var environment = ProcessInfo.processInfo.environment
        environment["XDG_CACHE_HOME"] = cache.path
        let r = try runProcess(["data", "inspect", "--dataset", "cifar10", "--data", data.path], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try entries(data), before, "the read-only folder was written into")
        let written = try entries(cache.appendingPathComponent("part"))
        XCTAssertEqual(written.count, 2, "one cache per split: \(written)")
        XCTAssert(written.allSatisfy { $0.hasSuffix(".partcache") }, "\(written)")
    }

    func testBalancedIndicesTakeTheFirstOfEachClass() throws {
        // Labels sorted by class, as an image folder's: 0 0 0 0 1 1 1 2 2 2 2 2.
        let labels: [Int32] = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
        let d = try ImageDataset(name: "toy", images: (0..<labels.count).map { UInt8($0) }, labels: labels, height: 1,
                                 width: 1, channels: 1, classes: 3)
        XCTAssertEqual(d.balancedIndices(6), [0, 1, 4, 5, 7, 8])
        XCTAssertEqual(d.balancedIndices(7), [0, 1, 2, 4, 5, 6, 7, 8, 9], "ceil(7/3) = 3 of each")
        XCTAssertEqual(d.balancedIndices(100), Array(0..<12), "a class with fewer gives what it has")
        XCTAssertEqual(d.balancedIndices(0), [])
        let subset = try d.balancedPrefix(6)
        XCTAssertEqual(subset.labels, [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(subset.images, [0, 1, 4, 5, 7, 8])
        // A subset keeps each example's index in the split, the key of its random draws.
        XCTAssertEqual(subset.splitIndices, [0, 1, 4, 5, 7, 8])
        XCTAssertEqual(subset.splitIndex(of: [2, 5]), [4, 8])
        XCTAssertEqual(subset.prefix(3).splitIndices, [0, 1, 4])
        XCTAssertEqual(try subset.subset([1, 3]).splitIndices, [1, 5])
        XCTAssertNil(d.prefix(5).splitIndices)
        XCTAssertNil(try d.subset([0, 1, 2]).splitIndices, "a prefix taken as a subset is numbered as the split")
        XCTAssertEqual(d.splitIndex(of: [3, 1]), [3, 1])
        // Interleaved labels keep dataset order.
        let mixed = try ImageDataset(name: "toy", images: [UInt8](repeating: 0, count: 6), labels: [2, 0, 1, 2, 0, 1],
                                     height: 1, width: 1, channels: 1, classes: 3)
        XCTAssertEqual(mixed.balancedIndices(3), [0, 1, 2])
    }

    func testInterleavedIndicesTakeOneClassAtATime() throws {
        let labels: [Int32] = [0, 0, 0, 0, 1, 1, 1, 3, 3, 3, 3, 3]   // class 2 has no example
        let d = try ImageDataset(name: "toy", images: [UInt8](repeating: 0, count: labels.count), labels: labels, height: 1,
                                 width: 1, channels: 1, classes: 4)
        XCTAssertEqual(d.interleavedIndices(2), [0, 4], "the first of the first classes")
        XCTAssertEqual(d.interleavedIndices(3), [0, 4, 7], "an empty class is skipped, not counted")
        XCTAssertEqual(d.interleavedIndices(8), [0, 1, 2, 4, 5, 6, 7, 8], "rounds: 0 4 7, 1 5 8, 2 6")
        XCTAssertEqual(d.interleavedIndices(11), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "a class that runs out leaves the rounds")
        XCTAssertEqual(d.interleavedIndices(50), Array(0..<12))
        XCTAssertEqual(d.interleavedIndices(0), [])
    }
}
