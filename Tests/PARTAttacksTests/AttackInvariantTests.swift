import PARTAttacks
import PARTData
import PARTEngine
import PARTNN
import PARTTestSupport
import PARTTraining
import XCTest

/// The invariants every attack of the catalog keeps (docs/method.md#4-attacks, #9-pitfalls-the-tests-guard-against), each attack built
/// with its cheap settings: inside the budget and [0, 1], zero budget returns the input bit for
/// bit, the model untouched, the same per-example result in batches of 1, 7 and 256 with random
/// starts on; and on a trained model, each attack lowers the accuracy.
final class AttackInvariantTests: XCTestCase {
    var rng = RNG(seed: 23)

    /// Every attack of the catalog with its quick settings, by name.
    func attacks(epsilon: Float = 0.1, alpha: Float = 0.03) throws -> [(String, Attack)] {
        let catalog = AttackCatalog.standard
        return try catalog.entries.filter { $0.name != "natural" }.map { entry in
            let item = entry.quick.isEmpty ? entry.name : "\(entry.name):\(entry.quick.replacingOccurrences(of: ",", with: ":"))"
            let stages = try catalog.stages(item, defaults: .init(epsilon: epsilon, alpha: alpha))
            return (entry.name, stages[1].attack)
        }
    }

    func images(_ n: Int, side: Int = 16, channels: Int = 1) -> Tensor {
        Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
    }

