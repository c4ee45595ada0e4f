import Foundation
import PARTTraining

/// The scalars of a training run in TensorBoard: every figure of an epoch's report under
/// `epoch/...` at step = epoch, and the training loss under `batch/loss` every `every` batches
/// at step = batches since the start of the run.
public final class TrainingScalars {
    public let writer: TensorBoardWriter
    public let every: Int

    /// Tag and value of each figure of an epoch (the fields of log.jsonl they come from:
    /// loss, trainAccuracy, cleanAccuracy, robustAccuracy, fullEpsilonFraction, imagesPerSecond,
    /// learningRate, seconds).
    public static func epochScalars(_ r: EpochReport) -> [(String, Double)] {
        [
            ("epoch/loss", r.loss),
            ("epoch/train_adversarial_accuracy", r.trainAccuracy),
            ("epoch/clean_accuracy", r.cleanAccuracy),
            ("epoch/pgd_accuracy", r.robustAccuracy),
            ("epoch/full_eps_share", r.fullEpsilonFraction),
            ("epoch/images_per_second", r.imagesPerSecond),
            ("epoch/learning_rate", Double(r.learningRate)),
            ("epoch/seconds", r.seconds),
        ]
    }

    public init(directory: URL, every: Int) throws {
        writer = try TensorBoardWriter(directory: directory)
        self.every = max(1, every)
    }

    public func epoch(_ report: EpochReport) throws {
        let now = Date().timeIntervalSince1970
        for (tag, value) in Self.epochScalars(report) { try writer.add(tag, value, step: report.epoch, wallTime: now) }
    }

    /// Logs the loss of batch `batch` (1-based) of `batches` in `epoch` when it falls on the interval.
    public func batch(epoch: Int, batch: Int, batches: Int, loss: Double) throws {
        let step = (epoch - 1) * batches + batch
        if step % every == 0 { try writer.add("batch/loss", loss, step: step) }
    }
}
