import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN

/// A transfer attack's examples, replayed on another model: row i of `examples` is the example
/// made for point i of the evaluated set, whose split index (the batch's key for it) is
/// `splitIndices[i]`. As a stage of an evaluation it goes through the same re-verification,
/// results file and resume as any attack.
public struct TransferredExamples: Attack {
    /// [N, H, W, C], one row per point of the evaluated set.
    public let examples: Tensor
    /// The row of each split index.
    private let rows: [Int: Int]

    /// `splitIndices`: the split index of each row (`ImageDataset.splitIndex(of:)` of the
    /// evaluated set); row i is index i when nil.
    public init(examples: Tensor, splitIndices: [Int]? = nil) {
        self.examples = examples
        let n = examples.shape.first ?? 0
        rows = Dictionary(uniqueKeysWithValues: (splitIndices ?? Array(0..<n)).prefix(n).enumerated().map { ($1, $0) })
    }

    public var name: String { "transfer" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        let wanted = batch.indices.map { rows[$0] }
        if let missing = zip(batch.indices, wanted).first(where: { $0.1 == nil }) {
            throw AttackError("the transferred examples hold no example for point \(missing.0) of the split")
        }
        let gathered = examples.gatherRows(wanted.map { $0! })
        guard gathered.shape == batch.images.shape else {
            throw AttackError("the transferred examples have shape \(gathered.shape), the batch \(batch.images.shape)")
        }
        return gathered
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
