import Foundation
import PARTEngine
@testable import PARTTraining
import XCTest

/// The state file's epoch sums: CPU seconds round-trip, and a state from a version that did not
/// count them leaves them unknown only for an epoch already under way.
final class TrainingStateTests: XCTestCase {
    func state(batchesDone: Int, cpuSeconds: Double?) throws -> TrainingState {
        let sums = EpochSums(lossSum: 1.5, correct: 3, seen: 4, fullEntries: 2, entries: 8, seconds: 12.25,
                             cpuSeconds: cpuSeconds)
        return TrainingState(position: TrainingPosition(epochsDone: 2, batchesDone: batchesDone, sums: sums),
                             rng: [1, 2, 3, 4], momentum: [:], config: TrainingConfig())
    }

    func testCPUSecondsRoundTrip() throws {
        for cpu in [0.0, 11.75, 1e6 / 3] {
            let read = try TrainingState(state(batchesDone: 5, cpuSeconds: cpu).file(), source: "s")
            XCTAssertEqual(read.position.sums.cpuSeconds, cpu)
            XCTAssertEqual(read.position.sums.seconds, 12.25)
        }
        let unknown = try TrainingState(state(batchesDone: 5, cpuSeconds: nil).file(), source: "s")
        XCTAssertNil(unknown.position.sums.cpuSeconds)
    }

    func testAnOlderStateFileWithoutCPUSeconds() throws {
        for (batches, expected) in [(0, 0.0 as Double?), (5, nil)] {
            var file = try state(batchesDone: batches, cpuSeconds: 9).file()
            file.metadata["cpu_seconds"] = nil
            let read = try TrainingState(file, source: "s")
            XCTAssertEqual(read.position.sums.cpuSeconds, expected, "\(batches) batches done")
        }
        var bad = try state(batchesDone: 5, cpuSeconds: 9).file()
        bad.metadata["cpu_seconds"] = "not hex"
        XCTAssertThrowsError(try TrainingState(bad, source: "s")) { XCTAssert("\($0)".contains("cpu_seconds"), "\($0)") }
    }
}
