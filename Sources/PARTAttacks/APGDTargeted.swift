import PARTEngine
import PARTNN

/// Targeted Auto-PGD as AutoAttack's "apgd-t" runs it (Croce & Hein, ICML 2020): APGD on the
/// targeted DLR loss
///
///     DLR_t = -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)
///
/// towards each of the min(targets, classes - 1) highest non-true classes of the clean logits in
/// turn (the second highest logit first), each run only on the rows still robust. Everything
/// else (start, steps, checkpoints, momentum, dropping fooled rows, best point) is `APGD`'s.
///
/// Targeted DLR needs 4 classes; with fewer, targeted cross-entropy (-CE towards the target) is
/// ascended instead, and with 2 classes the one other class is the only target (docs/conventions.md#3-epsilon-maps-in-attacks
///); `notes(for:)` says so. The random start of target rank k (0-based) and restart r
/// is keyed by (seed, random start, dataset index, k * restarts + r). With `norm` .l2 it works in
/// the L2 ball of the radius, with `APGD`'s L2 rules.
public struct APGDTargeted: L2Attack, ClassCountNotes {
    public let targets: Int
    public let iterations: Int
    public let restarts: Int
    /// APGD's step-size threshold (AutoAttack's 0.75).
    public let rho: Float = 0.75
    public let norm: Norm
    /// The L2 radius (nil: the constant value of the map); L2 only.
    public let radiusOverride: Float?

    public init(targets: Int = 9, iterations: Int = 100, restarts: Int = 1, norm: Norm = .linf, radius: Float? = nil) {
        self.targets = targets
        self.iterations = iterations
        self.restarts = restarts
        self.norm = norm
        self.radiusOverride = radius
    }

    public var name: String { norm == .l2 ? "apgd-t-l2" : "apgd-t" }

    public func radius(for budget: EpsilonMap) throws -> Float? {
        norm == .l2 ? try l2Radius(name, override: radiusOverride, budget: budget) : nil
    }

    public func notes(for model: ImageClassifier) -> [String] {
        var out: [String] = []
        if let note = targetNote(asked: targets, classes: model.numClasses) { out.append(note) }
        if model.numClasses < 4 {
            out.append("targeted DLR needs at least 4 classes and the model has \(model.numClasses), "
                       + "so targeted cross-entropy is used")
        }
        return out
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let batch = try threatBatch(batch, norm: norm, radius: radiusOverride, attack: name)
        let run = APGDRun(iterations: iterations, rho: rho, loss: model.numClasses >= 4 ? DLRLoss() : CrossEntropyLoss(),
                          norm: norm)
        return try TargetedDriver(name: name, targets: targets, iterations: iterations, restarts: restarts)
            .run(model, batch) { rows, targetOfRow, step, _, outcome in
                try run.attack(model, batch, rows: rows, targets: targetOfRow, seed: seed, step: step, outcome: &outcome)
            }
    }
}
