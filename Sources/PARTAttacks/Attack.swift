import PARTEngine
import PARTNN

/// What an attack works on: images, their labels, each row's dataset index and its budget.
///
/// Rows stay aligned under `subset`, so an attack in a sequence can work on the points that are
/// still robust and scatter its results back. The dataset index is the key of every random
/// draw that belongs to the row (docs/conventions.md#2-randomness), so a row's result does not depend on
/// the batch it sits in.
public struct AttackBatch {
    /// [N, H, W, C] in [0, 1].
    public var images: Tensor
    public var labels: [Int32]
    /// Each row's index in its split (`ImageDataset.splitIndex(of:)`): the key of its random draws.
    public var indices: [Int]
    public var budget: EpsilonMap
    /// Clean logits [N, K] when a loss compares against them (TRADES generation's KL).
    public var reference: Tensor?
    /// Where the attack is in its work on this batch, for a progress line (nil: nobody asks).
    public var progress: AttackProgress?

    public init(images: Tensor, labels: [Int32], indices: [Int], budget: EpsilonMap, reference: Tensor? = nil) {
        self.images = images
        self.labels = labels
        self.indices = indices
        self.budget = budget
        self.reference = reference
    }

    public var count: Int { labels.count }

    /// Rows `rows` (positions in this batch), in that order, with the same progress.
    public func subset(_ rows: [Int]) -> AttackBatch {
        var out = AttackBatch(images: images.gatherRows(rows), labels: rows.map { labels[$0] }, indices: rows.map { indices[$0] },
                              budget: budget.gatherRows(rows), reference: reference?.gatherRows(rows))
        out.progress = progress
        return out
    }

    /// This batch with `progress` narrowed to part `k` of `n` (a restart, a target).
    func part(_ k: Int, of n: Int) -> AttackBatch {
        var out = self
        out.progress = progress?.part(k, of: n)
        return out
    }
}

/// How far an attack is on a batch, as a fraction of its whole work: its loops (restarts,
/// targets, iterations, queries) report on the calling thread, each loop giving its body a share
/// of its range with `part(_:of:)`. An attack that stops early (every row fooled) reports no
/// more; its caller reports the end. A long attack (Square's 5,000 queries on a CPU) moves the
/// progress line of `part eval` instead of leaving it still for an hour.
public struct AttackProgress {
    private let report: (Double) -> Void
    private let offset: Double
    private let width: Double

    public init(_ report: @escaping (Double) -> Void) {
        self.init(report, offset: 0, width: 1)
    }

    private init(_ report: @escaping (Double) -> Void, offset: Double, width: Double) {
        self.report = report
        self.offset = offset
        self.width = width
    }

    /// Reports that `fraction` (clamped to [0, 1]) of this share of the work is done.
    public func callAsFunction(_ fraction: Double) {
        report(offset + width * Swift.min(Swift.max(fraction, 0), 1))
    }

    /// Reports that `done` of `total` steps of this share are done.
    public func steps(_ done: Int, of total: Int) {
        self(total > 0 ? Double(done) / Double(total) : 1)
    }

    /// Share `k` (0-based) of `n` equal shares of this one.
    public func part(_ k: Int, of n: Int) -> AttackProgress {
        let n = Swift.max(n, 1)
        return AttackProgress(report, offset: offset + width * Double(k) / Double(n), width: width / Double(n))
    }
}

/// An attack: adversarial examples for a batch inside its epsilon map.
///
/// Contract shared by every attack (docs/method.md#4-attacks, #9-pitfalls-the-tests-guard-against): the model runs in evaluation mode
/// whatever the caller was doing and its state (weights, gradients, batch-norm statistics) is
/// left untouched; results lie inside the map and inside [0, 1]; a zero map returns the input
/// bit for bit; a row's result depends on its own image, label, index and `seed` only.
public protocol Attack {
    /// A short name for logs ("pgd-20").
    var name: String { get }
    /// Adversarial examples [N, H, W, C] for `batch`; random draws come from streams keyed by
    /// (seed, purpose, row's dataset index, restart).
    func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor
}

