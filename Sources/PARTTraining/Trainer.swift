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
    public let seconds: Double
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

/// What a run directory's `config.json` holds: the resolved configuration and the data it ran on.
struct RunConfigFile: Encodable {
    let method: String
    let config: TrainingConfig
    let camLayer: String?
    let trainImages: Int
    let heldOut: String
    let heldOutImages: Int
    let data: String
}

/// Runs a recipe: for each batch, a budget from the epoch's provider (constant during burn-in),
/// training examples from the generation attack on the objective's generation loss, and one SGD
/// step on the objective's training loss. After each epoch: clean and PGD accuracy on the
/// held-out images, a report, a log line and the checkpoints.
///
/// The loop knows no objective, budget or attack by name: they come from the configuration
/// through `Objective`, `BudgetSchedule` and `GenerationKind`.
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
    public private(set) var rng: RNG
    /// The data-parallel job this trainer is one rank of (nil: one process). See DataParallel.swift.
    public var parallel: DataParallel?
    /// Called after every batch's step with (epoch, batch, batches in the epoch, the batch's
    /// mean training loss), for loggers of per-batch figures (TensorBoard).
    public var batchLoss: ((Int, Int, Int, Double) -> Void)?

    public init(config: TrainingConfig, model: ImageClassifier, rng: RNG) throws {
        if let problem = config.problem() { throw TrainingError(problem) }
        self.config = config.resolved
        self.model = model
        self.rng = rng
        objective = config.objective.make(beta: config.beta)
        generator = try config.generation.attack(for: objective.generation, steps: config.steps, stepSize: config.stepSize)
        budgets = BudgetSchedule(config)
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
    ///     `last.safetensors` (model), `last.state.safetensors` (optimiser and RNG), a line of
    ///     `log.jsonl`, and `best.safetensors` when the validation accuracy improves.
    ///   - progress: called after every batch with (epoch, batches done, batches in epoch).
    ///   - report: called after every epoch.
    @discardableResult
    public func train(on data: ImageDataset, heldOut: ImageDataset, runDirectory: URL,
                      progress: (Int, Int, Int) -> Void = { _, _, _ in },
                      report: (EpochReport) throws -> Void) throws -> TrainingOutcome {
        if config.budget == .cam && !config.mapRule.accepts(channels: data.channels) {
            throw TrainingError("the official map rule colours maps as RGB and needs 3-channel images, \(data.name) has "
                                + "\(data.channels) channel\(data.channels == 1 ? "" : "s"): use --map-rule zscore")
        }
        let split = try TrainingSplit(data, validation: config.validationSplit)
        let check = split.validation ?? heldOut
        let isRoot = parallel?.isRoot ?? true
        try parallel?.checkAgreement(configuration: try JSONOutput.line(config), data: data, model: model)
        parallel?.attach()
        defer { parallel?.detach() }
        if isRoot {
            try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
            try writeConfig(to: runDirectory, trainImages: split.train.count, check: check,
                            heldOut: split.validation == nil ? "test" : "validation", data: data.name)
        }
        var last: EpochReport?, best: EpochReport?
        for epoch in 1...config.epochs {
            let provider = budgets.provider(epoch: epoch)
            let seed = KeyedStream.derivedSeed(config.seed, epoch)
            let sampler = BatchSampler(count: split.train.count, batchSize: config.batchSize, shuffle: true, rng: &rng)
            let global = sampler.map(split.datasetIndices)
            // This rank's contiguous share of every global batch (all of it in one process).
            let batches = try parallel?.localBatches(global) ?? global
            var lossSum = 0.0, correct = 0, seen = 0, fullEntries = 0.0, entries = 0.0
            let start = Date()
            // Gathered, augmented (keyed by seed, index and epoch) and converted one batch ahead.
            for (b, batch) in Batcher(data, batches: batches, seed: config.seed, epoch: epoch).enumerated() {
                let (x, y, indices) = (batch.images, batch.labels, batch.indices)
                optimizer.learningRate = schedule.rate(epoch: epoch, batch: b, batches: batches.count)
                parallel?.beginStep(localCount: indices.count, globalCount: global[b].count)
                optimizer.zeroGradients()
                // A rank whose share of a short last batch is empty adds zero gradients.
                var step = ObjectiveStep(loss: 0, correct: 0)
                if !indices.isEmpty {
                    let budget = try provider.budget(model, images: x)
                    fullEntries += budget.fraction(atLeast: config.epsilon) * Double(budget.values.count)
                    entries += Double(budget.values.count)
                    var batch = AttackBatch(images: x, labels: y, indices: indices, budget: budget)
                    if objective.generation.needsReference { batch.reference = try AttackPass.logits(model, x) }
                    let adversarial = try generator.perturb(model, batch, seed: seed)
                    step = try objective.accumulateGradients(model, clean: x, adversarial: adversarial, labels: y)
                    guard step.loss.isFinite else {
                        throw TrainingError("the training loss became \(step.loss) in epoch \(epoch), batch \(b + 1): "
                                            + "the run diverged; lower --lr (now \(optimizer.learningRate))")
                    }
                }
                try parallel?.reduceGradients(model)
                optimizer.step()
                lossSum += Double(step.loss) * Double(indices.count)
                correct += step.correct
                seen += indices.count
                progress(epoch, b + 1, batches.count)
                batchLoss?(epoch, b + 1, batches.count, Double(step.loss))
            }
            let seconds = Date().timeIntervalSince(start)
            if let parallel {
                let t = try parallel.totals([lossSum, Double(correct), Double(seen), fullEntries, entries])
                (lossSum, correct, seen, fullEntries, entries) = (t[0], Int(t[1]), Int(t[2]), t[3], t[4])
            }
            // The same held-out starts every epoch, so epochs are compared on equal terms.
            let evalAttack = PGD(steps: config.evalSteps, stepSize: config.stepSize)
            let evalSeed = KeyedStream.derivedSeed(config.seed, -1)
            let result = try parallel?.evaluate(model, on: check, attack: evalAttack, epsilon: config.epsilon,
                                                batchSize: 256, seed: evalSeed)
                ?? Evaluation.run(model, on: check, attack: evalAttack, epsilon: config.epsilon, batchSize: 256,
                                  seed: evalSeed)
            let robust = result.robustAccuracy ?? 0
            let isBest = split.validation != nil && robust > (best?.robustAccuracy ?? -1)
            let path = try isRoot ? saveCheckpoints(epoch: epoch, in: runDirectory, best: isBest)
                : runDirectory.appendingPathComponent("last.safetensors")
            let epochReport = EpochReport(
                epoch: epoch, epochs: config.epochs, seed: config.seed, method: config.method, objective: objective.name,
                generation: config.generation.rawValue, budget: provider.name, learningRate: optimizer.learningRate,
                loss: lossSum / Double(max(seen, 1)), trainAccuracy: Double(correct) / Double(max(seen, 1)),
                cleanAccuracy: result.cleanAccuracy, robustAccuracy: robust, evalCount: result.count,
                heldOut: split.validation == nil ? "test" : "validation",
                fullEpsilonFraction: entries > 0 ? fullEntries / entries : 0,
                imagesPerSecond: Double(seen) / max(seconds, 1e-9), seconds: seconds, checkpoint: path.path, best: isBest)
            if isRoot { try appendLog(epochReport, to: runDirectory.appendingPathComponent("log.jsonl")) }
            if isBest { best = epochReport }
            last = epochReport
            if isRoot { try report(epochReport) }
        }
        return TrainingOutcome(last: last!, best: best)
    }

    /// The recipe in checkpoint metadata, so that `part eval` can say how a model was trained.
    public func recipeMetadata(epoch: Int) -> [String: String] {
        var meta = [RecipeKey.epoch: String(epoch), RecipeKey.method: config.method,
                    RecipeKey.objective: config.objective.rawValue, RecipeKey.budget: config.budget.rawValue,
                    RecipeKey.generation: config.generation.rawValue, RecipeKey.dataset: config.dataset,
                    RecipeKey.seed: String(config.seed)]
        if config.objective != .at { meta[RecipeKey.beta] = "\(config.beta)" }
        if config.budget == .cam {
            meta[RecipeKey.cam] = config.cam.rawValue
            meta[RecipeKey.mapRule] = config.mapRule.rawValue
            meta[RecipeKey.camLayer] = camLayer
        }
        return meta
    }

    /// Every checkpoint file of the run is written here: `last.safetensors` and
    /// `last.state.safetensors` after each epoch, and a copy of the model as `best.safetensors`
    /// when `best`. Each file is written atomically. Returns the model file's URL.
    private func saveCheckpoints(epoch: Int, in directory: URL, best: Bool) throws -> URL {
        let meta = recipeMetadata(epoch: epoch)
        let path = directory.appendingPathComponent("last.safetensors")
        try Checkpoint.save(model, to: path, metadata: meta)
        try saveState(epoch: epoch, to: directory.appendingPathComponent("last.state.safetensors"))
        if best { try Checkpoint.save(model, to: directory.appendingPathComponent("best.safetensors"), metadata: meta) }
        return path
    }

    /// The resolved configuration, before the first step.
    private func writeConfig(to directory: URL, trainImages: Int, check: ImageDataset, heldOut: String, data: String) throws {
        let file = RunConfigFile(method: config.method, config: config, camLayer: camLayer, trainImages: trainImages,
                                 heldOut: heldOut, heldOutImages: check.count, data: data)
        let encoder = JSONOutput.encoder()
        encoder.outputFormatting.insert(.prettyPrinted)
        try (try encoder.encode(file) + Data("\n".utf8)).write(to: directory.appendingPathComponent("config.json"),
                                                                options: .atomic)
    }

    /// One JSON line per epoch in the run directory, so a run keeps its own record.
    private func appendLog(_ report: EpochReport, to url: URL) throws {
        let line = Data((try JSONOutput.line(report) + "\n").utf8)
        if !FileManager.default.fileExists(atPath: url.path) {
            try line.write(to: url)
        } else {
            let handle = try FileHandle(forWritingTo: url)
            defer { try? handle.close() }
            try handle.seekToEnd()
            try handle.write(contentsOf: line)
        }
    }

    /// Optimiser momentum and RNG state beside the model checkpoint, for an exact resume.
    private func saveState(epoch: Int, to url: URL) throws {
        var file = SafetensorsFile()
        for (name, buffer) in optimizer.momentumBuffers { file.tensors["momentum.\(name)"] = buffer }
        file.metadata = [
            "epoch": String(epoch),
            "rng_state": rng.state.map { String($0) }.joined(separator: ","),
            "config": try JSONOutput.line(config),
        ]
        try file.write(to: url)
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
        // The held-out images, copied in their pixel type (no augmentation: they are a check).
        let stride = data.imageSize * data.pixelType.size
        var bytes = [UInt8](repeating: 0, count: count * stride)
        bytes.withUnsafeMutableBytes { out in
            for (row, i) in held.enumerated() {
                out.baseAddress!.advanced(by: row * stride).copyMemory(from: data.storage.pointer.advanced(by: i * stride),
                                                                       byteCount: stride)
            }
        }
        validation = try ImageDataset(name: "\(data.name) validation split", storage: try bytes.withUnsafeBytes { try ByteBuffer.copying($0) },
                                      pixelType: data.pixelType, labels: held.map { data.labels[$0] }, height: data.height,
                                      width: data.width, channels: data.channels, classes: data.classes,
                                      classNames: data.classNames, augmentation: .none)
    }

    /// Dataset indices of a batch of the sampler's positions (the sampler shuffles 0..<train.count).
    func datasetIndices(_ positions: [Int]) -> [Int] { positions.map { train[$0] } }
}
