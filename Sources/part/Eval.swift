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
        abstract: "Robust accuracy of a model (.safetensors, .pt from torch.save, or .onnx) under a sequence of attacks.",
        discussion: """
        Any safetensors or torch.save file (.pt, .pth) with PyTorch names and layouts loads: files written by `part train`, \
        and state_dicts saved from the reference models (a `module.` prefix is stripped). The \
        architecture comes from the file's metadata, else from its tensor names, else from --arch. \
        An ONNX model (.onnx) brings its own graph and weights.

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

        Checks for a flawed evaluation (a randomised model, probabilities instead of logits, \
        vanishing gradients, a gradient-free attack beating the white-box ones, accuracy rising with \
        eps) print lines beginning `warning: gradient masking:` or `warning: evaluation:`.

        --eps 2/255,4/255,8/255 evaluates each budget in turn (a robustness curve; files \
        NAME-eps<value>.EXT beside --save-results NAME.EXT). --source FILE is a transfer attack: \
        the attacks run on FILE and its worst cases are evaluated on CHECKPOINT. --protocol \
        robustbench runs AutoAttack standard on the first 10,000 test points at the threat model's \
        eps (L-inf 8/255, or L2 0.5 with --threat-model L2) and prints RobustBench's model-info JSON.
        """)

    @Argument(help: ArgumentHelp("The checkpoint: .safetensors, .pt/.pth written by torch.save (told apart by content), or an ONNX model (.onnx).", valueName: "checkpoint"))
    var checkpoint: String

    @OptionGroup var data: DataOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var progressOptions: ProgressOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var optimizations: OptimizationOptions

    @Option(help: ArgumentHelp("Attacks, in order (natural always comes first).", valueName: "list"))
    var attacks: String?

    @Option(name: .customLong("eps"), parsing: .unconditional,
            help: ArgumentHelp("L-inf budget: a decimal or a fraction such as 8/255; several separated by commas "
                               + "(2/255,4/255,8/255) evaluate each in turn, a robustness curve. (default: 0.1)", valueName: "eps"))
    var epsilonText: String?

    @Option(help: ArgumentHelp("Transfer attack: run the attacks on this model and evaluate, per point, its worst-case "
                               + "example on CHECKPOINT.", valueName: "source.safetensors"))
    var source: String?

    @Option(name: .customLong("protocol"),
            help: ArgumentHelp("robustbench: AutoAttack standard on the first 10,000 test points (or --limit) at the threat "
                               + "model's eps, printed as a RobustBench model-info JSON.", valueName: "name"))
    var evaluationProtocol: EvaluationProtocol?

    @Option(help: ArgumentHelp("With --protocol robustbench: Linf (eps 8/255) or L2 (eps 0.5).", valueName: "norm"))
    var threatModel: ThreatModel = .linf

    @Option(help: ArgumentHelp("With --protocol robustbench (required): the dataset's name as the leaderboard spells it "
                               + "(e.g. cifar10), written into the JSON as given.", valueName: "name"))
    var datasetName: String?

    @Option(name: .customLong("alpha"), parsing: .unconditional, help: "Step size of pgd, cw and mma (default: eps / 4); decimal or fraction.")
    var stepSize: Fraction?

    @Option(parsing: .unconditional, help: ArgumentHelp("Steps of the default PGD stage when --attacks is not given (same as --attacks natural,pgd:steps=N).",
                               valueName: "n"))
    var pgdSteps: Int?

    @Flag(help: "Run every attack on every correctly classified point and report each.")
    var independent = false

    @Option(help: NormalizeOption.help("the model was trained with (default: the checkpoint's, if it was trained with one)"))
    var normalize: String?

    @OptionGroup var modelFile: ModelFileOptions

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

    @Option(help: ArgumentHelp("Write the model's logits of the evaluated clean images here (.npy, float32, [N, classes]).",
                               valueName: "file.npy"))
    var saveLogits: String?

    @Flag(help: "Require an MPI job (started by mpirun); without the flag, a command joins one when mpirun started it.")
    var distributed = false

    var alpha: Float { alpha(at: epsilon) }

    /// --alpha, or a quarter of `epsilon`.
    func alpha(at epsilon: Fraction) -> Float { stepSize?.value ?? epsilon.value / 4 }

    var attackList: String {
        if evaluationProtocol == .robustbench { return threatModel.attacks }
        return attacks ?? "natural,pgd:steps=\(pgdSteps ?? 20)"
    }

    /// --limit, or the protocol's number of points.
    var pointLimit: Int { evaluationProtocol == .robustbench && limit == 0 ? Eval.robustBenchPoints : limit }

    func stages(at epsilon: Fraction? = nil) throws -> [AttackCatalog.Stage] {
        let eps = epsilon ?? self.epsilon
        return try AttackCatalog.standard.stages(attackList, defaults: .init(epsilon: eps.value, alpha: alpha(at: eps)))
    }


    func validate() throws {
        if distributed && !Distributed.launchedByMPI {
            throw ValidationError("--distributed needs a job started by mpirun (mpirun -np R part ...); drop it to run one process")
        }
        try Validation.count(limit, "--limit", atLeast: 0)
        if balanced && limit == 0 { throw ValidationError("--balanced picks a subset of --limit N images: give --limit") }
        try Validation.batchSize(batchSize)
        try validateModes()
        if let stepSize, !(stepSize.value.isFinite && stepSize.value >= 0) {
            throw ValidationError("--alpha must be a finite number >= 0, got \(stepSize)")
        }
        if let pgdSteps {
            try Validation.count(pgdSteps, "--pgd-steps", atLeast: 0)
            guard attacks == nil else { throw ValidationError("--pgd-steps sets the default list; with --attacks use pgd:steps=N") }
        }
        do {
            for eps in try epsilons() { _ = try stages(at: eps) }
        } catch let error as AttackError {
            throw ValidationError("--attacks: \(error.description)")
        }
        try NormalizeOption.validate(normalize)
        try checkOutputs(outputPaths, inputs: [checkpoint, stateFile(beside: checkpoint), source, data.directory, data.cache])
    }

    /// The files this command writes.
    var outputPaths: [OutputPath.Output] {
        var outputs = [OutputPath.Output]()
        for eps in (try? epsilons()) ?? [] {
            if let saveResults = path(saveResults, at: eps) { outputs.append(.init("--save-results", saveResults)) }
            if let saveAdversarial = path(saveAdversarial, at: eps) {
                outputs.append(.init("--save-adversarial", saveAdversarial))
                outputs.append(.init("--save-adversarial's labels",
                                     NPYFile.labelsURL(beside: URL(fileURLWithPath: saveAdversarial)).path))
            }
        }
        if let saveLogits { outputs.append(.init("--save-logits", saveLogits)) }
        return outputs
    }

    /// The evaluated split: the one place that reads data.
    /// The test split of --dataset, else of the dataset the checkpoint's run recorded (a
    /// checkpoint of `part train`, beside its config.json), else Fashion-MNIST.
    func loadTestSplit() throws -> ImageDataset {
        try data.load(.test, recorded: RunSettings(checkpoint: URL(fileURLWithPath: checkpoint)).dataset)
    }

    func run() throws {
        let communicator: Communicator?
        do { communicator = try startCommunicator(required: distributed) } catch { throw fail(error) }
        let settings = engine.settings(without: optimizations.without, communicator: communicator)
        let refused: String?
        do {
            refused = try settings.bind { try evaluate(communicator) }
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

    /// Evaluates, alone or as one rank of an MPI job (rank 0 prints and writes), at every
    /// budget of --eps; returns the re-verification refusal to report, if any.
    func evaluate(_ communicator: Communicator?) throws -> String? {
        let started = Date()
        let root = communicator?.isRoot ?? true
        let url = URL(fileURLWithPath: checkpoint)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CheckpointError("\(checkpoint): no such file")
        }
        var test = try loadTestSplit()
        if pointLimit > 0 { test = balanced ? try test.balancedPrefix(pointLimit) : test.prefix(pointLimit) }
        try Validation.nonEmpty(test, "test split")
        // Checked again now that the data's own files are known (a file of a --data folder).
        do {
            try checkOutputs(outputPaths, inputs: [checkpoint, source])
        } catch let error as ValidationError {
            if root { FileHandle.standardError.write(Data("part: error: \(oneLine(error.message))\n".utf8)) }
            throw ExitCode.validationFailure
        }
        if source != nil, let communicator, communicator.size > 1 {
            if root { FileHandle.standardError.write(Data("part: error: --source runs in one process: start it without mpirun\n".utf8)) }
            throw ExitCode.validationFailure
        }
        var initRng = RNG(seed: output.seed)
        var (model, metadata) = try modelFile.load(url, for: test, rng: &initRng)
        if let problem = ModelZoo.batchProblem(model.architecture, imageSize: max(test.height, test.width),
                                               batch: min(batchSize, max(test.count, 1))) {
            throw EvaluationError(problem)
        }
        // A model trained with `part train --normalize` says so in its metadata; the flag wins.
        let normalize = NormalizeOption.effective(self.normalize, metadata: metadata, warn: root)
        if let normalize {
            do {
                model = try Normalized(model, text: normalize)
            } catch {
                if root { FileHandle.standardError.write(Data("part: error: --normalize: \(error)\n".utf8)) }
                throw ExitCode.validationFailure
            }
        }
        let sourceModel = try loadSource(fitting: test)
        let checkpointSHA256 = try EvaluationHeader.hash(of: url)
        var progress = Progress(quiet: progressOptions.quiet || !root)
        if let recipe = RecipeKey.describe(metadata) { progress.log("part eval: trained as \(recipe)") }
        // The checks of the model come first: a warning is worth reading before a long run.
        var warnings = [EvaluationWarning]()
        if root {
            warnings = try EvaluationChecks.model(model, dataset: test, randomnessHandled: attackList.lowercased().contains("aa-rand"),
                                                 batchSize: batchSize)
            if let budget = defaultBudgetWarning(checkpoint: url) { warnings.insert(budget, at: 0) }
            printWarnings(warnings, progress)
        }
        if root, let saveLogits { try writeLogits(model, test: test, to: URL(fileURLWithPath: saveLogits)) }
        var outputs = [Output]()
        var refusal: String?
        var protocolSummary: EvaluationSummary?
        for eps in try epsilons() {
            let (summary, refused) = try evaluate(at: eps, model: model, normalize: normalize, test: test,
                                                  checkpointSHA256: checkpointSHA256,
                                                  source: sourceModel, communicator: communicator, progress: &progress)
            refusal = refusal ?? refused
            guard let summary else { continue }   // not rank 0
            protocolSummary = summary
            // A transfer evaluation's one stage is the source's examples: the check of the stages is the source's.
            let new = source != nil ? [] : EvaluationChecks.outcomes(summary.outcomes, stages: try stages(at: eps),
                                                                      independent: independent)
            printWarnings(new, progress)
            warnings += new
            outputs.append(Output(
                checkpoint: checkpoint, architecture: model.architecture, normalize: normalize, dataset: test.name,
                split: "test", count: summary.count, seed: output.seed, epsilon: eps.value, alpha: alpha(at: eps),
                precision: engine.precision.rawValue, independent: independent, attacks: summary.stages, source: source,
                cleanAccuracy: summary.cleanAccuracy, robustAccuracy: summary.robustAccuracy, robust: summary.robust,
                resumed: summary.resumed, unverified: summary.disagreements.count, seconds: Date().timeIntervalSince(started),
                resultsFile: path(saveResults, at: eps), adversarialFile: path(saveAdversarial, at: eps),
                warnings: []))
        }
        guard root else { return refusal }
        if outputs.count > 1 {
            let curve = EvaluationChecks.curve(outputs.map { ($0.epsilon, $0.robustAccuracy) })
            printWarnings(curve, progress)
            warnings += curve
        }
        let lines = warnings.map { "\($0.kind.rawValue): \($0.message)" }
        if evaluationProtocol == .robustbench, let summary = protocolSummary {
            try printJSON(modelInfo(summary, architecture: model.architecture, sha256: checkpointSHA256, warnings: warnings))
        } else if output.json {
            if outputs.count == 1 {
                var single = outputs[0]
                single.warnings = lines
                try printJSON(single)
            } else {
                try printJSON(CurveOutput(curve: outputs.map { .init(epsilon: $0.epsilon, cleanAccuracy: $0.cleanAccuracy,
                                                                   robustAccuracy: $0.robustAccuracy) },
                                          evaluations: outputs.map { o in
                                              var o = o
                                              o.warnings = lines
                                              return o
                                          }, warnings: lines))
            }
        } else if outputs.count > 1 {
            print("robust accuracy against eps")
            func pad(_ text: String) -> String { text + String(repeating: " ", count: max(0, 10 - text.count)) }
            print(pad("eps") + "    clean  worst case")
            for (o, eps) in zip(outputs, try epsilons()) {
                print(pad(eps.text) + String(format: "  %6.2f%%  %9.2f%%", 100 * o.cleanAccuracy, 100 * o.robustAccuracy))
            }
        }
        fflush(nil)
        return refusal
    }

    /// One evaluation at `eps` (with --source: the source's worst cases on the model); the
    /// summary on rank 0 (nil on the others) and the re-verification refusal, if any.
    func evaluate(at eps: Fraction, model: ImageClassifier, normalize: String?, test: ImageDataset, checkpointSHA256: String,
                  source: (model: ImageClassifier, sha256: String)?, communicator: Communicator?,
                  progress: inout Progress) throws -> (EvaluationSummary?, String?) {
        let root = communicator?.isRoot ?? true
        let alpha = alpha(at: eps)
        let saveResults = path(self.saveResults, at: eps), saveAdversarial = path(self.saveAdversarial, at: eps)
        var stages = try self.stages(at: eps)
        func makeHeader(_ stages: [AttackCatalog.Stage], checkpoint: String, sha256: String, architecture: String) -> EvaluationHeader {
            EvaluationHeader(
                checkpoint: checkpoint, checkpointSHA256: sha256, architecture: architecture,
                normalize: normalize, dataset: test.name, split: "test", count: test.count, attacks: stages.map(\.description),
                columns: stages.map(\.name), independent: independent, epsilon: eps.value, alpha: alpha, seed: output.seed,
                precision: engine.precision.rawValue, batchSize: batchSize, balanced: balanced && limit > 0 ? true : nil,
                splitIndices: test.splitIndices)
        }
        let value = eps.value
        let budget: (Tensor) throws -> EpsilonMap = { try EpsilonMap.constant(value, shape: $0.shape) }
        let title = "\(model.architecture) on \(test.name) test, \(test.count) \(balanced && limit > 0 ? "class-balanced " : "")points, eps \(eps) (alpha \(alpha)), "
            + "seed \(output.seed), \(engine.precision.rawValue)" + (normalize.map { ", normalize \($0)" } ?? "")
            + (independent ? ", each attack independently" : "") + (self.source.map { ", transfer from \($0)" } ?? "")
        progress.log("part eval: \(title)")
        progress.log("part eval: attacks " + stages.map(\.description).joined(separator: ", "))
        if let source {
            for note in stages.flatMap({ $0.notes(for: source.model) }) { progress.log("part eval: \(note)") }
            progress.log("part eval: the attacks run on the source \(self.source ?? "")")
            let logger = progress
            let (examples, summary) = try Transfer.worstCases(
                model: source.model, dataset: test, stages: stages,
                header: makeHeader(stages, checkpoint: self.source ?? "", sha256: source.sha256, architecture: source.model.architecture),
                batchSize: batchSize, seed: output.seed, budget: budget, log: { logger.log("part eval: source: \($0)") })
            progress.log(String(format: "part eval: source: worst case %.2f%% of %d points; evaluating its examples on %@",
                                100 * summary.robustAccuracy, summary.count, checkpoint as NSString))
            stages = transferStages(stages, examples: examples, splitIndices: test.splitIndices, sourceSHA256: source.sha256)
        } else {
            for note in stages.flatMap({ $0.notes(for: model) }) { progress.log("part eval: \(note)") }
        }
        let header = makeHeader(stages, checkpoint: checkpoint, sha256: checkpointSHA256, architecture: model.architecture)
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
        let runner = try EvaluationRunner(model: model, dataset: test, stages: stages, header: header, options: options,
                                          budget: budget)
        if let communicator, communicator.size > 1 {
            progress.log("part eval: \(communicator.size) ranks (\(communicator.name)), each batch split between them; "
                         + "rank 0 gathers the outcomes and writes")
        }
        if root {
            let p = progress
            runner.log = { p.log("part eval: \($0)") }
            var bar = progress
            runner.progress = { q in
                let earlier = q.finished > 0 ? "; robust \(q.robust)/\(q.finished) so far" : ""
                bar.update(done: q.done, total: q.total, unit: "points", "batch \(q.batch)/\(q.batches), \(q.stage)\(earlier); "
                           + "this batch \(q.batchRobust)/\(q.batchPoints) after \(q.after)")
            }
        }
        let result = try runner.run(communicator: communicator ?? SingleProcess())
        let shown = progress
        func finish() throws -> String {
            guard let summary = result else { return "" }
            report(summary, title: title, progress: shown)
            guard let first = summary.disagreements.first else { return "" }
            return "re-verification refused \(summary.disagreements.count) claimed success(es) (first: point "
                + "\(first.index), \(first.stage): \(first.reason)); they are counted as robust"
        }
        // Only rank 0 has the gathered outcomes; it tells the others whether re-verification refused any.
        let refusal = try communicator.map { try $0.rootDecides(finish) } ?? finish()
        return (result, refusal.isEmpty ? nil : refusal)
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

}
