import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN
import PARTTraining

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Adversarial training: AT, TRADES, MART and their pixel-reweighted (PART) versions.",
        discussion: """
        A recipe is three choices: the objective (--objective at|trades|mart), the budget \
        (--budget constant|cam|regions) and the attack that makes the training examples (--generation). \
        --method names the family's combinations: at, trades, mart (constant budget), part, part-t, \
        part-m (CAM budget). With a CAM budget the first --burn-in epochs use a constant budget; then \
        every batch gets CAM maps of its own images (--cam, --cam-layer), upsampled and squared, and \
        --map-rule turns them into an epsilon map: --eps on important pixels, --eps-low elsewhere.

        --preset NAME starts from a paper setting (`part presets` lists them); any flag overrides its \
        fields. Without a preset the defaults are the quick Fashion-MNIST PART job (5 epochs, about \
        13 minutes on 2 cores).

        After every epoch it prints loss, clean and PGD accuracy on the held-out images (the first \
        --eval-limit test images, or --val-split training images), the share of entries at full eps \
        and images/s, and writes <out>/last.safetensors (PyTorch names and layouts) atomically. \
        <out>/config.json records the run: the resolved configuration, the dataset (with --data and \
        its options) and the options a resume keeps (limits, --without, --precision, checkpoint \
        cadence, outputs). --seeds 0,1,2 trains one run per seed into <out>/seed-K and reports clean \
        and PGD accuracy as mean ± std (<out>/summary.json).

        --resume <out> continues an interrupted run from its last checkpoint, rebuilt from \
        <out>/config.json; for a --seeds sweep it keeps the finished seeds, resumes the interrupted \
        one and starts the rest, then writes <out>/summary.json. --resume <out>/seed-K continues one \
        seed of a sweep alone. Recipe and data flags given again must agree with the record; \
        checkpoint, engine and output flags replace the recorded ones.
        """)

    @OptionGroup var data: DataOptions
    @OptionGroup var augmentation: AugmentOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var engine: EngineOptions
    @OptionGroup var training: TrainPrecisionOptions
    @OptionGroup var optimizations: OptimizationOptions
    @OptionGroup var parallel: DistributedOptions
    @OptionGroup var checkpoints: CheckpointOptions
    @OptionGroup var progressOptions: ProgressOptions
    @OptionGroup var reporting: TrainReportOptions

    @Option(help: ArgumentHelp("Start from a named recipe (see `part presets`).", valueName: "name"))
    var preset: String?

    @Option(help: "Shorthand for objective and budget (generation pgd). (default: part)")
    var method: TrainingMethod?

    @Option(help: "Training objective; overrides --method. (default: at)")
    var objective: ObjectiveKind?

    @Option(help: "Budget: constant eps, a CAM map after the burn-in, or eps lowered on image regions (--regions); overrides --method. (default: cam)")
    var budget: BudgetKind?

    @Option(help: ArgumentHelp("With --budget regions: the lowered regions, region=eps separated by commas, e.g. "
                               + "top-left=6/255,centre=4/255 (top-left, top-right, bottom-left, bottom-right, centre: the "
                               + "central box of half the side); the rest of the image at --eps.", valueName: "spec"))
    var regions: String?

    @Option(help: ArgumentHelp(GenerationAttack.help))
    var generation: GenerationAttack?

    @Option(parsing: .unconditional, help: "Weight of the KL term of TRADES and MART. (default: 6)")
    var beta: Float?

    @Option(help: "CAM method of a CAM budget. (default: gradcam)")
    var cam: CAMMethodName?

    @Option(help: ArgumentHelp("CAM layer (default: the architecture's: \(ModelZoo.defaultCAMLayers)).", valueName: "name"))
    var camLayer: String?

    @Option(help: "Rule from CAM to epsilon map; official needs 3-channel images. (default: zscore)")
    var mapRule: MapRuleName?

    @Option(help: NormalizeOption.help("for the model to apply to its inputs (recorded in the run and its checkpoints)"))
    var normalize: String?

    @Option(help: ArchitectureName.help("Architecture.", default: ModelZoo.defaultArchitecture),
            transform: ArchitectureName.parse)
    var arch: ArchitectureName?

    @Option(help: ArgumentHelp("Train this ONNX model instead of --arch: its graph and weights (export with training="
                               + "torch.onnx.TrainingMode.TRAINING to keep batch norm); every checkpoint also writes the "
                               + "trained graph as <out>/last.onnx. --cam-layer then names one of its nodes or the tensor "
                               + "a node outputs.", valueName: "file.onnx"))
    var model: String?

    @Option(parsing: .unconditional, help: "Training epochs. (default: 5)")
    var epochs: Int?

    @Option(parsing: .unconditional, help: "Epochs of constant budget before a CAM budget starts. (default: 2)")
    var burnIn: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Use the first N training images (0: all; with --balanced, or a "
                                                        + "preset's balanced check, the first ceil(N/K) of each class). (default: 0)"))
    var trainLimit: Int?

    @Option(parsing: .unconditional, help: "Held-out test images for the per-epoch check (it only reads the model: fewer save time and train the same weights). (default: 1000)")
    var evalLimit: Int?

    @Flag(help: ArgumentHelp("Check on the first ceil(N/K) test images of each of the K classes (N = --eval-limit) "
                             + "instead of the first N, and train on the first ceil(N/K) training images of each class "
                             + "under --train-limit N (image folders are sorted by class)."))
    var balanced = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Hold N training images out of training; they replace the test images in the "
                               + "per-epoch check and pick <out>/best.safetensors. (default: 0)"))
    var valSplit: Int?

    @Option(parsing: .unconditional, help: "Mini-batch size. (default: 128)")
    var batchSize: Int?

    @Option(parsing: .unconditional, help: "SGD learning rate. (default: 0.01)")
    var lr: Float?

    @Option(parsing: .unconditional, help: "SGD momentum. (default: 0.9)")
    var momentum: Float?

    @Option(parsing: .unconditional, help: "SGD weight decay. (default: 2e-4)")
    var weightDecay: Float?

    @Option(help: "Learning-rate schedule. (default: piecewise)")
    var schedule: ScheduleKind?

    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Epochs after which a piecewise schedule multiplies the rate by --lr-gamma "
                               + "(e.g. 79 or 59,89; none for no milestone). (default: none)", valueName: "epochs"))
    var lrMilestones: [String] = []

    @Option(parsing: .unconditional, help: "Learning-rate factor at each milestone. (default: 0.1)")
    var lrGamma: Float?

    @Option(parsing: .unconditional, help: "Epochs of linear learning-rate warm-up (per batch). (default: 0)")
    var warmupEpochs: Int?

    @Option(name: .customLong("eps"), parsing: .unconditional, help: "Budget of important pixels (of every pixel with a constant budget), e.g. 0.1 or 8/255. (default: 0.1)")
    var epsilon: Fraction?

    @Option(name: .customLong("eps-low"), parsing: .unconditional, help: "Budget of the other pixels with a CAM budget. (default: 0.0875)")
    var epsilonLow: Fraction?

    @Option(name: .customLong("alpha"), parsing: .unconditional, help: "Step size of the generation attack and of the check; with --generation fgsm the FGSM step (default 1.25 eps), the check then stepping eps/4. (default: 0.025)")
    var stepSize: Fraction?

    @Option(parsing: .unconditional, help: "Attack steps when generating training examples. (default: 10)")
    var steps: Int?

    @Option(parsing: .unconditional, help: "PGD steps of the per-epoch robustness check. (default: 20)")
    var evalSteps: Int?

    @Option(help: ArgumentHelp("Train once per seed (e.g. 0,1,2) into <out>/seed-K and summarise; overrides --seed.",
                               valueName: "list"))
    var seeds: String?

    @Option(help: ArgumentHelp("Directory for checkpoints and the log (default: runs/<method>-<dataset>, "
                               + "numbered so that no earlier run is overwritten).", valueName: "dir"))
    var out: String?

    @Flag(help: "Allow --out to name a directory that already holds a run (its files are replaced).")
    var overwrite = false

    @Option(name: .customLong("init"),
            help: ArgumentHelp("Start from the weights of this checkpoint (same architecture, classes and input; a "
                               + "PyTorch state_dict in safetensors or a torch.save .pt/.pth file loads too) instead of a fresh initialisation: "
                               + "fine-tuning. SGD's momentum starts at zero.", valueName: "checkpoint"))
    var initialWeights: String?


    func validate() throws {
        if let trainLimit, trainLimit < 0 { throw ValidationError("--train-limit must be >= 0") }
        if let evalLimit, evalLimit < 1 { throw ValidationError("--eval-limit must be at least 1") }
        if checkpoints.resume != nil {
            try checkpoints.validateResume(seeds: seeds, out: out, overwrite: overwrite)
            return
        }
        let plan = try newPlan()
        if let problem = plan.dataset.problem() {
            throw ValidationError((preset.map { "preset \($0): " } ?? "") + problem)
        }
        if let problem = plan.config.problem() { throw ValidationError(problem) }
        if let initialWeights, !FileManager.default.isReadableFile(atPath: initialWeights) {
            throw ValidationError("--init \(initialWeights): no readable file there")
        }
    }

    // MARK: run

    /// A job about to start: its plan, its directory (claimed by this process, or only named
    /// under mpirun on ranks other than 0) and, when resumed, the run's record.
    struct Job {
        var plan: RunPlan
        var claimed: RunDirectory?
        var url: URL?
        var resumed: RunRecord?
    }

    func run() throws {
        let communicator: Communicator?
        do { communicator = try parallel.start() } catch { throw fail(error) }
        if let communicator, checkpoints.resume == nil, out == nil {
            throw badArgument("under mpirun, name the run directory with --out (\(communicator.size) ranks must agree on it)")
        }
        let job: Job
        if let resume = checkpoints.resume {
            job = try resumedJob(resume)
        } else {
            var plan = try newPlan()
            if let warning = flagsWithoutEffect(on: plan.config), Distributed.current?.isRoot ?? true {
                FileHandle.standardError.write(Data((warning + "\n").utf8))
            }
            if plan.options.precision == PassPrecision.bf16.rawValue && !Engine.supportsBF16 && engine.givenPrecision == nil {
                // The preset asks for bf16 passes this CPU lacks: the run computes them in fp32.
                if Distributed.current?.isRoot ?? true {
                    FileHandle.standardError.write(Data(("warning: preset \(preset ?? "") asks for bf16 attack, CAM and "
                        + "training passes, which this CPU (\(Engine.instructionSet)) lacks: running them in fp32\n").utf8))
                }
                plan.options.precision = PassPrecision.fp32.rawValue
            }
            job = Job(plan: plan, claimed: nil, url: out.map { URL(fileURLWithPath: $0) }, resumed: nil)
        }
        try start(job)
    }

    /// Claims the run directory of a new job: --out (checked and locked before any data is
    /// read), or the first free runs/<method>-<dataset>[-N], created atomically.
    func claimDirectory(method: String, dataset: String) throws -> RunDirectory {
        if let out { return try RunDirectory.claim(out, overwrite: overwrite) }
        return try RunDirectory.claimFresh(base: "runs/\(method)-\(dataset)")
    }

    /// Trains `job`: the printing of `part train` around a `TrainingSession`.
    ///
    /// Under mpirun only rank 0 holds the directory; every rank has its path.
    func start(_ job: Job) throws {
        // The run's engine settings: a resumed run keeps those it recorded unless given again.
        var settings = engine.settings(without: job.plan.options.without, communicator: Distributed.current)
        if let precision = PassPrecision(rawValue: job.plan.options.precision) {
            guard precision != .bf16 || Engine.supportsBF16 else {
                throw badArgument("the run computes its attacks in --precision bf16, which this CPU (\(Engine.instructionSet)) "
                                  + "lacks: give --precision fp32 to continue it in fp32")
            }
            settings.attackPrecision = precision.dtype
        }
        try settings.bind { try train(job) }
    }

    /// Trains `job` under the run's engine settings.
    func train(_ job: Job) throws {
        let plan = job.plan
        let config = plan.config
        let resumed = job.resumed != nil
        do {
            let seedList = plan.seeds
            // Under mpirun, rank 0 alone prints, claims the run directory and writes into it.
            let communicator = Distributed.current
            let printing = communicator?.isRoot ?? true
            if let communicator, seedList != nil {
                throw badArgument("--seeds trains one seed after another; under mpirun start one job per --seed "
                                  + "(\(communicator.size) ranks)")
            }
            // TensorBoard and the report follow one run; a seed sweep writes them per seed
            // afterwards through `part report <seed directory>`.
            if seedList != nil && (plan.options.tensorboard != nil || plan.options.report) {
                throw badArgument("--tensorboard and --report follow a single run: drop them with --seeds "
                                  + "(part report DIR writes a seed's report afterwards)")
            }
            // --out is claimed before any data is read: an unusable directory costs nothing.
            var claimed = job.claimed
            if claimed == nil, !resumed, out != nil, printing {
                claimed = try claimDirectory(method: config.method, dataset: config.dataset)
            }
            defer { if !resumed { claimed?.removeIfUnused() } }
            let warn = { (warning: String) in FileHandle.standardError.write(Data("part: warning: \(warning)\n".utf8)) }
            let (train, heldOut) = try plan.loadData(warn: warn)
            if claimed == nil, !resumed, printing { claimed = try claimDirectory(method: config.method, dataset: train.name) }
            guard let directory = claimed?.url ?? (printing ? nil : job.url) else { return }
            let session = TrainingSession(plan: plan, directory: directory, resumed: job.resumed)
            try session.check(train: train, heldOut: heldOut)
            let camLayer = try session.camLayer()
            let held = config.validationSplit > 0 ? "\(config.validationSplit) held-out training images"
                : plan.checksTrainingImages ? "checked on \(heldOut.count) of them" : "\(heldOut.count) held-out test images"
            let header = ["PART for Swift: \(config.preset.map { "preset \($0), " } ?? "")\(config.architecture) on "
                          + "\(train.name) (\(train.count - config.validationSplit) training images, \(held)), "
                          + (seedList.map { "seeds \($0.map(String.init).joined(separator: ","))" } ?? "seed \(config.seed)")
                          + (resumed && seedList != nil ? "; resuming the sweep in \(directory.path)"
                             : "; writing \(directory.path)")]
                + config.summaryLines(camLayer: camLayer).map { "  " + $0 }
            for line in header where printing {
                if output.json { FileHandle.standardError.write(Data((line + "\n").utf8)) } else { print(line) }
            }
            var progress = Progress(quiet: progressOptions.quiet)
            // Other ranks write no TensorBoard files and no report.
            let outputs = try TrainOutputs(printing ? plan.options : RunOptions(), runDirectory: directory, log: progress.log)
            let started = Date()
            session.parallel = communicator.map { DataParallel(communicator: $0, synchronizedBatchNorm: plan.options.syncBatchNorm) }
            session.log = { line in
                guard printing else { return }
                progress.clear()
                FileHandle.standardError.write(Data("\(line)\n".utf8))
            }
            session.configure = { $0.batchLoss = outputs.batchLoss }
            let outcome = try session.run(train: train, heldOut: heldOut, progress: { seed, epoch, done, total in
                guard printing else { return }
                if seedList != nil {
                    progress.update("seed \(seed) epoch \(epoch)/\(config.epochs): batch \(done)/\(total)")
                } else {
                    progress.update(done: Double((epoch - 1) * total + done), total: Double(config.epochs * total),
                                    unit: "batches", "epoch \(epoch)/\(config.epochs): batch \(done)/\(total)")
                }
            }, report: { r in
                progress.clear()
                if seedList == nil { outputs.epoch(r) }
                if output.json {
                    try printJSON(r)
                } else {
                    print((seedList == nil ? "" : "seed \(r.seed)  ")
                          + String(format: "epoch %d/%d  %@  lr %.4g  loss %.4f  train-adv-acc %.2f%%  clean %.2f%%  pgd-%d %.2f%%  full-eps %.1f%%  %.0f img/s  %.0fs%@",
                                   r.epoch, r.epochs, r.budget as NSString, r.learningRate, r.loss, 100 * r.trainAccuracy,
                                   100 * r.cleanAccuracy, config.evalSteps, 100 * r.robustAccuracy,
                                   100 * r.fullEpsilonFraction, r.imagesPerSecond, r.seconds,
                                   (r.best ? "  best" : "") as NSString))
                }
                fflush(nil)  // every output stream: C's `stdout` is a global variable Swift 6 refuses
            })
            switch outcome {
            case .alreadyComplete:
                session.log("part: the run in \(directory.path) is complete (\(config.epochs) epochs); nothing to resume")
            case .sweep(let swept):
                let seeds = (seedList ?? []).map(String.init).joined(separator: ",")
                let summary = swept.summary
                if swept.nothingToDo {
                    session.log("part: the sweep in \(directory.path) is complete (seeds \(seeds)); nothing to resume")
                }
                if output.json {
                    try printJSON(summary)
                } else {
                    print("\(summary.method) over seeds \(seeds): \(summary.line)")
                    if !swept.nothingToDo {
                        print(String(format: "done in %.0fs; summary: %@", Date().timeIntervalSince(started),
                                     directory.appendingPathComponent("summary.json").path as NSString))
                    }
                }
            case .trained(let trainer, let trained):
                if printing { try outputs.finish(trainer: trainer, heldOut: heldOut) }
                if printing, let line = trainer.parallel?.communicationSummary(trainer.model) {
                    progress.log("part train: \(line)")
                }
                if !output.json && printing {
                    var text = String(format: "done in %.0fs; model: %@", Date().timeIntervalSince(started),
                                      directory.appendingPathComponent("last.safetensors").path as NSString)
                    if let best = trained.best {
                        text += String(format: "; best: epoch %d (pgd-%d %.2f%%), %@", best.epoch, config.evalSteps,
                                       100 * best.robustAccuracy,
                                       directory.appendingPathComponent("best.safetensors").path as NSString)
                    }
                    print(text)
                }
            }
            // The directory's lock is held until the run is over.
            withExtendedLifetime(claimed) {}
            communicator?.finalize()
        } catch let exit as ExitCode {
            throw exit
        } catch let interrupted as TrainingInterrupted {
            FileHandle.standardError.write(Data("\npart: \(interrupted)\n".utf8))
            throw ExitCode(interrupted.exitCode)
        } catch let problem as ExitCoded where problem.exitCode == ExitCode.validationFailure.rawValue {
            // A flag to change: every rank meets it alike and stops on its own.
            throw fail(problem)
        } catch {
            if let communicator = Distributed.current { throw failRank(error, communicator) }
            throw fail(error)
        }
    }

    /// Prints a bad-argument sentence found only after reading the data, and exits with 64.
    func badArgument(_ message: String) -> ExitCode { fail(BadArgument(message)) }
}
