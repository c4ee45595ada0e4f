import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN
import PARTTestSupport
import PARTTraining
import XCTest

/// A SmallCNN trained (clean) to tell which quadrant of a 20x20 image is bright (labels 0-3 of
/// 10 classes, as an MNIST-format file holds), once per test process: robust to small budgets,
/// breakable by larger ones.
enum Quadrants {
    // Safe: XCTest runs the tests of a process one after another on one thread, the only one
    // that touches this cache.
    nonisolated(unsafe) static var cached: (ImageClassifier, ImageDataset)?

    static func dataset(count: Int) throws -> ImageDataset { try QuadrantImages.dataset(count: count, classes: 10) }

    static func model() throws -> (ImageClassifier, ImageDataset) {
        if let cached { return cached }
        let data = try dataset(count: 256)
        let model = try QuadrantImages.trainedSmallCNN(on: data, learningRate: 0.02, epochs: 10, batchSize: 32)
        cached = (model, data)
        return (model, data)
    }
}

/// An evaluation of the quadrant model on its first `count` images.
struct Setup {
    var list = "natural,fgsm,pgd:steps=4,cw:steps=4"
    var count = 32
    /// The points, when they are not the first `count` (a subset as `--balanced` makes).
    var subset: [Int]?
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
        let test = try subset.map { try data.subset($0) } ?? data.prefix(count)
        let stages = try self.stages()
        let header = EvaluationHeader(checkpoint: "quadrants", checkpointSHA256: "test", architecture: model.architecture,
                                      normalize: nil, dataset: test.name, split: "test", count: test.count,
                                      attacks: stages.map(\.description), columns: stages.map(\.name), independent: independent,
                                      epsilon: epsilon, alpha: epsilon / 4, seed: seed, precision: "fp32", batchSize: batchSize,
                                      splitIndices: test.splitIndices)
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

