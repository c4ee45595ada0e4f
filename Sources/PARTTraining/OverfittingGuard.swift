/// The check against catastrophic overfitting of fast (FGSM) adversarial training: within a
/// few batches the model learns to defeat the single-step attack while its robustness to PGD
/// collapses (Wong, Rice and Kolter 2020). The symptom in the per-epoch figures is a held-out
/// PGD accuracy that falls far below its best while the accuracy on the training batches'
/// adversarial examples still rises.
public enum OverfittingGuard {
    /// The warning line for `current` after the epochs of `history` (in order), or nil: when the
    /// held-out PGD accuracy is below half of the best so far and the training accuracy on
    /// adversarial examples rose over the previous epoch's.
    public static func warning(history: [EpochReport], current: EpochReport) -> String? {
        guard let previous = history.last,
              let best = history.map(\.robustAccuracy).max(), best > 0 else { return nil }
        guard current.robustAccuracy < best / 2, current.trainAccuracy > previous.trainAccuracy else { return nil }
        return String(format: "warning: catastrophic overfitting: epoch %d's held-out PGD accuracy %.2f%% is below half "
                      + "of the best so far (%.2f%%) while the training accuracy on adversarial examples rose "
                      + "(%.2f%% -> %.2f%%); the run goes on (with --val-split, best.safetensors keeps the most "
                      + "robust epoch)",
                      current.epoch, 100 * current.robustAccuracy, 100 * best, 100 * previous.trainAccuracy,
                      100 * current.trainAccuracy)
    }
}
