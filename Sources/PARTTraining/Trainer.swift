import Foundation
import PARTAttacks
import PARTCAM
import PARTData
import PARTEngine
import PARTNN

/// How budgets are chosen during training.
public enum TrainingMethod: String, Sendable, CaseIterable, Codable {
    /// Plain adversarial training: a constant map every epoch.
    case at
    /// Pixel-reweighted AT: `burnIn` epochs of AT, then CAM-based maps per batch.
    case part
}

/// Everything that defines a training run. Defaults are the Fashion-MNIST recipe (SPEC 7).
public struct TrainingConfig: Sendable, Codable {
    public var method: TrainingMethod = .part
    public var epochs = 10
    public var burnIn = 3
    public var batchSize = 128
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var weightDecay: Float = 2e-4
    /// Epochs (1-based) after which the learning rate is multiplied by `gamma`.
    public var milestones: [Int] = []
    public var gamma: Float = 0.1
    public var epsilon: Float = 0.1
    public var epsilonLow: Float = 0.0875
    public var stepSize: Float = 0.025
    public var steps = 10
    /// PGD steps of the per-epoch robustness check (PGD-20, alpha = stepSize).
    public var evalSteps = 20
    public var seed: UInt64 = 0

    public init() {}

    /// The learning rate of epoch `epoch` (1-based): piecewise constant with milestones.
    public func learningRate(epoch: Int) -> Float {
        milestones.filter { epoch > $0 }.reduce(learningRate) { lr, _ in lr * gamma }
    }

    /// A sentence for the first invalid setting, nil when all are valid.
    public func problem() -> String? {
        if epochs < 1 { return "--epochs must be at least 1" }
        if burnIn < 0 { return "--burn-in must be >= 0" }
        if method == .part && burnIn >= epochs { return "--burn-in (\(burnIn)) must be smaller than --epochs (\(epochs)) for PART" }
        if batchSize < 1 { return "--batch-size must be at least 1" }
        if !(learningRate > 0) { return "--lr must be > 0" }
        if !(momentum >= 0 && momentum < 1) { return "--momentum must be in [0, 1)" }
        if !(weightDecay >= 0) { return "--weight-decay must be >= 0" }
        if !(epsilon >= 0 && epsilon <= 1) { return "--eps must be in [0, 1]" }
        if !(epsilonLow >= 0 && epsilonLow <= epsilon) { return "--eps-low must be in [0, eps]" }
        if !(stepSize >= 0) { return "--alpha must be >= 0" }
        if steps < 0 || evalSteps < 0 { return "step counts must be >= 0" }
        return nil
    }
}

/// One epoch's numbers, as logged.
public struct EpochReport: Sendable, Codable {
    public let epoch: Int
    public let epochs: Int
    public let budget: String
    public let learningRate: Float
    public let loss: Double
    public let trainAccuracy: Double
    public let cleanAccuracy: Double
    public let robustAccuracy: Double
    public let evalCount: Int
    /// Share of (pixel, channel) entries trained at full eps.
    public let fullEpsilonFraction: Double
    public let imagesPerSecond: Double
    public let seconds: Double
    public let checkpoint: String
}

/// Runs AT or PART: for each batch, a budget (constant, or CAM-based after burn-in), adversarial
/// examples from the objective, one SGD step. After each epoch: clean and PGD accuracy on the
/// held-out set, a report, and an atomically written checkpoint.
public final class Trainer {
    public let config: TrainingConfig
    public let model: ImageClassifier
    public let objective: Objective
    public let partBudget: BudgetProvider
    public let optimizer: SGD
    /// The run's sequential randomness (shuffling); saved with every checkpoint. Draws that
    /// belong to an example (random starts) are keyed by (seed, epoch, dataset index) instead.
    public private(set) var rng: RNG

    public init(config: TrainingConfig, model: ImageClassifier, rng: RNG,
                cam: CAMBudget = CAMBudget(method: GradCAM(), rule: ZScoreRule())) {
        self.config = config
        self.model = model
        self.rng = rng
        objective = AdversarialTraining(attack: PGD(steps: config.steps, stepSize: config.stepSize))
        partBudget = CAMBudgetProvider(cam: cam, epsilon: config.epsilon, epsilonLow: config.epsilonLow)
        optimizer = SGD(parameters: model.parameters, learningRate: config.learningRate, momentum: config.momentum,
                        weightDecay: config.weightDecay)
    }

