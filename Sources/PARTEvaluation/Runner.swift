import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN

/// How an evaluation runs.
public struct EvaluationOptions: Sendable {
    /// Points per batch; batches are the fixed ranges [k * batchSize, (k + 1) * batchSize).
    public var batchSize: Int
    public var seed: UInt64
    /// Every attack on every correctly classified point (instead of only on the points that
    /// survived the stages before it).
    public var independent: Bool
    /// The per-example results file (JSON lines) that also makes the run resumable.
    public var resultsFile: URL?
    /// The worst-case examples as a float32 .npy [N, H, W, C].
    public var adversarialFile: URL?

    public init(batchSize: Int, seed: UInt64, independent: Bool = false, resultsFile: URL? = nil,
                adversarialFile: URL? = nil) {
        self.batchSize = batchSize
        self.seed = seed
        self.independent = independent
        self.resultsFile = resultsFile
        self.adversarialFile = adversarialFile
    }
}

/// A stage's totals over the evaluated points.
public struct StageSummary: Encodable, Sendable {
    public let name: String
    /// The stage with every parameter resolved.
    public let description: String
    /// Points still robust after it (in a sequence) or against it alone (independent); for
    /// natural, the correctly classified points.
    public let robust: Int
    /// Points it attacked and the successes that re-verification confirmed.
    public let attacked: Int
    public let successes: Int
    /// Claimed successes that re-verification refused.
    public let unverified: Int
    public let accuracy: Double
    public let seconds: Double
}

/// Where an evaluation is, for progress lines.
public struct EvaluationProgress: Sendable {
    /// Work done and total, in points weighted by the stages' nominal costs.
    public let done: Double
    public let total: Double
    public let batch: Int
    public let batches: Int
    public let stage: String
    /// Points finished and still robust at the end, over all finished batches.
    public let finished: Int
    public let robust: Int
    /// The batch in progress: its points, and those still robust after its last finished stage
    /// (`after`). A long evaluation of one batch shows its progress here.
    public let batchPoints: Int
    public let batchRobust: Int
    public let after: String
}

/// An evaluation's result.
public struct EvaluationSummary: Sendable {
    public let count: Int
    public let stages: [StageSummary]
    /// Points robust against every stage.
    public let robust: Int
    public var robustAccuracy: Double { count == 0 ? 0 : Double(robust) / Double(count) }
    public var cleanAccuracy: Double { stages[0].accuracy }
    public let outcomes: [ExampleOutcome]
    /// Points read back from the results file rather than evaluated by this run.
    public let resumed: Int
    /// (dataset index, stage) of every claimed success that re-verification refused.
    public let disagreements: [(index: Int, stage: String, reason: String)]
    /// Over the adversarial examples this run confirmed: the largest |x' - x|, and the range of
    /// their values (AutoAttack's closing sanity line).
    public let largestPerturbation: Float
    public let minimum: Float
    public let maximum: Float
    public let nonFinite: Int
}

/// The evaluation protocol: a sequence of attacks over a dataset, each on the points still
/// robust, with the worst case kept per example.
///
/// Per batch (a fixed range of dataset indices): the clean pass gives the prediction and the
/// initial robust flags; then every stage gathers the rows still robust (with `independent`,
/// every correctly classified row), attacks them with the stage's seed, and scatters back. A
/// claimed success (the adversarial example misclassified in its batch) counts only when it is
/// re-verified alone, in a batch of its own: inside the budget, inside [0, 1], misclassified. A
/// refusal is kept (`unverified`) and reported, and the point stays robust.
///
/// Stage seeds are derived from the run's seed and the stage's resolved description, so an
/// attack draws the same streams whether it runs alone or inside a composite such as `aa`, and
/// every draw is keyed by the point's dataset index: results do not depend on batch size,
/// composition or on a resume.
///
/// The loop itself is `run(communicator:)` (EvaluationLoop.swift): one process is its one-rank case.
public final class EvaluationRunner {
    public let model: ImageClassifier
    public let dataset: ImageDataset
    public let stages: [AttackCatalog.Stage]
    public let header: EvaluationHeader
    public let options: EvaluationOptions
    /// The budget of a batch of images (a constant map by default).
    public let budget: (Tensor) throws -> EpsilonMap
    public var progress: ((EvaluationProgress) -> Void)?
    /// Lines for the log on standard error (batch summaries, substitutions, disagreements).
    public var log: ((String) -> Void)?

    public init(model: ImageClassifier, dataset: ImageDataset, stages: [AttackCatalog.Stage], header: EvaluationHeader,
                options: EvaluationOptions, budget: @escaping (Tensor) throws -> EpsilonMap) throws {
        try Self.requireConsistent(stages: stages, header: header, points: dataset.count, options: options)
        self.model = model
        self.dataset = dataset
        self.stages = stages
        self.header = header
        self.options = options
        self.budget = budget
    }

