import PARTTestSupport
import Foundation
import PARTAttacks
import PARTEngine
import PARTEvaluation
import PARTNN
import XCTest

/// The evaluation protocol: sequences, the worst case, --independent, batch independence and
/// re-verification.
final class RunnerTests: XCTestCase {
    func testEachStageLowersAccuracyAndTheSequenceKeepsTheWorstCase() throws {
        let sequence = try Setup().run()
        XCTAssertGreaterThan(sequence.cleanAccuracy, 0.9, "the model should know the task")
        let robust = sequence.stages.map(\.robust)
        XCTAssertEqual(robust, robust.sorted(by: >), "robust counts cannot grow along a sequence: \(robust)")
        XCTAssertLessThan(sequence.robust, sequence.stages[0].robust, "the attacks should break some points")
        XCTAssertGreaterThan(sequence.robust, 0, "eps 0.15 should leave some points robust")
        for o in sequence.outcomes {
            XCTAssertEqual(o.robust[0], o.prediction == o.label)
            XCTAssertEqual(o.robust, o.robust.indices.map { s in o.robust[...s].allSatisfy { $0 } }, "flags of point \(o.index) are not monotone")
            XCTAssertEqual(o.brokenBy, o.robust.firstIndex(of: false).flatMap { $0 == 0 ? nil : $0 })
        }

        // Each attack alone on every correct point, with the same streams: the sequence's worst
        // case is exactly the points that survive every attack, so never weaker than any of them.
        var independent = Setup()
        independent.independent = true
        let each = try independent.run()
        for (a, b) in zip(sequence.outcomes, each.outcomes) {
            XCTAssertEqual(a.robustAtTheEnd, b.robustAtTheEnd, "point \(a.index)")
        }
        XCTAssertLessThanOrEqual(sequence.robust, each.stages.dropFirst().map(\.robust).min()!)
        XCTAssertEqual(sequence.robust, each.robust)
    }

    /// AutoAttack's composition (`aa`, expanded from its name) is never weaker than its strongest
    /// component run alone with the same settings.
    func testCompositeIsNeverWeakerThanItsStrongestComponent() throws {
        let catalog = AttackCatalog.standard
        let items = try XCTUnwrap(catalog.composites.first { $0.name == "aa" }?.items)
        // Quick settings for every component, so the test stays cheap; the composite passes each
        // key to the components that take it.
        let settings = "steps=3:targets=2:queries=20"
        var setup = Setup()
        setup.list = "natural,aa:" + settings
        let all = try setup.run()
        XCTAssertEqual(all.stages.count, 1 + items.count, "aa runs as its \(items.count) components")
        for item in items {
            let keys = catalog.entries.first { $0.name == item }!.keys
            let own = settings.split(separator: ":").filter { keys.contains(String($0.split(separator: "=")[0])) }
            var alone = setup
            alone.list = "natural," + ([item] + own.map(String.init)).joined(separator: ":")
            XCTAssertLessThanOrEqual(all.robust, try alone.run().robust, "aa is weaker than \(alone.list)")
        }
    }

    func testOutcomesDoNotDependOnTheBatchSize() throws {
        var small = Setup()
        small.count = 20
        small.batchSize = 7
        var large = small
        large.batchSize = 20
        XCTAssertEqual(try small.run().outcomes.map(\.robust), try large.run().outcomes.map(\.robust))
    }

    /// An evaluation's progress moves within a stage (its attack reports each step), never back,
    /// and ends at the number of points.
    func testProgressMovesWithinAStage() throws {
        var setup = Setup()
        setup.list = "natural,pgd:steps=4"
        setup.count = 16
        setup.batchSize = 16
        let runner = try setup.runner()
        var done = [Double]()
        runner.progress = { done.append($0.done) }
        _ = try runner.run()
        let costs = runner.stages.map(\.cost), afterNatural = 16 * costs[0] / costs.reduce(0, +)
        XCTAssertEqual(zip(done, done.dropFirst()).filter { $0 > $1 }.count, 0, "\(done)")
        XCTAssertEqual(done.last ?? 0, 16, accuracy: 1e-9)
        XCTAssertGreaterThanOrEqual(done.filter { $0 > afterNatural + 1e-9 && $0 < 16 - 1e-9 }.count, 3,
                                    "PGD's steps move the progress: \(done)")
    }

