import ArgumentParser
import Foundation
import PARTData
@testable import PARTTraining
import XCTest
@testable import part

/// The process options a resume keeps from the record and those a flag given again replaces
/// (`Train.resumedPlan`), without training anything.
final class ResumeOptionsTests: XCTestCase {
    func recorded(syncBatchNorm: Bool) throws -> RunPlan {
        var plan = try Train.parse(["--epochs", "3", "--precision", "fp32"]).newPlan()
        plan.options.syncBatchNorm = syncBatchNorm
        plan.options.checkpointMinutes = 10
        return plan
    }

    /// A run started with --sync-bn keeps it on a resume that does not repeat the flag (its
    /// batch norm would otherwise switch to each rank's own statistics half-way); a resume that
    /// gives it turns it on, as other engine flags replace the recorded ones.
    func testSyncBatchNormIsKeptOnAResume() throws {
        let withSync = try recorded(syncBatchNorm: true)
        XCTAssertTrue(try Train.parse([]).resumedPlan(withSync).options.syncBatchNorm)
        XCTAssertEqual(try Train.parse([]).resumedPlan(withSync).options.checkpointMinutes, 10)
        let without = try recorded(syncBatchNorm: false)
        XCTAssertFalse(try Train.parse([]).resumedPlan(without).options.syncBatchNorm)
        XCTAssertTrue(try Train.parse(["--sync-bn"]).resumedPlan(without).options.syncBatchNorm)
        XCTAssertTrue(try Train.parse(["--sync-bn"]).newPlan().options.syncBatchNorm)
        XCTAssertFalse(try Train.parse([]).newPlan().options.syncBatchNorm)
        XCTAssertNil(withSync.difference(without), "an engine option does not define the run")
    }

    /// A record written before the option was recorded reads it as off.
    func testARecordWithoutTheOptionReadsItAsOff() throws {
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(try recorded(syncBatchNorm: true).options))
            as! [String: Any]
        XCTAssertEqual(object["syncBatchNorm"] as? Bool, true)
        object.removeValue(forKey: "syncBatchNorm")
        let options = try JSONDecoder().decode(RunOptions.self, from: JSONSerialization.data(withJSONObject: object))
        XCTAssertFalse(options.syncBatchNorm)
        XCTAssertEqual(options.checkpointMinutes, 10)
    }

    /// A new run with a class-balanced check takes a class-balanced --train-limit; a resume keeps
    /// what its record says, and a record from before the option took the first N images.
    func testTheTrainLimitFollowsTheBalancedCheckOfNewRunsOnly() throws {
        XCTAssertTrue(try Train.parse(["--balanced", "--train-limit", "10"]).newPlan().options.balancedTrainLimit)
        XCTAssertTrue(try Train.parse(["--preset", "cifar10-fast-at", "--data", NSTemporaryDirectory()]).newPlan().options.balancedTrainLimit)
        XCTAssertFalse(try Train.parse(["--train-limit", "10"]).newPlan().options.balancedTrainLimit)
        var plan = try Train.parse(["--train-limit", "10"]).newPlan()
        XCTAssertFalse(try Train.parse(["--balanced"]).resumedPlan(plan).options.balancedTrainLimit)
        plan.options.balancedTrainLimit = true
        XCTAssertTrue(try Train.parse([]).resumedPlan(plan).options.balancedTrainLimit)
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(plan.options)) as! [String: Any]
        object.removeValue(forKey: "balancedTrainLimit")
        XCTAssertFalse(try JSONDecoder().decode(RunOptions.self, from: JSONSerialization.data(withJSONObject: object)).balancedTrainLimit)
    }

    /// The hint of a --train-limit that misses classes says the images come sorted by class only
    /// when the kept ones do (an image folder), not for data in mixed order (the IDX files).
    func testTheTrainLimitHintSaysSortedByClassOnlyWhenTheyAre() throws {
        let plan = try Train.parse(["--train-limit", "4"]).newPlan()
        func kept(_ labels: [Int32]) throws -> ImageDataset {
            try ImageDataset(name: "d", images: [UInt8](repeating: 0, count: labels.count), labels: labels, height: 1, width: 1,
                             channels: 1, classes: 3)
        }
        XCTAssertEqual(plan.limitHint(try kept([0, 0, 1, 1])),
                       ": --train-limit takes the first images, and these come sorted by class (--balanced takes the first of each class)")
        XCTAssertEqual(plan.limitHint(try kept([1, 0, 1, 0])), ": --train-limit takes the first images (--balanced takes the first of each class)")
        XCTAssertEqual(try Train.parse(["--train-limit", "4", "--balanced"]).newPlan().limitHint(try kept([0, 0, 1, 1])), "")
    }
}
