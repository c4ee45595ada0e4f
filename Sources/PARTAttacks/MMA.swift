import PARTEngine
import PARTNN

/// The MMA attack of the PART code (after Gao et al. 2022), under an L-inf epsilon map.
///
/// For each example, take the `k` classes other than the label with the highest clean logits;
/// for each target t run PGD from a common start on the hinge loss
///
///     L_t = -max(z_y - z_t + 50, 0)
///
/// and keep, per example, the candidate whose final margin z_t - z_y is largest (the first
/// such target on ties). Settings as the official code: `steps` sign steps of `stepSize`, the
/// start uniform in the budget (there U(-eps, eps) with the scalar eps clamped to [0, 1];
/// here map ⊙ U(-1, 1) keyed by the row's dataset index, projected onto the map, which is the
/// same for a constant map), shared by the k runs. The official evaluation uses 20 steps,
/// step 2/255 at eps 8/255 and k = 3. With fewer than k + 1 classes, k = classes - 1.
///
/// It is a plain `Attack`, so training can use it as its generation attack.
public struct MMA: Attack {
    public let steps: Int
    public let stepSize: Float
    public let k: Int
    public let randomStart: Bool
    /// The hinge's margin (50 in the official code).
    public let confidence: Float

    public init(steps: Int = 20, stepSize: Float, k: Int = 3, randomStart: Bool = true, confidence: Float = 50) throws {
        guard steps >= 0 else { throw AttackError("mma steps must be >= 0, got \(steps)") }
        guard stepSize >= 0 && stepSize.isFinite else { throw AttackError("mma alpha must be finite and >= 0") }
        guard k >= 1 else { throw AttackError("mma k must be at least 1, got \(k)") }
        self.steps = steps
        self.stepSize = stepSize
        self.k = k
        self.randomStart = randomStart
        self.confidence = confidence
    }

    public var name: String { "mma-\(steps)" }

    /// The targets of every row, best first: the min(k, K - 1) highest non-true classes of `logits`.
    public func targets(logits: Tensor, labels: [Int32]) -> [[Int32]] {
        TargetMargins.topOthers(logits: logits, labels: labels, count: Swift.min(k, logits.shape[1] - 1))
    }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let images = batch.images, map = batch.budget.values
        guard batch.count > 0, model.numClasses >= 2 else { return images }
        let clean = try AttackPass.logits(model, images)
        let targets = self.targets(logits: clean, labels: batch.labels)
        var start = images
        if randomStart {
            start = Perturbation.uniformStart(images, map: map, seed: seed, indices: batch.indices)
            Perturbation.project(&start, around: images, map: map)
        }
        var best = images
        var bestMargin = [Float]()
        for i in 0..<targets[0].count {
            let loss = HingeLoss(targets: targets.map { $0[i] }, confidence: confidence)
            var x = start
            for _ in 0..<steps {
                let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss).gradient
                Perturbation.signStep(&x, gradient: g, alpha: stepSize)
                Perturbation.project(&x, around: images, map: map)
            }
            let margins = TargetMargins.targetMargin(logits: try AttackPass.logits(model, x), labels: batch.labels,
                                                     targets: loss.targets)
            if i == 0 {
                best = x
                bestMargin = margins
                continue
            }
            // A later target replaces the kept candidate only when strictly better.
            let better = (0..<batch.count).filter { margins[$0] > bestMargin[$0] }
            for r in better { bestMargin[r] = margins[r] }
            if !better.isEmpty { best.scatterRows(x.gatherRows(better), to: better) }
        }
        return best
    }

    /// MMA's targeted hinge: ascending -max(z_y - z_t + c, 0) raises z_t above z_y by c.
    struct HingeLoss: AttackLoss {
        let targets: [Int32]
        let confidence: Float
        var name: String { "mma-hinge" }

        func evaluate(logits: Tensor, batch: AttackBatch, targets _: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
            let r = TargetMargins.hinge(logits: logits, labels: batch.labels, targets: targets, confidence: confidence)
            return (r.values, r.gradient)
        }
    }
}
