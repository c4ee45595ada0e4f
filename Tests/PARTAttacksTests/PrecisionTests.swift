import PARTAttacks
import PARTCAM
import PARTEngine
import PARTNN
import XCTest

/// Attack and CAM passes in bfloat16 (`Engine.attackPrecision`) against the same passes in f32.
final class PrecisionTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(Engine.supportsBF16, "this CPU has no bfloat16 kernels")
    }

    func inBoth<T>(_ body: () throws -> T) rethrows -> (f32: T, bf16: T) {
        (try Engine.$attackPrecision.withValue(.f32, operation: body),
         try Engine.$attackPrecision.withValue(.bf16, operation: body))
    }

    func check(_ architecture: String, channels: Int, side: Int) throws {
        var rng = RNG(seed: 9)
        let model = try ModelZoo.make(architecture, numClasses: 10, inChannels: channels, imageSize: side, rng: &rng)
        let n = 6
        let x = Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
        let labels = (0..<n).map { Int32($0) }
        let batch = AttackBatch(images: x, labels: labels, indices: Array(0..<n), budget: try .constant(0.05, shape: x.shape))
        let r = try inBoth { () -> ([Float], [Float], [Float]) in
            let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: CrossEntropyLoss())
            let maps = try ClassActivation.maps(model, images: x, method: GradCAM()).maps
            return (g.logits.scalars, g.gradient.scalars, maps.scalars)
        }
        XCTAssertLessThan(relativeErrorOf(r.bf16.0, r.f32.0), 0.03, "\(architecture) logits")
        // ... and the bf16 passes did run: bfloat16's rounding shows in logits and gradients (a
        // precision setting that was ignored would give differences of exactly zero). The CAMs of
        // these small images are maps of 2x2 or 4x4 cells, min-max normalised to 0s and 1s, so
        // they cannot show it.
        XCTAssertNotEqual(r.bf16.0, r.f32.0, "\(architecture): the logits were not computed in bf16")
        XCTAssertNotEqual(r.bf16.1, r.f32.1, "\(architecture): the input gradients were not computed in bf16")
        // Input gradients of an untrained network are sums of many cancelling terms, so bf16's
        // 8-bit mantissa shows (measured: 11% for ResNet-18, 25% for SmallCNN in L2); what an
        // attack in bf16 achieves on a trained model is measured by `part eval --precision bf16`.
        XCTAssertLessThan(l2RelativeError(r.bf16.1, r.f32.1), 0.4, "\(architecture) input gradients")
        print("bf16 vs f32, \(architecture): logits \(relativeErrorOf(r.bf16.0, r.f32.0)), gradients (L2) "
              + "\(l2RelativeError(r.bf16.1, r.f32.1)), CAMs \(relativeErrorOf(r.bf16.2, r.f32.2))")
        // The sign of the input gradient (what PGD steps along) agrees almost everywhere.
        let agree = zip(r.bf16.1, r.f32.1).filter { ($0 > 0) == ($1 > 0) }.count
        XCTAssertGreaterThan(Double(agree) / Double(r.f32.1.count), 0.9, "\(architecture) gradient signs")
        XCTAssertLessThan(relativeErrorOf(r.bf16.2, r.f32.2), 0.15, "\(architecture) CAMs")
        // PGD under bf16 stays inside the map and [0, 1], and an all-zero map returns x exactly.
        try Engine.$attackPrecision.withValue(.bf16) {
            let adv = try PGD(steps: 3, stepSize: 0.02).perturb(model, batch, seed: 1)
            XCTAssertEqual(Perturbation.rowsInside(adv, origin: x, map: batch.budget.values), Array(repeating: true, count: n))
            var zero = batch
            zero.budget = try .constant(0, shape: x.shape)
            XCTAssertEqual(try PGD(steps: 2, stepSize: 0.02).perturb(model, zero, seed: 1).scalars, x.scalars)
        }
    }

    func testSmallCNN() throws { try check("small-cnn", channels: 1, side: 20) }

    func testResNet18() throws { try check("resnet18", channels: 3, side: 16) }

    /// ||a - b|| / ||b||.
    func l2RelativeError(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, norm = 0.0
        for (x, y) in zip(a, b) {
            diff += Double(x - y) * Double(x - y)
            norm += Double(y) * Double(y)
        }
        return norm == 0 ? diff.squareRoot() : (diff / norm).squareRoot()
    }

    func relativeErrorOf(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, scale = 0.0
        for (x, y) in zip(a, b) {
            diff = max(diff, Double(abs(x - y)))
            scale = max(scale, Double(abs(y)))
        }
        return scale == 0 ? diff : diff / scale
    }
}
