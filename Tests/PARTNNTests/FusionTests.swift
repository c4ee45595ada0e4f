import PARTEngine
import PARTNN
import XCTest

/// Fused and folded passes (Fusion.swift) against the plain layer-by-layer path of the same
/// engine: the same values up to rounding, for every mode that uses them.
final class FusionTests: XCTestCase {
    /// Runs `body` with `names` off, then on, and returns both results.
    func plainAndOptimised<T>(_ names: [Optimizations.Name], _ body: () throws -> T) rethrows -> (plain: T, optimised: T) {
        (try Optimizations.without(names, body), try body())
    }

    /// A ResNet-18 whose batch norms have non-trivial running statistics and affine parameters.
    func resNet(_ rng: inout RNG) throws -> ImageClassifier {
        let model = try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 16, rng: &rng)
        for (name, entry) in model.state {
            guard case .buffer(let b) = entry, !b.isInteger else { continue }
            let values = (0..<b.value.count).map { _ in name.hasSuffix("running_var") ? 0.5 + rng.uniform() : rng.uniform() - 0.5 }
            b.value = Tensor(shape: b.value.shape, values: values)
        }
        for (name, p) in model.parameters where name.contains("bn") || name.contains("shortcut.1") {
            p.assign(Tensor(shape: p.value.shape, values: (0..<p.value.count).map { _ in 0.5 + rng.uniform() }))
        }
        return model
    }

    func testFoldedEvaluationPassMatchesThePlainOne() throws {
        var rng = RNG(seed: 3)
        let model = try resNet(&rng)
        let x = Tensor(shape: [4, 16, 16, 3], values: (0..<(4 * 16 * 16 * 3)).map { _ in rng.uniform() })
        let seed = Tensor(shape: [4, 10], values: (0..<40).map { _ in rng.uniform() - 0.5 })
        let r = try plainAndOptimised([.fold, .fuse]) { () -> ([Float], [Float]) in
            let tape = Tape(parameterGradients: false)
            let logits = try model.forward(x, mode: .eval, tape: tape)
            return (logits.scalars, try tape.backward(seed).scalars)
        }
        XCTAssertLessThan(relativeError(r.optimised.0, r.plain.0), 1e-5, "logits")
        XCTAssertLessThan(relativeError(r.optimised.1, r.plain.1), 1e-4, "input gradient")
        // Folding batch norm into the convolution's weights rounds differently: equal logits would
        // mean the folded pass never ran.
        XCTAssertNotEqual(r.optimised.0, r.plain.0, "the folded pass did not run")
        // Changing a running statistic refreshes the folded weights.
        let before = try model.forward(x, mode: .eval).scalars
        for (name, b) in model.buffers where name.hasSuffix("running_mean") { b.value.scale(by: 0.5) }
        let after = try plainAndOptimised([.fold, .fuse]) { try model.forward(x, mode: .eval).scalars }
        XCTAssertNotEqual(before, after.optimised)
        XCTAssertLessThan(relativeError(after.optimised, after.plain), 1e-5)
    }

    func testFusedTrainingStepMatchesThePlainOne() throws {
        var rng = RNG(seed: 4)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 20, rng: &rng)
        let x = Tensor(shape: [5, 20, 20, 1], values: (0..<(5 * 20 * 20)).map { _ in rng.uniform() })
        let labels: [Int32] = [1, 4, 0, 9, 3]
        let r = try plainAndOptimised([.fuse]) { () -> [[Float]] in
            for (_, p) in model.parameters { p.zeroGradient() }
            let tape = Tape(parameterGradients: true)
            let logits = try model.forward(x, mode: .train, tape: tape)
            let dx = try tape.backward(CrossEntropy.forwardBackward(logits: logits, labels: labels).gradient)
            return [logits.scalars, dx.scalars] + model.parameters.map { $0.1.gradient.scalars }
        }
        // (A ReLU fused into its convolution rounds as the separate one does, so the two agree to
        // the bit here: this test shows that fusing changes nothing, not that it happened.)
        for (i, (a, b)) in zip(r.optimised, r.plain).enumerated() {
            XCTAssertLessThan(relativeError(a, b), 1e-5, "tensor \(i)")
        }
    }
}
