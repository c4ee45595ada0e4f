import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN
import PARTTraining

/// How `part train`'s flags become a run's plan: the preset, the recipe flags, the process options
/// and the seeds.
extension Train {
    /// The flags that change the recipe, applied over `c` (the preset's, the defaults, or a
    /// resumed run's configuration): --method first, then every explicit flag. `preset` is the
    /// preset `c` started from.
    func applyRecipeFlags(to c: inout TrainingConfig, preset: String?) throws {
        if let method { c.apply(method) }
        if let objective { c.objective = objective }
        if let budget { c.budget = budget }
        if let regions { c.regions = regions }
        if let generation { c.generation = generation }
        if let beta { c.beta = beta }
        if let cam { c.cam = cam }
        if let camLayer { c.camLayer = camLayer }
        if let mapRule { c.mapRule = mapRule }
        if let arch { c.architecture = arch.name }
        if let model {
            if let arch { throw ValidationError("--model brings its own architecture; drop --arch \(arch.name)") }
            do { try ONNXTraining.use(model, in: &c) } catch { throw ValidationError("\(error)") }
        }
        if let normalize { c.normalize = Normalized.canonical(normalize) ?? normalize }
        if let epochs { c.epochs = epochs }
        if let burnIn { c.burnIn = burnIn }
        if let valSplit { c.validationSplit = valSplit }
        if let batchSize { c.batchSize = batchSize }
        if let lr { c.learningRate = lr }
        if let momentum { c.momentum = momentum }
        if let weightDecay { c.weightDecay = weightDecay }
        if let schedule { c.schedule = schedule }
        if let milestones = try parsedMilestones() {
            c.milestones = milestones
        } else if let p = preset.flatMap(Presets.named), p.config.schedule == .piecewise,
                  p.config.milestones == LearningRateSchedule.officialMilestones(epochs: p.config.epochs,
                                                                                 burnIn: p.config.burnIn) {
            // The official schedule counts from the burn-in: it follows a changed --epochs or --burn-in.
            c.milestones = LearningRateSchedule.officialMilestones(epochs: c.epochs, burnIn: c.burnIn)
        }
        if let lrGamma { c.gamma = lrGamma }
        if let warmupEpochs { c.warmupEpochs = warmupEpochs }
        if let epsilon { c.epsilon = epsilon.value }
        if let epsilonLow { c.epsilonLow = epsilonLow.value }
        if let stepSize { c.stepSize = stepSize.value }
        if let steps { c.steps = steps }
        if let evalSteps { c.evalSteps = evalSteps }
        if let seed = output.givenSeed { c.seed = seed }
        if balanced { c.balancedCheck = true }
        if let trainPrecision = training.trainPrecision { c.trainPrecision = trainPrecision }
        // Absolute, so that a resumed run started elsewhere finds the file.
        if let initialWeights { c.initialWeights = URL(fileURLWithPath: initialWeights).standardizedFileURL.path }
    }

    /// The preset (or the built-in defaults), then --dataset, --method and every explicit flag.
    /// An explicit --dataset overrides the preset's dataset; the default dataset does not.
    func resolvedConfig() throws -> TrainingConfig {
        var c = TrainingConfig()
        if let preset {
            guard let p = Presets.named(preset) else {
                throw ValidationError("unknown --preset '\(preset)'; `part presets` lists the \(Presets.all.count) presets")
            }
            c = p.config
        }
        if preset == nil || data.givenDataset != nil { c.dataset = data.dataset.rawValue }
        try applyRecipeFlags(to: &c, preset: preset)
        // A new run's FGSM step without --alpha: Wong et al.'s 1.25 eps (10/255 at 8/255). Only
        // here: a resumed run keeps the step it recorded.
        if stepSize == nil && c.generation.singleStep { c.stepSize = 1.25 * c.epsilon }
        // A preset's bf16 training passes on a CPU without bf16 kernels run in fp32 (`run` warns);
        // an explicit --train-precision bf16 is refused instead.
        if training.trainPrecision == nil && c.trainPrecision == .bf16 && !Engine.supportsBF16 { c.trainPrecision = .fp32 }
        return c.resolved
    }

