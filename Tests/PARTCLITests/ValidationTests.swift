import ArgumentParser
import Foundation
import PARTData
import XCTest
@testable import part

/// The shared checks commands make before any work (Sources/part/Validation.swift).
final class ValidationTests: XCTestCase {

    func message(_ body: () throws -> Void) -> String? {
        do { try body() } catch { return "\(error)" }
        return nil
    }

    func testSplitsMustHoldImages() throws {
        func dataset(_ n: Int, _ side: Int, _ channels: Int, classes: Int = 10) throws -> ImageDataset {
            try ImageDataset(name: "d", images: [UInt8](repeating: 0, count: n * side * side * channels),
                             labels: [Int32](repeating: 0, count: n), height: side, width: side, channels: channels,
                             classes: classes)
        }
        XCTAssertEqual(message { try Validation.nonEmpty(try dataset(0, 28, 1), "training split") },
                       "the training split of d has no images; check --data (and the limit flags)")
        XCTAssertThrowsError(try Validation.nonEmpty(try dataset(0, 28, 1), "test split")) { XCTAssert($0 is DatasetError) }
    }

    /// Count flags: the bound in the message ("at least N", ">= 0" for 0), a `ValidationError`
    /// (exit code 64), nothing for a value inside; --batch-size also within the engine's limits.
    func testCountFlagsNameTheirBound() throws {
        XCTAssertEqual(message { try Validation.count(0, "--reps", atLeast: 1) }, "--reps must be at least 1")
        XCTAssertEqual(message { try Validation.count(15, "--image-size", atLeast: 16) }, "--image-size must be at least 16")
        XCTAssertEqual(message { try Validation.count(-1, "--limit", atLeast: 0) }, "--limit must be >= 0")
        XCTAssertThrowsError(try Validation.count(-1, "--limit", atLeast: 0)) { XCTAssert($0 is ValidationError) }
        XCTAssertNil(message { try Validation.count(0, "--limit", atLeast: 0) })
        XCTAssertNil(message { try Validation.count(16, "--image-size", atLeast: 16) })
        XCTAssertEqual(message { try Validation.batchSize(0) }, "--batch-size must be at least 1")
        XCTAssertNotNil(message { try Validation.batchSize(Int.max) })
        XCTAssertNil(message { try Validation.batchSize(128) })
    }
}