    /// Throws unless the stages start with the natural one, the batch size is at least 1 and
    /// `header` describes these stages and this many points.
    static func requireConsistent(stages: [AttackCatalog.Stage], header: EvaluationHeader, points: Int,
                                  options: EvaluationOptions) throws {
        guard stages.first?.isNatural == true else { throw EvaluationError("an evaluation starts with the natural stage") }
        guard options.batchSize >= 1 else { throw EvaluationError("the batch size must be at least 1") }
        guard header.columns == stages.map(\.name), header.count == points else {
            throw EvaluationError("the header does not describe these stages and points")
        }
    }

    /// The seed of stage s: the run's seed and the stage's description (FNV-1a), so the same
    /// attack with the same parameters gets the same streams in any list.
    public func seed(ofStage s: Int) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in stages[s].description.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return KeyedStream.derivedSeed(options.seed, Int(truncatingIfNeeded: h))
    }

    /// Where a run continues: the results file (when one is given), the points it holds, the
    /// time spent per stage, and the batch in progress with the stages done on it.
    struct ResumePoint {
        var file: ResultsFile?
        var outcomes: [ExampleOutcome]
        var seconds: [Double]
        var pending: BatchProgress?
    }

    /// The log's line for a finished batch: robust accuracy after each stage.
    func batchLine(_ number: Int, of batches: Int, points: Range<Int>, outcomes: [ExampleOutcome]) -> String {
        "batch \(number)/\(batches) (points \(points.lowerBound)..<\(points.upperBound)): " + stages.indices.map { s in
            String(format: "%@ %.1f%%", stages[s].name as NSString,
                   100 * Double(outcomes.filter { $0.robust[s] }.count) / Double(outcomes.count))
        }.joined(separator: ", ")
    }

    /// Opens the results file, if any, and reads back where an earlier run of this evaluation
    /// stopped.
    func openResults() throws -> ResumePoint {
        let n = dataset.count, stageCount = stages.count
        var point = ResumePoint(file: nil, outcomes: [], seconds: [Double](repeating: 0, count: stageCount), pending: nil)
        if let url = options.resultsFile {
            let (file, loaded) = try ResultsFile.open(url, header: header)
            // A record must be one this evaluation could have written: its point's label, and
            // predictions among the model's classes (an edited file would skew every figure).
            let classes = model.numClasses
            if let bad = loaded.first(where: { o in
                o.index >= n || o.label != dataset.labels[o.index] || !(0..<Int32(classes)).contains(o.prediction)
                    || (o.adversarialPrediction.map { !(0..<Int32(classes)).contains($0) } ?? false)
                    || (o.brokenBy.map { !(0..<stageCount).contains($0) } ?? false)
            }) {
                throw EvaluationError("\(url.path): the record of point \(bad.index) (label \(bad.label), prediction "
                                      + "\(bad.prediction)) cannot come from this evaluation of \(classes) classes; the file was "
                                      + "edited or is corrupt (delete it to start over)")
            }
            point.file = file
            point.outcomes = loaded
            if let state = file.readProgress() {
                point.seconds = state.seconds
                // A batch in progress is taken only when it is exactly the next batch of this
                // evaluation, point by point; anything else (a corrupt file) is redone.
                if let batch = state.batch, batch.start == loaded.count, batch.stagesDone >= 1,
                   batch.stagesDone <= stageCount, batch.end == Swift.min(batch.start + options.batchSize, n),
                   batch.outcomes.map(\.index) == Array(batch.start..<batch.end),
                   batch.outcomes.allSatisfy({ o in
                       o.robust.count == stageCount && o.label == dataset.labels[o.index]
                           && (o.brokenBy.map { (0..<stageCount).contains($0) } ?? true)
                           && o.unverified.allSatisfy { (0..<stageCount).contains($0) }
                   }) {
                    point.pending = batch
                }
            }
        }
        let resumed = point.outcomes.count
        guard resumed % options.batchSize == 0 || resumed == n else {
            throw EvaluationError("\(options.resultsFile?.path ?? "the results file") holds \(resumed) points, not whole batches of "
                                  + "\(options.batchSize): it is corrupt (delete it to start over)")
        }
        return point
    }

    /// Opens the worst-case examples file of a resumed run, or creates it, and writes the labels
    /// beside it; nil without `--save-adversarial`.
    func openAdversarial(resuming: Bool) throws -> NPYFile? {
        guard let url = options.adversarialFile else { return nil }
        let n = dataset.count
        let shape = [n, dataset.height, dataset.width, dataset.channels]
        let adversarial: NPYFile
        if resuming {
            do {
                adversarial = try NPYFile.open(url, shape: shape)
            } catch {
                throw EvaluationError("\(error) but the results file holds finished work: pass the --save-adversarial file "
                                      + "of the interrupted run, or start over with a new --save-results file")
            }
        } else {
            adversarial = try NPYFile.create(url, shape: shape)
        }
        // The labels of the same points, so the arrays read back as a dataset.
        try NPYFile.writeLabels(Array(dataset.labels.prefix(n)), to: NPYFile.labelsURL(beside: url))
        return adversarial
    }

    /// The totals over every point's outcome.
    func summary(outcomes: [ExampleOutcome], seconds: [Double], refusals: [Refusal: String], sanity: Sanity,
                 resumed: Int) -> EvaluationSummary {
        let n = dataset.count
        // Every refusal is in the outcomes, those of an interrupted earlier run included.
        let disagreements = outcomes.flatMap { o in
            o.unverified.map { (index: o.index, stage: stages[$0].name,
                                reason: refusals[Refusal(index: o.index, stage: $0)] ?? "refused by re-verification in an earlier run") }
        }

        let summaries = stages.indices.map { s -> StageSummary in
            let robust = outcomes.filter { $0.robust[s] }.count
            let attacked = s == 0 ? n : outcomes.filter { options.independent ? $0.robust[0] : $0.robust[s - 1] }.count
            return StageSummary(name: stages[s].name, description: stages[s].description, robust: robust,
                                attacked: attacked, successes: s == 0 ? n - robust : outcomes.filter { $0.brokenBy == s || (options.independent && $0.robust[0] && !$0.robust[s]) }.count,
                                unverified: outcomes.filter { $0.unverified.contains(s) }.count,
                                accuracy: n == 0 ? 0 : Double(robust) / Double(n), seconds: seconds[s])
        }
        return EvaluationSummary(count: n, stages: summaries, robust: outcomes.filter(\.robustAtTheEnd).count,
                                 outcomes: outcomes, resumed: resumed, disagreements: disagreements,
                                 largestPerturbation: sanity.largest, minimum: sanity.minimum, maximum: sanity.maximum,
                                 nonFinite: sanity.nonFinite)
    }

    /// A claimed success that re-verification refused: the point's dataset index and the stage.
    struct Refusal: Hashable {
        let index: Int
        let stage: Int
    }

    /// Runs stage `s` on the rows of `batch` still eligible (robust after the stage before, or
    /// correctly classified with `independent`), re-verifies every claimed success alone, and
    /// updates the rows' outcomes; returns the rows it broke, in order.
    func attack(stage s: Int, batch: AttackBatch, outcomes current: inout [ExampleOutcome], best: inout Tensor?,
                sanity: inout Sanity, refusals: inout [Refusal: String]) throws -> [Int] {
        func before(_ r: Int) -> Bool { options.independent ? current[r].robust[0] : current[r].robust[s - 1] }
        let eligible = current.indices.filter(before)
        var successes = Set<Int>()
        if !eligible.isEmpty {
            let sub = batch.subset(eligible)
            let result = try stages[s].attack.perturb(model, sub, seed: seed(ofStage: s))
            guard result.shape == sub.images.shape else {
                throw EvaluationError("\(stages[s].name) returned examples of shape \(result.shape) for \(sub.images.shape)")
            }
            let predictions = try AttackPass.logits(model, result).argmaxRows()
            let claimed = eligible.indices.filter { predictions[$0] != sub.labels[$0] }
            let candidates = result.gatherRows(claimed)
            let inside = try self.inside(stages[s].attack, candidates, origin: sub.images.gatherRows(claimed),
                                         budget: sub.budget.gatherRows(claimed))
            for (j, c) in claimed.enumerated() {
                let r = eligible[c]
                let row = candidates.gatherRows([j])
                // Re-verification: alone, in a batch of its own.
                let alone = try AttackPass.logits(model, row).argmaxRows()[0]
                if inside[j] && alone != batch.labels[r] {
                    successes.insert(r)
                    if current[r].brokenBy == nil {
                        current[r].brokenBy = s
                        current[r].adversarialPrediction = alone
                        best?.scatterRows(row, to: [r])
                        sanity.add(row, origin: batch.images.gatherRows([r]))
                    }
                } else {
                    current[r].unverified.append(s)
                    let reason = !inside[j] ? "outside the budget or [0, 1]" : "correctly classified alone (predicted \(alone))"
                    refusals[Refusal(index: current[r].index, stage: s)] = reason
                    log?("re-verification: point \(current[r].index), \(stages[s].name): the claimed success is \(reason)")
                }
            }
        }
        for r in current.indices { current[r].robust[s] = before(r) && !successes.contains(r) }
        return successes.sorted()
    }

    /// Per row: inside the stage's threat model (the L-inf map, or an L2 attack's ball) and [0, 1].
    func inside(_ attack: Attack, _ x: Tensor, origin: Tensor, budget: EpsilonMap) throws -> [Bool] {
        if let l2 = attack as? L2Attack, let radius = try l2.radius(for: budget) {
            return L2Ball.rowsInside(x, origin: origin, radius: radius)
        }
        return Perturbation.rowsInside(x, origin: origin, map: budget.values)
    }
}

/// The closing sanity figures over confirmed adversarial examples.
struct Sanity {
    var largest: Float = 0
    var minimum: Float = .infinity
    var maximum: Float = -.infinity
    var nonFinite = 0

    mutating func add(_ x: Tensor, origin: Tensor) {
        largest = Swift.max(largest, Tensor.difference(x, origin).maxAbs())
        nonFinite += x.firstNonFinite() == nil ? 0 : 1
        let (lo, hi) = x.withUnsafeBufferPointer { p in (p.min() ?? 0, p.max() ?? 0) }
        minimum = Swift.min(minimum, lo)
        maximum = Swift.max(maximum, hi)
    }
}
