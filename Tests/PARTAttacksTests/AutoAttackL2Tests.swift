@testable import PARTAttacks
import PARTEngine
import PARTNN
import XCTest

/// AutoAttack's L2 forms against PyTorch (attacks_l2.safetensors of scripts/make_attack_golden.py)
/// and their invariants; the versions' stage lists.
final class AutoAttackL2Tests: XCTestCase {
    var data = AttackTestData(seed: 23)

    /// The L2 attacks with reduced iteration counts (the same code paths as AutoAttack's settings).
    func reducedL2(radius: Float? = nil) -> [Attack] {
        [APGD(loss: .ce, iterations: 10, norm: .l2, radius: radius), APGD(loss: .dlr, iterations: 6, norm: .l2, radius: radius),
         APGDTargeted(targets: 2, iterations: 6, norm: .l2, radius: radius),
         FABTargeted(targets: 2, iterations: 10, restarts: 2, norm: .l2, radius: radius),
         FABUntargeted(iterations: 8, restarts: 2, norm: .l2, radius: radius), Square(queries: 60, norm: .l2, radius: radius)]
    }

    /// Two L2 APGD steps from the clean input (no random start) on a SmallCNN with formula
    /// weights: the same points as PyTorch.
    func testTwoL2APGDStepsMatchPyTorch() throws {
        let f = try attackFixture("attacks_l2.safetensors")
        var rng = RNG(seed: 0)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        setFormulaParameters(model)
        let x0 = Layout.nchwToNHWC(try f.required("apgd.input"))
        let labels = try f.integers("apgd.labels")
        let radius = try f.required("apgd.radius")[flat: 0]
        let batch = AttackBatch(images: x0, labels: labels, indices: Array(labels.indices),
                                budget: try .constant(radius, shape: x0.shape))
        for (key, loss) in [("ce", CrossEntropyLoss() as AttackLoss), ("dlr", DLRLoss())] {
            var x = x0, previous = x0
            let etas = [Float](repeating: 2, count: labels.count)
            let first = try AttackPass.lossGradient(model, at: x0, batch: batch, loss: loss)
            L2Ball.momentumStep(&x, previous: &previous, gradient: first.gradient, origin: x0, radius: radius,
                                stepSizes: etas, momentum: 1)
            assertValuesClose(x.scalars, Layout.nchwToNHWC(try f.required("apgd.\(key).x1")).scalars, absolute: 2e-6, "\(key) x1")
            XCTAssertEqual(previous.scalars, x0.scalars, "the previous point is x0 after the first step")
            let second = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss)
            L2Ball.momentumStep(&x, previous: &previous, gradient: second.gradient, origin: x0, radius: radius,
                                stepSizes: etas, momentum: 0.75)
            assertValuesClose(x.scalars, Layout.nchwToNHWC(try f.required("apgd.\(key).x2")).scalars, absolute: 2e-5, "\(key) x2")
            XCTAssert(Tensor.difference(x, x0).rowNorms().allSatisfy { $0 <= radius * (1 + 1e-5) }, "\(key) leaves the ball")
        }
    }

    /// FAB's L2 projections onto a hyperplane within [0, 1] are the reference's `projection_l2`.
    func testFABL2ProjectionMatchesTheReference() throws {
        let f = try attackFixture("attacks_l2.safetensors")
        let t1 = try f.required("fab.t1"), t0 = try f.required("fab.t0"), w = try f.required("fab.w"), b = try f.required("fab.b")
        let n = t1.shape[0], size = t1.shape[1]
        let values = (0..<n).map { r -> Float in
            var s = -Double(b[flat: r])
            for i in 0..<size { s += Double(w[flat: r * size + i]) * Double(t1[flat: r * size + i]) }
            return Float(s)
        }
        let p = FABKernels.projectionsL2(current: t1, origin: t0, gradient: w, values: values)
        assertValuesClose(p.fromCurrent.scalars, try f.required("fab.d1").scalars, absolute: 2e-5, "projection of t1")
        assertValuesClose(p.fromOrigin.scalars, try f.required("fab.d0").scalars, absolute: 2e-5, "projection of t0")
        let norms = p.fromCurrent.rowNorms()
        for r in 0..<n { XCTAssertEqual(p.sizeCurrent[r], norms[r], accuracy: 1e-5, "size of row \(r)") }
        XCTAssertEqual(p.sizeCurrent[1], 0, accuracy: 1e-6, "a point on the hyperplane does not move")
    }

    /// Square's L2 pattern and one proposal (two windows per row: apart, overlapping, the same)
    /// are PyTorch's.
    func testSquareL2PatternAndProposalMatchPyTorch() throws {
        let f = try attackFixture("attacks_l2.safetensors")
        for s in [1, 2, 3, 5, 7, 25] {
            assertValuesClose(SquareL2Kernels.pattern(side: s), try f.required("square.eta\(s)").scalars, absolute: 1e-6,
                              "pattern of side \(s)")
        }
        let origin = Layout.nchwToNHWC(try f.required("square.origin")), best = Layout.nchwToNHWC(try f.required("square.best"))
        let radius = try f.required("square.radius")[flat: 0], side = Int(try f.required("square.side")[flat: 0])
        let windows = try f.integers("square.windows").map(Int.init), n = origin.shape[0]
        let candidate = SquareL2Kernels.propose(
            best: best, origin: origin, radius: radius, side: side, pattern: SquareL2Kernels.pattern(side: side),
            tops: (0..<n).map { windows[4 * $0] }, lefts: (0..<n).map { windows[4 * $0 + 1] },
            tops2: (0..<n).map { windows[4 * $0 + 2] }, lefts2: (0..<n).map { windows[4 * $0 + 3] },
            signs: try f.required("square.signs").scalars, transposed: try f.integers("square.transposed").map { $0 != 0 })
        assertValuesClose(candidate.scalars, Layout.nchwToNHWC(try f.required("square.candidate")).scalars, absolute: 2e-6,
                          "candidate")
        XCTAssertEqual(SquareL2Kernels.side(iteration: 0, pInit: 0.8, height: 28, width: 28), 25)
        XCTAssertEqual(SquareL2Kernels.side(iteration: 100, pInit: 0.8, height: 28, width: 28), 13)
        XCTAssertEqual(SquareL2Kernels.side(iteration: 4999, pInit: 0.8, height: 28, width: 28), 3, "at least 3")
        XCTAssertEqual(SquareL2Kernels.side(iteration: 600, pInit: 0.8, height: 28, width: 28), 7, "odd: 6 becomes 7")
    }

    /// Every L2 attack stays in the ball and [0, 1], moves rows, and together they fool some.
    func testStayInsideTheBallAndTheUnitBox() throws {
        let trained = try QuadrantModel.get()
        let x = trained.images.slice(0..<8), labels = Array(trained.labels.prefix(8))
        let radius: Float = 3
        var fooled = 0
        for attack in reducedL2() {
            let adv = try runAttack(attack, trained.model, images: x, labels: labels, budget: try .constant(radius, shape: x.shape))
            XCTAssert(adv.scalars.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 }, "\(attack.name) leaves [0, 1]")
            let norms = Tensor.difference(adv, x).rowNorms()
            XCTAssert(norms.allSatisfy { $0 <= radius * (1 + 1e-5) }, "\(attack.name) leaves the ball: \(norms)")
            XCTAssert(norms.contains { $0 > 0 }, "\(attack.name) moved no row")
            XCTAssertEqual((attack as? L2Attack)?.norm, .l2)
            XCTAssertEqual(try (attack as? L2Attack)?.radius(for: try .constant(radius, shape: x.shape)), radius)
            fooled += try correct(trained.model, adv, labels).filter { !$0 }.count
        }
        XCTAssertGreaterThan(fooled, 0, "no L2 attack fooled any row at radius \(radius)")
    }

    /// An item's radius overrides the map's constant; a varying map is refused with one line; a
    /// zero radius returns the input bit for bit.
    func testRadiusVaryingMapsAndZeroRadius() throws {
        let trained = try QuadrantModel.get()
        let x = trained.images.slice(0..<4), labels = Array(trained.labels.prefix(4))
        for attack in reducedL2() {
            XCTAssertThrowsError(try runAttack(attack, trained.model, images: x, labels: labels,
                                               budget: try data.varyingMap(x.shape))) {
                XCTAssert("\($0)".contains("cannot honour a varying epsilon map") && !"\($0)".contains("\n"), "\($0)")
            }
            let same = try runAttack(attack, trained.model, images: x, labels: labels, budget: try .constant(0, shape: x.shape))
            XCTAssertEqual(same.scalars.map(\.bitPattern), x.scalars.map(\.bitPattern), attack.name)
        }
        // radius 0.5 given to the attack wins over the map's 8.
        for attack in reducedL2(radius: 0.5) {
            let adv = try runAttack(attack, trained.model, images: x, labels: labels, budget: try .constant(8, shape: x.shape))
            XCTAssert(Tensor.difference(adv, x).rowNorms().allSatisfy { $0 <= 0.5 * (1 + 1e-5) }, attack.name)
        }
    }

    /// A row's result depends on its own image, label, index and the seed only.
    func testPerExampleResultDoesNotDependOnTheBatch() throws {
        let trained = try QuadrantModel.get()
        let n = 9
        let x = trained.images.slice(0..<n), labels = Array(trained.labels.prefix(n))
        let indices = (0..<n).map { 50 + 7 * $0 }
        let map = try EpsilonMap.constant(2, shape: x.shape)
        let attacks: [Attack] = [APGD(loss: .ce, iterations: 6, restarts: 2, norm: .l2),
                                 FABUntargeted(iterations: 5, restarts: 2, norm: .l2), FABUntargeted(iterations: 5, restarts: 2),
                                 Square(queries: 30, norm: .l2)]
        for attack in attacks {
            let together = try runAttack(attack, trained.model, images: x, labels: labels, budget: map, indices: indices)
            let rows = [2, 7, 4]
            let part = try runAttack(attack, trained.model, images: x.gatherRows(rows), labels: rows.map { labels[$0] },
                                     budget: map.gatherRows(rows), indices: rows.map { indices[$0] })
            assertValuesClose(part.scalars, together.gatherRows(rows).scalars, absolute: 1e-5, "\(attack.name): a subset")
        }
    }

    /// Untargeted FAB under a varying map stays inside it; averaging the gradient over passes of
    /// a deterministic model changes nothing.
    func testUntargetedFABInTheMapAndEOT() throws {
        let trained = try QuadrantModel.get()
        let x = trained.images.slice(0..<6), labels = Array(trained.labels.prefix(6))
        let map = try data.varyingMap(x.shape, scale: 0.6)
        let adv = try runAttack(FABUntargeted(iterations: 10, restarts: 2), trained.model, images: x, labels: labels, budget: map)
        for i in 0..<x.count {
            XCTAssertLessThanOrEqual(abs(adv[flat: i] - x[flat: i]), map.values[flat: i] * (1 + 1e-6) + 1e-7, "entry \(i)")
        }
        let constant = try EpsilonMap.constant(0.3, shape: x.shape)
        let plain = try runAttack(APGD(iterations: 5), trained.model, images: x, labels: labels, budget: constant)
        let averaged = try runAttack(APGD(iterations: 5, eot: 3), trained.model, images: x, labels: labels, budget: constant)
        XCTAssertEqual(plain.scalars, averaged.scalars)
    }

    /// The versions as AutoAttack's autoattack.py sets them, and their errors.
    func testCatalogExpandsTheVersions() throws {
        let catalog = AttackCatalog.standard
        let defaults = AttackCatalog.Defaults(epsilon: 0.1, alpha: 0.025)
        let l2 = try catalog.stages("aa-l2:eps=0.5", defaults: defaults)
        XCTAssertEqual(l2.map(\.name), ["natural", "apgd-ce-l2", "apgd-t-l2", "fab-t-l2", "square-l2"])
        XCTAssertEqual(l2.map(\.description), ["natural", "apgd-ce:steps=100:restarts=1:rho=0.75:norm=l2:eps=0.5",
                                               "apgd-t:targets=9:steps=100:restarts=1:norm=l2:eps=0.5",
                                               "fab-t:targets=9:steps=100:restarts=1:norm=l2:eps=0.5",
                                               "square:queries=5000:p=0.8:restarts=1:norm=l2:eps=0.5"])
        for stage in l2.dropFirst() {
            let attack = try XCTUnwrap(stage.attack as? L2Attack)
            XCTAssertEqual(attack.norm, .l2)
            XCTAssertEqual(try attack.radius(for: try .constant(0.1, shape: [1, 2, 2, 1])), 0.5, stage.name)
        }
        let fromEps = try catalog.stages("aa-l2", defaults: defaults)
        XCTAssertEqual(try (fromEps[1].attack as? L2Attack)?.radius(for: try .constant(0.1, shape: [1, 2, 2, 1])), 0.1, "--eps")
        let plus = try catalog.stages("aa-plus", defaults: defaults)
        XCTAssertEqual(plus.map(\.name), ["natural", "apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"])
        let ce = try XCTUnwrap(plus[1].attack as? APGD), dlr = try XCTUnwrap(plus[2].attack as? APGD)
        let fab = try XCTUnwrap(plus[3].attack as? FABUntargeted), square = try XCTUnwrap(plus[4].attack as? Square)
        let t = try XCTUnwrap(plus[5].attack as? APGDTargeted), fabT = try XCTUnwrap(plus[6].attack as? FABTargeted)
        XCTAssertEqual([ce.restarts, dlr.restarts, fab.restarts, square.queries, t.targets, t.restarts, fabT.targets, fabT.restarts],
                       [5, 5, 5, 5000, 9, 1, 9, 1])
        XCTAssertEqual([ce.iterations, dlr.iterations, fab.iterations, t.iterations, fabT.iterations], [100, 100, 100, 100, 100])
        XCTAssertEqual(dlr.loss, .dlr)
        XCTAssertEqual(Set([ce.norm, fab.norm, square.norm, t.norm, fabT.norm]), [.linf])
        let l2plus = try catalog.stages("aa-l2-plus:eps=1.5", defaults: defaults)
        XCTAssertEqual(l2plus.map(\.name), ["natural", "apgd-ce-l2", "apgd-dlr-l2", "fab-l2", "square-l2", "apgd-t-l2", "fab-t-l2"])
        XCTAssertEqual((l2plus[3].attack as? FABUntargeted).map { [$0.restarts] }, [5])
        XCTAssert(l2plus.dropFirst().allSatisfy { ($0.attack as? L2Attack)?.norm == .l2 })
        let rand = try catalog.stages("aa-rand", defaults: defaults)
        XCTAssertEqual(rand.map(\.name), ["natural", "apgd-ce", "apgd-dlr"])
        XCTAssertEqual(rand.dropFirst().compactMap { ($0.attack as? APGD).map { [$0.eot, $0.restarts, $0.iterations] } },
                       [[20, 1, 100], [20, 1, 100]])
        XCTAssertEqual(rand[1].description, "apgd-ce:steps=100:restarts=1:rho=0.75:eot=20")
        // A user's key replaces the version's own; the L-inf descriptions stay as before the norm option.
        XCTAssertEqual(try catalog.stages("aa-plus:restarts=2", defaults: defaults)[1].description,
                       "apgd-ce:steps=100:restarts=2:rho=0.75")
        XCTAssertEqual(try catalog.stages("natural,aa,aa-l2", defaults: defaults).map(\.name),
                       ["natural", "apgd-ce", "apgd-t", "fab-t", "square", "apgd-ce-l2", "apgd-t-l2", "fab-t-l2", "square-l2"])
        for (list, message) in [("aa:eps=0.5", "eps is the L2 radius and needs norm=l2"),
                                ("apgd-ce:norm=l3", "norm must be linf or l2"), ("aa-l2:eps=-1", "aa-l2: apgd-ce: eps must be a number >= 0"),
                                ("aa-rand:eot=0", "aa-rand: apgd-ce: eot must be an integer >= 1"), ("aa-l2:alpha=1", "unknown key 'alpha' for aa-l2")] {
            XCTAssertThrowsError(try catalog.stages(list, defaults: defaults), list) {
                XCTAssert("\($0)".contains(message), "\(list): \($0)")
            }
        }
        for name in ["aa-l2", "aa-plus", "aa-l2-plus", "aa-rand", "fab"] { XCTAssert(catalog.knownNames.contains(name), name) }
    }
}
