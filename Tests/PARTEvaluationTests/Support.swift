import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN
import PARTTraining
import XCTest

/// A SmallCNN trained (clean) to tell which quadrant of a 20x20 image is bright (labels 0-3 of
/// 10 classes, as an MNIST-format file holds), once per test process: robust to small budgets,
/// breakable by larger ones.
enum Quadrants {
    // Safe: XCTest runs the tests of a process one after another on one thread, the only one
    // that touches this cache.
    nonisolated(unsafe) static var cached: (ImageClassifier, ImageDataset)?

    static func dataset(count: Int) throws -> ImageDataset {
        var rng = RNG(seed: 5)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<count {
            let label = i % 4
            for r in 0..<20 { for c in 0..<20 {
                let quadrant = (r < 10 ? 0 : 2) + (c < 10 ? 0 : 1)
                pixels.append(UInt8((quadrant == label ? 150 : 50) + Int(rng.uniform() * 60)))
            } }
            labels.append(Int32(label))
        }
        return try ImageDataset(name: "quadrants", images: pixels, labels: labels, height: 20, width: 20, channels: 1, classes: 10)
    }

    static func model() throws -> (ImageClassifier, ImageDataset) {
        if let cached { return cached }
        var rng = RNG(seed: 8)
        let data = try dataset(count: 256)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 20, rng: &rng)
        let sgd = SGD(parameters: model.parameters, learningRate: 0.02, momentum: 0.9)
        for _ in 0..<10 {
            for indices in BatchSampler(count: data.count, batchSize: 32, shuffle: true, rng: &rng) {
                let (x, y) = data.batch(indices)
                sgd.zeroGradients()
                let tape = Tape(parameterGradients: true, inputGradient: false)
                let (_, g) = CrossEntropy.forwardBackward(logits: try model.forward(x, mode: .train, tape: tape), labels: y)
                try tape.backward(g)
                sgd.step()
            }
        }
        cached = (model, data)
        return (model, data)
    }
}

/// An evaluation of the quadrant model on its first `count` images.
struct Setup {
    var list = "natural,fgsm,pgd:steps=4,cw:steps=4"
    var count = 32
    var epsilon: Float = 0.15
    var seed: UInt64 = 0
    var batchSize = 16
    var independent = false
    var results: URL?
    var adversarial: URL?
    /// Replaces the attack of the stage named so (same name and description).
    var replace: [String: Attack] = [:]

    func stages() throws -> [AttackCatalog.Stage] {
        try AttackCatalog.standard.stages(list, defaults: .init(epsilon: epsilon, alpha: epsilon / 4)).map { s in
            guard let attack = replace[s.name] else { return s }
            return AttackCatalog.Stage(name: s.name, description: s.description, attack: attack, cost: s.cost)
        }
    }

    func runner() throws -> EvaluationRunner {
        let (model, data) = try Quadrants.model()
        let test = data.prefix(count)
        let stages = try self.stages()
        let header = EvaluationHeader(checkpoint: "quadrants", checkpointSHA256: "test", architecture: model.architecture,
                                      normalize: nil, dataset: test.name, split: "test", count: test.count,
                                      attacks: stages.map(\.description), columns: stages.map(\.name), independent: independent,
                                      epsilon: epsilon, alpha: epsilon / 4, seed: seed, precision: "fp32", batchSize: batchSize)
        let eps = epsilon
        return try EvaluationRunner(model: model, dataset: test, stages: stages, header: header,
                                    options: EvaluationOptions(batchSize: batchSize, seed: seed, independent: independent,
                                                               resultsFile: results, adversarialFile: adversarial)) {
            try EpsilonMap.constant(eps, shape: $0.shape)
        }
    }

    func run() throws -> EvaluationSummary { try runner().run() }
}


/// Writes `data` as MNIST-format test files (t10k-images/labels-idx*-ubyte) into `dir`.
func writeIDX(_ data: ImageDataset, to dir: URL) throws {
    var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
    for d in [data.count, data.height, data.width] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
    labels += withUnsafeBytes(of: UInt32(data.count).bigEndian, Array.init)
    images += data.images
    labels += data.labels.map { UInt8($0) }
    try Data(images).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
    try Data(labels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
}

