import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

final class ImageFolderTests: XCTestCase {
    func tiny(_ location: URL, cache: URL) -> DatasetRequest {
        var r = DatasetRequest(name: .tinyimagenet, location: location)
        r.cache = cache
        return r
    }

    func folder(_ location: URL, cache: URL, channels: Int = 3) -> DatasetRequest {
        var r = DatasetRequest(name: .imagefolder, location: location)
        r.cache = cache
        r.channels = channels
        return r
    }

    /// Decoded pixels are Pillow's, exactly (libjpeg-turbo's accurate IDCT and smooth
    /// upsampling for JPEG, grey JPEGs replicated to RGB).
    func testTinyImageNetMatchesPillow() throws {
        let cache = try makeTemporaryDirectory(self)
        let warnings = Warnings()
        for split in DatasetSplit.allCases {
            let d = try DatasetRegistry.load(tiny(Fixtures.url("data_tinyimagenet"), cache: cache), split: split,
                                             warn: warnings.callAsFunction)
            assertMatches(d, Fixtures.value("tinyimagenet", split.rawValue))
            XCTAssertEqual(d.classNames, ["thing 0", "thing 1", "thing 2"], "words.txt names, wnids in sorted order")
            XCTAssertEqual(d.augmentation, .cropFlip)
        }
        XCTAssertTrue(warnings.lines.contains { $0.contains("3 classes, TinyImageNet-200 has 200") })
    }

    func testDecodedOnceThenMapped() throws {
        let root = try Fixtures.copy("data_tinyimagenet/tiny-imagenet-200", into: self)
        let warnings = Warnings()
        // No --cache: the cache goes beside the data.
        let r = DatasetRequest(name: .tinyimagenet, location: root)
        let first = try DatasetRegistry.load(r, split: .train, warn: warnings.callAsFunction)
        XCTAssertFalse(first.storage.isMapped, "the first run decodes")
        let files = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent(".part-cache").path)
        XCTAssertEqual(files, ["tinyimagenet-train.partcache"])
        let second = try DatasetRegistry.load(r, split: .train, warn: warnings.callAsFunction)
        XCTAssertTrue(second.storage.isMapped, "a later run maps the cache")
        XCTAssertEqual(second.images, first.images)
        XCTAssertEqual(second.labels, first.labels)
        XCTAssertEqual(second.classNames, first.classNames)

        // A changed image invalidates the cache.
        let image = root.appendingPathComponent("train/n0200/images/n0200_0.JPEG")
        let other = root.appendingPathComponent("train/n0300/images/n0300_0.JPEG")
        try FileManager.default.removeItem(at: image)
        try FileManager.default.copyItem(at: other, to: image)
        let third = try DatasetRegistry.load(r, split: .train, warn: warnings.callAsFunction)
        XCTAssertFalse(third.storage.isMapped)
        XCTAssertNotEqual(third.images, first.images)

