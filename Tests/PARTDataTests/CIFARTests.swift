import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

final class CIFARTests: XCTestCase {
    func request(_ name: DatasetName, _ location: URL) -> DatasetRequest { DatasetRequest(name: name, location: location) }

    func testCIFAR10FolderMatchesNumPy() throws {
        let warnings = Warnings()
        for location in [Fixtures.url("data_cifar10"), Fixtures.url("data_cifar10/cifar-10-batches-bin"),
                         Fixtures.url("data_cifar10/cifar-10-batches-bin/test_batch.bin")] {
            for split in DatasetSplit.allCases {
                let d = try DatasetRegistry.load(request(.cifar10, location), split: split, warn: warnings.callAsFunction)
                assertMatches(d, Fixtures.value("cifar10", split.rawValue))
                XCTAssertEqual(d.classes, 10)
                XCTAssertEqual(d.classNames, CIFAR.cifar10Names)
                XCTAssertEqual(d.name, "cifar10")
                XCTAssertEqual(d.augmentation, .cropFlip, "CIFAR trains with crop and flip")
            }
        }
        XCTAssertTrue(warnings.lines.contains { $0.contains("data_batch_1.bin: 4 records, the official file has 10000") },
                      "\(warnings.lines)")
    }

    func testCIFAR10ArchiveReadsTheSameAndChecksItsChecksum() throws {
        let warnings = Warnings()
        let archive = Fixtures.url("data_cifar10/cifar-10-binary.tar.gz")
        let d = try DatasetRegistry.load(request(.cifar10, archive), split: .train, warn: warnings.callAsFunction)
        assertMatches(d, Fixtures.value("cifar10", "train"))
        XCTAssertTrue(warnings.lines.contains { $0.contains("cifar-10-binary.tar.gz") && $0.contains("the official cifar-10-binary.tar.gz has 170052171") },
                      "a file that is not the published archive is named in a warning: \(warnings.lines)")
        // The archive in a folder without the extracted files is found too.
        let folder = try makeTemporaryDirectory(self)
        try FileManager.default.copyItem(at: archive, to: folder.appendingPathComponent("cifar-10-binary.tar.gz"))
        assertMatches(try DatasetRegistry.load(request(.cifar10, folder), split: .test), Fixtures.value("cifar10", "test"))
    }

    func testChecksumOfTheRightSizeIsHashed() throws {
        // A file of the official size but other contents: the MD5 comparison names the file.
        let fake = [UInt8](repeating: 7, count: 64)
        let warning = fake.withUnsafeBytes { bytes -> String? in
            OfficialChecksum.verify(bytes, officialName: "train_32x32.mat", path: "/x/train_32x32.mat")
        }
        XCTAssertEqual(warning?.hasPrefix("/x/train_32x32.mat: MD5 "), true, warning ?? "")
        XCTAssertTrue(warning?.contains("e26dedcc434d2e4c54c9b2d4a06d8373") == true)
        XCTAssertNil([UInt8]().withUnsafeBytes { OfficialChecksum.verify($0, officialName: "other.bin", path: "p") })
    }

    func testCIFAR100FineAndCoarse() throws {
        let location = Fixtures.url("data_cifar100")
        for mode in CIFAR.LabelMode.allCases {
            var r = request(.cifar100, location)
            r.labelMode = mode
            for split in DatasetSplit.allCases {
                let d = try DatasetRegistry.load(r, split: split)
                assertMatches(d, Fixtures.value("cifar100", mode.rawValue, split.rawValue))
                XCTAssertEqual(d.classes, mode == .fine ? 100 : 20)
                XCTAssertEqual(d.classNames.first, mode == .fine ? "apple" : "aquatic_mammals")
            }
        }
    }

