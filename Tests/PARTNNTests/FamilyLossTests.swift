import Foundation
import PARTAttacks
import PARTEngine
import PARTNN
import PARTTraining
import XCTest

/// TRADES and MART against PyTorch (fixtures from scripts/make_golden_family.py): loss values and
/// logit gradients, a full training step on the golden batch, and their generation steps.
final class FamilyLossTests: XCTestCase {
    static let logitTolerance = 1e-4
    static let gradientTolerance = 1e-3

    func labels(_ t: Tensor) -> [Int32] { t.scalars.map { Int32($0) } }

    func testLossesAndLogitGradientsMatchPyTorch() throws {
        defer { ParityLog.flush("TRADES/MART/KL losses") }
        let g = try fixture("family_losses.safetensors")
        for name in ["small", "wide"] {
            let clean = g.tensors["\(name).clean"]!, adv = g.tensors["\(name).adv"]!
            let y = labels(g.tensors["\(name).labels"]!)
            let results = [("trades", TRADESLoss.forwardBackward(clean: clean, adversarial: adv, labels: y, beta: 6)),
                           ("mart", MARTLoss.forwardBackward(clean: clean, adversarial: adv, labels: y, beta: 6))]
            for (objective, r) in results {
                assertClose([r.loss], g.tensors["\(name).\(objective).loss"]!.scalars, tolerance: Self.logitTolerance,
                            "loss.\(name).\(objective)")
                assertClose(r.cleanGradient.scalars, g.tensors["\(name).\(objective).grad_clean"]!.scalars,
                            tolerance: Self.gradientTolerance, "grad_clean.\(name).\(objective)")
                assertClose(r.adversarialGradient.scalars, g.tensors["\(name).\(objective).grad_adv"]!.scalars,
                            tolerance: Self.gradientTolerance, "grad_adv.\(name).\(objective)")
            }
            let kl = KLDivergence.perExample(reference: clean, logits: adv)
            assertClose(kl.values, g.tensors["\(name).kl.values"]!.scalars, tolerance: Self.logitTolerance, "kl.\(name)")
            assertClose(kl.logitsGradient.scalars, g.tensors["\(name).kl.grad_adv"]!.scalars,
                        tolerance: Self.gradientTolerance, "kl_grad.\(name)")
            // The attack loss is the same divergence against the batch's reference logits.
            let batch = AttackBatch(images: Tensor(shape: [y.count, 1, 1, 1]), labels: y, indices: Array(0..<y.count),
                                    budget: try EpsilonMap.constant(0, shape: [y.count, 1, 1, 1]), reference: clean)
            let attackLoss = try KLDivergenceLoss().evaluate(logits: adv, batch: batch, targets: nil)
            XCTAssertEqual(attackLoss.values, kl.values)
        }
    }

    func testKLLossNeedsReferenceLogits() throws {
        let batch = AttackBatch(images: Tensor(shape: [1, 1, 1, 1]), labels: [0], indices: [0],
                                budget: try EpsilonMap.constant(0, shape: [1, 1, 1, 1]))
        XCTAssertThrowsError(try KLDivergenceLoss().evaluate(logits: Tensor(shape: [1, 3]), batch: batch, targets: nil)) {
            XCTAssert("\($0)".contains("reference"), "\($0)")
        }
    }

