import PARTAttacks
import PARTData
import PARTEngine
import PARTNN
import PARTTestSupport
import PARTTraining
import XCTest

/// PGD's invariants under an epsilon map (docs/method.md#1-threat-model-and-epsilon-maps, #4-attacks, #9-pitfalls-the-tests-guard-against).
final class PGDTests: XCTestCase {
    var rng = RNG(seed: 11)

    func randomImages(_ n: Int, side: Int = 16, channels: Int = 1) -> Tensor {
        Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
    }

    /// A map whose budgets vary per entry, with some zeros.
    func randomMap(_ shape: [Int]) throws -> EpsilonMap {
        try EpsilonMap(Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in
            let u = rng.uniform()
            return u < 0.2 ? 0 : u * 0.2
        }))
    }

    /// Runs `attack` on images whose dataset indices are 0..<N (or `indices`).
    func perturb(_ attack: Attack, _ model: ImageClassifier, images: Tensor, labels: [Int32], budget: EpsilonMap,
                 indices: [Int]? = nil, seed: UInt64 = 5) throws -> Tensor {
        try attack.perturb(model, AttackBatch(images: images, labels: labels, indices: indices ?? Array(0..<labels.count),
                                              budget: budget), seed: seed)
    }

    func smallCNN() throws -> ImageClassifier {
        try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
    }

    func testStaysInsideTheMapAndTheUnitBox() throws {
        let model = try smallCNN()
        let x = randomImages(6)
        let map = try randomMap(x.shape)
        let labels: [Int32] = [0, 1, 2, 3, 4, 5]
        let adv = try perturb(PGD(steps: 7, stepSize: 0.05), model, images: x, labels: labels, budget: map)
        var moved = 0
        for i in 0..<x.count {
            let d = abs(adv[flat: i] - x[flat: i])
            XCTAssertLessThanOrEqual(d, map.values[flat: i] * (1 + 1e-6) + 1e-7, "entry \(i) leaves the map")
            XCTAssert(adv[flat: i] >= 0 && adv[flat: i] <= 1, "entry \(i) leaves [0, 1]")
            if d > 0 { moved += 1 }
        }
        XCTAssertGreaterThan(moved, x.count / 2, "the attack should move most entries with a budget")
    }

    func testZeroBudgetReturnsTheInputBitForBit() throws {
        let model = try smallCNN()
        let x = randomImages(3)
        let adv = try perturb(PGD(steps: 5, stepSize: 0.1), model, images: x, labels: [1, 2, 3],
                                                           budget: try .constant(0, shape: x.shape))
        XCTAssertEqual(adv.scalars.map(\.bitPattern), x.scalars.map(\.bitPattern))
    }

    func testRandomStartIsAddedAndInsideTheMap() throws {
        let model = try smallCNN()
        let x = randomImages(2)
        let map = try EpsilonMap.constant(0.1, shape: x.shape)
        let start = try perturb(PGD(steps: 0, stepSize: 0.1), model, images: x, labels: [0, 1], budget: map)
        let diffs = (0..<x.count).map { abs(start[flat: $0] - x[flat: $0]) }
        XCTAssertGreaterThan(diffs.max()!, 0.05)
        XCTAssertLessThanOrEqual(diffs.max()!, 0.1 + 1e-6)
        XCTAssert(start.scalars.allSatisfy { $0 >= 0 && $0 <= 1 })
    }

    func testLeavesTheModelUntouched() throws {
        let model = try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 16, rng: &rng)
        let x = randomImages(2, channels: 3)
        let before = model.state.map { $0.1.tensor.scalars }
        _ = try perturb(PGD(steps: 2, stepSize: 0.01), model, images: x, labels: [3, 4],
                                                      budget: try .constant(0.03, shape: x.shape))
        XCTAssertEqual(model.state.map { $0.1.tensor.scalars }, before, "weights and batch-norm statistics must not change")
        for (name, p) in model.parameters { XCTAssertEqual(p.gradient.maxAbs(), 0, "\(name) gradient touched") }
    }

    /// With random starts on, a row's result depends on its dataset index and the seed only:
    /// the same in batches of 1, 7 and all 12, and in a shuffled batch.
    func testPerExampleResultDoesNotDependOnTheBatch() throws {
        let model = try smallCNN()
        let n = 12
        let x = randomImages(n)
        let labels = (0..<n).map { Int32($0 % 10) }
        let map = try randomMap(x.shape)
        let indices = (0..<n).map { 100 + 3 * $0 }
        let pgd = PGD(steps: 4, stepSize: 0.03, randomStart: true)
        let together = try perturb(pgd, model, images: x, labels: labels, budget: map, indices: indices)
        func compare(_ rows: [Int], _ result: Tensor, _ what: String) {
            for (r, i) in rows.enumerated() {
                let mine = together.slice(i..<(i + 1)).scalars, theirs = result.slice(r..<(r + 1)).scalars
                let mismatches = zip(mine, theirs).filter { abs($0 - $1) > 1e-5 }.count
                // A gradient entry within rounding of zero may flip its sign; allow a handful.
                XCTAssertLessThan(mismatches, 3, "\(what): image \(i) has \(mismatches) entries that differ")
            }
        }
        for size in [1, 7] {
            for start in stride(from: 0, to: n, by: size) {
                let rows = Array(start..<min(start + size, n))
                let out = try perturb(pgd, model, images: x.gatherRows(rows), labels: rows.map { labels[$0] },
                                      budget: map.gatherRows(rows), indices: rows.map { indices[$0] })
                compare(rows, out, "batch size \(size)")
            }
        }
        let shuffled = [5, 0, 11, 3, 8, 1, 10, 2, 7, 4, 9, 6]
        let out = try perturb(pgd, model, images: x.gatherRows(shuffled), labels: shuffled.map { labels[$0] },
                              budget: map.gatherRows(shuffled), indices: shuffled.map { indices[$0] })
        compare(shuffled, out, "shuffled batch")
        // A different seed gives different starts.
        let other = try perturb(PGD(steps: 0, stepSize: 0.03), model, images: x, labels: labels, budget: map,
                                indices: indices, seed: 6)
        let first = try perturb(PGD(steps: 0, stepSize: 0.03), model, images: x, labels: labels, budget: map,
                                indices: indices)
        XCTAssertNotEqual(other.scalars, first.scalars)
    }

    func testRejectsImagesOutsideTheUnitBox() throws {
        let model = try smallCNN()
        var x = randomImages(1)
        x[flat: 3] = 1.5
        XCTAssertThrowsError(try perturb(PGD(steps: 1, stepSize: 0.1), model, images: x, labels: [0],
                                                                     budget: try .constant(0.1, shape: x.shape))) {
            XCTAssert("\($0)".contains("[0, 1]"))
        }
    }

    /// On a model trained to separate two easy classes, PGD raises the loss and lowers accuracy.
    func testLowersTheAccuracyOfATrainedModel() throws {
        // Class 0: bright left half; class 1: bright right half; noise everywhere.
        let n = 256, side = 16
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<n {
            let label = Int32(i % 2)
            for _ in 0..<side { for c in 0..<side {
                let bright = (c < side / 2) == (label == 0)
                pixels.append(UInt8(min(255, (bright ? 150 : 60) + Int(rng.uniform() * 60))))
            } }
            labels.append(label)
        }
        let data = try ImageDataset(name: "halves", images: pixels, labels: labels, height: side, width: side,
                                    channels: 1, classes: 2)
        let model = try trainSmallCNN(on: data, learningRate: 0.05, epochs: 4, batchSize: 32, rng: &rng)
        let (x, y) = data.batch(Array(0..<64))
        let clean = zip(try model.forward(x, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
        XCTAssertGreaterThan(clean, 60, "the model should learn the easy task")
        let budget = try EpsilonMap.constant(0.3, shape: x.shape)
        let adv = try perturb(PGD(steps: 10, stepSize: 0.05), model, images: x, labels: y, budget: budget)
        let robust = zip(try model.forward(adv, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
        XCTAssertLessThan(robust, clean / 2, "PGD should break most predictions (clean \(clean), robust \(robust))")
        let lossClean = CrossEntropy.forwardBackward(logits: try model.forward(x, mode: .eval), labels: y).loss
        let lossAdv = CrossEntropy.forwardBackward(logits: try model.forward(adv, mode: .eval), labels: y).loss
        XCTAssertGreaterThan(lossAdv, lossClean)
    }
}
