import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN

/// A transfer attack's examples, replayed on another model: row i of `examples` is the example
/// made for dataset index i. As a stage of an evaluation it goes through the same
/// re-verification, results file and resume as any attack.
public struct TransferredExamples: Attack {
    /// [N, H, W, C], one row per point of the evaluated set.
    public let examples: Tensor

    public init(examples: Tensor) { self.examples = examples }

    public var name: String { "transfer" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        let n = examples.shape.first ?? 0
        guard batch.indices.allSatisfy({ (0..<n).contains($0) }) else {
            throw AttackError("the transferred examples cover points 0..<\(n), the batch asks for \(batch.indices.max() ?? 0)")
        }
        let rows = examples.gatherRows(batch.indices)
        guard rows.shape == batch.images.shape else {
            throw AttackError("the transferred examples have shape \(rows.shape), the batch \(batch.images.shape)")
        }
        return rows
    }
}

public enum Transfer {
    /// Runs `runner`'s evaluation on its model and returns, per point, its worst case: the first
    /// verified adversarial example, or the clean image where none was found (what
    /// `--save-adversarial` writes), with the evaluation's summary. The examples pass through a
    /// temporary `.npy` that is removed afterwards.
    public static func worstCases(model: ImageClassifier, dataset: ImageDataset, stages: [AttackCatalog.Stage],
                                  header: EvaluationHeader, batchSize: Int, seed: UInt64,
                                  budget: @escaping (Tensor) throws -> EpsilonMap,
                                  log: ((String) -> Void)?) throws -> (examples: Tensor, summary: EvaluationSummary) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("part-transfer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("source.npy")
        let options = EvaluationOptions(batchSize: batchSize, seed: seed, adversarialFile: file)
        let runner = try EvaluationRunner(model: model, dataset: dataset, stages: stages, header: header, options: options,
                                          budget: budget)
        runner.log = log
        let summary = try runner.run()
        return (try NPYFile.read(file), summary)
    }
}
