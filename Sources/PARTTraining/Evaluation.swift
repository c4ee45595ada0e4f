import PARTAttacks
import PARTData
import PARTEngine
import PARTNN

/// Clean and robust accuracy of a model on a dataset.
public struct EvaluationResult: Sendable {
    public let count: Int
    public let cleanCorrect: Int
    public let robustCorrect: Int?
    /// Images whose clean logits were not finite (a checkpoint of such a model is not kept).
    public var nonFinite = 0
    public var cleanAccuracy: Double { count == 0 ? 0 : Double(cleanCorrect) / Double(count) }
    public var robustAccuracy: Double? { robustCorrect.map { count == 0 ? 0 : Double($0) / Double(count) } }
}

public enum Evaluation {
    /// Clean accuracy and, when `attack` is given, accuracy on its adversarial examples under a
    /// constant `epsilon`, over `dataset` in batches. An example counts as robust when the model
    /// classifies its adversarial version correctly (re-evaluated on the returned examples).
    /// Random starts are keyed by (seed, index in the split): the result does not depend on
    /// `batchSize`, nor on which subset of the split `dataset` is.
    public static func run(_ model: ImageClassifier, on dataset: ImageDataset, attack: Attack?, epsilon: Float,
                           batchSize: Int, seed: UInt64, progress: ((Int, Int) -> Void)? = nil) throws -> EvaluationResult {
        var clean = 0, robust = 0, nonFinite = 0
        var start = 0
        while start < dataset.count {
            let indices = Array(start..<min(start + batchSize, dataset.count))
            let (x, y) = dataset.batch(indices)
            let logits = try model.forward(x, mode: .eval)
            nonFinite += logits.nonFiniteRows()
            let predictions = logits.argmaxRows()
            clean += zip(predictions, y).filter { $0 == $1 }.count
            if let attack {
                let budget = try EpsilonMap.constant(epsilon, shape: x.shape)
                let batch = AttackBatch(images: x, labels: y, indices: dataset.splitIndex(of: indices), budget: budget)
                let adversarial = try attack.perturb(model, batch, seed: seed)
                robust += zip(try model.forward(adversarial, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
            }
            start += indices.count
            progress?(start, dataset.count)
        }
        return EvaluationResult(count: dataset.count, cleanCorrect: clean, robustCorrect: attack == nil ? nil : robust,
                                nonFinite: nonFinite)
    }
}

extension Tensor {
    /// Rows of a [n, k] tensor holding a value that is not finite.
    func nonFiniteRows() -> Int {
        guard firstNonFinite() != nil, shape.count >= 1, shape[0] > 0 else { return 0 }
        let k = count / shape[0]
        return withUnsafeBufferPointer { p in
            (0..<shape[0]).filter { r in (0..<k).contains { !p[r * k + $0].isFinite } }.count
        }
    }
}
