import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN
import XCTest
@testable import PARTEvaluation

/// The checks for a flawed evaluation, each on inputs made to trip it and on inputs that must not.
final class ChecksTests: XCTestCase {
    func testSaturatedSoftmaxZeroGradientsAndProbabilities() {
        // Row 0: gaps of 200 (every other exp underflows); row 1: gaps of 20 (tiny, not zero).
        let logits = Tensor(shape: [2, 3], values: [200, 0, -5, 20, 0, 0])
        XCTAssertEqual(EvaluationChecks.saturatedRows(logits), [true, false])
        XCTAssertEqual(EvaluationChecks.zeroRows(Tensor(shape: [2, 2], values: [0, 0, 0, 1e-30])), [true, false])
        XCTAssertTrue(EvaluationChecks.looksLikeProbabilities(Tensor(shape: [2, 2], values: [0.25, 0.75, 1, 0])))
        XCTAssertFalse(EvaluationChecks.looksLikeProbabilities(Tensor(shape: [2, 2], values: [0.25, 0.7, 1, 0])))
        XCTAssertFalse(EvaluationChecks.looksLikeProbabilities(Tensor(shape: [1, 2], values: [1.5, -0.5])))
        XCTAssertEqual(EvaluationChecks.largestNormalisedDifference(logits, logits), 0)
        XCTAssertGreaterThan(EvaluationChecks.largestNormalisedDifference(logits, Tensor(shape: [2, 3], values: [200, 0, -5, 0, 20, 0])), 1)
    }

    /// A trained model passes the model checks; the same model with a softmax-like head (its
    /// logits scaled by 10,000) trips the masking check.
    func testModelChecksOnATrainedModelAndItsScaledCopy() throws {
        let (model, data) = try Quadrants.model()
        let test = data.prefix(64)
        XCTAssertEqual(try EvaluationChecks.model(model, dataset: test, randomnessHandled: false), [])
        var file = Checkpoint.file(of: model, metadata: Checkpoint.describe(model))
        file.tensors["fc3.weight"]!.scale(by: 10_000)
        file.tensors["fc3.bias"]!.scale(by: 10_000)
        var rng = RNG(seed: 0)
        let (scaled, _) = try Checkpoint.loadModel(file, source: "scaled", architecture: nil, numClasses: 10,
                                                   inputShape: (20, 20, 1), rng: &rng)
        let warnings = try EvaluationChecks.model(scaled, dataset: test, randomnessHandled: false)
        // Split into batches, the same finding.
        XCTAssertEqual(try EvaluationChecks.model(scaled, dataset: test, randomnessHandled: false, batchSize: 7), warnings)
        XCTAssertEqual(warnings.map(\.kind), [.gradientMasking], "\(warnings)")
        XCTAssert(warnings[0].description.hasPrefix("warning: gradient masking: "))
    }

    func testAGradientFreeStageBreakingWhatWhiteBoxLeftIsReported() throws {
        let stages = try AttackCatalog.standard.stages("natural,pgd:steps=2,square:queries=10", defaults: .init(epsilon: 0.1, alpha: 0.025))
        func outcome(_ i: Int, _ robust: [Bool]) -> ExampleOutcome {
            ExampleOutcome(index: i, label: 0, prediction: robust[0] ? 0 : 1, robust: robust,
                           brokenBy: robust.firstIndex(of: false).flatMap { $0 == 0 ? nil : $0 }, adversarialPrediction: nil, unverified: [])
        }
        let clean = (0..<10).map { outcome($0, [true, true, true]) }
        XCTAssertEqual(EvaluationChecks.outcomes(clean, stages: stages, independent: false), [])
        let pgdBroke = clean + [outcome(10, [true, false, false])]
        XCTAssertEqual(EvaluationChecks.outcomes(pgdBroke, stages: stages, independent: false), [])
        let squareBroke = clean + [outcome(10, [true, true, false])]
        let warnings = EvaluationChecks.outcomes(squareBroke, stages: stages, independent: false)
        XCTAssertEqual(warnings.map(\.kind), [.gradientMasking])
        XCTAssert(warnings[0].message.contains("square:queries=10, which uses no gradients, broke 1 of 11 points"), warnings[0].message)
        // Square alone has no white-box stage to be compared with.
        let alone = try AttackCatalog.standard.stages("natural,square:queries=10", defaults: .init(epsilon: 0.1, alpha: 0.025))
        XCTAssertEqual(EvaluationChecks.outcomes(clean.map { outcome($0.index, [true, false]) }, stages: alone, independent: false), [])
    }

    func testRobustAccuracyRisingWithEpsIsReported() {
        XCTAssertEqual(EvaluationChecks.curve([(0.1, 0.3), (0.0, 0.9), (0.05, 0.6)]), [])
        let warnings = EvaluationChecks.curve([(0.0, 0.9), (0.05, 0.5), (0.1, 0.6)])
        XCTAssertEqual(warnings.map(\.kind), [.evaluation])
        XCTAssert(warnings[0].description.hasPrefix("warning: evaluation: robust accuracy rises from 50.00% at eps 0.05 to 60.00%"),
                  warnings[0].description)
    }

    /// Transferred examples are the rows of their dataset indices, whatever the batch holds.
    func testTransferredExamplesFollowTheDatasetIndex() throws {
        let (model, data) = try Quadrants.model()
        let test = data.prefix(8)
        var examples = test.batch(Array(0..<8)).images
        examples.scale(by: 0.5)
        let attack = TransferredExamples(examples: examples)
        let (x, y) = test.batch([5, 2])
        let batch = AttackBatch(images: x, labels: y, indices: [5, 2], budget: try EpsilonMap.constant(1, shape: x.shape))
        XCTAssertEqual(try attack.perturb(model, batch, seed: 0).withUnsafeBufferPointer(Array.init),
                       examples.gatherRows([5, 2]).withUnsafeBufferPointer(Array.init))
        let outside = AttackBatch(images: x, labels: y, indices: [5, 9], budget: batch.budget)
        XCTAssertThrowsError(try attack.perturb(model, outside, seed: 0))
    }
}
