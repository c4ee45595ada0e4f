import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN

/// A sign that an evaluation may overstate robustness, with what to do about it.
///
/// Two kinds: `gradient masking` (the attacks' gradients carry little information, so a
/// gradient-based attack fails where a stronger or gradient-free one would succeed) and
/// `evaluation` (the evaluation itself is set up in a way that makes its figure unreliable).
/// `part eval` prints each as one line, `warning: <kind>: <message>` (docs/evaluation.md#checks).
public struct EvaluationWarning: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case gradientMasking = "gradient masking"
        case evaluation
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The line printed on standard error.
    public var description: String { "warning: \(kind.rawValue): \(message)" }
}

/// The checks of an evaluation, after the spirit of AutoAttack's own: each looks for one known
/// way in which an attack's figure says little about robustness.
public enum EvaluationChecks {
    /// The share of checked points with a zero input gradient or a saturated softmax from which
    /// the model is suspected of masking gradients (AutoAttack warns at any zero gradient; a
    /// share leaves room for the odd point that sits exactly on a flat region).
    public static let maskedShare = 0.05
    /// Points the model checks look at: the first ones of the evaluated set.
    public static let sampleSize = 256

    /// What the model's clean outputs on the first points of `dataset` say: outputs that differ
    /// between two identical passes (a randomised model: `randomnessHandled` is true when the
    /// attack list holds `aa-rand`), outputs that are probabilities rather than logits, and
    /// input gradients that vanish (zero gradient of the cross-entropy, or a softmax saturated
    /// to exactly one class in float32). The points go through the model `batchSize` at a time
    /// (the evaluation's batch, which the user sized to fit in memory).
    public static func model(_ model: ImageClassifier, dataset: ImageDataset, randomnessHandled: Bool,
                             batchSize: Int = sampleSize) throws -> [EvaluationWarning] {
        let n = Swift.min(dataset.count, sampleSize)
        guard n > 0 else { return [] }
        var difference: Float = 0
        var probabilities = true
        var zero = [Bool](), saturated = [Bool]()
        for start in stride(from: 0, to: n, by: Swift.max(1, batchSize)) {
            let indices = Array(start..<Swift.min(start + Swift.max(1, batchSize), n))
            let (x, y) = dataset.batch(indices)
            let first = try AttackPass.logits(model, x)
            let second = try AttackPass.logits(model, x)
            difference = Swift.max(difference, largestNormalisedDifference(first, second))
            probabilities = probabilities && looksLikeProbabilities(first)
            let batch = AttackBatch(images: x, labels: y, indices: dataset.splitIndex(of: indices),
                                    budget: try EpsilonMap.constant(0, shape: x.shape))
            zero += zeroRows(try AttackPass.lossGradient(model, at: x, batch: batch, loss: CrossEntropyLoss()).gradient)
            saturated += saturatedRows(first)
        }
        var warnings = [EvaluationWarning]()
        if !randomnessHandled, difference > 1e-4 {
            warnings.append(EvaluationWarning(.evaluation, "the model gave different outputs for the same inputs in two passes: it looks "
                + "randomised, and attacks that follow one draw of its randomness overstate its robustness; add aa-rand to --attacks "
                + "(attacks that average the gradient over the randomness), or make the model deterministic"))
        }
        if probabilities {
            warnings.append(EvaluationWarning(.evaluation, "the model's outputs lie in [0, 1] and sum to 1 per row: they look like "
                + "probabilities, not logits; the attacks' losses expect logits (a softmax at the end flattens their gradients): "
                + "remove the final softmax from the model"))
        }
        let masked = zip(zero, saturated).filter { $0 || $1 }.count
        if Double(masked) >= maskedShare * Double(n) {
            warnings.append(EvaluationWarning(.gradientMasking, "\(masked) of the first \(n) points have a zero input gradient "
                + "(\(zero.filter { $0 }.count)) or a softmax saturated to one class in float32 (\(saturated.filter { $0 }.count)), "
                + "so gradient-based attacks get no direction there and their figure is an upper bound; add square (a gradient-free "
                + "attack, as in aa) and margin losses (cw, apgd-dlr), and check that the logits are not scaled up"))
        }
        return warnings
    }

    /// What the per-example outcomes say: points that a gradient-free (black-box) stage broke
    /// although every white-box stage left them robust. A gradient-free attack is in principle
    /// weaker than a white-box one with the same budget, so its successes mean the gradients
    /// misled the white-box attacks. Following AutoAttack, a drop of 0.2% or more of the points
    /// is reported.
    public static func outcomes(_ outcomes: [ExampleOutcome], stages: [AttackCatalog.Stage],
                                independent: Bool) -> [EvaluationWarning] {
        guard !outcomes.isEmpty else { return [] }
        var warnings = [EvaluationWarning]()
        for (s, stage) in stages.enumerated() where isGradientFree(stage.attack) {
            // The white-box stages that ran before it in a sequence, or all of them when independent.
            let whiteBox = stages.indices.filter { w in
                w != s && !stages[w].isNatural && !isGradientFree(stages[w].attack) && (independent || w < s)
            }
            guard !whiteBox.isEmpty else { continue }
            let broken = outcomes.filter { o in o.robust[0] && !o.robust[s] && whiteBox.allSatisfy { o.robust[$0] } }.count
            guard broken > 0, Double(broken) >= 0.002 * Double(outcomes.count) else { continue }
            warnings.append(EvaluationWarning(.gradientMasking, "\(stage.name), which uses no gradients, broke \(broken) of "
                + "\(outcomes.count) points (\(String(format: "%.2f", 100 * Double(broken) / Double(outcomes.count)))%) that "
                + "\(whiteBox.map { stages[$0].name }.joined(separator: ", ")) left robust: the gradients mislead the white-box "
                + "attacks; do not trust their figure, run square with more queries and restarts (square:queries=10000:restarts=2) "
                + "or an adaptive attack"))
        }
        return warnings
    }