    /// The points of a subset that is not a prefix (`--balanced`) draw by their index in the split:
    /// their outcomes and worst cases are those of the same points evaluated with all the others
    /// (CONVENTIONS: a subset changes no example). The subset holds points PGD's random start
    /// broke, whose worst cases differ with any other draw.
    func testASubsetChangesNoPoint() throws {
        let dir = try makeTemporaryDirectory(self)
        var whole = Setup()
        whole.list = "natural,pgd:steps=4"
        whole.batchSize = 8
        whole.adversarial = dir.appendingPathComponent("whole.npy")
        let all = try whole.run()
        let broken = all.outcomes.filter { $0.brokenBy != nil }.map(\.index).filter { $0 > 0 }
        XCTAssertGreaterThanOrEqual(broken.count, 2, "the test needs points PGD breaks")
        let chosen = (Array(broken.prefix(3)) + [0, all.outcomes.count - 1]).sorted()
        var part = whole
        part.subset = chosen
        part.adversarial = dir.appendingPathComponent("part.npy")
        let some = try part.run()
        XCTAssertEqual(some.outcomes.map(\.robust), chosen.map { all.outcomes[$0].robust })
        XCTAssertEqual(some.outcomes.map(\.adversarialPrediction), chosen.map { all.outcomes[$0].adversarialPrediction })
        let mine = try NPYFile.read(part.adversarial!), theirs = try NPYFile.read(whole.adversarial!).gatherRows(chosen)
        XCTAssertLessThan(zip(mine.scalars, theirs.scalars).map { abs($0 - $1) }.max() ?? 1, 1e-5)
    }

    /// An attack that returns points outside the budget: its "successes" are refused, reported
    /// and not counted.
    func testReverificationRefusesAResultOutsideTheBudget() throws {
        struct Inverter: Attack {
            var name: String { "inverter" }
            func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
                batch.images.map { 1 - $0 }
            }
        }
        var setup = Setup()
        setup.list = "natural,fgsm"
        setup.replace = ["fgsm": Inverter()]
        let summary = try setup.run()
        XCTAssertFalse(summary.disagreements.isEmpty, "inverted images leave the budget and must be refused")
        XCTAssertEqual(summary.robust, summary.stages[0].robust, "refused successes count as robust")
        XCTAssertEqual(summary.stages[1].unverified, summary.disagreements.count)
        for d in summary.disagreements { XCTAssert(d.reason.contains("outside"), d.reason) }
        XCTAssert(summary.outcomes.contains { $0.unverified == [1] })
    }

    func testSHA256OfKnownInputs() throws {
        let dir = try makeTemporaryDirectory(self)
        let abc = dir.appendingPathComponent("abc")
        try Data("abc".utf8).write(to: abc)
        XCTAssertEqual(try EvaluationHeader.hash(of: abc), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = dir.appendingPathComponent("long")
        try Data(repeating: UInt8(ascii: "a"), count: 1_000_000).write(to: long)
        XCTAssertEqual(try EvaluationHeader.hash(of: long), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// --normalize: the wrapper is the model applied to (x - mean) / std, and its input gradient
    /// is the wrapped model's divided by std.
    func testNormalizedModelAndItsGradient() throws {
        var rng = RNG(seed: 3)
        let inner = try ModelZoo.make("small-cnn", numClasses: 5, inChannels: 2, imageSize: 16, rng: &rng)
        let model = try Normalized(inner, mean: [0.3, 0.6], std: [0.2, 0.5])
        let x = Tensor(shape: [3, 16, 16, 2], values: (0..<(3 * 16 * 16 * 2)).map { _ in rng.uniform() })
        let z = Tensor(shape: x.shape, values: x.scalars.enumerated().map { i, v in i % 2 == 0 ? (v - 0.3) / 0.2 : (v - 0.6) / 0.5 })
        XCTAssertEqual(try model.forward(x, mode: .eval).scalars, try inner.forward(z, mode: .eval).scalars)
        let batch = AttackBatch(images: x, labels: [0, 1, 2], indices: [0, 1, 2], budget: try .constant(0.1, shape: x.shape))
        let outer = try AttackPass.lossGradient(model, at: x, batch: batch, loss: CrossEntropyLoss()).gradient
        let wrapped = try AttackPass.lossGradient(inner, at: z, batch: batch, loss: CrossEntropyLoss()).gradient
        for i in 0..<x.count {
            XCTAssertEqual(outer[flat: i], wrapped[flat: i] / (i % 2 == 0 ? 0.2 : 0.5), accuracy: 1e-6 * max(1, abs(outer[flat: i])))
        }
        // Reduced-precision attack passes hand bf16 images to the wrapper.
        if Engine.supportsBF16 {
            let low = try Engine.$attackPrecision.withValue(.bf16) {
                try AttackPass.lossGradient(model, at: x, batch: batch, loss: CrossEntropyLoss())
            }
            XCTAssertLessThan(relativeDifference(low.logits.scalars, try model.forward(x, mode: .eval).scalars), 0.05)
            XCTAssertLessThan(relativeDifference(low.gradient.scalars, outer.scalars), 0.2)
            XCTAssertNotEqual(low.logits.scalars, try model.forward(x, mode: .eval).scalars, "the pass did not run in bf16")
        }
        XCTAssertThrowsError(try Normalized(inner, mean: [0.1, 0.2, 0.3], std: [1, 1, 1]))
        XCTAssertThrowsError(try Normalized(inner, mean: [0.1], std: [0]))
    }
}

/// max |a - b| / max |b|.
func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max()! / max(b.map(abs).max()!, 1e-12)
}
