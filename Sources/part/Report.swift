import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTNN
import PARTReport
import PARTTraining

/// What `part train` writes besides checkpoints and its log: TensorBoard scalars and the report.
struct TrainReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Write TensorBoard event files here (e.g. <out>/tb): every epoch's figures, and the "
                               + "training loss every --tensorboard-every batches.", valueName: "dir"))
    var tensorboard: String?

    @Option(help: ArgumentHelp("Batches between two training-loss points in TensorBoard.", valueName: "n"))
    var tensorboardEvery: Int = 20

    @Flag(help: "Write <out>/report.html at the end of the run (as part report <out> does).")
    var report = false

    func validate() throws {
        guard tensorboardEvery >= 1 else { throw ValidationError("--tensorboard-every must be at least 1") }
    }
}

/// The outputs of `TrainReportOptions` during a run. Logging must never cost a run: when an
/// event file cannot be written, one line says so and training goes on without it.
final class TrainOutputs {
    let options: TrainReportOptions
    let runDirectory: URL
    let log: (String) -> Void
    private var scalars: TrainingScalars?

    init(_ options: TrainReportOptions, runDirectory: URL, log: @escaping (String) -> Void) throws {
        self.options = options
        self.runDirectory = runDirectory
        self.log = log
        if let directory = options.tensorboard {
            // A directory that cannot be made is a mistake in the command: say so before training.
            scalars = try TrainingScalars(directory: URL(fileURLWithPath: directory), every: options.tensorboardEvery)
        }
    }

    private func attempt(_ body: (TrainingScalars) throws -> Void) {
        guard let scalars else { return }
        do {
            try body(scalars)
        } catch {
            log("part train: warning: TensorBoard logging stopped: \(error)")
            self.scalars = nil
        }
    }

    /// For `Trainer.batchLoss`.
    var batchLoss: (Int, Int, Int, Double) -> Void {
        { [weak self] epoch, batch, batches, loss in
            self?.attempt { try $0.batch(epoch: epoch, batch: batch, batches: batches, loss: loss) }
        }
    }

    func epoch(_ report: EpochReport) {
        attempt { try $0.epoch(report) }
    }
}
