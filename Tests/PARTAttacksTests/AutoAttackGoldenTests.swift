@testable import PARTAttacks
import PARTEngine
import PARTNN
import XCTest

/// AutoAttack's pieces against PyTorch (fixtures of scripts/make_attack_golden.py) and against
/// the reference formulas.
final class AutoAttackGoldenTests: XCTestCase {
    func testMarginLossesMatchAutograd() throws {
        let f = try attackFixture("attacks_margins.safetensors")
        let logits = try f.required("logits")
        let labels = try f.integers("labels"), targets = try f.integers("targets")
        let batch = AttackBatch(images: Tensor(shape: [labels.count, 1, 1, 1]), labels: labels,
                                indices: Array(labels.indices), budget: try .constant(0, shape: [labels.count, 1, 1, 1]))
        let cases: [(String, AttackLoss, [Int32]?)] = [("cw", CWMarginLoss(), nil), ("dlr", DLRLoss(), nil),
                                                       ("dlrt", DLRLoss(), targets)]
        for (key, loss, t) in cases {
            let (values, gradient) = try loss.evaluate(logits: logits, batch: batch, targets: t)
            assertValuesClose(values, try f.required("\(key).values").scalars, "\(key) values")
            assertValuesClose(gradient.scalars, try f.required("\(key).grad").scalars, "\(key) gradient")
        }
        // Targeted DLR at its smallest class count, 4.
        let small = try f.required("small.logits")
        let smallLabels = try f.integers("small.labels")
        let smallBatch = AttackBatch(images: Tensor(shape: [smallLabels.count, 1, 1, 1]), labels: smallLabels,
                                     indices: Array(smallLabels.indices),
                                     budget: try .constant(0, shape: [smallLabels.count, 1, 1, 1]))
        let (values, gradient) = try DLRLoss().evaluate(logits: small, batch: smallBatch,
                                                        targets: try f.integers("small.targets"))
        assertValuesClose(values, try f.required("small.dlrt.values").scalars, "targeted DLR, 4 classes, values")
        assertValuesClose(gradient.scalars, try f.required("small.dlrt.grad").scalars, "targeted DLR, 4 classes, gradient")
    }

    func testDLRRefusesTooFewClassesWithAMessage() throws {
        let logits = Tensor(shape: [1, 3], values: [1, 2, 3])
        let batch = AttackBatch(images: Tensor(shape: [1, 1, 1, 1]), labels: [0], indices: [0],
                                budget: try .constant(0, shape: [1, 1, 1, 1]))
        XCTAssertThrowsError(try DLRLoss().evaluate(logits: logits, batch: batch, targets: [1])) {
            XCTAssert("\($0)".contains("4 classes"), "\($0)")
        }
        XCTAssertThrowsError(try DLRLoss().evaluate(logits: Tensor(shape: [1, 2], values: [1, 2]), batch: batch,
                                                    targets: nil)) {
            XCTAssert("\($0)".contains("3 classes"), "\($0)")
        }
    }

    /// The checkpoints for 100 iterations are the paper's w_j = ceil(p_j * 100) with p_0 = 0,
    /// p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06).
    func testAPGDCheckpointsFollowThePaper() {
        var p = [0.0, 0.22]
        while p.last! <= 1 { p.append(p[p.count - 1] + max(p[p.count - 1] - p[p.count - 2] - 0.03, 0.06)) }
        let paper = p.dropFirst().map { Int(($0 * 100 - 1e-9).rounded(.up)) }.filter { $0 <= 100 }
        XCTAssertEqual(APGD.checkpoints(iterations: 100), paper)
        XCTAssertEqual(paper, [22, 41, 57, 70, 80, 87, 93, 99])
        // The reference code's integer form at other counts: periods max(floor(0.22 n), 1), then
        // shorter by max(floor(0.03 n), 1) down to max(floor(0.06 n), 1).
        XCTAssertEqual(APGD.checkpoints(iterations: 10), [2, 3, 4, 5, 6, 7, 8, 9, 10])
        XCTAssertEqual(APGD.checkpoints(iterations: 50), [11, 21, 30, 38, 45])
        XCTAssertEqual(APGD.checkpoints(iterations: 1), [1])
        XCTAssertEqual(APGD.checkpoints(iterations: 0), [])
    }