    /// Budgets varying per entry, some zero; constant for attacks that need it.
    func budget(for attack: Attack, shape: [Int], epsilon: Float = 0.1) throws -> EpsilonMap {
        if let l2 = attack as? L2Attack, l2.norm == .l2 { return try .constant(epsilon, shape: shape) }
        return try EpsilonMap(Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in
            let u = rng.uniform()
            return u < 0.2 ? 0 : u * epsilon
        }))
    }

    func smallCNN(classes: Int = 10) throws -> ImageClassifier {
        try ModelZoo.make("small-cnn", numClasses: classes, inChannels: 1, imageSize: 16, rng: &rng)
    }

    func testEveryAttackStaysInsideItsBudgetAndTheUnitBox() throws {
        let model = try smallCNN()
        for (name, attack) in try attacks() {
            let x = images(5)
            let map = try budget(for: attack, shape: x.shape)
            let batch = AttackBatch(images: x, labels: [0, 1, 2, 3, 4], indices: [10, 11, 12, 13, 14], budget: map)
            let adv = try attack.perturb(model, batch, seed: 3)
            XCTAssertEqual(adv.shape, x.shape, name)
            XCTAssert(adv.scalars.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(name) leaves [0, 1]")
            if let l2 = attack as? L2Attack, let radius = try l2.radius(for: map) {
                XCTAssert(Tensor.difference(adv, x).rowNorms().allSatisfy { $0 <= radius * (1 + 1e-5) }, "\(name) leaves the L2 ball")
            } else {
                for i in 0..<x.count {
                    XCTAssertLessThanOrEqual(abs(adv[flat: i] - x[flat: i]), map.values[flat: i] * (1 + 1e-6) + 1e-7,
                                             "\(name): entry \(i) leaves the map")
                }
            }
            // FAB has no loss to keep a best point of: a row it does not fool (this random-init
            // model is too flat for it to reach a boundary) keeps its clean image.
            if !(attack is FABTargeted || attack is FABUntargeted) { XCTAssertNotEqual(adv.scalars, x.scalars, "\(name) should move the images") }
        }
    }

    func testZeroBudgetReturnsTheInputBitForBit() throws {
        let model = try smallCNN()
        for (name, attack) in try attacks() {
            let x = images(3)
            let batch = AttackBatch(images: x, labels: [1, 2, 3], indices: [0, 1, 2], budget: try .constant(0, shape: x.shape))
            let adv = try attack.perturb(model, batch, seed: 1)
            XCTAssertEqual(adv.scalars.map(\.bitPattern), x.scalars.map(\.bitPattern), name)
        }
    }

    func testLeavesTheModelUntouched() throws {
        let model = try TinyBatchNormNet(rng: &rng)
        let before = model.state.map { $0.1.tensor.scalars }
        for (name, attack) in try attacks() {
            let x = images(1, side: 8, channels: 3)
            let batch = AttackBatch(images: x, labels: [3], indices: [0], budget: try budget(for: attack, shape: x.shape))
            _ = try attack.perturb(model, batch, seed: 2)
            XCTAssertEqual(model.state.map { $0.1.tensor.scalars }, before, "\(name) changed weights or batch-norm statistics")
            for (p, parameter) in model.parameters { XCTAssertEqual(parameter.gradient.maxAbs(), 0, "\(name) touched \(p)'s gradient") }
        }
    }

    /// With random starts on, a row's result depends on its image, label, dataset index and the
    /// seed only: the same in batches of 1, 7 and 256.
    func testPerExampleResultDoesNotDependOnTheBatch() throws {
        let model = try smallCNN()
        let n = 256
        let x = images(n)
        let labels = (0..<n).map { Int32($0 % 10) }
        let indices = (0..<n).map { 1000 + 7 * $0 }
        for (name, attack) in try attacks() {
            let map = try budget(for: attack, shape: x.shape)
            let all = try attack.perturb(model, AttackBatch(images: x, labels: labels, indices: indices, budget: map), seed: 9)
            for size in [1, 7] {
                for start in stride(from: 0, to: size == 1 ? 3 : 7, by: size) {
                    let rows = Array(start..<(start + size))
                    let sub = AttackBatch(images: x, labels: labels, indices: indices, budget: map).subset(rows)
                    let out = try attack.perturb(model, sub, seed: 9)
                    for (r, i) in rows.enumerated() {
                        let mine = all.slice(i..<(i + 1)).scalars, theirs = out.slice(r..<(r + 1)).scalars
                        let differ = zip(mine, theirs).filter { abs($0 - $1) > 1e-5 }.count
                        // A gradient entry within rounding of zero may flip its sign; allow a handful.
                        XCTAssertLessThan(differ, 4, "\(name), batch of \(size): row \(i) has \(differ) entries that differ")
                    }
                }
            }
        }
    }

    func testPGDL2RefusesAVaryingMap() throws {
        let model = try smallCNN()
        let x = images(2)
        let map = try EpsilonMap(Tensor(shape: x.shape, values: (0..<x.count).map { Float($0 % 3) * 0.05 }))
        XCTAssertThrowsError(try PGDL2(steps: 1, stepSize: 0.1).perturb(model, AttackBatch(images: x, labels: [0, 1],
                                                                                           indices: [0, 1], budget: map), seed: 0)) {
            XCTAssert("\($0)".contains("varying epsilon map"), "\($0)")
        }
    }

    func testMMANeverTargetsTheTrueLabelAndAdaptsToFewClasses() throws {
        for classes in [2, 3, 10] {
            let logits = Tensor(shape: [40, classes], values: (0..<(40 * classes)).map { _ in rng.uniform() * 4 - 2 })
            let labels = (0..<40).map { Int32($0 % classes) }
            let targets = try MMA(stepSize: 0.01).targets(logits: logits, labels: labels)
            for (row, label) in zip(targets, labels) {
                XCTAssertEqual(row.count, min(3, classes - 1))
                XCTAssertFalse(row.contains(label), "\(classes) classes: a target is the true label")
                XCTAssertEqual(Set(row).count, row.count)
            }
        }
        let three = try ModelZoo.make("small-cnn", numClasses: 3, inChannels: 1, imageSize: 16, rng: &rng)
        XCTAssertEqual(try MMA(stepSize: 0.01).notes(for: three).count, 1, "the substitution is logged")
        XCTAssertEqual(try MMA(stepSize: 0.01).notes(for: try smallCNN()).count, 0)
    }

    /// On a model trained to tell four quadrants apart, every attack lowers the accuracy.
    func testEveryAttackLowersTheAccuracyOfATrainedModel() throws {
        let (model, data) = try TrainedQuadrants.model()
        let (x, y) = data.batch(Array(0..<64))
        let clean = zip(try model.forward(x, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
        XCTAssertGreaterThan(clean, 56, "the model should learn the easy task")
        let catalog = AttackCatalog.standard
        let eps: Float = 0.25
        for item in ["fgsm", "pgd:steps=5", "cw:steps=5", "mma:steps=5", "pgd-l2:steps=5:eps=3"] {
            let attack = try catalog.stages(item, defaults: .init(epsilon: eps, alpha: eps / 4))[1].attack
            let batch = AttackBatch(images: x, labels: y, indices: Array(0..<64), budget: try .constant(eps, shape: x.shape))
            let adv = try attack.perturb(model, batch, seed: 4)
            let robust = zip(try model.forward(adv, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
            XCTAssertLessThan(robust, clean, "\(item) should lower the accuracy (clean \(clean), robust \(robust))")
        }
    }
}

/// conv-batchnorm-relu, global pooling, linear: the smallest model with batch-norm statistics
/// that an attack must leave alone.
final class TinyBatchNormNet: ImageClassifier {
    let architecture = "tiny-bn"
    let numClasses = 10, inputHeight = 8, inputWidth = 8, inputChannels = 3
    let body: Sequential
    let pool = GlobalAvgPool()
    let linear: Linear

    init(rng: inout RNG) throws {
        body = Sequential([Conv2d(3, 8, kernel: 3, padding: 1, rng: &rng), BatchNorm2d(8), ReLULayer()],
                          names: ["conv", "bn", "relu"])
        linear = Linear(8, 10, rng: &rng)
        // Statistics that differ from the initial ones, so that a change would show.
        for (_, buffer) in body.state.compactMap({ e -> (String, Buffer)? in
            if case .buffer(let b) = e.1 { return (e.0, b) } else { return nil } }) where !buffer.isInteger {
            buffer.value = Tensor(shape: buffer.value.shape, values: (0..<buffer.value.count).map { 0.5 + Float($0) * 0.1 })
        }
    }

    func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor { try body.forward(x, mode: mode, tape: tape) }
    func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try linear.forward(try pool.forward(a, mode: mode, tape: tape), mode: mode, tape: tape)
    }
    var state: [(String, StateEntry)] { prefixed("body", body.state) + prefixed("linear", linear.state) }
}

/// A SmallCNN trained (clean) to tell which quadrant of a 20x20 image is bright, trained once
/// per test process.
enum TrainedQuadrants {
    // Safe: XCTest runs the tests of a process one after another on one thread, the only one
    // that touches this cache.
    nonisolated(unsafe) static var cached: (ImageClassifier, ImageDataset)?

    static func model() throws -> (ImageClassifier, ImageDataset) {
        if let cached { return cached }
        let data = try QuadrantImages.dataset(count: 256, classes: 4)
        let model = try QuadrantImages.trainedSmallCNN(on: data, learningRate: 0.05, epochs: 8, batchSize: 32)
        cached = (model, data)
        return (model, data)
    }
}
