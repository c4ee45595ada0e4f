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
public typealias APGDTargeted = TargetedAttack<APGDTargetedMethod>

/// APGD-T's run towards the targets (`APGDTargeted`).
public enum APGDTargetedMethod: TargetedMethod {
    public static let name = "apgd-t"
    /// APGD's step-size threshold (AutoAttack's 0.75).
    static let rho: Float = 0.75

    public static func notes(classes: Int) -> [String] {
        classes < 4 ? ["targeted DLR needs at least 4 classes and the model has \(classes), so targeted cross-entropy is used"]
            : []
    }

    public static func run(iterations: Int, norm: Norm, classes: Int) -> TargetedRun {
        let run = APGDRun(iterations: iterations, rho: rho, loss: classes >= 4 ? DLRLoss() : CrossEntropyLoss(), norm: norm)
        return TargetedRun { model, batch, rows, targets, seed, step, _, outcome in
            try run.attack(model, batch, rows: rows, targets: targets, seed: seed, step: step, outcome: &outcome)
        }
    }
}