/// A loss an attack ascends, per example.
public protocol AttackLoss {
    var name: String { get }
    /// Per-example loss values and d loss_i / d logits_i ([N, K]) for the batch's rows; `targets`
    /// are the target classes of a targeted loss (nil for untargeted ones).
    func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor)
}

/// Cross-entropy of the true label (untargeted), or, with targets, minus the cross-entropy of
/// the target (ascending it moves towards the target class).
public struct CrossEntropyLoss: AttackLoss {
    public init() {}
    public var name: String { "ce" }

    public func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
        guard let targets else {
            let r = CrossEntropy.perExample(logits: logits, labels: batch.labels)
            return (r.losses, r.gradient)
        }
        var (values, gradient) = CrossEntropy.perExample(logits: logits, labels: targets)
        gradient.scale(by: -1)
        return (values.map { -$0 }, gradient)
    }
}

/// A loss evaluated at a point: logits, per-example values and dLoss/dx.
public struct LossGradient {
    public let logits: Tensor
    public let values: [Float]
    public let gradient: Tensor
}

/// How attacks run the model: evaluation mode, input gradients only, never a parameter
/// gradient or a batch-norm statistic touched, in the engine's attack precision
/// (`Engine.attackPrecision`: f32, or bf16 activations and kernels inside the model with f32
/// images, logits and input gradients at the boundary). Every attack goes through these two
/// calls, so a change of how attack passes run is made here once.
public enum AttackPass {
    /// Logits [N, K] at x.
    public static func logits(_ model: ImageClassifier, _ x: Tensor) throws -> Tensor {
        try model.forward(try x.converted(to: Engine.attackPrecision), mode: .eval).converted(to: .f32)
    }

    /// The loss's per-example values and the gradient of their sum with respect to x.
    public static func lossGradient(_ model: ImageClassifier, at x: Tensor, batch: AttackBatch, loss: AttackLoss,
                                    targets: [Int32]? = nil) throws -> LossGradient {
        let tape = Tape(parameterGradients: false)
        let output = try model.forward(try x.converted(to: Engine.attackPrecision), mode: .eval, tape: tape)
        let logits = try output.converted(to: .f32)
        let (values, dLogits) = try loss.evaluate(logits: logits, batch: batch, targets: targets)
        let gradient = try tape.backward(try dLogits.converted(to: output.dtype)).converted(to: .f32)
        return LossGradient(logits: logits, values: values, gradient: gradient)
    }
}

/// Checks shared by all attacks: images [N, H, W, C] in [0, 1] matching the model, one label
/// and one dataset index per image, a map of the images' shape.
public func validateAttackInput(_ model: ImageClassifier, _ batch: AttackBatch) throws {
    let images = batch.images
    let expected = [images.shape.first ?? 0, model.inputHeight, model.inputWidth, model.inputChannels]
    guard images.shape == expected else {
        throw AttackError("images have shape \(images.shape), the model takes \(expected)")
    }
    guard batch.labels.count == images.shape[0], batch.indices.count == images.shape[0] else {
        throw AttackError("\(batch.labels.count) labels and \(batch.indices.count) indices for \(images.shape[0]) images")
    }
    guard batch.labels.allSatisfy({ $0 >= 0 && Int($0) < model.numClasses }) else {
        throw AttackError("labels must lie in 0..<\(model.numClasses)")
    }
    guard batch.budget.values.shape == images.shape else {
        throw AttackError("the epsilon map has shape \(batch.budget.values.shape), the images \(images.shape)")
    }
    let inRange = images.withUnsafeBufferPointer { $0.allSatisfy { $0 >= 0 && $0 <= 1 } }
    guard inRange else {
        throw AttackError("images must lie in [0, 1] (normalisation belongs inside the model)")
    }
}

/// Projects `adversarial` onto {x' : |x' - x| <= map} ∩ [0, 1], in place, around the original x.
public func project(_ adversarial: inout Tensor, around x: Tensor, budget: EpsilonMap) {
    Perturbation.project(&adversarial, around: x, map: budget.values)
}
