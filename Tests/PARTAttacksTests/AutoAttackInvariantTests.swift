import PARTAttacks
import PARTEngine
import PARTNN
import XCTest

/// The invariants every AutoAttack attack keeps under an epsilon map (docs/method.md#1-threat-model-and-epsilon-maps, #4-attacks, #9-pitfalls-the-tests-guard-against),
/// checked on APGD-CE, APGD-T, FAB-T and Square with reduced iteration counts.
final class AutoAttackInvariantTests: XCTestCase {
    var data = AttackTestData(seed: 17)

    /// A random-init SmallCNN and images labelled with its own predictions, so every row is
    /// attacked (an attack leaves misclassified rows alone).
    func modelAndImages(_ n: Int, classes: Int = 10) throws -> (ImageClassifier, Tensor, [Int32]) {
        let model = try data.smallCNN(classes: classes)
        let x = data.images(n)
        return (model, x, try model.forward(x, mode: .eval).argmaxRows())
    }

    /// The first `n` held-out images of the trained model, on which every attack succeeds for
    /// some rows (a random-init model is too flat for FAB to reach its boundary).
    func trainedModelAndImages(_ n: Int) throws -> (ImageClassifier, Tensor, [Int32]) {
        let trained = try QuadrantModel.get()
        return (trained.model, trained.images.slice(0..<n), Array(trained.labels.prefix(n)))
    }

    func testStayInsideTheMapAndTheUnitBox() throws {
        let (model, x, labels) = try trainedModelAndImages(8)
        var values = try data.varyingMap(x.shape, scale: 0.5).values
        for i in 0..<x.rowSize { values[flat: 2 * x.rowSize + i] = 0 }  // row 2 has no budget at all
        let map = try EpsilonMap(values)
        for attack in reducedAutoAttack() {
            let adv = try runAttack(attack, model, images: x, labels: labels, budget: map)
            XCTAssertEqual(adv.shape, x.shape)
            var movedRows = Set<Int>()
            for i in 0..<x.count {
                let d = abs(adv[flat: i] - x[flat: i])
                XCTAssert(adv[flat: i].isFinite && adv[flat: i] >= 0 && adv[flat: i] <= 1,
                          "\(attack.name): entry \(i) is \(adv[flat: i])")
                XCTAssertLessThanOrEqual(d, map.values[flat: i] * (1 + 1e-6) + 1e-7, "\(attack.name): entry \(i) leaves the map")
                if d > 0 { movedRows.insert(i / x.rowSize) }
            }
            XCTAssertFalse(movedRows.contains(2), "\(attack.name): a row without budget moved")
            XCTAssertEqual(adv.slice(2..<3).scalars.map(\.bitPattern), x.slice(2..<3).scalars.map(\.bitPattern))
            XCTAssertFalse(movedRows.isEmpty, "\(attack.name) moved no row")
        }
    }

    /// Every attack reports its progress on the batch: fractions that never go back, from its
    /// loops over restarts, targets, iterations and queries, up to 1 when no row is fooled (a
    /// budget too small to fool any).
    func testProgressRisesToTheEnd() throws {
        let (model, x, labels) = try modelAndImages(4)
        let attacks: [Attack] = reducedAutoAttack() + [PGD(steps: 5, stepSize: 1e-4), try PGDL2(steps: 5, stepSize: 1e-4),
                                                      APGD(loss: .ce, iterations: 6, restarts: 2)]
        for attack in attacks {
            var reported = [Double]()
            var batch = AttackBatch(images: x, labels: labels, indices: Array(0..<4), budget: try .constant(1e-4, shape: x.shape))
            batch.progress = AttackProgress { reported.append($0) }
            let adversarial = try attack.perturb(model, batch, seed: 5)
            XCTAssertEqual(try correct(model, adversarial, labels), [true, true, true, true], "\(attack.name) fooled a row")
            XCTAssertGreaterThan(reported.count, 3, attack.name)
            XCTAssertEqual(zip(reported, reported.dropFirst()).filter { $0 > $1 }.count, 0, "\(attack.name): \(reported)")
            XCTAssertEqual(reported.last ?? 0, 1, accuracy: 1e-9, attack.name)
            XCTAssertGreaterThanOrEqual(reported.first ?? -1, 0, attack.name)
        }
    }

    func testZeroMapReturnsTheInputBitForBit() throws {
        let (model, x, labels) = try modelAndImages(4)
        for attack in reducedAutoAttack() {
            let adv = try runAttack(attack, model, images: x, labels: labels, budget: try .constant(0, shape: x.shape))
            XCTAssertEqual(adv.scalars.map(\.bitPattern), x.scalars.map(\.bitPattern), attack.name)
        }
    }