    /// Two APGD steps from the clean input (no random start) under a varying map with zeros, CE
    /// and DLR, on a SmallCNN with formula weights: the same points as PyTorch.
    func testTwoAPGDStepsMatchPyTorch() throws {
        let f = try attackFixture("attacks_apgd_step.safetensors")
        var rng = RNG(seed: 0)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        setFormulaParameters(model)
        let x0 = Layout.nchwToNHWC(try f.required("input"))
        let map = Layout.nchwToNHWC(try f.required("map"))
        let labels = try f.integers("labels")
        let batch = AttackBatch(images: x0, labels: labels, indices: Array(labels.indices), budget: try EpsilonMap(map))
        for (key, loss) in [("ce", CrossEntropyLoss() as AttackLoss), ("dlr", DLRLoss())] {
            let first = try AttackPass.lossGradient(model, at: x0, batch: batch, loss: loss)
            assertValuesClose(first.values, try f.required("\(key).loss0").scalars, absolute: 1e-5, "\(key) loss at x0")
            var x = x0, previous = x0
            let etas = [Float](repeating: 2, count: labels.count)
            APGDKernels.momentumStep(&x, previous: &previous, gradient: first.gradient, origin: x0, map: map,
                                     stepSizes: etas, momentum: 1)
            try assertSamePoints(x, Layout.nchwToNHWC(try f.required("\(key).x1")), map: map, "\(key) x1")
            let second = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss)
            assertValuesClose(second.values, try f.required("\(key).loss1").scalars, absolute: 1e-5, "\(key) loss at x1")
            XCTAssertEqual(previous.scalars, x0.scalars, "the previous point is x0 after the first step")
            APGDKernels.momentumStep(&x, previous: &previous, gradient: second.gradient, origin: x0, map: map,
                                     stepSizes: etas, momentum: 0.75)
            try assertSamePoints(x, Layout.nchwToNHWC(try f.required("\(key).x2")), map: map, "\(key) x2")
        }
    }

    /// Points of a sign step agree except where a gradient entry within rounding of zero may take
    /// the other sign: allow a few such entries, each off by at most a step.
    private func assertSamePoints(_ actual: Tensor, _ expected: Tensor, map: Tensor, _ what: String,
                                  file: StaticString = #filePath, line: UInt = #line) throws {
        var differing = 0
        for i in 0..<actual.count where abs(actual[flat: i] - expected[flat: i]) > 1e-6 {
            differing += 1
            XCTAssertLessThanOrEqual(abs(actual[flat: i] - expected[flat: i]), 4 * map[flat: i] + 1e-6,
                                     "\(what): entry \(i)", file: file, line: line)
        }
        XCTAssertLessThanOrEqual(differing, 2, "\(what): \(differing) of \(actual.count) entries differ", file: file, line: line)
        XCTAssertGreaterThan(zip(actual.scalars, map.scalars).filter { $1 > 0 }.count, 0)
    }

    /// With map 1 the weighted norm is the L-inf norm, and FAB's projections are the reference's
    /// `projection_linf` (onto the hyperplane within [0, 1]).
    func testFABProjectionMatchesTheReference() throws {
        let f = try attackFixture("attacks_fab_projection.safetensors")
        let t1 = try f.required("t1"), t0 = try f.required("t0"), w = try f.required("w"), b = try f.required("b")
        let n = t1.shape[0], size = t1.shape[1]
        // The hyperplane w . x = b written as f + w . (x - t1) = 0: f = w . t1 - b.
        let values = (0..<n).map { r -> Float in
            var s = -Double(b[flat: r])
            for i in 0..<size { s += Double(w[flat: r * size + i]) * Double(t1[flat: r * size + i]) }
            return Float(s)
        }
        let ones = Tensor(shape: t1.shape, repeating: 1)
        let p = FABKernels.projections(current: t1, origin: t0, gradient: w, values: values, map: ones)
        assertValuesClose(p.fromCurrent.scalars, try f.required("d1").scalars, absolute: 2e-5, "projection of t1")
        assertValuesClose(p.fromOrigin.scalars, try f.required("d0").scalars, absolute: 2e-5, "projection of t0")
        for r in 0..<n {
            XCTAssertEqual(p.sizeCurrent[r], p.fromCurrent.slice(r..<(r + 1)).maxAbs(), accuracy: 1e-6, "size of row \(r)")
        }
        XCTAssertEqual(p.sizeCurrent[1], 0, accuracy: 1e-7, "a point on the hyperplane does not move")
    }

    /// Under a varying map: the step lands on the hyperplane (when reachable), stays in [0, 1],
    /// leaves entries with map 0 alone, and is no larger than another feasible step.
    func testFABProjectionUnderAVaryingMap() throws {
        var data = AttackTestData(seed: 21)
        let n = 5, size = 60
        let point = Tensor(shape: [n, size], values: (0..<(n * size)).map { _ in data.rng.uniform() })
        let normal = Tensor(shape: [n, size], values: (0..<(n * size)).map { _ in data.rng.uniform() * 2 - 1 })
        let map = try data.varyingMap([n, size], scale: 0.3).values
        let values = (0..<n).map { _ in (data.rng.uniform() - 0.5) * 0.5 }
        let p = FABKernels.projections(current: point, origin: point, gradient: normal, values: values, map: map)
        for r in 0..<n {
            var moved = 0.0, largest: Float = 0
            for i in (r * size)..<((r + 1) * size) {
                let d = p.fromCurrent[flat: i]
                moved += Double(normal[flat: i]) * Double(d)
                XCTAssert(point[flat: i] + d >= -1e-6 && point[flat: i] + d <= 1 + 1e-6, "row \(r) leaves [0, 1]")
                if map[flat: i] == 0 { XCTAssertEqual(d, 0, "an entry without budget moved") } else {
                    largest = max(largest, abs(d) / map[flat: i])
                }
            }
            XCTAssertEqual(moved, -Double(values[r]), accuracy: 1e-4, "row \(r) misses the hyperplane")
            XCTAssertEqual(p.sizeCurrent[r], largest, accuracy: 1e-5 * max(1, largest), "row \(r) size")
            // Another feasible step: move every entry by the same lambda (weighted), if the box allows.
            var reach = 0.0
            for i in (r * size)..<((r + 1) * size) where map[flat: i] > 0 {
                reach += Double(abs(normal[flat: i]) * map[flat: i])
            }
            let uniform = abs(Double(values[r])) / reach
            var feasible = true
            for i in (r * size)..<((r + 1) * size) where map[flat: i] > 0 {
                let direction: Float = (-values[r] * normal[flat: i]) > 0 ? 1 : -1
                let v = point[flat: i] + direction * Float(uniform) * map[flat: i]
                if v < 0 || v > 1 { feasible = false }
            }
            if feasible { XCTAssertLessThanOrEqual(Double(p.sizeCurrent[r]), uniform * (1 + 1e-5), "row \(r) not minimal") }
        }
    }

    /// The Square schedule: p_init halved after iterations 10, 50, 200, 500, 1000, 2000, 4000,
    /// 6000, 8000, not rescaled to the query budget; the side is round(sqrt(p H W)).
    func testSquareSchedule() {
        let expected: [(Int, Float)] = [(0, 0.8), (10, 0.8), (11, 0.4), (50, 0.4), (51, 0.2), (200, 0.2), (201, 0.1),
                                        (501, 0.05), (1001, 0.025), (2001, 0.0125), (4001, 0.00625),
                                        (6001, 0.003125), (8001, 0.0015625), (9999, 0.0015625)]
        for (i, p) in expected {
            XCTAssertEqual(Square.fraction(iteration: i, pInit: 0.8), p, accuracy: 1e-7, "iteration \(i)")
        }
        XCTAssertEqual(Square.side(iteration: 0, pInit: 0.8, height: 28, width: 28), 25)
        XCTAssertEqual(Square.side(iteration: 100, pInit: 0.8, height: 28, width: 28), 13)  // sqrt(0.2 * 784) = 12.52
        XCTAssertEqual(Square.side(iteration: 4999, pInit: 0.8, height: 28, width: 28), 2)
        XCTAssertEqual(Square.side(iteration: 9000, pInit: 0.8, height: 8, width: 8), 1)
        XCTAssertEqual(Square.side(iteration: 0, pInit: 1, height: 4, width: 16), 4, "at most the shorter side")
    }

    /// Targets are the classes other than the label by decreasing clean logit: never the label.
    func testTargetsAreTheHighestOtherClasses() {
        let logits = Tensor(shape: [2, 5], values: [0.1, 0.9, 0.3, 0.5, 0.2,
                                                     2.0, 1.0, 1.0, -1.0, 3.0])
        let ranked = rankedTargets(cleanLogits: logits, labels: [1, 4], count: 4)
        XCTAssertEqual(ranked[0], [3, 2, 4, 0])
        XCTAssertEqual(ranked[1], [0, 1, 2, 3], "ties go to the lower index")
        XCTAssertEqual(rankedTargets(cleanLogits: logits, labels: [1, 4], count: 2).map(\.count), [2, 2])
        var rng = RNG(seed: 3)
        let k = 10
        let random = Tensor(shape: [50, k], values: (0..<(50 * k)).map { _ in rng.uniform() })
        let labels = (0..<50).map { Int32($0 % k) }
        for (row, targets) in rankedTargets(cleanLogits: random, labels: labels, count: 9).enumerated() {
            XCTAssertFalse(targets.contains(labels[row]), "row \(row) targets its label")
            XCTAssertEqual(Set(targets).count, 9)
            let values = targets.map { random[flat: row * k + Int($0)] }
            XCTAssertEqual(values, values.sorted(by: >))
        }
        XCTAssertEqual(targetCount(asked: 9, classes: 10), 9)
        XCTAssertEqual(targetCount(asked: 9, classes: 3), 2)
        XCTAssertEqual(targetCount(asked: 9, classes: 2), 1)
    }
}
