import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation
import PARTTestSupport
import XCTest

/// AutoAttack's L2 version inside an evaluation: re-verified against the ball, and the worst case
/// never above natural accuracy.
final class L2EvaluationTests: XCTestCase {
    func testL2AutoAttackKeepsTheWorstCaseAndPassesReverification() throws {
        var setup = Setup()
        setup.count = 24
        setup.list = "natural,aa-l2:eps=2:steps=4:targets=2:queries=40"
        let dir = try temporaryDirectory()
        setup.adversarial = dir.appendingPathComponent("adv.npy")
        let summary = try setup.run()
        XCTAssertEqual(summary.stages.map(\.name), ["natural", "apgd-ce-l2", "apgd-t-l2", "fab-t-l2", "square-l2"])
        let robust = summary.stages.map(\.robust)
        XCTAssertEqual(robust, robust.sorted(by: >), "robust counts cannot grow along a sequence: \(robust)")
        XCTAssertLessThanOrEqual(summary.robust, summary.stages[0].robust)
        XCTAssertLessThan(summary.robust, summary.stages[0].robust, "radius 2 should break some points")
        XCTAssert(summary.disagreements.isEmpty, "\(summary.disagreements)")
        // The worst-case examples lie in the ball around their points.
        let adversarial = try NPYFile.open(setup.adversarial!, shape: [24, 20, 20, 1]).read(Array(0..<24))
        let (x, _) = try Quadrants.model().1.prefix(24).batch(Array(0..<24))
        XCTAssert(Tensor.difference(adversarial, x).rowNorms().allSatisfy { $0 <= 2 * (1 + 1e-5) })
        XCTAssertGreaterThan(Tensor.difference(adversarial, x).rowNorms().max() ?? 0, 0)
    }
}
