import Foundation
import XCTest
@testable import PARTData

/// Image folders that are not plain trees: links that loop or point above a class, FIFOs named
/// like images, names that are not UTF-8. Each ends in a dataset or one error, never a hang
/// and never images under the wrong label.
final class ImageFolderLinkTests: XCTestCase {
    /// root/{train,test}/{a,b}/img.png with 2x2 grey images (class a dark, class b bright).
    func makeFolder() throws -> URL {
        let root = try makeTemporaryDirectory(self as XCTestCase)
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

    func load(_ root: URL, _ warnings: Warnings) throws -> ImageDataset {
        var request = DatasetRequest(name: .imagefolder, location: root)
        request.cache = root.appendingPathComponent("cache")
        return try DatasetRegistry.load(request, split: .train, warn: warnings.callAsFunction)
    }

    func testLinksAreFollowedOncePerFolderAndNeverAboveAClass() throws {
        let root = try makeFolder()
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
        let root = try makeFolder()
        XCTAssertEqual(mkfifo(root.appendingPathComponent("train/a/fifo.png").path, 0o644), 0)
        let warnings = Warnings()
        let data = try load(root, warnings)
        XCTAssertEqual(data.count, 2)
        XCTAssert(warnings.lines.contains { $0.contains("fifo.png") && $0.contains("not a regular file") }, "\(warnings.lines)")
    }

    func testANameThatIsNotUTF8IsAnErrorNamingIt() throws {
        let root = try makeFolder()
        let path = Array(root.appendingPathComponent("train").path.utf8) + Array("/c".utf8) + [0xFF, 0]
        let made = path.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { mkdir($0, 0o755) }
        }
        XCTAssertEqual(made, 0)
        assertFails(try load(root, Warnings()), "train", "c\\xff", "not UTF-8")
    }
}
