import Foundation
import PARTAttacks
import PARTCAM
import PARTData
import PARTEngine
import PARTNN

/// One epoch's numbers, as logged.
public struct EpochReport: Sendable, Codable {
    public let epoch: Int
    public let epochs: Int
    public let seed: UInt64
    /// The recipe: shorthand, objective and generation attack.
    public let method: String
    public let objective: String
    public let generation: String
    /// The epoch's budget provider ("constant", "gradcam/zscore").
    public let budget: String
    /// The learning rate of the epoch's last batch.
    public let learningRate: Float
    public let loss: Double
    /// Accuracy on the training batches' adversarial examples (training mode).
    public let trainAccuracy: Double
    /// Clean and PGD accuracy of the held-out check.
    public let cleanAccuracy: Double
    public let robustAccuracy: Double
    public let evalCount: Int
    /// What the check ran on: "test" (the first test images) or "validation" (held-out
    /// training images, `--val-split`).
    public let heldOut: String
    /// Share of (pixel, channel) entries trained at full eps.
    public let fullEpsilonFraction: Double
    public let imagesPerSecond: Double
    /// Wall-clock seconds of the epoch's training (the held-out check excluded), summed across resumes.
    public let seconds: Double
    /// Process CPU seconds of the same, all threads (`processCPUSeconds`): unlike `seconds`, they
    /// leave out time the run was stopped or waited for a core. Nil when part of the epoch ran under
    /// a version that did not count them.
    public let cpuSeconds: Double?
    public let checkpoint: String
    /// Whether this epoch's model became `best.safetensors` (validation split only).
    public let best: Bool
}

/// The reports of a finished run.
public struct TrainingOutcome: Sendable {
    public let last: EpochReport
    /// The epoch kept as `best.safetensors`, when a validation split was used.
    public let best: EpochReport?
}

/// Runs a recipe: for each batch, a budget from the epoch's provider (constant during burn-in),
/// training examples from the generation attack on the objective's generation loss, and one SGD
/// step on the objective's training loss. After each epoch: clean and PGD accuracy on the
/// held-out images, a report, a log line and the checkpoints.
///
/// The loop knows no objective, budget or attack by name: they come from the configuration
/// through `Objective`, `BudgetSchedule` and `GenerationAttack` (an `AttackCatalog` entry).
public final class Trainer {
    public let config: TrainingConfig
    public let model: ImageClassifier
    public let objective: Objective
    public let budgets: BudgetSchedule
    public let generator: Attack
    public let schedule: LearningRateSchedule
    public let optimizer: SGD
    /// The CAM layer of a CAM budget (nil for a constant budget).
    public let camLayer: String?
    /// The run's sequential randomness (shuffling); saved with every checkpoint. Draws that
    /// belong to an example (random starts, start noise) are keyed by (seed, epoch, dataset
    /// index) instead.
    public internal(set) var rng: RNG
    /// Checkpoints besides each epoch's end (`--checkpoint-every`, `--checkpoint-minutes`).
    public var checkpointing = CheckpointPolicy()
    /// The run's data request and options, recorded in `config.json` beside the configuration so
    /// that `part train --resume` rebuilds the run from it (nil: only the configuration is recorded).
    public var plan: RunPlan?
    /// Set by `resume(from:)`: the next `train` continues from it.
    var resumeState: ResumeState?
    /// The data-parallel job this trainer is one rank of (nil: one process). See DataParallel.swift.
    public var parallel: DataParallel?
    /// Called after every batch's step with (epoch, batch, batches in the epoch, the batch's
    /// mean training loss), for loggers of per-batch figures (TensorBoard).
    public var batchLoss: ((Int, Int, Int, Double) -> Void)?
    /// Receives warning lines (each beginning `warning: `), such as `OverfittingGuard`'s.
    public var warn: ((String) -> Void)?
    /// Warnings about the model itself (an ONNX graph without batch norm), for the caller to print.
    public internal(set) var modelWarnings: [String] = []

