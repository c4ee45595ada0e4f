import Foundation
import PARTEvaluation

/// What `part eval` prints: the JSON objects, the stage log, the table and the warnings.
extension Eval {
    struct Output: Encodable {
        let checkpoint: String
        let architecture: String
        let normalize: String?
        let dataset: String
        let split: String
        let count: Int
        let seed: UInt64
        let epsilon: Float
        let alpha: Float
        let precision: String
        let independent: Bool
        let attacks: [StageSummary]
        /// The source model of a transfer evaluation.
        let source: String?
        let cleanAccuracy: Double
        /// Robust against every stage (the worst case per example).
        let robustAccuracy: Double
        let robust: Int
        let resumed: Int
        let unverified: Int
        let seconds: Double
        let resultsFile: String?
        let adversarialFile: String?
        /// The lines of the checks (docs/evaluation.md#checks), without `warning: `.
        var warnings: [String]
    }

    /// With several --eps: every evaluation and robust accuracy against eps.
    struct CurveOutput: Encodable {
        struct Point: Encodable {
            let epsilon: Float
            let cleanAccuracy: Double
            let robustAccuracy: Double
        }
        let curve: [Point]
        let evaluations: [Output]
        let warnings: [String]
    }

    /// Prints each warning on a line of its own on standard error (whatever --quiet says: a
    /// warning is about the figures, not progress).
    func printWarnings(_ warnings: [EvaluationWarning], _ progress: Progress) {
        guard !warnings.isEmpty else { return }
        progress.clear()
        for warning in warnings { FileHandle.standardError.write(Data("\(warning)\n".utf8)) }
    }

    /// The stage log on standard error, then (without --json or a protocol) the table on
    /// standard output.
    func report(_ summary: EvaluationSummary, title: String, progress: Progress) {
        progress.clear()
        // The stage log AutoAttack users know.
        for (s, stage) in summary.stages.enumerated() {
            let what = s == 0 ? "initial accuracy" : (independent ? "robust accuracy against \(stage.name) alone"
                                                                : "robust accuracy after \(stage.name)")
            progress.log(String(format: "part eval: %@: %.2f%% (%.1f s)", what as NSString, 100 * stage.accuracy, stage.seconds))
        }
        progress.log(String(format: "part eval: worst case: %.2f%% of %d points", 100 * summary.robustAccuracy, summary.count))
        if summary.minimum <= summary.maximum {   // this run confirmed at least one adversarial example
            progress.log(String(format: "part eval: adversarial examples of this run: max L-inf perturbation %.5f, non-finite %d, "
                                + "min %.5f, max %.5f", summary.largestPerturbation, summary.nonFinite, summary.minimum, summary.maximum))
        }
        if !output.json && evaluationProtocol == nil {
            print(title)
            print(table(summary))
        }
        fflush(nil)
    }

    /// The results table: one row per stage and the worst case.
    func table(_ summary: EvaluationSummary) -> String {
        let width = max(10, summary.stages.map(\.name.count).max() ?? 0)
        func pad(_ s: String) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
        var lines = [pad("attack") + "  robust  accuracy     time"]
        for stage in summary.stages {
            lines.append(pad(stage.name) + String(format: "  %6d  %7.2f%%  %6.1fs", stage.robust, 100 * stage.accuracy, stage.seconds)
                         + (stage.unverified > 0 ? "  (\(stage.unverified) unverified)" : ""))
        }
        lines.append(pad("worst case") + String(format: "  %6d  %7.2f%%", summary.robust, 100 * summary.robustAccuracy))
        return lines.joined(separator: "\n")
    }
}
