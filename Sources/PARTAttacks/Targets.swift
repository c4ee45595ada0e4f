import PARTEngine
import PARTNN

/// How many targets a targeted attack uses: `asked`, at most classes - 1 (with 2 classes the one
/// other class is the only target; docs/conventions.md#3-epsilon-maps-in-attacks).
func targetCount(asked: Int, classes: Int) -> Int {
    Swift.max(0, Swift.min(asked, classes - 1))
}

/// The note of a targeted attack that runs fewer targets than asked (`ClassCountNotes`).
func targetNote(asked: Int, classes: Int) -> String? {
    let used = targetCount(asked: asked, classes: classes)
    guard used < asked else { return nil }
    return "the model has \(classes) classes, so \(used) target\(used == 1 ? "" : "s") instead of \(asked)"
}

/// For each row of clean logits, the target of each rank: the `count` classes other than the
/// label by decreasing logit (never the label), as AutoAttack's targeted attacks take them.
func rankedTargets(cleanLogits: Tensor, labels: [Int32], count: Int) -> [[Int32]] {
    TargetMargins.topOthers(logits: cleanLogits, labels: labels, count: count)
}

/// The driver AutoAttack's targeted attacks share (APGD-T, FAB-T): check the settings, attack
/// only the rows correctly classified when clean, then for each of the min(targets, classes - 1)
/// highest non-true classes of the clean logits in turn, and each restart, run `body` on the
/// rows not yet fooled, towards that target. `body` gets the batch (its progress narrowed to that
/// target and restart), those rows, the target of every caller row, and the step (target rank k,
/// restart r: k * restarts + r) that keys its random draws.
struct TargetedDriver {
    let name: String
    let targets: Int
    let iterations: Int
    let restarts: Int

    func run(_ model: ImageClassifier, _ batch: AttackBatch,
             body: (_ batch: AttackBatch, _ rows: [Int], _ targetOfRow: [Int32], _ step: Int, _ restart: Int,
                    _ outcome: inout Outcome) throws -> Void)
        throws -> Tensor {
        try requireSetting(targets >= 1, name, "targets must be at least 1, got \(targets)")
        try requireSetting(iterations >= 0, name, "iterations must be 0 or more, got \(iterations)")
        try requireSetting(restarts >= 1, name, "restarts must be at least 1, got \(restarts)")
        try validateAttackInput(model, batch)
        var outcome = Outcome(batch)
        let (rows, cleanLogits) = try rowsToAttack(model, batch, attack: name, outcome: &outcome)
        guard let cleanLogits else { return outcome.images }
        let used = targetCount(asked: targets, classes: model.numClasses)
        let ranked = rankedTargets(cleanLogits: cleanLogits, labels: rows.map { batch.labels[$0] }, count: used)
        for rank in 0..<used {
            var targetOfRow = [Int32](repeating: 0, count: batch.count)
            for (j, row) in rows.enumerated() { targetOfRow[row] = ranked[j][rank] }
            for restart in 0..<restarts {
                let remaining = outcome.unfooled(rows)
                if remaining.isEmpty { return outcome.images }
                let step = rank * restarts + restart
                try body(batch.part(step, of: used * restarts), remaining, targetOfRow, step, restart, &outcome)
            }
        }
        return outcome.images
    }
}

/// AutoAttack's targeted attacks (APGD-T, FAB-T) as one attack: `TargetedDriver` picks the rows,
/// the targets and the restarts, and `Method` makes the run towards each target. With `norm` .l2
/// it works in the L2 ball of the radius (`threatBatch`).
public struct TargetedAttack<Method: TargetedMethod>: L2Attack, ClassCountNotes {
    public let targets: Int
    public let iterations: Int
    public let restarts: Int
    public let threat: Threat

    public init(targets: Int = 9, iterations: Int = 100, restarts: Int = 1, norm: Norm = .linf, radius: Float? = nil) {
        self.targets = targets
        self.iterations = iterations
        self.restarts = restarts
        threat = Threat(norm, radius: radius)
    }

    public var name: String { norm == .l2 ? "\(Method.name)-l2" : Method.name }

    public func notes(for model: ImageClassifier) -> [String] {
        (targetNote(asked: targets, classes: model.numClasses).map { [$0] } ?? []) + Method.notes(classes: model.numClasses)
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let batch = try threatBatch(batch)
        let run = Method.run(iterations: iterations, norm: norm, classes: model.numClasses)
        return try TargetedDriver(name: name, targets: targets, iterations: iterations, restarts: restarts)
            .run(model, batch) { batch, rows, targetOfRow, step, restart, outcome in
                try run.body(model, batch, rows, targetOfRow, seed, step, restart, &outcome)
            }
    }
}

/// What a targeted attack runs towards each target rank and restart (`TargetedAttack`).
public protocol TargetedMethod: Sendable {
    /// The attack's name in L-inf ("apgd-t"); L2 adds "-l2".
    static var name: String { get }
    /// What the method substitutes on a model of `classes` classes (besides fewer targets).
    static func notes(classes: Int) -> [String]
    /// The run of `iterations` steps in `norm` for a model of `classes` classes.
    static func run(iterations: Int, norm: Norm, classes: Int) -> TargetedRun
}

/// One run of a `TargetedMethod`: on the rows given, towards each caller row's target, its random
/// draws keyed by the step (target rank k, restart r: k * restarts + r).
public struct TargetedRun {
    let body: (_ model: ImageClassifier, _ batch: AttackBatch, _ rows: [Int], _ targets: [Int32], _ seed: UInt64,
               _ step: Int, _ restart: Int, _ outcome: inout Outcome) throws -> Void
}