    func testLeaveTheModelUntouched() throws {
        let model = try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 16, rng: &data.rng)
        let x = data.images(1, channels: 3)
        let labels = try model.forward(x, mode: .eval).argmaxRows()
        let before = model.state.map { $0.1.tensor.scalars }
        for attack in reducedAutoAttack(iterations: 1, targets: 1, queries: 2) {
            _ = try runAttack(attack, model, images: x, labels: labels, budget: try .constant(0.03, shape: x.shape))
            XCTAssertEqual(model.state.map { $0.1.tensor.scalars }, before,
                           "\(attack.name) changed weights or batch-norm statistics")
            for (name, p) in model.parameters { XCTAssertEqual(p.gradient.maxAbs(), 0, "\(attack.name) touched \(name)'s gradient") }
        }
    }

    /// With random starts on, a row's result depends on its image, label, dataset index and the
    /// seed only: the same alone, in batches of 7, in all 12 and in a shuffled batch.
    func testPerExampleResultDoesNotDependOnTheBatch() throws {
        let n = 12
        let (model, x, labels) = try trainedModelAndImages(n)
        let map = try data.varyingMap(x.shape, scale: 0.4)
        let indices = (0..<n).map { 100 + 3 * $0 }
        let attacks: [Attack] = [APGD(loss: .dlr, iterations: 6, restarts: 2), APGDTargeted(targets: 2, iterations: 4),
                                 FABTargeted(targets: 2, iterations: 6, restarts: 2), Square(queries: 30)]
        for attack in attacks {
            let together = try runAttack(attack, model, images: x, labels: labels, budget: map, indices: indices)
            func compare(_ rows: [Int], _ result: Tensor, _ what: String) {
                for (r, i) in rows.enumerated() {
                    let mine = together.slice(i..<(i + 1)).scalars, theirs = result.slice(r..<(r + 1)).scalars
                    let mismatches = zip(mine, theirs).filter { abs($0 - $1) > 1e-5 }.count
                    // A gradient entry within rounding of zero may flip its sign; allow a handful.
                    XCTAssertLessThan(mismatches, 3, "\(attack.name), \(what): image \(i) has \(mismatches) entries that differ")
                }
            }
            // Alone (three rows, to keep the test short), in batches of 7 (all rows).
            for rows in [[0], [5], [9]] + stride(from: 0, to: n, by: 7).map({ Array($0..<min($0 + 7, n)) }) {
                let out = try runAttack(attack, model, images: x.gatherRows(rows), labels: rows.map { labels[$0] },
                                        budget: map.gatherRows(rows), indices: rows.map { indices[$0] })
                compare(rows, out, "batch size \(rows.count)")
            }
            let shuffled = [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]
            let out = try runAttack(attack, model, images: x.gatherRows(shuffled), labels: shuffled.map { labels[$0] },
                                    budget: map.gatherRows(shuffled), indices: shuffled.map { indices[$0] })
            compare(shuffled, out, "shuffled batch")
        }
    }

    /// Square's windowed queries (`SquareQueries` on SmallCNN's local prefix) give the result of
    /// a full forward pass per query: the same points, bit for bit, with the same kernels in both
    /// (Winograd off: its tiles start at a patch's corner, so its rounding differs), through
    /// squares of every size the schedule reaches in 600 queries and rows that retire.
    func testSquareWindowsGiveTheResultOfFullForwardPasses() throws {
        try Optimizations.without([.winograd]) { try squareWindowsGiveTheResultOfFullForwardPasses() }
    }

    func squareWindowsGiveTheResultOfFullForwardPasses() throws {
        let (model, x, labels) = try trainedModelAndImages(16)
        XCTAssertNotNil((model as? LocallyComputable)?.localPrefix, "without a local prefix both runs take the full path")
        let map = try data.varyingMap(x.shape, scale: 0.5)
        let attack = Square(queries: 600)
        let windowed = try runAttack(attack, model, images: x, labels: labels, budget: map)
        let full = try Optimizations.without([.windows]) {
            try runAttack(attack, model, images: x, labels: labels, budget: map)
        }
        XCTAssertEqual(windowed.scalars, full.scalars)
        XCTAssertNotEqual(windowed.scalars, x.scalars)
        let fooled = try correct(model, full, labels).filter { !$0 }.count
        XCTAssertGreaterThan(fooled, 0, "no row retired: the test would not reach the compaction of the activations")
    }

    /// Another seed or another dataset index gives another random start.
    func testRandomDrawsAreKeyedBySeedAndIndex() throws {
        let (model, x, labels) = try modelAndImages(3)
        let map = try EpsilonMap.constant(0.1, shape: x.shape)
        for attack in [APGD(iterations: 0), Square(queries: 0)] as [Attack] {
            let a = try runAttack(attack, model, images: x, labels: labels, budget: map, seed: 1)
            let b = try runAttack(attack, model, images: x, labels: labels, budget: map, seed: 2)
            let c = try runAttack(attack, model, images: x, labels: labels, budget: map, indices: [7, 8, 9], seed: 1)
            XCTAssertNotEqual(a.scalars, b.scalars, "\(attack.name): the seed changes nothing")
            XCTAssertNotEqual(a.scalars, c.scalars, "\(attack.name): the index changes nothing")
            XCTAssertEqual(a.scalars, try runAttack(attack, model, images: x, labels: labels, budget: map, seed: 1).scalars)
        }
    }

    /// Misclassified rows are already adversarial: they come back as they are.
    func testMisclassifiedRowsAreLeftAlone() throws {
        let (model, x, predictions) = try modelAndImages(4)
        let wrong = predictions.map { ($0 + 1) % 10 }
        for attack in reducedAutoAttack() {
            let adv = try runAttack(attack, model, images: x, labels: wrong, budget: try .constant(0.1, shape: x.shape))
            XCTAssertEqual(adv.scalars, x.scalars, attack.name)
        }
    }

    /// Fewer classes than targets or than DLR needs: the documented substitutions, in the notes,
    /// and no crash.
    func testFewClassesUseTheDocumentedFallbacks() throws {
        for classes in [2, 3] {
            let (model, x, labels) = try modelAndImages(4, classes: classes)
            let map = try EpsilonMap.constant(0.2, shape: x.shape)
            let targeted = APGDTargeted(targets: 9, iterations: 4)
            let notes = targeted.notes(for: model)
            XCTAssert(notes.contains { $0.contains("\(classes - 1) target") }, "\(notes)")
            XCTAssert(notes.contains { $0.contains("targeted cross-entropy") }, "\(notes)")
            XCTAssert(FABTargeted(targets: 9).notes(for: model).contains { $0.contains("\(classes - 1) target") })
            XCTAssertEqual(APGD(loss: .dlr).notes(for: model).isEmpty, classes >= 3)
            for attack in [targeted, FABTargeted(targets: 9, iterations: 4), APGD(loss: .dlr, iterations: 4),
                           Square(queries: 5)] as [Attack] {
                let adv = try runAttack(attack, model, images: x, labels: labels, budget: map)
                XCTAssert(adv.scalars.allSatisfy { $0.isFinite && $0 >= 0 && $0 <= 1 }, attack.name)
            }
        }
        let model = try data.smallCNN(classes: 10)
        XCTAssertEqual(APGDTargeted().notes(for: model), [])
        XCTAssertEqual(FABTargeted().notes(for: model), [])
        XCTAssertEqual(APGD(loss: .dlr).notes(for: model), [])
    }

    func testBadSettingsAreErrorsNamingTheSetting() throws {
        let (model, x, labels) = try modelAndImages(1)
        let map = try EpsilonMap.constant(0.1, shape: x.shape)
        let cases: [(Attack, String)] = [(APGD(iterations: -1), "iterations"), (APGD(restarts: 0), "restarts"),
                                         (APGD(rho: 1.5), "rho"), (APGDTargeted(targets: 0), "targets"),
                                         (FABTargeted(iterations: -3), "iterations"), (Square(queries: -1), "queries"),
                                         (Square(pInit: 0), "p-init"), (Square(restarts: 0), "restarts")]
        for (attack, word) in cases {
            XCTAssertThrowsError(try runAttack(attack, model, images: x, labels: labels, budget: map)) {
                XCTAssert("\($0)".hasPrefix(attack.name) && "\($0)".contains(word), "\($0)")
            }
        }
    }

    func testNames() {
        XCTAssertEqual(APGD().name, "apgd-ce")
        XCTAssertEqual(APGD(loss: .dlr).name, "apgd-dlr")
        XCTAssertEqual(APGDTargeted().name, "apgd-t")
        XCTAssertEqual(FABTargeted().name, "fab-t")
        XCTAssertEqual(Square().name, "square")
    }

    /// `aa` is AutoAttack standard with its settings; keys given to a composite reach each of its
    /// attacks that takes them; bad values are errors at parse time.
    func testCatalogExpandsAutoAttack() throws {
        let catalog = AttackCatalog.standard
        let defaults = AttackCatalog.Defaults(epsilon: 0.1, alpha: 0.025)
        let aa = try catalog.stages("aa", defaults: defaults)
        XCTAssertEqual(aa.map(\.name), ["natural", "apgd-ce", "apgd-t", "fab-t", "square"])
        XCTAssertEqual(aa.map(\.description), ["natural", "apgd-ce:steps=100:restarts=1:rho=0.75",
                                               "apgd-t:targets=9:steps=100:restarts=1", "fab-t:targets=9:steps=100:restarts=1",
                                               "square:queries=5000:p=0.8:restarts=1"])
        let ce = try XCTUnwrap(aa[1].attack as? APGD), t = try XCTUnwrap(aa[2].attack as? APGDTargeted)
        let fab = try XCTUnwrap(aa[3].attack as? FABTargeted), square = try XCTUnwrap(aa[4].attack as? Square)
        XCTAssertEqual([ce.iterations, ce.restarts, t.targets, t.iterations, fab.targets, fab.iterations, square.queries],
                       [100, 1, 9, 100, 9, 100, 5000])
        XCTAssertEqual(ce.loss, .ce)
        XCTAssertEqual(square.pInit, 0.8)
        XCTAssertEqual(try catalog.stages("aa-fast", defaults: defaults).map(\.name), ["natural", "apgd-ce", "apgd-t"])
        XCTAssertEqual(try catalog.stages("apgd-dlr:steps=7", defaults: defaults).map(\.description),
                       ["natural", "apgd-dlr:steps=7:restarts=1:rho=0.75"])
        let quick = try catalog.stages("aa:steps=3:targets=2:queries=50", defaults: defaults).map(\.description)
        XCTAssertEqual(quick, ["natural", "apgd-ce:steps=3:restarts=1:rho=0.75", "apgd-t:targets=2:steps=3:restarts=1",
                               "fab-t:targets=2:steps=3:restarts=1", "square:queries=50:p=0.8:restarts=1"])
        for (list, message) in [("aa:alpha=0.1", "unknown key 'alpha' for aa"), ("square:p=0", "p must lie in (0, 1]"),
                                ("apgd-ce:rho=1.5", "rho must lie in [0, 1]"), ("fab-t:targets=0", "targets must be an integer >= 1"),
                                ("aa:steps=2:steps=3", "steps is given twice"), ("apgd-t:restarts=0", "restarts must be an integer >= 1")] {
            XCTAssertThrowsError(try catalog.stages(list, defaults: defaults), list) {
                XCTAssert("\($0)".contains(message), "\(list): \($0)")
            }
        }
        for name in ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square"] {
            XCTAssert(catalog.knownNames.contains(name), name)
        }
    }

    /// On a model trained inside the test, each attack lowers the accuracy; run as AutoAttack
    /// runs them (each on the rows still robust), the four are at least as strong as the
    /// strongest alone, and exactly as strong as all four per example.
    func testLowerTheAccuracyOfATrainedModel() throws {
        let (model, x, y) = try trainedModelAndImages(32)
        let clean = try correct(model, x, y)
        let cleanCount = clean.filter { $0 }.count
        XCTAssertGreaterThan(cleanCount, 28, "the model should learn the easy task")
        let budget = try EpsilonMap.constant(0.3, shape: x.shape)
        let attacks: [Attack] = [APGD(iterations: 10), APGDTargeted(targets: 3, iterations: 8),
                                 FABTargeted(targets: 3, iterations: 10), Square(queries: 100)]
        var alone: [[Bool]] = []
        for attack in attacks {
            let adv = try runAttack(attack, model, images: x, labels: y, budget: budget)
            let robust = try correct(model, adv, y)
            let count = robust.filter { $0 }.count
            XCTAssertLessThan(count, cleanCount / 2, "\(attack.name): clean \(cleanCount), robust \(count)")
            alone.append(robust)
        }
        var robust = clean
        for attack in attacks {
            let rows = robust.indices.filter { robust[$0] }
            if rows.isEmpty { break }
            let adv = try runAttack(attack, model, images: x.gatherRows(rows), labels: rows.map { y[$0] },
                                    budget: budget.gatherRows(rows), indices: rows)
            for (j, ok) in try correct(model, adv, rows.map { y[$0] }).enumerated() where !ok { robust[rows[j]] = false }
        }
        let sequence = robust.filter { $0 }.count
        let strongest = alone.map { $0.filter { $0 }.count }.min() ?? 0
        XCTAssertLessThanOrEqual(sequence, strongest)
        let perExample = (0..<y.count).filter { i in clean[i] && alone.allSatisfy { $0[i] } }.count
        XCTAssertEqual(sequence, perExample, "the sequence should keep exactly the rows no attack breaks")
    }
}
