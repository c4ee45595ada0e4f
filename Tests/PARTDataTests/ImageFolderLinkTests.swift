import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

/// root/{train,test}/{a,b}/img.png with 2x2 grey images (class a dark, class b bright).
func makeImageFolder(_ test: XCTestCase) throws -> URL {
    let root = try makeTemporaryDirectory(test)
    for split in ["train", "test"] {
        for (name, value) in [("a", UInt8(10)), ("b", UInt8(240))] {
            let folder = root.appendingPathComponent(split).appendingPathComponent(name)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try write(try PNGCodec.encode([UInt8](repeating: value, count: 4), width: 2, height: 2, channels: 1),
                      to: folder.appendingPathComponent("img.png"))
        }
    }
    return root
}

/// Image folders that are not plain trees: links that loop or point above a class, FIFOs named
/// like images, names that are not UTF-8. Each ends in a dataset or one error, never a hang
/// and never images under the wrong label.
final class ImageFolderLinkTests: XCTestCase {
    func load(_ root: URL, _ warnings: Warnings) throws -> ImageDataset {
        var request = DatasetRequest(name: .imagefolder, location: root)
        request.cache = root.appendingPathComponent("cache")
        return try DatasetRegistry.load(request, split: .train, warn: warnings.callAsFunction)
    }

    func testLinksAreFollowedOncePerFolderAndNeverAboveAClass() throws {
        let root = try makeImageFolder(self)
        let a = root.appendingPathComponent("train/a")
        try FileManager.default.createSymbolicLink(atPath: a.appendingPathComponent("loop").path, withDestinationPath: ".")
        try FileManager.default.createDirectory(at: a.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: a.appendingPathComponent("sub/up").path, withDestinationPath: "../..")
        try FileManager.default.createSymbolicLink(atPath: a.appendingPathComponent("other").path, withDestinationPath: "../b")
        // A link to a folder outside the data is followed like a folder.
        let outside = try makeTemporaryDirectory(self as XCTestCase)
        try write(try PNGCodec.encode([20, 20, 20, 20], width: 2, height: 2, channels: 1), to: outside.appendingPathComponent("x.png"))
        try FileManager.default.createSymbolicLink(atPath: a.appendingPathComponent("extra").path, withDestinationPath: outside.path)
        let warnings = Warnings()
        let data = try load(root, warnings)
        XCTAssertEqual(data.labels, [0, 0, 1], "a/extra/x.png, a/img.png, b/img.png; nothing of b under a")
        XCTAssertEqual(warnings.lines.filter { $0.contains("skipped") }.count, 3, "\(warnings.lines)")
    }

    func testAFIFONamedLikeAnImageIsSkippedWithAWarning() throws {
        let root = try makeImageFolder(self)
        XCTAssertEqual(mkfifo(root.appendingPathComponent("train/a/fifo.png").path, 0o644), 0)
        let warnings = Warnings()
        let data = try load(root, warnings)
        XCTAssertEqual(data.count, 2)
        XCTAssert(warnings.lines.contains { $0.contains("fifo.png") && $0.contains("not a regular file") }, "\(warnings.lines)")
    }

    func testNamesThatAreNotUTF8AreClassesAndFilesLikeAnyOther() throws {
        let root = try makeImageFolder(self)
        let png = try PNGCodec.encode([UInt8](repeating: 128, count: 4), width: 2, height: 2, channels: 1)
        /// Writes `png` at `path` given as bytes (a name Foundation cannot spell).
        func writeRaw(_ path: [UInt8]) {
            let fd = (path + [0]).withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { open($0, O_WRONLY | O_CREAT, 0o644) }
            }
            XCTAssertGreaterThanOrEqual(fd, 0)
            _ = png.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            close(fd)
        }
        func mkdirRaw(_ path: [UInt8]) {
            let made = (path + [0]).withUnsafeBufferPointer { p in
                p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { mkdir($0, 0o755) }
            }
            XCTAssertEqual(made, 0)
        }
        for split in ["train", "test"] {
            let folder = Array(root.appendingPathComponent(split).path.utf8) + Array("/c".utf8) + [0xFF]
            mkdirRaw(folder)
            writeRaw(folder + Array("/img.png".utf8))
        }
        // A file of class a whose name is not UTF-8.
        writeRaw(Array(root.appendingPathComponent("train/a").path.utf8) + Array("/x".utf8) + [0xFE] + Array(".png".utf8))
        let warnings = Warnings()
        let data = try load(root, warnings)
        XCTAssertEqual(data.classes, 3, "\(data.classNames)")
        XCTAssertEqual(data.count, 4)
        XCTAssertEqual(data.labels, [0, 0, 1, 2])
        XCTAssertEqual(warnings.lines, [])
    }
}

/// The decoded-image cache: a damaged file is detected by its checksum and decoded again, and
/// the temporary file of a killed writer does not stay forever.
final class DecodedCacheIntegrityTests: XCTestCase {
    func testADamagedCacheIsDetectedAndAStaleTemporaryFileRemoved() throws {
        let root = try makeImageFolder(self)
        var request = DatasetRequest(name: .imagefolder, location: root)
        let cache = root.appendingPathComponent("cache")
        request.cache = cache
        let first = try DatasetRegistry.load(request, split: .train)
        let files = try FileManager.default.contentsOfDirectory(atPath: cache.path).filter { $0.hasSuffix(".partcache") }
        XCTAssertEqual(files.count, 1)
        let file = cache.appendingPathComponent(files[0])
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 1] ^= 0x55   // a pixel of the last image
        try bytes.write(to: file)
        // A killed writer's temporary file (of a process that is gone).
        let stale = cache.appendingPathComponent(".\(files[0]).2147483000.tmp")
        try Data("partial".utf8).write(to: stale)
        let warnings = Warnings()
        let again = try DatasetRegistry.load(request, split: .train, warn: warnings.callAsFunction)
        XCTAssert(warnings.lines.contains { $0.contains("damaged") && $0.contains(file.lastPathComponent) }, "\(warnings.lines)")
        XCTAssertEqual(again.images, first.images, "the images are decoded again, not read from the damaged cache")
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path))
        // The cache written again is whole.
        let warnings2 = Warnings()
        _ = try DatasetRegistry.load(request, split: .train, warn: warnings2.callAsFunction)
        XCTAssertEqual(warnings2.lines, [])
    }
}
