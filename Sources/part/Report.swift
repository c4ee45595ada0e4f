import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN
import PARTReport
import PARTTraining

/// What `part train` writes besides checkpoints and its log: TensorBoard scalars and the report.
struct TrainReportOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Write TensorBoard event files here (e.g. <out>/tb): every epoch's figures, and the "
                               + "training loss every --tensorboard-every batches.", valueName: "dir"))
    var tensorboard: String?

    @Option(name: .customLong("tensorboard-every"), parsing: .unconditional,
            help: ArgumentHelp("Batches between two training-loss points in TensorBoard. (default: 20)", valueName: "n"))
    var givenTensorboardEvery: Int?

    var tensorboardEvery: Int { givenTensorboardEvery ?? 20 }

    @Flag(help: "Write <out>/report.html at the end of the run (as part report <out> does).")
    var report = false

    func validate() throws {
        if let givenTensorboardEvery, givenTensorboardEvery < 1 {
            throw ValidationError("--tensorboard-every must be at least 1")
        }
    }
}

/// The outputs of `TrainReportOptions` during a run (as the run's options record them). Logging
/// must never cost a run: when an event file cannot be written, one line says so and training
/// goes on without it.
final class TrainOutputs {
    let options: RunOptions
    let runDirectory: URL
    let log: (String) -> Void
    private var scalars: TrainingScalars?

    init(_ options: RunOptions, runDirectory: URL, log: @escaping (String) -> Void) throws {
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

extension TrainOutputs {
    /// Writes <run>/report.html when --report was given, with a CAM grid of held-out images
    /// (one class at a time) under the trained model.
    /// The grid uses the trainer's CAM budget (the default one when the run had none).
    func finish(trainer: Trainer, heldOut: ImageDataset) throws {
        guard options.report else { return }
        let config = trainer.config
        let camBudget = (trainer.budgetProvider(epoch: config.epochs) as? CAMBudgetProvider)?.cam
            ?? CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let model = trainer.model, epsilon = config.epsilon, epsilonLow = config.epsilonLow
        var report = try RunReport.read(runDirectory: runDirectory)
        report.environment = Environment.describe(toolVersion: PART.configuration.version)
        do {
            report.camGrid = try ReportGrid.png(model: model, test: heldOut, budget: camBudget, epsilon: epsilon,
                                                epsilonLow: epsilonLow, rows: ReportGrid.rows,
                                                images: "held-out images of the per-epoch check (numbered by their place "
                                                    + "among its \(heldOut.count))")
        } catch {
            report.notes.append("No CAM grid: \(error)")
        }
        let url = runDirectory.appendingPathComponent("report.html")
        try report.write(to: url)
        log("part train: report: \(url.path)")
    }
}

/// The CAM grid of a report: test images taken one class at a time (`interleavedIndices`, so
/// that a test split sorted by class, as an image folder's is, does not show one class only),
/// drawn as `part cam` draws them.
enum ReportGrid {
    static let rows = 8

    /// `images` names the images in the caption; by default the test split, whose indices number
    /// the rows.
    static func png(model: ImageClassifier, test: ImageDataset, budget: CAMBudget, epsilon: Float, epsilonLow: Float,
                    rows: Int, images imagesName: String? = nil) throws -> (png: Data, caption: String) {
        let indices = test.interleavedIndices(rows)
        let subset = try test.subset(indices)
        let (images, labels) = subset.batch(Array(0..<subset.count))
        let panels = try CAMPanels.compute(model, images: images, labels: labels, indices: indices,
                                           budget: budget, epsilon: epsilon, epsilonLow: epsilonLow)
        let title = "\(panels.method), \(panels.rule) rule, eps \(CAMGrid.number(epsilon)), eps-low \(CAMGrid.number(epsilonLow))"
        let grid = CAMGrid(title: title, classNames: test.classNames, colormap: JetColormap.table)
        let caption = "\(subset.count) \(imagesName ?? "\(test.name) test images (numbered by their index in the split)") "
            + "taken one class at a time (the first of each class, then "
            + "the second, ...): the image, its CAM (\(panels.method), predicted "
            + "class) over it, the upsampled and squared map, and the epsilon map of the \(panels.rule) rule (white: eps "
            + "\(CAMGrid.number(epsilon)), dark: eps-low \(CAMGrid.number(epsilonLow)))."
        return (try grid.render(panels).pngData(), caption)
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a run directory's report: one self-contained HTML page.",
        discussion: """
        The page holds the training curves of <run>/log.jsonl (loss, training adversarial accuracy, \
        clean and PGD accuracy of the held-out check, share of entries at full eps, images/s) as \
        SVG, the tables of <run>/eval/*.jsonl (part eval --save-results) and of the --results \
        files, a CAM grid of test images taken one class at a time (of the data \
        <run>/config.json records, unless --dataset is given; --data names another folder of it) \
        under <run>/last.safetensors, the configuration (<run>/config.json, else the one saved in \
        <run>/last.state.safetensors) and the \
        environment. It needs no network and runs no script: open it in any browser, or mail it.
        """)

    @Argument(help: ArgumentHelp("The run directory (written by part train).", valueName: "run-dir"))
    var runDirectory: String

    @Option(help: ArgumentHelp("The HTML file (default: <run-dir>/report.html).", valueName: "file.html"))
    var out: String?

    @OptionGroup var data: DataOptions
    @OptionGroup var engine: EngineOptions

    @Option(parsing: .unconditional, help: ArgumentHelp("Test images in the CAM grid (0: no grid).", valueName: "n"))
    var gridRows: Int = ReportGrid.rows

    @Option(name: .customLong("results"), help: ArgumentHelp(
        "A results file of part eval --save-results kept outside <run-dir>/eval/, added as a table (repeatable).",
        valueName: "file.jsonl"))
    var results: [String] = []

    func validate() throws {
        try Validation.count(gridRows, "--grid-rows", atLeast: 0)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: runDirectory, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw ValidationError("\(runDirectory) is a file, not a run directory; name the folder part train wrote (the one "
                                  + "holding config.json and log.jsonl)")
        }
        // What the report reads: the run's own files and its evaluations.
        let run = URL(fileURLWithPath: runDirectory)
        let evaluations = (try? FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent("eval").path)) ?? []
        let inputs = ["config.json", "log.jsonl", "checkpoint.json", "last.safetensors", "last.state.safetensors",
                      "summary.json"].map { run.appendingPathComponent($0).path }
            + evaluations.map { run.appendingPathComponent("eval").appendingPathComponent($0).path } + results
        let own = run.appendingPathComponent("report.html").path
        try checkOutputs([.init("--out", out ?? own)], inputs: inputs + [data.directory, data.cache], owned: [own])
    }