        // A damaged cache is a warning, and the images are decoded again.
        let cacheFile = root.appendingPathComponent(".part-cache/tinyimagenet-train.partcache")
        let content = try bytes(cacheFile)
        try write(Array(content.prefix(content.count - 10)), to: cacheFile)
        let fourth = try DatasetRegistry.load(r, split: .train, warn: warnings.callAsFunction)
        XCTAssertEqual(fourth.images, third.images)
        XCTAssertTrue(warnings.lines.contains { $0.contains("partcache") && $0.contains("truncated or damaged") }, "\(warnings.lines)")
    }

    func testCacheFallsBackWhenTheDataFolderCannotHoldIt() throws {
        let root = try Fixtures.copy("data_tinyimagenet/tiny-imagenet-200", into: self)
        // A file where the cache folder would go: the folder cannot be made (as with a
        // read-only data folder, but also when the tests run as root).
        try write([1], to: root.appendingPathComponent(".part-cache"))
        let home = try makeTemporaryDirectory(self)
        setenv("XDG_CACHE_HOME", home.path, 1)
        defer { unsetenv("XDG_CACHE_HOME") }
        let warnings = Warnings()
        _ = try DatasetRegistry.load(DatasetRequest(name: .tinyimagenet, location: root), split: .test,
                                     warn: warnings.callAsFunction)
        let written = try FileManager.default.contentsOfDirectory(atPath: home.appendingPathComponent("part").path)
        XCTAssertEqual(written.count, 1)
        XCTAssertTrue(written[0].hasPrefix("tinyimagenet-test-") && written[0].hasSuffix(".partcache"), written[0])
        XCTAssertFalse(warnings.lines.contains { $0.contains("cannot write") }, "the second place worked: \(warnings.lines)")
        let again = try DatasetRegistry.load(DatasetRequest(name: .tinyimagenet, location: root), split: .test)
        XCTAssertTrue(again.storage.isMapped, "found in the user's cache folder")
    }

    func testTinyImageNetProblems() throws {
        let cache = try makeTemporaryDirectory(self)
        let root = try Fixtures.copy("data_tinyimagenet/tiny-imagenet-200", into: self)
        let r = tiny(root, cache: cache)
        // A truncated JPEG.
        let jpeg = root.appendingPathComponent("train/n0100/images/n0100_2.JPEG")
        let content = try bytes(jpeg)
        try write(Array(content.prefix(content.count / 2)), to: jpeg)
        assertFails(try DatasetRegistry.load(r, split: .train), jpeg.path, "corrupt or truncated JPEG")
        // Not an image at all.
        try write(Array("hello".utf8), to: jpeg)
        assertFails(try DatasetRegistry.load(r, split: .train), jpeg.path, "neither a JPEG nor a PNG")
        // Another size.
        try write(try PNGCodec.encode([UInt8](repeating: 3, count: 63 * 64 * 3), width: 63, height: 64, channels: 3), to: jpeg)
        assertFails(try DatasetRegistry.load(r, split: .train), jpeg.path, "63x64 pixels where the other images are 64x64")
        try write(content, to: jpeg)
        XCTAssertNoThrow(try DatasetRegistry.load(r, split: .train))

        // Validation images and their labels.
        let annotations = root.appendingPathComponent("val/val_annotations.txt")
        let text = try String(contentsOf: annotations, encoding: .utf8)
        try (text + "val_0.JPEG\tn0100\t0\t0\t1\t1\n").write(to: annotations, atomically: true, encoding: .utf8)
        assertFails(try DatasetRegistry.load(r, split: .test), annotations.path, "labels val_0.JPEG a second time")
        try text.replacingOccurrences(of: "val_3.JPEG\tn0", with: "val_3.JPEG\tn9")
            .write(to: annotations, atomically: true, encoding: .utf8)
        assertFails(try DatasetRegistry.load(r, split: .test), annotations.path, "line 4", "not in wnids.txt")
        try text.split(separator: "\n").dropLast().joined(separator: "\n").write(to: annotations, atomically: true, encoding: .utf8)
        assertFails(try DatasetRegistry.load(r, split: .test), "val_4.JPEG: not labelled in val_annotations.txt")
        try text.write(to: annotations, atomically: true, encoding: .utf8)

        // Classes and folders must agree.
        try FileManager.default.moveItem(at: root.appendingPathComponent("train/n0300"), to: root.appendingPathComponent("train/n0400"))
        assertFails(try DatasetRegistry.load(r, split: .train), "n0400: class n0400 is not in wnids.txt")
        try FileManager.default.removeItem(at: root.appendingPathComponent("train/n0400"))
        assertFails(try DatasetRegistry.load(r, split: .train), "train/n0300/images: missing (class n0300 of wnids.txt)")
        try "n0100\nn0200\nn0100\n".write(to: root.appendingPathComponent("wnids.txt"), atomically: true, encoding: .utf8)
        assertFails(try DatasetRegistry.load(r, split: .train), "wnids.txt", "class n0100 is listed twice")
        let empty = try makeTemporaryDirectory(self)
        assertFails(try DatasetRegistry.load(tiny(empty, cache: cache), split: .train), "no wnids.txt")
    }

    func testImageFolderMatchesTorchvision() throws {
        let cache = try makeTemporaryDirectory(self)
        let root = Fixtures.url("data_imagefolder")
        let lists = Fixtures.value("imagefolder", "files") as? [String: [String]]
        for split in DatasetSplit.allCases {
            // torchvision's sample order; hidden folders and non-image files skipped.
            XCTAssertEqual(try ImageFolder.list(root, split: split).files, lists?[split.rawValue])
            let d = try DatasetRegistry.load(folder(root, cache: cache), split: split)
            assertMatches(d, Fixtures.value("imagefolder", split.rawValue))
            XCTAssertEqual(d.classNames, ["cat", "dog", "emu"])
            XCTAssertEqual(d.name, "data_imagefolder")
        }
        // The test split has no emu: cat and dog keep the training indices.
        XCTAssertEqual(try DatasetRegistry.load(folder(root, cache: cache), split: .test).labels, [0, 0, 1])
    }

    func testPNGRoundTripAndGreyImages() throws {
        let root = try makeTemporaryDirectory(self)
        var pixels: [[UInt8]] = []
        for (k, split) in ["train/a", "train/b", "test/b"].enumerated() {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(split), withIntermediateDirectories: true)
            let image = (0..<(5 * 4)).map { UInt8(truncatingIfNeeded: $0 * 13 + k * 50) }
            pixels.append(image)
            try write(try PNGCodec.encode(image, width: 4, height: 5, channels: 1), to: root.appendingPathComponent("\(split)/img.png"))
        }
        let cache = try makeTemporaryDirectory(self)
        let grey = try DatasetRegistry.load(folder(root, cache: cache, channels: 1), split: .train)
        XCTAssertEqual(grey.shape, [5, 4, 1])
        XCTAssertEqual(grey.images, pixels[0] + pixels[1], "PNG written by libpng reads back bit for bit")
        let rgb = try DatasetRegistry.load(folder(root, cache: cache), split: .test)
        XCTAssertEqual(rgb.images, pixels[2].flatMap { [$0, $0, $0] }, "grey replicated to RGB")
        // A colour image where grey ones are asked for.
        let colour = root.appendingPathComponent("train/a/colour.png")
        try write(try PNGCodec.encode([UInt8](repeating: 1, count: 60), width: 4, height: 5, channels: 3), to: colour)
        assertFails(try DatasetRegistry.load(self.folder(root, cache: cache, channels: 1), split: .train), colour.path, "colour PNG")
    }

    /// --data naming the folder above an image folder would make one class of everything.
    func testTheFolderAboveAnImageFolderIsRefused() throws {
        let cache = try makeTemporaryDirectory(self)
        let copy = try Fixtures.copy("data_imagefolder", into: self)
        let above = copy.deletingLastPathComponent()
        assertFails(try DatasetRegistry.load(self.folder(above, cache: cache), split: .train),
                    "\(above.path): its sub-folder data_imagefolder holds the split folders", "name \(copy.path) in --data")
        XCTAssertFalse(ImageFolder.sharesSplits(copy))
        XCTAssert(ImageFolder.sharesSplits(copy.appendingPathComponent("train")))
    }

    func testImageFolderProblems() throws {
        let cache = try makeTemporaryDirectory(self)
        let root = try Fixtures.copy("data_imagefolder", into: self)
        let r = folder(root, cache: cache)
        let png = root.appendingPathComponent("train/dog/y.png")
        let content = try bytes(png)
        try write(Array(content.prefix(content.count - 30)), to: png)
        assertFails(try DatasetRegistry.load(r, split: .train), png.path, "PNG")
        try write(content, to: png)
        // A test class that training does not know.
        try FileManager.default.createDirectory(at: root.appendingPathComponent("val/fox"), withIntermediateDirectories: true)
        assertFails(try DatasetRegistry.load(r, split: .test), "val/fox: class fox is not among the 3 training classes")
        try FileManager.default.removeItem(at: root.appendingPathComponent("val/fox"))
        // Other image formats are refused, not skipped.
        let bmp = root.appendingPathComponent("train/emu/f.bmp")
        try write([0x42, 0x4D], to: bmp)
        assertFails(try DatasetRegistry.load(r, split: .train), bmp.path, ".bmp images are not supported")
        try FileManager.default.removeItem(at: bmp)
        // An empty class folder.
        try FileManager.default.createDirectory(at: root.appendingPathComponent("train/zebra"), withIntermediateDirectories: true)
        assertFails(try DatasetRegistry.load(r, split: .train), "train/zebra: no PNG or JPEG images in class folder zebra")
        try FileManager.default.removeItem(at: root.appendingPathComponent("train/zebra"))
        XCTAssertNoThrow(try DatasetRegistry.load(r, split: .train))
        try FileManager.default.removeItem(at: root.appendingPathComponent("val"))
        assertFails(try DatasetRegistry.load(r, split: .test), "no test/ or val/ folder")
    }
}
