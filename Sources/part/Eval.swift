import ArgumentParser
import Foundation
import PARTAttacks
import PARTData
import PARTDistributed
import PARTEngine
import PARTEvaluation
import PARTNN
import PARTTraining

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Robust accuracy of a safetensors checkpoint under a sequence of attacks.",
        discussion: """
        Any safetensors file with PyTorch names and layouts loads: files written by `part train`, \
        and state_dicts saved from the reference models (a `module.` prefix is stripped). The \
        architecture comes from the file's metadata, else from its tensor names, else from --arch.

        --attacks is a comma-separated list of items name[:key=value]..., e.g. \
        natural,pgd20,pgd:steps=50:alpha=0.01,cw20,mma,fgsm,pgd-l2:eps=0.5,aa. \
        Attacks: \(AttackCatalog.standard.knownNames.joined(separator: ", ")). \
        AutoAttack's versions: aa (standard), aa-plus, aa-rand, and in the L2 ball aa-l2 and \
        aa-l2-plus, whose radius is eps (aa-l2:eps=0.5), else --eps; norm=l2 (with eps) runs \
        apgd-ce, apgd-dlr, apgd-t, fab, fab-t or square in the L2 ball. \
        Each attack runs only on the points still robust after the ones before it (--independent: \
        on every correctly classified point), and every success is re-verified alone in a batch of \
        its own; a disagreement is reported and exits with code 1.

        With --save-results FILE, a run that is killed continues where it stopped when the same \
        command is run again.

        Under mpirun -np R, every batch is split between the R ranks; rank 0 gathers the per-example \
        outcomes (and the adversarial examples) and alone prints and writes the files.
        """)

    @Argument(help: ArgumentHelp("The checkpoint (.safetensors).", valueName: "checkpoint"))
    var checkpoint: String

    @OptionGroup var data: DataOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progressOptions: ProgressOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var optimizations: OptimizationOptions

    @Option(help: ArgumentHelp("Attacks, in order (natural always comes first).", valueName: "list"))
    var attacks: String?

    @Option(name: .customLong("eps"), parsing: .unconditional, help: "L-inf budget: a decimal or a fraction such as 8/255.")
    var epsilon: Fraction = Fraction(0.1)

    @Option(name: .customLong("alpha"), parsing: .unconditional, help: "Step size of pgd, cw and mma (default: eps / 4); decimal or fraction.")
    var stepSize: Fraction?

    @Option(parsing: .unconditional, help: ArgumentHelp("Steps of the default PGD stage when --attacks is not given (same as --attacks natural,pgd:steps=N).",
                               valueName: "n"))
    var pgdSteps: Int?

    @Flag(help: "Run every attack on every correctly classified point and report each.")
    var independent = false

    @Option(help: ArgumentHelp("Per-channel normalisation the model was trained with, as MEAN/STD "
                               + "(e.g. 0.2860/0.3530 or 0.4914,0.4822,0.4465/0.2470,0.2435,0.2616); inputs stay images in [0, 1].",
                               valueName: "mean/std"))
    var normalize: String?

    @Option(help: ArchitectureName.help("Architecture, when the file does not say."), transform: ArchitectureName.parse)
    var arch: ArchitectureName?

    @Option(parsing: .unconditional, help: "Evaluate the first N test images (0: all).")
    var limit: Int = 0

    @Flag(help: ArgumentHelp("With --limit N: the first ceil(N/K) test images of each of the K classes instead of the "
                             + "first N (recorded in the results header; image folders are sorted by class)."))
    var balanced = false

    @Option(parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 256

    @Option(help: ArgumentHelp("Write the per-example outcome (JSON lines, header first) here; rerunning the same "
                               + "command on an unfinished file resumes it.", valueName: "file"))
    var saveResults: String?

    @Option(help: ArgumentHelp("Write the worst-case examples here (.npy, float32, [N, H, W, C]).", valueName: "file.npy"))
    var saveAdversarial: String?

    @Flag(help: "Require an MPI job (started by mpirun); without the flag, a command joins one when mpirun started it.")
    var distributed = false

    var alpha: Float { stepSize?.value ?? epsilon.value / 4 }

    var attackList: String { attacks ?? "natural,pgd:steps=\(pgdSteps ?? 20)" }

    func stages() throws -> [AttackCatalog.Stage] {
        try AttackCatalog.standard.stages(attackList, defaults: .init(epsilon: epsilon.value, alpha: alpha))
    }

    /// MEAN/STD as per-channel values.
    func normalization() throws -> (mean: [Float], std: [Float])? {
        guard let normalize else { return nil }
        let parts = normalize.split(separator: "/", omittingEmptySubsequences: false)
        func values(_ s: Substring) -> [Float]? {
            let v = s.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
            return v.contains(where: { $0 == nil }) || v.isEmpty ? nil : v.compactMap { $0 }
        }
        guard parts.count == 2, let mean = values(parts[0]), let std = values(parts[1]), mean.count == std.count,
              mean.allSatisfy(\.isFinite), std.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ValidationError("--normalize takes MEAN/STD with one decimal per channel on each side and every std > 0, "
                                  + "e.g. 0.2860/0.3530 or 0.4914,0.4822,0.4465/0.2470,0.2435,0.2616; got '\(normalize)'")
        }
        return (mean, std)
    }

    func validate() throws {
        if distributed && !Distributed.launchedByMPI {
            throw ValidationError("--distributed needs a job started by mpirun (mpirun -np R part ...); drop it to run one process")
        }
        guard limit >= 0 else { throw ValidationError("--limit must be >= 0") }
        if balanced && limit == 0 { throw ValidationError("--balanced picks a subset of --limit N images: give --limit") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let problem = Limits.batchSizeProblem(batchSize) { throw ValidationError(problem) }
        guard epsilon.value >= 0 && epsilon.value <= 1 else { throw ValidationError("--eps must be in [0, 1], got \(epsilon)") }
        if let stepSize, !(stepSize.value >= 0) { throw ValidationError("--alpha must be >= 0, got \(stepSize)") }
        if let pgdSteps {
            guard pgdSteps >= 0 else { throw ValidationError("--pgd-steps must be >= 0") }
            guard attacks == nil else { throw ValidationError("--pgd-steps sets the default list; with --attacks use pgd:steps=N") }
        }
        do {
            _ = try stages()
        } catch let error as AttackError {
            throw ValidationError("--attacks: \(error.description)")
        }
        _ = try normalization()
        try checkOutputs(outputPaths, inputs: [checkpoint, stateFile(beside: checkpoint), data.directory, data.cache])
    }

    /// The files this command writes.
    var outputPaths: [OutputPath.Output] {
        var outputs = [OutputPath.Output]()
        if let saveResults { outputs.append(.init("--save-results", saveResults)) }
        if let saveAdversarial {
            outputs.append(.init("--save-adversarial", saveAdversarial))
            outputs.append(.init("--save-adversarial's labels",
                                 NPYFile.labelsURL(beside: URL(fileURLWithPath: saveAdversarial)).path))
        }
        return outputs
    }

    /// The evaluated split: the one place that reads data.
    func loadTestSplit() throws -> ImageDataset {
        try data.load(.test)
    }

    struct Output: Encodable {
        let checkpoint: String
        let architecture: String
        let normalize: String?
        let dataset: String
        let split: String
        let count: Int
        let seed: UInt64
        let epsilon: Float
        let alpha: Float
        let precision: String
        let independent: Bool
        let attacks: [StageSummary]
        let cleanAccuracy: Double
        /// Robust against every stage (the worst case per example).
        let robustAccuracy: Double
        let robust: Int
        let resumed: Int
        let unverified: Int
        let seconds: Double
        let resultsFile: String?
        let adversarialFile: String?
    }

    func run() throws {
        engine.apply()
        optimizations.apply()
        let communicator: Communicator?
        do { communicator = try startCommunicator(required: distributed, threads: engine.threads) } catch { throw fail(error) }
        let refused: String?
        do {
            refused = try evaluate(communicator)
        } catch let exit as ExitCode {
            // Flag errors are the same on every rank: each stops on its own.
            communicator?.finalize()
            throw exit
        } catch {
            if let communicator { throw failRank(error, communicator) }
            throw fail(error)
        }
        communicator?.finalize()
        // Re-verification's verdict is the whole job's: every rank exits 1, rank 0 says why.
        if let refused {
            if communicator?.isRoot ?? true { throw fail(EvaluationError(refused)) }
            throw ExitCode(1)
        }
    }

    /// Evaluates, alone or as one rank of an MPI job (rank 0 prints and writes); returns the
    /// re-verification refusal to report, if any.
    func evaluate(_ communicator: Communicator?) throws -> String? {
        let started = Date()
        let root = communicator?.isRoot ?? true
        let url = URL(fileURLWithPath: checkpoint)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError("\(checkpoint): no such file")
        }
        var test = try loadTestSplit()
        if limit > 0 { test = balanced ? try test.balancedPrefix(limit) : test.prefix(limit) }
        try Validation.nonEmpty(test, "test split")
        // Checked again now that the data's own files are known (a file of a --data folder).
        do {
            try checkOutputs(outputPaths, inputs: [checkpoint])
        } catch let error as ValidationError {
            if root { FileHandle.standardError.write(Data("part: error: \(oneLine(error.message))\n".utf8)) }
            throw ExitCode.validationFailure
        }
        try CheckpointFit.check(url, fits: test)
        var initRng = RNG(seed: output.seed)
        var (model, metadata) = try Checkpoint.loadModel(url, architecture: arch?.name, numClasses: test.classes,
                                                  inputShape: (test.height, test.width, test.channels), rng: &initRng)
        if let problem = ModelZoo.batchProblem(model.architecture, imageSize: max(test.height, test.width),
                                               batch: min(batchSize, max(test.count, 1))) {
            throw EvaluationError(problem)
        }
        if let (mean, std) = try normalization() {
            do {
                model = try Normalized(model, mean: mean, std: std)
            } catch {
                if root { FileHandle.standardError.write(Data("part: error: --normalize: \(error)\n".utf8)) }
                throw ExitCode.validationFailure
            }
        }
        let stages = try self.stages()
        let header = EvaluationHeader(
            checkpoint: checkpoint, checkpointSHA256: try EvaluationHeader.hash(of: url), architecture: model.architecture,
            normalize: normalize, dataset: test.name, split: "test", count: test.count, attacks: stages.map(\.description),
            columns: stages.map(\.name), independent: independent, epsilon: epsilon.value, alpha: alpha, seed: output.seed,
            precision: engine.precision.rawValue, batchSize: batchSize, balanced: balanced && limit > 0 ? true : nil)
        if let communicator, communicator.size > 1 {
            try checkAgreement(communicator, header: header, test: test)
        }
        // RUN/eval/NAME.jsonl (docs/conventions.md#4-the-run-directory): the folders of the outputs are made (by rank 0,
        // which alone writes them).
        if root {
            for path in [saveResults, saveAdversarial].compactMap({ $0 }) {
                try FileManager.default.createDirectory(at: URL(fileURLWithPath: path).deletingLastPathComponent(),
                                                        withIntermediateDirectories: true)
            }
        }
        let options = EvaluationOptions(batchSize: batchSize, seed: output.seed, independent: independent,
                                        resultsFile: saveResults.map { URL(fileURLWithPath: $0) },
                                        adversarialFile: saveAdversarial.map { URL(fileURLWithPath: $0) })
        let eps = epsilon.value
        let runner = try EvaluationRunner(model: model, dataset: test, stages: stages, header: header, options: options) {
            try EpsilonMap.constant(eps, shape: $0.shape)
        }
        var progress = Progress(quiet: progressOptions.quiet || !root)
        let title = "\(model.architecture) on \(test.name) test, \(test.count) \(balanced && limit > 0 ? "class-balanced " : "")points, eps \(epsilon) (alpha \(alpha)), "
            + "seed \(output.seed), \(engine.precision.rawValue)" + (normalize.map { ", normalize \($0)" } ?? "")
            + (independent ? ", each attack independently" : "")
        progress.log("part eval: \(title)")
        if let communicator, communicator.size > 1 {
            progress.log("part eval: \(communicator.size) ranks (\(communicator.name)), each batch split between them; "
                         + "rank 0 gathers the outcomes and writes")
        }
        if let recipe = RecipeKey.describe(metadata) { progress.log("part eval: trained as \(recipe)") }
        progress.log("part eval: attacks " + stages.map(\.description).joined(separator: ", "))
        for note in stages.flatMap({ $0.notes(for: model) }) { progress.log("part eval: \(note)") }
        if root {
            runner.log = { progress.log("part eval: \($0)") }
            runner.progress = { p in
                progress.update(done: p.done, total: p.total, unit: "points",
                                "batch \(p.batch)/\(p.batches), \(p.stage); robust \(p.robust)/\(p.finished) so far")
            }
        }
        let result: EvaluationSummary?
        if let communicator {
            result = try runner.run(communicator: communicator)
        } else {
            result = try runner.run()
        }
        func finish() throws -> String {
            guard let summary = result else { return "" }
            try report(summary, title: title, model: model, datasetName: test.name, started: started, progress: &progress)
            guard let first = summary.disagreements.first else { return "" }
            return "re-verification refused \(summary.disagreements.count) claimed success(es) (first: point "
                + "\(first.index), \(first.stage): \(first.reason)); they are counted as robust"
        }
        // Only rank 0 has the gathered outcomes; it tells the others whether re-verification refused any.
        let refusal = try communicator.map { try $0.rootDecides(finish) } ?? finish()
        return refusal.isEmpty ? nil : refusal
    }

    /// Every rank must evaluate the same checkpoint on the same points with the same settings;
    /// otherwise every rank stops with one line naming the difference.
    func checkAgreement(_ communicator: Communicator, header: EvaluationHeader, test: ImageDataset) throws {
        try communicator.checkAgreement("checkpoint (SHA-256 of the file)", header.checkpointSHA256)
        try communicator.checkAgreement("test data (--data, --dataset, --limit)", DataParallel.fingerprint(test))
        var settings = header
        settings.checkpoint = ""   // the path may differ between machines; the content may not
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let outputs = "results \(saveResults != nil), adversarial \(saveAdversarial != nil)"
        try communicator.checkAgreement("evaluation configuration (--attacks, --eps, --alpha, --seed, --batch-size, --precision, "
                                        + "--normalize, --independent, --save-results, --save-adversarial)",
                                        String(decoding: try encoder.encode(settings), as: UTF8.self) + outputs)
    }

    /// The stage log, then the table or JSON, on standard output.
    func report(_ summary: EvaluationSummary, title: String, model: ImageClassifier, datasetName: String, started: Date,
                progress: inout Progress) throws {
        progress.clear()
        // The stage log AutoAttack users know.
        for (s, stage) in summary.stages.enumerated() {
            let what = s == 0 ? "initial accuracy" : (independent ? "robust accuracy against \(stage.name) alone"
                                                                : "robust accuracy after \(stage.name)")
            progress.log(String(format: "part eval: %@: %.2f%% (%.1f s)", what as NSString, 100 * stage.accuracy, stage.seconds))
        }
        progress.log(String(format: "part eval: worst case: %.2f%% of %d points", 100 * summary.robustAccuracy, summary.count))
        if summary.minimum <= summary.maximum {   // this run confirmed at least one adversarial example
            progress.log(String(format: "part eval: adversarial examples of this run: max L-inf perturbation %.5f, non-finite %d, "
                                + "min %.5f, max %.5f", summary.largestPerturbation, summary.nonFinite, summary.minimum, summary.maximum))
        }

        let seconds = Date().timeIntervalSince(started)
        if output.json {
            try printJSON(Output(
                checkpoint: checkpoint, architecture: model.architecture, normalize: normalize, dataset: datasetName,
                split: "test", count: summary.count, seed: output.seed, epsilon: epsilon.value, alpha: alpha,
                precision: engine.precision.rawValue, independent: independent, attacks: summary.stages,
                cleanAccuracy: summary.cleanAccuracy, robustAccuracy: summary.robustAccuracy, robust: summary.robust,
                resumed: summary.resumed, unverified: summary.disagreements.count, seconds: seconds,
                resultsFile: saveResults, adversarialFile: saveAdversarial))
        } else {
            print(title)
            print(table(summary))
        }
        fflush(stdout)
    }

    /// The results table: one row per stage and the worst case.
    func table(_ summary: EvaluationSummary) -> String {
        let width = max(10, summary.stages.map(\.name.count).max() ?? 0)
        func pad(_ s: String) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
        var lines = [pad("attack") + "  robust  accuracy     time"]
        for stage in summary.stages {
            lines.append(pad(stage.name) + String(format: "  %6d  %7.2f%%  %6.1fs", stage.robust, 100 * stage.accuracy, stage.seconds)
                         + (stage.unverified > 0 ? "  (\(stage.unverified) unverified)" : ""))
        }
        lines.append(pad("worst case") + String(format: "  %6d  %7.2f%%", summary.robust, 100 * summary.robustAccuracy))
        return lines.joined(separator: "\n")
    }
}