    func testNamesFileIsReadAndChecked() throws {
        let folder = try Fixtures.copy("data_cifar10/cifar-10-batches-bin", into: self)
        let names = (0..<10).map { "class\($0)" }
        try Data(names.joined(separator: "\n").utf8).write(to: folder.appendingPathComponent("batches.meta.txt"))
        XCTAssertEqual(try DatasetRegistry.load(request(.cifar10, folder), split: .test).classNames, names)
        try Data("a\nb\n".utf8).write(to: folder.appendingPathComponent("batches.meta.txt"))
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .test),
                    "batches.meta.txt", "2 class names, expected 10")
    }

    func testTruncatedFileIsAnError() throws {
        let folder = try Fixtures.copy("data_cifar10/cifar-10-batches-bin", into: self)
        let file = folder.appendingPathComponent("data_batch_3.bin")
        let content = try bytes(file)
        // Cut inside a record.
        try write(Array(content.prefix(content.count - 100)), to: file)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .train),
                    file.path, "not a whole number of 3073-byte records", "3 records and 2973 bytes over")
        // Cut at a record boundary: the other files hold more records.
        try write(Array(content.prefix(3073 * 3)), to: file)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .train),
                    file.path, "3 records where data_batch_1.bin has 4", "truncated")
        try write([], to: file)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .train), file.path, "empty file")
    }

    func testMislabelledRecordIsAnError() throws {
        let folder = try Fixtures.copy("data_cifar10/cifar-10-batches-bin", into: self)
        let file = folder.appendingPathComponent("test_batch.bin")
        var content = try bytes(file)
        content[2 * 3073] = 10
        try write(content, to: file)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .test),
                    file.path, "record 2 has label 10", "0...9")

        let c100 = try Fixtures.copy("data_cifar100/cifar-100-binary", into: self)
        let train = c100.appendingPathComponent("train.bin")
        var raw = try bytes(train)
        raw[3074 + 1] = 100  // fine label of record 1
        try write(raw, to: train)
        var r = request(.cifar100, c100)
        r.labelMode = .coarse
        // Both labels are checked, whichever is used.
        assertFails(try DatasetRegistry.load(r, split: .train), train.path, "record 1 has fine label 100")
    }

    func testMissingFile() throws {
        let folder = try Fixtures.copy("data_cifar10/cifar-10-batches-bin", into: self)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("data_batch_5.bin"))
        assertFails(try DatasetRegistry.load(self.request(.cifar10, folder), split: .train),
                    "data_batch_5.bin: missing", "data_batch_1.bin, data_batch_2.bin")
        let empty = try makeTemporaryDirectory(self)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, empty), split: .train),
                    empty.path, "no CIFAR binary files", "cifar-10-binary.tar.gz", "nor train/ and test/ image folders")
        assertFails(try DatasetRegistry.load(self.request(.cifar10, empty.appendingPathComponent("absent")), split: .train),
                    "no such file or folder", "a folder of train/ and test/")
    }

    /// --data naming a folder next to the copy (one of its split or class folders, or the folder
    /// above it) says which folder to name instead.
    func testFolderNextToTheCopyIsNamed() throws {
        let root = try makeTemporaryDirectory(self)
        let copy = root.appendingPathComponent("cifar10-jpeg")
        for split in ["train", "test"] {
            try FileManager.default.createDirectory(at: copy.appendingPathComponent("\(split)/cat"),
                                                    withIntermediateDirectories: true)
        }
        for named in [copy.appendingPathComponent("train"), copy.appendingPathComponent("train/cat"), root] {
            assertFails(try DatasetRegistry.load(self.request(.cifar10, named), split: .train),
                        "\(named.path): no CIFAR files here, but \(copy.path) has them")
        }
        // A subfolder holding the binary files is found too.
        let outer = try makeTemporaryDirectory(self), wrapper = outer.appendingPathComponent("download")
        try FileManager.default.createDirectory(at: wrapper, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: Fixtures.url("data_cifar10/cifar-10-batches-bin"),
                                         to: wrapper.appendingPathComponent("cifar-10-batches-bin"))
        assertFails(try DatasetRegistry.load(self.request(.cifar10, outer), split: .train),
                    "\(outer.path): no CIFAR files here, but \(wrapper.path) has them")
    }

    func testCorruptArchive() throws {
        let archive = try Fixtures.copy("data_cifar10/cifar-10-binary.tar.gz", into: self)
        let content = try bytes(archive)
        try write(Array(content.prefix(content.count / 2)), to: archive)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, archive), split: .test),
                    archive.path, "truncated compressed data")
        var flipped = content
        for i in stride(from: 200, to: 400, by: 7) { flipped[i] ^= 0x5A }
        try write(flipped, to: archive)
        assertFails(try DatasetRegistry.load(self.request(.cifar10, archive), split: .test), archive.path, "corrupt")
    }

    func testTarHeadersAreChecked() throws {
        // A plain tar whose first header's checksum is broken.
        let archive = try Fixtures.copy("data_cifar10/cifar-10-binary.tar.gz", into: self)
        let raw = try ByteBuffer.mapping(archive)
        let tar = try Gzip.decompress(raw.bytes, source: "t")
        var content = [UInt8](tar.bytes)
        XCTAssertNoThrow(try content.withUnsafeBytes { try Tar.entries($0, source: "t") })
        let members = try content.withUnsafeBytes { try Tar.entries($0, source: "t") }
        XCTAssertEqual(Set(members.map { ($0.path as NSString).lastPathComponent }),
                       Set((1...5).map { "data_batch_\($0).bin" } + ["test_batch.bin", "batches.meta.txt"]))
        content[10] ^= 0x01
        assertFails(try content.withUnsafeBytes { try Tar.entries($0, source: "t.tar") }, "t.tar", "checksum mismatch")
        // A member that runs past the end.
        let cut = Array([UInt8](tar.bytes).prefix(2048))
        assertFails(try cut.withUnsafeBytes { try Tar.entries($0, source: "t.tar") }, "t.tar", "truncated")
    }
}