    /// The process options given on this command over `options` (the defaults, or a resumed
    /// run's recorded options).
    func runOptions(over options: RunOptions) -> RunOptions {
        var o = options
        if let trainLimit { o.trainLimit = trainLimit }
        if let evalLimit { o.evalLimit = evalLimit }
        if !optimizations.without.isEmpty { o.without = optimizations.without }
        if let precision = engine.givenPrecision { o.precision = precision.rawValue }
        if let every = checkpoints.checkpointEvery { o.checkpointEvery = every }
        if let minutes = checkpoints.checkpointMinutes { o.checkpointMinutes = minutes }
        if let tensorboard = reporting.tensorboard { o.tensorboard = URL(fileURLWithPath: tensorboard).standardizedFileURL.path }
        if let every = reporting.givenTensorboardEvery { o.tensorboardEvery = every }
        if reporting.report { o.report = true }
        if parallel.syncBatchNorm { o.syncBatchNorm = true }
        return o
    }

    /// The plan of a new job: the resolved configuration, the dataset request of its dataset
    /// (--dataset, else the preset's), the options of this command and --seeds.
    func newPlan() throws -> RunPlan {
        let config = try resolvedConfig()
        var request = data.request.absolute
        if let name = DatasetName(rawValue: config.dataset) { request.name = name }
        request.augmentation = augmentation.policy
        var options = runOptions(over: RunOptions())
        // A class-balanced check makes --train-limit class-balanced too (a resume keeps the record's).
        options.balancedTrainLimit = config.balancedCheck == true
        // A preset's precision of attack and CAM passes, unless --precision says otherwise.
        if engine.givenPrecision == nil, let precision = config.precision { options.precision = precision.rawValue }
        return RunPlan(config: config, dataset: request, options: options, seeds: try parsedSeeds())
    }

    /// The recipe flags given that the resolved recipe `c` never reads, as one warning line (nil:
    /// none). Not an error, since scripts pass one set of flags to several methods; but a user who
    /// gives --eps-low to an AT run may believe they trained PART.
    func flagsWithoutEffect(on c: TrainingConfig) -> String? {
        var notes = [String]()
        if c.budget != .cam {
            let given = [("--eps-low", epsilonLow != nil), ("--cam", cam != nil), ("--cam-layer", camLayer != nil),
                         ("--map-rule", mapRule != nil), ("--burn-in", burnIn != nil)].filter(\.1).map(\.0)
            if !given.isEmpty {
                notes.append("\(given.joined(separator: ", ")) shape\(given.count == 1 ? "s" : "") a CAM budget, "
                             + "and this run's budget is \(c.budget.rawValue)")
            }
        }
        if c.objective == .at && beta != nil {
            notes.append("--beta weights the KL term of TRADES and MART, and this run's objective is at")
        }
        return notes.isEmpty ? nil : "warning: " + notes.joined(separator: "; ") + ": without effect here"
    }

    /// --lr-milestones as given (space- or comma-separated, or "none"); nil when not given.
    func parsedMilestones() throws -> [Int]? {
        let items = lrMilestones.flatMap { $0.split(separator: ",") }.map { $0.trimmingCharacters(in: .whitespaces) }
        if lrMilestones.isEmpty { return nil }
        if items == ["none"] { return [] }
        return try items.map {
            guard let v = Int($0) else { throw ValidationError("--lr-milestones takes epoch numbers or none, got '\($0)'") }
            return v
        }
    }

    /// --seeds as a list, nil when not given.
    func parsedSeeds() throws -> [UInt64]? {
        guard let seeds else { return nil }
        let values = seeds.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        let parsed = values.compactMap { UInt64($0) }
        guard parsed.count == values.count, !parsed.isEmpty else {
            throw ValidationError("--seeds takes comma-separated non-negative integers, e.g. 0,1,2, got '\(seeds)'")
        }
        guard Set(parsed).count == parsed.count else { throw ValidationError("--seeds lists a seed twice: \(seeds)") }
        return parsed
    }
}
