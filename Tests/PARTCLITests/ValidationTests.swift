import ArgumentParser
import Foundation
import PARTData
import XCTest
@testable import part

/// The shared checks commands make before any work (Sources/part/Validation.swift).
final class ValidationTests: XCTestCase {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("part-validation-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    func testFiniteNumbers() {
        XCTAssertNil(message { try Validation.finite(0.5, "--alpha", atLeast: 0) })
        XCTAssertEqual(message { try Validation.finite(.infinity, "--alpha", atLeast: 0) },
                       "--alpha must be a finite number >= 0.0, got inf")
        XCTAssertEqual(message { try Validation.finite(.nan, "--lr-gamma", above: 0, atMost: 1) },
                       "--lr-gamma must be a finite number > 0.0 and <= 1.0, got nan")
        XCTAssertEqual(message { try Validation.finite(-10, "--lr-gamma", above: 0, atMost: 1) },
                       "--lr-gamma must be a finite number > 0.0 and <= 1.0, got -10.0")
        XCTAssertNotNil(message { try Validation.finite(-.infinity, "--weight-decay") })
        XCTAssertThrowsError(try Validation.finite(.infinity, "--lr")) { XCTAssert($0 is ValidationError) }
    }

    func testMilestonesAreIncreasingEpochsBeforeTheLast() {
        XCTAssertNil(message { try Validation.milestones([], epochs: 1) })
        XCTAssertNil(message { try Validation.milestones([2, 5, 9], epochs: 10) })
        XCTAssertEqual(message { try Validation.milestones([0], epochs: 10) },
                       "--lr-milestones 0 is outside 1...9; a milestone is an epoch after which the learning rate "
                       + "changes, before the last of --epochs 10")
        XCTAssertNotNil(message { try Validation.milestones([10], epochs: 10) })
        XCTAssertNotNil(message { try Validation.milestones([-3], epochs: 10) })
        XCTAssertEqual(message { try Validation.milestones([3, 2], epochs: 10) },
                       "--lr-milestones must be increasing without repeats, got 3 2")
        XCTAssertNotNil(message { try Validation.milestones([3, 3], epochs: 10) })
    }

    func testOutputDirectoryIsCheckedBeforeTraining() throws {
        let dir = try temporaryDirectory()
        // Existing and new directories (several levels deep) under a writable folder are fine,
        // and nothing is left behind by the check.
        XCTAssertEqual(try Validation.outputDirectory(dir.path).path, dir.path)
        XCTAssertNoThrow(try Validation.outputDirectory(dir.appendingPathComponent("a/b/c").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), [])

        XCTAssertEqual(message { _ = try Validation.outputDirectory("") },
                       "--out is empty; name a directory for the run, e.g. --out runs/my-run")
        XCTAssertNotNil(message { _ = try Validation.outputDirectory("  ") })
        let file = dir.appendingPathComponent("file")
        try Data([1]).write(to: file)
        XCTAssertEqual(message { _ = try Validation.outputDirectory(file.path) },
                       "--out \(file.path) exists and is not a directory; choose another --out")
        XCTAssertEqual(message { _ = try Validation.outputDirectory(file.appendingPathComponent("run").path) },
                       "--out \(file.path)/run cannot be created: \(file.path) is not a directory; choose another --out")
        // A directory nobody may write to, not even root: procfs.
        let proc = try XCTUnwrap(message { _ = try Validation.outputDirectory("/proc/part-run") })
        XCTAssert(proc.hasPrefix("--out /proc/part-run cannot be created in /proc ("), proc)
        XCTAssert(proc.hasSuffix("choose another --out or fix its permissions"), proc)
        XCTAssertThrowsError(try Validation.outputDirectory("/proc")) { XCTAssert($0 is ValidationError, "\($0)") }
    }

    func testSplitsMustShareOneImageShapeAndHoldImages() throws {
        func dataset(_ n: Int, _ side: Int, _ channels: Int, classes: Int = 10) throws -> ImageDataset {
            try ImageDataset(name: "d", images: [UInt8](repeating: 0, count: n * side * side * channels),
                             labels: [Int32](repeating: 0, count: n), height: side, width: side, channels: channels,
                             classes: classes)
        }
        XCTAssertNil(message { try Validation.sameImages(train: try dataset(2, 28, 1), heldOut: try dataset(1, 28, 1)) })
        XCTAssertEqual(message { try Validation.sameImages(train: try dataset(2, 28, 1), heldOut: try dataset(1, 32, 3)) },
                       "the training images of d are 28x28x1 but the held-out images are 32x32x3; "
                       + "both splits must have one image shape (check --data)")
        XCTAssertNotNil(message { try Validation.sameImages(train: try dataset(2, 28, 1), heldOut: try dataset(1, 28, 1, classes: 5)) })
        XCTAssertEqual(message { try Validation.nonEmpty(try dataset(0, 28, 1), "training split") },
                       "the training split of d has no images; check --data (and the limit flags)")
        XCTAssertThrowsError(try Validation.nonEmpty(try dataset(0, 28, 1), "test split")) { XCTAssert($0 is DatasetError) }
    }
}
