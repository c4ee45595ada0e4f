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
}