    public init(config: TrainingConfig, model: ImageClassifier, rng: RNG) throws {
        if let problem = config.problem() { throw TrainingError(problem) }
        self.config = config.resolved
        self.model = model
        self.rng = rng
        objective = config.objective.make(beta: config.beta)
        generator = try config.generation.attack(for: objective.generation, steps: config.steps, stepSize: config.stepSize)
        budgets = try BudgetSchedule(config)
        schedule = config.learningRateSchedule
        camLayer = config.budget == .cam ? try CAMLayer.resolve(config.camLayer, model: model) : nil
        optimizer = SGD(parameters: model.parameters, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
    }

    /// The budget provider of epoch `epoch` (1-based).
    public func budgetProvider(epoch: Int) -> BudgetProvider { budgets.provider(epoch: epoch) }

    /// Trains for `config.epochs` epochs.
    /// - Parameters:
    ///   - data: the training set. With `config.validationSplit` = N > 0, N of its images (the
    ///     same for every run and seed) are held out of training and checked instead of `heldOut`.
    ///   - heldOut: the images of the per-epoch check (the first test images).
    ///   - runDirectory: receives `config.json` before the first step, then after every epoch
    ///     (and as `checkpointing` asks) one atomic checkpoint: `last.safetensors` (model),
    ///     `last.state.safetensors` (optimiser, RNG, position), a line of `log.jsonl` at an
    ///     epoch's end, `best.safetensors` when the validation accuracy improves, committed by
    ///     `checkpoint.json` (see `CheckpointStore`). After `resume(from:)` the run continues
    ///     from its checkpoint. A non-finite loss, gradient or weight stops the run with
    ///     `NonFiniteError`; SIGINT or SIGTERM (after `Interrupt.install`) with a checkpoint
    ///     and `TrainingInterrupted`.
    ///   - progress: called after every batch with (epoch, batches done, batches in epoch).
    ///   - report: called after every epoch.
    ///
    /// With a data-parallel job's synchronised batch norm, the batch norms this call runs use
    /// the ranks' statistics: the reducer is bound to this call (a task-local value), never
    /// switched on for the whole process.
    @discardableResult
    public func train(on data: ImageDataset, heldOut: ImageDataset, runDirectory: URL,
                      progress: (Int, Int, Int) -> Void = { _, _, _ in },
                      report: (EpochReport) throws -> Void) throws -> TrainingOutcome {
        let synchronization = parallel.flatMap { $0.synchronizedBatchNorm ? SynchronizedStatistics($0) : nil }
        return try BatchNorm2d.$synchronization.withValue(synchronization) {
            try trainBound(on: data, heldOut: heldOut, runDirectory: runDirectory, progress: progress, report: report)
        }
    }

    private func trainBound(on data: ImageDataset, heldOut: ImageDataset, runDirectory: URL,
                            progress: (Int, Int, Int) -> Void, report: (EpochReport) throws -> Void) throws -> TrainingOutcome {
        if config.budget == .cam, let problem = config.mapRule.channelProblem(channels: data.channels, images: data.name) {
            throw TrainingError(problem)
        }
        let split = try TrainingSplit(data, validation: config.validationSplit)
        let check = split.validation ?? heldOut
        let isRoot = parallel?.isRoot ?? true
        try parallel?.checkAgreement(configuration: try JSONOutput.line(config), data: data, model: model)
        // A resumed run continues its store, position and reports; a new one starts them.
        let store: CheckpointStore
        var start = TrainingPosition()
        var last: EpochReport?, best: EpochReport?
        var history: [EpochReport] = []
        if let resumed = resumeState, resumed.store.directory.standardizedFileURL == runDirectory.standardizedFileURL {
            store = resumed.store
            start = resumed.position
            last = resumed.reports.last
            best = resumed.reports.last { $0.best }
            history = resumed.reports
        } else {
            if isRoot {
                try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
                try writeConfig(to: runDirectory, trainImages: split.train.count, check: check,
                                heldOut: split.validation == nil ? "test" : "validation", data: data.name)
            }
            store = CheckpointStore(directory: runDirectory)
        }
        resumeState = nil
        var lastSave = Date()
        for epoch in (start.epochsDone + 1)..<(config.epochs + 1) {
            let provider = budgets.provider(epoch: epoch)
            let seed = KeyedStream.derivedSeed(config.seed, epoch)
            // The shuffle is drawn from the RNG of the epoch's start, which a mid-epoch
            // checkpoint saves: a resume draws it again and skips the batches done.
            let epochRng = rng
            let sampler = BatchSampler(count: split.train.count, batchSize: config.batchSize, shuffle: true, rng: &rng)
            let batches = sampler.map(split.datasetIndices)
            // This rank's contiguous share of every global batch (all of it in one process).
            let shares = try parallel?.localBatches(batches) ?? batches
            let resuming = epoch == start.epochsDone + 1
            let skip = resuming ? min(start.batchesDone, batches.count) : 0
            var sums = resuming ? start.sums : EpochSums()
            let begin = Date(), before = sums.seconds
            let cpuBegin = processCPUSeconds(), cpuBefore = sums.cpuSeconds
            func cpuSoFar() -> Double? { cpuBefore.map { $0 + processCPUSeconds() - cpuBegin } }
            // Gathered, augmented (keyed by seed, index and epoch) and converted one batch ahead.
            for (i, batch) in Batcher(data, batches: Array(shares.dropFirst(skip)), seed: config.seed, epoch: epoch).enumerated() {
                let b = skip + i
                let (x, y, indices) = (batch.images, batch.labels, batch.indices)
                optimizer.learningRate = schedule.rate(epoch: epoch, batch: b, batches: batches.count)
                parallel?.beginStep(localCount: indices.count, globalCount: batches[b].count)
                optimizer.zeroGradients()
                // A rank whose share of a short last batch is empty adds zero gradients.
                var step = ObjectiveStep(loss: 0, correct: 0)
                if !indices.isEmpty {
                    let budget = try provider.budget(model, images: x)
                    sums.fullEntries += budget.fraction(atLeast: config.epsilon) * Double(budget.values.count)
                    sums.entries += Double(budget.values.count)
                    var batch = AttackBatch(images: x, labels: y, indices: indices, budget: budget)
                    if objective.generation.needsReference { batch.reference = try AttackPass.logits(model, x) }
                    let adversarial = try generator.perturb(model, batch, seed: seed)
                    step = try objective.accumulateGradients(model, clean: x, adversarial: adversarial, labels: y,
                                                            precision: config.trainPrecision.dtype)
                }
                try parallel?.reduceGradients(model)
                FaultInjection.reach("mid-batch")
                if let bad = NonFiniteGuard.lossOrGradient(loss: step.loss, parameters: model.parameters) {
                    throw diverged(bad, epoch: epoch, batch: b + 1, batches: batches.count, store: store)
                }
                optimizer.step()
                if let bad = NonFiniteGuard.weights(model.parameters) {
                    throw diverged(bad, epoch: epoch, batch: b + 1, batches: batches.count, store: store)
                }
                sums.lossSum += Double(step.loss) * Double(indices.count)
                sums.correct += step.correct
                sums.seen += indices.count
                progress(epoch, b + 1, batches.count)
                batchLoss?(epoch, b + 1, batches.count, Double(step.loss))
                FaultInjection.reach("batch")
                let interrupted = Interrupt.requested
                if interrupted || checkpointing.due(done: b + 1, of: batches.count, since: lastSave) {
                    sums.seconds = before + Date().timeIntervalSince(begin)
                    sums.cpuSeconds = cpuSoFar()
                    let position = TrainingPosition(epochsDone: epoch - 1, batchesDone: b + 1, sums: sums)
                    if isRoot {
                        if let bad = try heldOutLogitsProblem(check) {
                            throw diverged(bad, epoch: epoch, batch: b + 1, batches: batches.count, store: store)
                        }
                        try commitCheckpoint(store, position: position, rng: epochRng, batches: batches.count,
                                             logLine: nil, best: false)
                    }
                    lastSave = Date()
                    if interrupted {
                        throw TrainingInterrupted(signal: Interrupt.signal, position: store.committed?.position ?? "",
                                                  directory: runDirectory)
                    }
                }
            }
            let seconds = before + Date().timeIntervalSince(begin), cpuSeconds = cpuSoFar()
            if let parallel {
                // The epoch's figures over every rank's examples.
                let t = try parallel.totals([sums.lossSum, Double(sums.correct), Double(sums.seen), sums.fullEntries,
                                             sums.entries])
                (sums.lossSum, sums.correct, sums.seen, sums.fullEntries, sums.entries) = (t[0], Int(t[1]), Int(t[2]), t[3], t[4])
            }
            // The same held-out starts every epoch, so epochs are compared on equal terms.
            let evalAttack = PGD(steps: config.evalSteps, stepSize: config.checkStepSize)
            let evalSeed = KeyedStream.derivedSeed(config.seed, -1)
            let result = try parallel?.evaluate(model, on: check, attack: evalAttack, epsilon: config.epsilon,
                                                batchSize: 256, seed: evalSeed)
                ?? Evaluation.run(model, on: check, attack: evalAttack, epsilon: config.epsilon, batchSize: 256,
                                  seed: evalSeed)
            // Finite weights can still give non-finite logits (weights of 1e35): such a model is
            // no "last good" checkpoint, so the run stops before committing it.
            if result.nonFinite > 0 {
                throw diverged("the held-out logits of \(result.nonFinite) of \(result.count) images are not finite",
                               epoch: epoch, batch: batches.count, batches: batches.count, store: store)
            }
            let robust = result.robustAccuracy ?? 0
            let isBest = split.validation != nil && robust > (best?.robustAccuracy ?? -1)
            let path = runDirectory.appendingPathComponent("last.safetensors")
            let seen = sums.seen
            let epochReport = EpochReport(
                epoch: epoch, epochs: config.epochs, seed: config.seed, method: config.method, objective: objective.name,
                generation: config.generation.rawValue, budget: provider.name, learningRate: optimizer.learningRate,
                loss: sums.lossSum / Double(max(seen, 1)), trainAccuracy: Double(sums.correct) / Double(max(seen, 1)),
                cleanAccuracy: result.cleanAccuracy, robustAccuracy: robust, evalCount: result.count,
                heldOut: split.validation == nil ? "test" : "validation",
                fullEpsilonFraction: sums.entries > 0 ? sums.fullEntries / sums.entries : 0,
                imagesPerSecond: Double(seen - (resuming ? start.sums.seen : 0)) / max(seconds - before, 1e-9),
                seconds: seconds, cpuSeconds: cpuSeconds, checkpoint: path.path, best: isBest)
            // Model, state, best copy and log line: one atomic unit.
            if isRoot {
                try commitCheckpoint(store, position: TrainingPosition(epochsDone: epoch), rng: rng,
                                     batches: batches.count, logLine: epochReport, best: isBest)
            }
            lastSave = Date()
            FaultInjection.reach("epoch-end")
            if isBest { best = epochReport }
            last = epochReport
            if isRoot { try report(epochReport) }
            if isRoot, let line = OverfittingGuard.warning(history: history, current: epochReport) { warn?(line) }
            history.append(epochReport)
            if Interrupt.requested && epoch < config.epochs {
                throw TrainingInterrupted(signal: Interrupt.signal, position: store.committed?.position ?? "",
                                          directory: runDirectory)
            }
        }
        guard let last else { throw TrainingError("\(runDirectory.path) holds no epoch to report") }
        return TrainingOutcome(last: last, best: best)
    }

    /// Whether the model's logits on the first held-out images (one batch) are finite, checked
    /// before a mid-epoch checkpoint is kept; nil when they are.
    private func heldOutLogitsProblem(_ check: ImageDataset) throws -> String? {
        let n = min(check.count, 256)
        guard n > 0 else { return nil }
        let logits = try model.forward(check.batch(Array(0..<n)).images, mode: .eval)
        let rows = logits.nonFiniteRows()
        return rows == 0 ? nil : "the held-out logits of \(rows) of \(n) images are not finite"
    }

    /// The error that stops a diverged run: where, what, and the checkpoint that stays.
    private func diverged(_ what: String, epoch: Int, batch: Int, batches: Int, store: CheckpointStore) -> NonFiniteError {
        let kept = store.committed.map { "the last good checkpoint (\($0.position)) stays in \(store.directory.path)" }
            ?? "no checkpoint had been written yet"
        return NonFiniteError(description: "epoch \(epoch), batch \(batch) of \(batches): \(what); the run diverged and "
                              + "stopped: \(kept); lower --lr (now \(optimizer.learningRate))")
    }

    /// The recipe in checkpoint metadata, so that `part eval` can say how a model was trained.
    public func recipeMetadata(epoch: Int) -> [String: String] {
        var meta = [RecipeKey.epoch: String(epoch), RecipeKey.method: config.method,
                    RecipeKey.objective: config.objective.rawValue, RecipeKey.budget: config.budget.rawValue,
                    RecipeKey.generation: config.generation.rawValue, RecipeKey.dataset: config.dataset,
                    RecipeKey.seed: String(config.seed), RecipeKey.epsilon: "\(config.epsilon)"]
        if config.objective != .at { meta[RecipeKey.beta] = "\(config.beta)" }
        if let normalize = config.normalize { meta[Normalized.metadataKey] = normalize }
        if config.budget == .regions { meta[RecipeKey.regions] = config.regions }
        if config.budget == .cam {
            meta[RecipeKey.cam] = config.cam.rawValue
            meta[RecipeKey.mapRule] = config.mapRule.rawValue
            meta[RecipeKey.camLayer] = camLayer
            meta[RecipeKey.epsilonLow] = "\(config.epsilonLow)"
        }
        return meta
    }

    /// The resolved configuration, before the first step.
    private func writeConfig(to directory: URL, trainImages: Int, check: ImageDataset, heldOut: String, data: String) throws {
        try RunRecord(config: config, plan: plan, camLayer: camLayer, trainImages: trainImages, heldOut: heldOut,
                      heldOutImages: check.count, data: data).write(to: directory)
    }
}

/// The training images of a run and, with a validation split, the held-out ones.
///
/// The held-out images are the first N of a permutation drawn from a fixed seed, so every run and
/// every seed of a comparison holds out the same images (Rice et al. 2020 select the most robust
/// epoch on such a split).
struct TrainingSplit {
    /// Dataset indices of the training images, increasing.
    let train: [Int]
    let validation: ImageDataset?

    static let seed: UInt64 = 0x5641_4C5F_5350_4C54

    init(_ data: ImageDataset, validation count: Int) throws {
        guard count > 0 else {
            train = Array(0..<data.count)
            validation = nil
            return
        }
        guard count < data.count else {
            throw TrainingError("--val-split \(count) must be smaller than the \(data.count) training images")
        }
        var rng = RNG(seed: TrainingSplit.seed)
        let order = rng.permutation(data.count)
        let held = Array(order.prefix(count)).sorted()
        let heldSet = Set(held)
        train = (0..<data.count).filter { !heldSet.contains($0) }
        // The held-out images, copied (no augmentation: they are a check); as a subset they keep
        // their indices in the training split, which key the check's random starts.
        validation = try data.subset(held, name: "\(data.name) validation split").withAugmentation(.none)
    }

    /// Dataset indices of a batch of the sampler's positions (the sampler shuffles 0..<train.count).
    func datasetIndices(_ positions: [Int]) -> [Int] { positions.map { train[$0] } }
}