    /// Robust accuracy at several budgets (sorted by epsilon or not): a larger budget admits
    /// every perturbation of a smaller one, so accuracy can only fall as epsilon grows; a rise
    /// means the attacks failed to find at the larger budget what they found at the smaller.
    public static func curve(_ points: [(epsilon: Float, robustAccuracy: Double)]) -> [EvaluationWarning] {
        let sorted = points.sorted { $0.epsilon < $1.epsilon }
        var warnings = [EvaluationWarning]()
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.epsilon > a.epsilon && b.robustAccuracy > a.robustAccuracy {
            warnings.append(EvaluationWarning(.evaluation, String(format: "robust accuracy rises from %.2f%% at eps %@ to %.2f%% at "
                + "the larger eps %@; a larger budget can only lower it, so the attacks fail at the larger one (too few steps, or "
                + "a step size that does not grow with eps: give alpha as a share of eps, or more steps and restarts)",
                100 * a.robustAccuracy, String(a.epsilon) as NSString, 100 * b.robustAccuracy, String(b.epsilon) as NSString)))
        }
        return warnings
    }

    /// Attacks that use only the model's outputs.
    static func isGradientFree(_ attack: Attack) -> Bool { attack is Square }

    /// The largest L2 distance between matching rows of `a` and `b`, each row scaled to unit
    /// norm (so the figure does not grow with the logits' scale).
    static func largestNormalisedDifference(_ a: Tensor, _ b: Tensor) -> Float {
        guard a.shape == b.shape, a.shape.count == 2 else { return .infinity }
        let k = a.shape[1]
        return a.withUnsafeBufferPointer { p in
            b.withUnsafeBufferPointer { q in
                var largest: Float = 0
                for r in 0..<a.shape[0] {
                    let u = p[(r * k)..<((r + 1) * k)], v = q[(r * k)..<((r + 1) * k)]
                    let nu = u.reduce(0) { $0 + $1 * $1 }.squareRoot() + 1e-10
                    let nv = v.reduce(0) { $0 + $1 * $1 }.squareRoot() + 1e-10
                    let d = zip(u, v).reduce(Float(0)) { s, e in s + (e.0 / nu - e.1 / nv) * (e.0 / nu - e.1 / nv) }.squareRoot()
                    // A non-finite output differs from everything.
                    largest = Swift.max(largest, d.isNaN ? .infinity : d)
                }
                return largest
            }
        }
    }

    /// Every row in [0, 1] (within 1e-5) and summing to 1 (within 1e-5).
    static func looksLikeProbabilities(_ outputs: Tensor) -> Bool {
        guard outputs.shape.count == 2, outputs.shape[0] > 0 else { return false }
        let k = outputs.shape[1]
        return outputs.withUnsafeBufferPointer { p in
            guard p.allSatisfy({ $0 > -1e-5 && $0 < 1 + 1e-5 }) else { return false }
            return (0..<outputs.shape[0]).allSatisfy { r in
                abs(p[(r * k)..<((r + 1) * k)].reduce(Float(0), +) - 1) < 1e-5
            }
        }
    }

    /// Rows whose entries are all exactly zero.
    static func zeroRows(_ gradient: Tensor) -> [Bool] {
        let n = gradient.shape.first ?? 0
        guard n > 0 else { return [] }
        let width = gradient.count / n
        return gradient.withUnsafeBufferPointer { p in
            (0..<n).map { r in p[(r * width)..<((r + 1) * width)].allSatisfy { $0 == 0 } }
        }
    }

    /// Rows of logits whose float32 softmax is exactly one-hot: every other class's exp(z_j -
    /// max) underflows to 0, so the cross-entropy and its gradient are exactly zero at a correct
    /// prediction.
    static func saturatedRows(_ logits: Tensor) -> [Bool] {
        guard logits.shape.count == 2 else { return [] }
        let (n, k) = (logits.shape[0], logits.shape[1])
        return logits.withUnsafeBufferPointer { p in
            (0..<n).map { r in
                let row = p[(r * k)..<((r + 1) * k)]
                guard let top = row.max(), let at = row.firstIndex(of: top) else { return false }
                return k > 1 && row.indices.allSatisfy { $0 == at || Float(exp(Double(row[$0] - top))) == 0 }
            }
        }
    }
}
