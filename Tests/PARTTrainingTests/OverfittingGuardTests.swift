import Foundation
import PARTTraining
import XCTest

/// The catastrophic-overfitting warning on constructed epoch histories.
final class OverfittingGuardTests: XCTestCase {
    func report(_ epoch: Int, train: Double, robust: Double) throws -> EpochReport {
        // EpochReport is a logged record: built here as a log line reads back.
        let line = """
        {"epoch":\(epoch),"epochs":10,"seed":0,"method":"at-fgsm","objective":"at","generation":"fgsm",
        "budget":"constant","learningRate":0.1,"loss":1,"trainAccuracy":\(train),"cleanAccuracy":0.8,
        "robustAccuracy":\(robust),"evalCount":1000,"heldOut":"test","fullEpsilonFraction":1,
        "imagesPerSecond":60,"seconds":600,"checkpoint":"last.safetensors","best":false}
        """
        return try JSONDecoder().decode(EpochReport.self, from: Data(line.utf8))
    }

    func testWarnsWhenPGDCollapsesWhileTrainingAccuracyRises() throws {
        let history = [try report(1, train: 0.30, robust: 0.30), try report(2, train: 0.40, robust: 0.42)]
        let collapsed = try report(3, train: 0.70, robust: 0.05)
        let line = try XCTUnwrap(OverfittingGuard.warning(history: history, current: collapsed))
        XCTAssert(line.hasPrefix("warning: catastrophic overfitting: "), line)
        XCTAssert(line.contains("5.00%") && line.contains("42.00%"), "both PGD figures: \(line)")
        XCTAssert(line.contains("40.00% -> 70.00%"), "the training accuracies: \(line)")
        XCTAssertFalse(line.contains("\n"))
    }

    func testQuietOtherwise() throws {
        let history = [try report(1, train: 0.30, robust: 0.30), try report(2, train: 0.40, robust: 0.42)]
        // PGD fell below half of the best, but training accuracy fell too: not the symptom.
        XCTAssertNil(OverfittingGuard.warning(history: history, current: try report(3, train: 0.35, robust: 0.10)))
        // Training accuracy rose, PGD fell but not below half of the best.
        XCTAssertNil(OverfittingGuard.warning(history: history, current: try report(3, train: 0.50, robust: 0.22)))
        // No history: nothing to compare.
        XCTAssertNil(OverfittingGuard.warning(history: [], current: try report(1, train: 0.9, robust: 0)))
        // Exactly half is not below half.
        XCTAssertNil(OverfittingGuard.warning(history: history, current: try report(3, train: 0.6, robust: 0.21)))
    }
}