    /// The analytic gradients against central differences of double-precision reference losses
    /// written here from docs/method.md#5-objectives (independent of the engine's code).
    func testGradientsMatchFiniteDifferences() throws {
        var rng = RNG(seed: 4)
        let n = 3, k = 5
        let clean = (0..<(n * k)).map { _ in Double(rng.symmetricUniform() * 3) }
        let adv = (0..<(n * k)).map { _ in Double(rng.symmetricUniform() * 3) }
        let y: [Int32] = [0, 3, 4]
        let beta = 6.0
        func softmax(_ z: ArraySlice<Double>) -> [Double] {
            let m = z.max()!, e = z.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
            return e.map { $0 / s }
        }
        func trades(_ z: [Double], _ za: [Double]) -> Double {
            var total = 0.0
            for b in 0..<n {
                let p = softmax(z[(b * k)..<((b + 1) * k)]), q = softmax(za[(b * k)..<((b + 1) * k)])
                total += -Foundation.log(p[Int(y[b])]) / Double(n)
                total += beta / Double(n) * zip(p, q).map { $0 * Foundation.log($0 / $1) }.reduce(0, +)
            }
            return total
        }
        func mart(_ z: [Double], _ za: [Double]) -> Double {
            var total = 0.0
            for b in 0..<n {
                let p = softmax(z[(b * k)..<((b + 1) * k)]), q = softmax(za[(b * k)..<((b + 1) * k)])
                let label = Int(y[b])
                let y2 = (0..<k).filter { $0 != label }.max { q[$0] < q[$1] }!
                total += (-Foundation.log(q[label]) - Foundation.log(Double(Float(1.0001)) + 1e-12 - q[y2])) / Double(n)
                let kl = zip(p, q).map { $0 * (Foundation.log($0) - Foundation.log($1 + 1e-12)) }.reduce(0, +)
                total += beta / Double(n) * kl * (Double(Float(1.0000001)) - p[label])
            }
            return total
        }
        let zt = Tensor(shape: [n, k], values: clean.map(Float.init)), zat = Tensor(shape: [n, k], values: adv.map(Float.init))
        let cases: [(String, ([Double], [Double]) -> Double, PairedLoss)] = [
            ("trades", trades, TRADESLoss.forwardBackward(clean: zt, adversarial: zat, labels: y, beta: Float(beta))),
            ("mart", mart, MARTLoss.forwardBackward(clean: zt, adversarial: zat, labels: y, beta: Float(beta))),
        ]
        let z = clean.map { Double(Float($0)) }, za = adv.map { Double(Float($0)) }
        for (name, f, r) in cases {
            XCTAssertEqual(Double(r.loss), f(z, za), accuracy: 1e-5 * abs(f(z, za)), name)
            let h = 1e-6
            var numericClean = [Float](), numericAdv = [Float]()
            for i in 0..<(n * k) {
                var up = z, down = z
                up[i] += h
                down[i] -= h
                numericClean.append(Float((f(up, za) - f(down, za)) / (2 * h)))
                var upA = za, downA = za
                upA[i] += h
                downA[i] -= h
                numericAdv.append(Float((f(z, upA) - f(z, downA)) / (2 * h)))
            }
            XCTAssertLessThan(relativeError(r.cleanGradient.scalars, numericClean), 1e-4, "\(name) d/d clean")
            XCTAssertLessThan(relativeError(r.adversarialGradient.scalars, numericAdv), 1e-4, "\(name) d/d adversarial")
        }
    }

    /// Softmax and log-softmax backward against central differences of a double-precision forward.
    func testSoftmaxBackwardsMatchFiniteDifferences() throws {
        var rng = RNG(seed: 6)
        let n = 2, k = 4
        let z = (0..<(n * k)).map { _ in Double(rng.symmetricUniform() * 2) }
        let g = (0..<(n * k)).map { _ in Double(rng.symmetricUniform()) }
        func softmax(_ z: [Double]) -> [Double] {
            (0..<n).flatMap { b -> [Double] in
                let row = z[(b * k)..<((b + 1) * k)], m = row.max()!
                let e = row.map { Foundation.exp($0 - m) }, s = e.reduce(0, +)
                return e.map { $0 / s }
            }
        }
        // L = sum g ⊙ softmax(z) and L = sum g ⊙ log softmax(z).
        let losses: [([Double]) -> Double] = [{ zip(g, softmax($0)).map { $0 * $1 }.reduce(0, +) },
                                              { zip(g, softmax($0)).map { $0 * Foundation.log($1) }.reduce(0, +) }]
        let p = Softmax.probabilities(Tensor(shape: [n, k], values: z.map(Float.init)))
        let gt = Tensor(shape: [n, k], values: g.map(Float.init))
        let analytic = [Softmax.backward(probabilities: p, gradient: gt), Softmax.logBackward(probabilities: p, gradient: gt)]
        for (loss, a) in zip(losses, analytic) {
            let h = 1e-6
            let numeric = (0..<(n * k)).map { i -> Float in
                var up = z.map { Double(Float($0)) }, down = up
                up[i] += h
                down[i] -= h
                return Float((loss(up) - loss(down)) / (2 * h))
            }
            XCTAssertLessThan(relativeError(a.scalars, numeric), 1e-4)
        }
    }