    func run() throws {
        try requireOneProcess("report")
        try engine.settings().bind { try writeReport() }
    }

    /// The command's work, under its engine settings.
    func writeReport() throws {
        do {
            let run = URL(fileURLWithPath: runDirectory)
            var report = try RunReport.read(runDirectory: run)
            for file in results { try report.addEvaluation(URL(fileURLWithPath: file)) }
            report.environment = Environment.describe(toolVersion: PART.configuration.version)
            let checkpoint = run.appendingPathComponent("last.safetensors")
            if gridRows > 0 && FileManager.default.fileExists(atPath: checkpoint.path) {
                do {
                    let settings = RunSettings(checkpoint: checkpoint)
                    let test = try data.load(.test, recorded: settings.dataset)
                    try CheckpointFit.check(checkpoint, fits: test)
                    var rng = RNG(seed: 0)
                    var (model, _) = try Checkpoint.loadModel(checkpoint, architecture: nil, numClasses: test.classes,
                                                              inputShape: (test.height, test.width, test.channels), rng: &rng)
                    // A run trained with --normalize: the CAMs of the model it trained.
                    if let normalize = settings.normalize { model = try Normalized(model, text: normalize) }
                    let budget = CAMBudget(method: (settings.cam ?? .gradcam).method, rule: (settings.mapRule ?? .zscore).rule,
                                           layer: try CAMLayer.resolve(settings.camLayer, model: model))
                    report.camGrid = try ReportGrid.png(model: model, test: test, budget: budget,
                                                        epsilon: settings.epsilon ?? 0.1, epsilonLow: settings.epsilonLow ?? 0.0875,
                                                        rows: gridRows)
                } catch {
                    FileHandle.standardError.write(Data("part report: warning: no CAM grid: \(error)\n".utf8))
                    report.notes.append("No CAM grid: \(error)")
                }
            }
            let url = URL(fileURLWithPath: out ?? run.appendingPathComponent("report.html").path)
            try report.write(to: url)
            print(url.path)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}