    /// The budget provider of epoch `epoch` (1-based).
    public func budgetProvider(epoch: Int) -> BudgetProvider {
        config.method == .part && epoch > config.burnIn ? partBudget : ConstantBudget(epsilon: config.epsilon)
    }

    /// Trains for `config.epochs` epochs.
    /// - Parameters:
    ///   - runDirectory: where `last.safetensors` (model), `last.state.safetensors` (optimiser
    ///     and RNG) and a line of `log.jsonl` are written after every epoch.
    ///   - progress: called after every batch with (epoch, batches done, batches in epoch).
    ///   - report: called after every epoch.
    public func train(on data: ImageDataset, heldOut: ImageDataset, runDirectory: URL,
                      progress: (Int, Int, Int) -> Void = { _, _, _ in },
                      report: (EpochReport) throws -> Void) throws {
        try FileManager.default.createDirectory(at: runDirectory, withIntermediateDirectories: true)
        for epoch in 1...config.epochs {
            optimizer.learningRate = config.learningRate(epoch: epoch)
            let provider = budgetProvider(epoch: epoch)
            let sampler = BatchSampler(count: data.count, batchSize: config.batchSize, shuffle: true, rng: &rng)
            let batches = Array(sampler)
            var lossSum = 0.0, correct = 0, seen = 0, fullEntries = 0.0, entries = 0.0
            let start = Date()
            // Gathered, augmented (keyed by seed, index and epoch) and converted one batch ahead.
            for (b, batch) in Batcher(data, batches: batches, seed: config.seed, epoch: epoch).enumerated() {
                let (x, y, indices) = (batch.images, batch.labels, batch.indices)
                let budget = try provider.budget(model, images: x)
                fullEntries += budget.fraction(atLeast: config.epsilon) * Double(budget.values.count)
                entries += Double(budget.values.count)
                let batch = AttackBatch(images: x, labels: y, indices: indices, budget: budget)
                let adversarial = try objective.adversarialExamples(model, batch,
                                                                    seed: KeyedStream.derivedSeed(config.seed, epoch))
                optimizer.zeroGradients()
                let step = try objective.accumulateGradients(model, images: x, adversarial: adversarial, labels: y)
                optimizer.step()
                lossSum += Double(step.loss) * Double(indices.count)
                correct += step.correct
                seen += indices.count
                progress(epoch, b + 1, batches.count)
            }
            let seconds = Date().timeIntervalSince(start)
            // The same held-out starts every epoch, so epochs are compared on equal terms.
            let check = try Evaluation.run(model, on: heldOut, attack: PGD(steps: config.evalSteps, stepSize: config.stepSize),
                                           epsilon: config.epsilon, batchSize: 256,
                                           seed: KeyedStream.derivedSeed(config.seed, -1))
            let path = runDirectory.appendingPathComponent("last.safetensors")
            try Checkpoint.save(model, to: path, metadata: ["epoch": String(epoch), "method": config.method.rawValue])
            try saveState(epoch: epoch, to: runDirectory.appendingPathComponent("last.state.safetensors"))
            let epochReport = EpochReport(epoch: epoch, epochs: config.epochs, budget: provider.name,
                               learningRate: optimizer.learningRate, loss: lossSum / Double(max(seen, 1)),
                               trainAccuracy: Double(correct) / Double(max(seen, 1)),
                               cleanAccuracy: check.cleanAccuracy, robustAccuracy: check.robustAccuracy ?? 0,
                               evalCount: check.count, fullEpsilonFraction: entries > 0 ? fullEntries / entries : 0,
                               imagesPerSecond: Double(seen) / max(seconds, 1e-9), seconds: seconds,
                               checkpoint: path.path)
            try appendLog(epochReport, to: runDirectory.appendingPathComponent("log.jsonl"))
            try report(epochReport)
        }
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
