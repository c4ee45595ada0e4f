import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN
import PARTTestSupport
import PARTTraining
import XCTest

/// A committed fixture of Tests/Fixtures (written by scripts/make_attack_golden.py).
func attackFixture(_ name: String) throws -> SafetensorsFile {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(name)
    return try SafetensorsFile.read(from: url)
}

extension SafetensorsFile {
    /// The tensor `key`, or a test failure naming it.
    func required(_ key: String, file: StaticString = #filePath, line: UInt = #line) throws -> Tensor {
        guard let t = tensors[key] else {
            XCTFail("fixture has no tensor \(key)", file: file, line: line)
            throw AttackError("missing fixture tensor \(key)")
        }
        return t
    }

    /// An integer tensor (stored as int64) as Int32 values.
    func integers(_ key: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Int32] {
        try required(key, file: file, line: line).scalars.map { Int32($0) }
    }
}

/// Fails unless max |a - e| <= absolute + relative * max |e|.
func assertValuesClose(_ actual: [Float], _ expected: [Float], absolute: Float = 1e-6, relative: Float = 1e-5,
                       _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    let scale = expected.map(abs).max() ?? 0
    let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
    XCTAssert(worst <= absolute + relative * scale, "\(what): worst difference \(worst) (scale \(scale))",
              file: file, line: line)
}

/// Uniform [0, 1) from an integer hash of (element i, parameter t): the formula of
/// scripts/make_golden.py, exact in Swift and Python.
func formulaUniform(_ i: Int, _ t: Int) -> Double {
    var h = (UInt64(i) &* 2_654_435_761 &+ UInt64(t + 1) &* 97_531) & 0xFFFF_FFFF
    h ^= h >> 16
    h = (h &* 73_244_475) & 0xFFFF_FFFF
    h ^= h >> 16
    return Double(h) / 4_294_967_296
}

/// Sets every parameter of `model` by that formula (t in state_dict order, element i row-major).
func setFormulaParameters(_ model: ImageClassifier) {
    for (t, (name, p)) in model.parameters.enumerated() {
        let shape = p.value.shape
        let fanIn = shape.count >= 2 ? p.value.count / shape[0] : 1
        let values = (0..<p.value.count).map { i -> Float in
            let s = 2 * formulaUniform(i, t) - 1
            if shape.count >= 2 { return Float(s / Double(fanIn).squareRoot()) }
            return Float(name.hasSuffix("weight") ? 1 + 0.1 * s : 0.1 * s)
        }
        p.assign(Tensor(shape: shape, values: values))
    }
}

/// Random images, maps and small trained models for the attack tests.
struct AttackTestData {
    var rng: RNG

    init(seed: UInt64) { rng = RNG(seed: seed) }

    mutating func images(_ n: Int, side: Int = 16, channels: Int = 1) -> Tensor {
        Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
    }

    /// Per-entry budgets in [0, `scale`) with about a fifth of them 0.
    mutating func varyingMap(_ shape: [Int], scale: Float = 0.2) throws -> EpsilonMap {
        try EpsilonMap(Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in
            let u = rng.uniform()
            return u < 0.2 ? 0 : u * scale
        }))
    }

    mutating func smallCNN(classes: Int = 10, channels: Int = 1) throws -> ImageClassifier {
        try ModelZoo.make("small-cnn", numClasses: classes, inChannels: channels, imageSize: 16, rng: &rng)
    }
}

/// A SmallCNN trained on an easy 4-class task: noisy 16x16 images whose bright quadrant is the
/// class. Trained once per test process (a few seconds); attacks never change it.
enum QuadrantModel {
    struct Trained {
        let model: ImageClassifier
        /// 64 held-out images and their labels.
        let images: Tensor
        let labels: [Int32]
    }

    // Safe: made once (a static's lazy initialisation is atomic) and only read afterwards;
    // XCTest runs the tests of a process one after another on one thread.
    nonisolated(unsafe) static let shared: Result<Trained, Error> = Result { try train() }

    static func get() throws -> Trained { try shared.get() }

    private static func train() throws -> Trained {
        var rng = RNG(seed: 99)
        let side = 16, n = 320
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<n {
            let label = Int32(i % 4)
            for r in 0..<side {
                for c in 0..<side {
                    let quadrant = (r < side / 2 ? 0 : 2) + (c < side / 2 ? 0 : 1)
                    let base = quadrant == Int(label) ? 190 : 10
                    pixels.append(UInt8(min(255, base + Int(rng.uniform() * 60))))
                }
            }
            labels.append(label)
        }
        let data = try ImageDataset(name: "quadrants", images: pixels, labels: labels, height: side, width: side,
                                    channels: 1, classes: 4)
        let model = try trainSmallCNN(on: data, examples: 256, learningRate: 0.05, epochs: 6, batchSize: 32, rng: &rng)
        let (x, y) = data.batch(Array(256..<n))
        return Trained(model: model, images: x, labels: y)
    }
}

/// Runs `attack` on images whose dataset indices are 0..<N (or `indices`).
func runAttack(_ attack: Attack, _ model: ImageClassifier, images: Tensor, labels: [Int32], budget: EpsilonMap,
               indices: [Int]? = nil, seed: UInt64 = 5) throws -> Tensor {
    try attack.perturb(model, AttackBatch(images: images, labels: labels, indices: indices ?? Array(0..<labels.count),
                                          budget: budget), seed: seed)
}

/// Whether the model classifies each row correctly.
func correct(_ model: ImageClassifier, _ images: Tensor, _ labels: [Int32]) throws -> [Bool] {
    zip(try model.forward(images, mode: .eval).argmaxRows(), labels).map { $0 == $1 }
}

/// The four attacks of AutoAttack standard with reduced iteration counts (same code paths).
func reducedAutoAttack(iterations: Int = 10, targets: Int = 3, queries: Int = 60) -> [Attack] {
    [APGD(loss: .ce, iterations: iterations), APGDTargeted(targets: targets, iterations: iterations),
     FABTargeted(targets: targets, iterations: iterations), Square(queries: queries)]
}
