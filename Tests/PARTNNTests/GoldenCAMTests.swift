import Foundation
import PARTCAM
import PARTEngine
import PARTNN
import XCTest

/// Grad-CAM maps, PIL-bicubic upsampling and the zscore rule against PyTorch + PIL.
final class GoldenCAMTests: XCTestCase {
    // Golden comparisons run on the plain fp32 path; FusionTests checks the fused and folded
    // passes against it.
    override func invokeTest() {
        Optimizations.without(Optimizations.Name.allCases.filter { $0 != .pool }) { super.invokeTest() }
    }

    func testSmallCNN() throws { try check("small-cnn") }

    func testResNet18() throws { try check("resnet18") }

    /// A pre-activation model end to end (the named-layer tests check every model's raw maps).
    func testWideResNet16x2() throws { try check("wrn-16-2") }

    func check(_ arch: String) throws {
        defer { ParityLog.flush("\(arch) Grad-CAM") }
        let g = try fixture("golden_\(arch).safetensors")
        let x = Layout.nchwToNHWC(g.tensors["input"]!)
        let m = try goldenModel(arch, input: x)
        let before = m.state.map { $0.1.tensor.scalars }

        let (maps, predictions) = try ClassActivation.maps(m, images: x, method: GradCAM())
        XCTAssertEqual(predictions, g.tensors["logits_eval"]!.argmaxRows())
        assertClose(maps.scalars, g.tensors["cam"]!.scalars, tolerance: 1e-4, "cam")

        let budget = CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let up = try budget.importance(m, images: x)
        assertClose(up.scalars, g.tensors["cam_up"]!.scalars, tolerance: 1e-4, "cam_up")

        let eps = try budget.budgets(m, images: x, epsilon: 0.1, epsilonLow: 0.0875)
        let expected = g.tensors["epsmap"]!.scalars, z = g.tensors["cam_z"]!.scalars
        let c = x.shape[3]
        for (p, e) in expected.enumerated() {
            for k in 0..<c where eps[flat: p * c + k] != e {
                // Only a pixel whose z-score sits on the threshold may fall either way.
                XCTAssertLessThan(abs(z[p] - 1), 1e-4, "epsmap pixel \(p) channel \(k): \(eps[flat: p * c + k]) vs \(e)")
            }
        }

        // Computing CAMs leaves the model exactly as it was.
        XCTAssertEqual(m.state.map { $0.1.tensor.scalars }, before)
        for (name, p) in m.parameters { XCTAssertEqual(p.gradient.maxAbs(), 0, name) }
    }

    /// A PyTorch-initialised SmallCNN (weights written by PyTorch) has non-degenerate maps:
    /// compare them, the upsampling and the rule with PyTorch + PIL.
    func testSmallCNNWithPyTorchWeights() throws {
        defer { ParityLog.flush("small-cnn (PyTorch weights) Grad-CAM") }
        var rng = RNG(seed: 0)
        let m = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        try Checkpoint.apply(try fixture("smallcnn_torch_init.safetensors"), to: m, source: "smallcnn_torch_init")
        let g = try fixture("smallcnn_torch_init_logits.safetensors")
        let x = Layout.nchwToNHWC(g.tensors["input"]!)
        let maps = try ClassActivation.maps(m, images: x, method: GradCAM()).maps
        XCTAssertGreaterThan(maps.maxAbs(), 0.5, "the fixture's maps are not degenerate")
        assertClose(maps.scalars, g.tensors["cam"]!.scalars, tolerance: 1e-4, "cam")
        let budget = CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let up = try budget.importance(m, images: x)
        assertClose(up.scalars, g.tensors["cam_up"]!.scalars, tolerance: 1e-4, "cam_up")
        let eps = try budget.budgets(m, images: x, epsilon: 0.1, epsilonLow: 0.0875)
        let expected = g.tensors["epsmap"]!.scalars
        let reference = g.tensors["cam_up"]!.scalars
        let hw = 28 * 28
        for b in 0..<3 {
            let u = reference[(b * hw)..<((b + 1) * hw)].map(Double.init)
            let mean = u.reduce(0, +) / Double(hw)
            let std = (u.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(hw)).squareRoot()
            for p in 0..<hw where eps[flat: b * hw + p] != expected[b * hw + p] {
                XCTAssertLessThan(abs((u[p] - mean) / std - 1), 1e-4, "image \(b) pixel \(p) differs away from the threshold")
            }
        }
        XCTAssertGreaterThan(expected.filter { $0 == 0.1 }.count, 0)
    }

    /// The same maps for an image alone and inside a batch.
    func testMapsDoNotDependOnTheBatch() throws {
        var rng = RNG(seed: 3)
        let m = try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 16, rng: &rng)
        let x = Tensor(shape: [3, 16, 16, 3], values: (0..<(3 * 16 * 16 * 3)).map { _ in rng.uniform() })
        let all = try ClassActivation.maps(m, images: x, method: GradCAM()).maps
        for i in 0..<3 {
            let alone = try ClassActivation.maps(m, images: x.slice(i..<(i + 1)), method: GradCAM()).maps
            XCTAssertLessThan(relativeError(alone.scalars, all.slice(i..<(i + 1)).scalars), 1e-4, "image \(i)")
        }
    }

    func testConstantMapNormalisesToZeros() throws {
        let flat = ClassActivation.normalise(Tensor(shape: [2, 2, 2], values: [3, 3, 3, 3, 0, 1, 2, 4]))
        XCTAssertEqual(flat.scalars, [0, 0, 0, 0, 0, 0.25, 0.5, 1])
    }

    /// Upsampling a constant keeps it (weights renormalise at the borders, as PIL does).
    func testBicubicKeepsConstants() throws {
        let up = Bicubic.resize(Tensor(shape: [1, 4, 4], repeating: 0.7), height: 32, width: 32)
        XCTAssertLessThan(up.scalars.map { abs($0 - 0.7) }.max()!, 1e-6)
    }
}