    /// One TRADES and one MART step (both forwards in training mode, one SGD update) on the golden
    /// batch: loss, every parameter gradient, batch-norm statistics and the updated parameters.
    func testTrainingStepsMatchPyTorch() throws {
        for arch in ["small-cnn", "resnet18"] {
            let g = try fixture("family_step_\(arch).safetensors")
            let x = Layout.nchwToNHWC(g.tensors["input"]!), xAdv = Layout.nchwToNHWC(g.tensors["input_adv"]!)
            let y = labels(g.tensors["labels"]!)
            for objective in [ObjectiveKind.trades, .mart] {
                defer { ParityLog.flush("\(arch) \(objective.rawValue) training step") }
                var rng = RNG(seed: 0)
                let m = arch == "small-cnn"
                    ? try ModelZoo.make(arch, numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
                    : try ModelZoo.make(arch, numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)
                setFormulaParameters(m)
                let sgd = SGD(parameters: m.parameters, learningRate: 0.01, momentum: 0.9, weightDecay: 2e-4)
                sgd.zeroGradients()
                let step = try objective.make(beta: 6).accumulateGradients(m, clean: x, adversarial: xAdv, labels: y)
                let o = objective.rawValue
                assertClose([step.loss], g.tensors["\(o).loss"]!.scalars, tolerance: Self.logitTolerance, "loss")
                for (name, p) in m.parameters {
                    compareFullOrSampled(p.gradient, name: name, full: "\(o).grad", sampled: "\(o).gradsample", in: g,
                                         tolerance: Self.gradientTolerance)
                }
                for (name, b) in m.buffers {
                    assertClose(b.value.scalars, g.tensors["\(o).running.\(name)"]!.scalars, tolerance: Self.logitTolerance,
                                "running.\(name)")
                }
                sgd.step()
                for (name, p) in m.parameters {
                    compareFullOrSampled(p.value, name: name, full: "\(o).sgd", sampled: "\(o).sgdsample", in: g,
                                         tolerance: Self.logitTolerance)
                }
            }
        }
    }

    /// TRADES (KL) and MART (CE) generation against PyTorch: the generation loss's input gradient
    /// and one step at a point 0.05 from x, and MART's five steps from PyTorch's 0.001 start. (Five
    /// TRADES steps from that start are chaotic even between float32 and float64 PyTorch; see the
    /// script.)
    func testGenerationStepsMatchPyTorch() throws {
        defer { ParityLog.flush("TRADES/MART generation") }
        let g = try fixture("family_generation.safetensors")
        var rng = RNG(seed: 0)
        let m = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        try Checkpoint.apply(try fixture("smallcnn_torch_init.safetensors"), to: m, source: "smallcnn_torch_init")
        let x = Layout.nchwToNHWC(g.tensors["input"]!), start = Layout.nchwToNHWC(g.tensors["start"]!)
        let point = Layout.nchwToNHWC(g.tensors["point"]!)
        let map = try EpsilonMap(Layout.nchwToNHWC(g.tensors["epsmap"]!))
        let y = labels(g.tensors["labels"]!)
        /// Fails when more than `share` of the entries differ by more than 1e-5.
        func assertSameEntries(_ actual: Tensor, _ expected: Tensor, share: Double, _ what: String) {
            let differing = zip(actual.scalars, expected.scalars).filter { abs($0 - $1) > 1e-5 }.count
            XCTAssertLessThanOrEqual(Double(differing) / Double(actual.count), share,
                                     "\(what): \(differing) of \(actual.count) entries differ from PyTorch")
        }
        for objective in [ObjectiveKind.trades, .mart] {
            let o = objective.rawValue
            let recipe = objective.make(beta: 6).generation
            XCTAssertEqual(recipe.start, .gaussian(sigma: 0.001))
            var batch = AttackBatch(images: x, labels: y, indices: [0, 1, 2, 3], budget: map)
            if recipe.needsReference { batch.reference = try AttackPass.logits(m, x) }
            let gradient = try AttackPass.lossGradient(m, at: point, batch: batch, loss: recipe.loss).gradient
            var expectedGradient = Layout.nchwToNHWC(g.tensors["\(o).grad"]!)
            // Attack passes differentiate the sum of the per-example losses; F.cross_entropy is the mean.
            if objective == .mart { expectedGradient.scale(by: Float(y.count)) }
            assertClose(gradient.scalars, expectedGradient.scalars, tolerance: Self.gradientTolerance, "grad.\(o)")
            let oneStep = PGD(steps: 1, stepSize: 0.025, start: .gaussian(sigma: 0.001), loss: recipe.loss)
            // A sign can only flip where the gradient is ~0.
            assertSameEntries(try oneStep.ascend(m, batch, from: point), Layout.nchwToNHWC(g.tensors["\(o).step"]!),
                              share: 0.002, "one \(o) step")
            if objective == .mart {
                let adv = try PGD(steps: 5, stepSize: 0.025, start: .gaussian(sigma: 0.001), loss: recipe.loss)
                    .ascend(m, batch, from: start)
                let expected = Layout.nchwToNHWC(g.tensors["mart.adv"]!)
                assertSameEntries(adv, expected, share: 0.002, "five MART steps")
                XCTAssertGreaterThan(Tensor.difference(expected, x).maxAbs(), 0.08, "the reference moved")
                XCTAssert(Perturbation.rowsInside(adv, origin: x, map: map.values).allSatisfy { $0 })
            }
        }
    }

    /// The Gaussian start is keyed by dataset index: a row's result does not depend on its batch,
    /// and a zero map returns the input bit for bit.
    func testNoiseStartIsPerExampleAndZeroMapIsIdentity() throws {
        var rng = RNG(seed: 9)
        let m = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let x = Tensor(shape: [4, 16, 16, 1], values: (0..<(4 * 256)).map { _ in rng.uniform() })
        let map = try EpsilonMap.constant(0.1, shape: x.shape)
        var batch = AttackBatch(images: x, labels: [0, 1, 2, 3], indices: [10, 11, 12, 13], budget: map)
        batch.reference = try AttackPass.logits(m, x)
        let attack = PGD(steps: 2, stepSize: 0.02, start: .gaussian(sigma: 0.001), loss: KLDivergenceLoss())
        let all = try attack.perturb(m, batch, seed: 5)
        let pair = try attack.perturb(m, batch.subset([3, 1]), seed: 5)
        XCTAssertLessThan(relativeError(pair.slice(0..<1).scalars, all.slice(3..<4).scalars), 1e-5)
        XCTAssertLessThan(relativeError(pair.slice(1..<2).scalars, all.slice(1..<2).scalars), 1e-5)
        XCTAssertGreaterThan(Tensor.difference(all, x).maxAbs(), 0.01, "the attack moves the images")
        var zero = batch
        zero.budget = try EpsilonMap.constant(0, shape: x.shape)
        XCTAssertEqual(try attack.perturb(m, zero, seed: 5).scalars, x.scalars)
        let noSteps = PGD(steps: 0, stepSize: 0.02, start: .gaussian(sigma: 0.5), loss: KLDivergenceLoss())
        XCTAssert(Perturbation.rowsInside(try noSteps.perturb(m, batch, seed: 5), origin: x, map: map.values).allSatisfy { $0 })
    }
}
