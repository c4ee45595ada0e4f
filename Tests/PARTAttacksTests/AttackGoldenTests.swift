import Foundation
import PARTAttacks
import PARTEngine
import PARTNN
import XCTest

/// Attack steps against torchattacks and MMA's target choice, from
/// Tests/Fixtures/eval_golden.safetensors (scripts/make_eval_golden.py).
final class AttackGoldenTests: XCTestCase {
    struct Golden {
        let model: ImageClassifier
        let file: SafetensorsFile
        let batch: AttackBatch
        func nhwc(_ key: String) -> Tensor { Layout.nchwToNHWC(file.tensors[key]!) }
    }

    func golden() throws -> Golden {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
        var rng = RNG(seed: 0)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        try Checkpoint.apply(try SafetensorsFile.read(from: fixtures.appendingPathComponent("smallcnn_torch_init.safetensors")),
                             to: model, source: "smallcnn_torch_init")
        let file = try SafetensorsFile.read(from: fixtures.appendingPathComponent("eval_golden.safetensors"))
        let x = Layout.nchwToNHWC(file.tensors["input"]!)
        let labels = file.tensors["labels"]!.scalars.map { Int32($0) }
        let batch = AttackBatch(images: x, labels: labels, indices: Array(0..<labels.count),
                                budget: try .constant(0.1, shape: x.shape))
        return Golden(model: model, file: file, batch: batch)
    }

    /// Entries of `actual` farther than `tolerance` from `expected`, not counting entries where
    /// PyTorch's gradient is within rounding of zero (its sign may differ between the two).
    func mismatches(_ actual: Tensor, _ expected: Tensor, gradient: Tensor, tolerance: Float = 1e-6) -> Int {
        var n = 0
        for i in 0..<actual.count where abs(actual[flat: i] - expected[flat: i]) > tolerance {
            if abs(gradient[flat: i]) > 1e-6 { n += 1 }
        }
        return n
    }

    func testOnePGDStepWithoutRandomStartMatchesTorchattacks() throws {
        let g = try golden()
        let out = try PGD(steps: 1, stepSize: 0.025, randomStart: false).perturb(g.model, g.batch, seed: 0)
        XCTAssertEqual(mismatches(out, g.nhwc("pgd1"), gradient: g.nhwc("ce_gradient")), 0)
        let moved = (0..<out.count).filter { out[flat: $0] != g.batch.images[flat: $0] }.count
        XCTAssertGreaterThan(moved, out.count / 2, "the step must move most entries")
    }

    func testFGSMMatchesTorchattacks() throws {
        let g = try golden()
        let out = try FGSM().perturb(g.model, g.batch, seed: 0)
        XCTAssertEqual(mismatches(out, g.nhwc("fgsm"), gradient: g.nhwc("ce_gradient")), 0)
    }

    func testOnePGDL2StepMatchesTorchattacks() throws {
        let g = try golden()
        let out = try PGDL2(steps: 1, stepSize: 0.2, radius: 1.0, randomStart: false).perturb(g.model, g.batch, seed: 0)
        let expected = g.nhwc("pgdl2")
        var worst: Float = 0
        for i in 0..<out.count { worst = max(worst, abs(out[flat: i] - expected[flat: i])) }
        XCTAssertLessThan(worst, 1e-5, "an L2 step is a normalised gradient: close, not bit-exact")
    }

    func testMMATargetsAreTheThreeBestWrongClasses() throws {
        let g = try golden()
        let logits = try g.model.forward(g.batch.images, mode: .eval)
        let targets = try MMA(stepSize: 0.025).targets(logits: logits, labels: g.batch.labels)
        let expected = g.file.tensors["mma_targets"]!.scalars.map { Int32($0) }
        XCTAssertEqual(targets.flatMap { $0 }, expected)
        for (row, label) in zip(targets, g.batch.labels) { XCTAssertFalse(row.contains(label), "a target is the true label") }
    }

    func testMMAStepsMatchTheReference() throws {
        let g = try golden()
        let out = try MMA(steps: 5, stepSize: 0.025, randomStart: false).perturb(g.model, g.batch, seed: 0)
        let expected = g.nhwc("mma")
        let off = (0..<out.count).filter { abs(out[flat: $0] - expected[flat: $0]) > 1e-5 }.count
        // Five sign steps can flip an entry whose gradient is within rounding of zero.
        XCTAssertLessThan(off, out.count / 200, "\(off) of \(out.count) entries differ from the reference")
    }
}
