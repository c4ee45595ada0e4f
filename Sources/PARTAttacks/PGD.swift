import PARTEngine
import PARTNN

/// Projected gradient descent under an L-inf epsilon map (Madry et al. 2018).
///
///     x_0     = clip(x + map ⊙ U(-1, 1))              (random start, inside the map)
///     x_{t+1} = clip(x_t + alpha * sign(∇ loss(x_t)))
///
/// where clip projects onto |x' - x| <= map and [0, 1]. With a constant map this is the PGD of
/// the official PART code; its random start draws uniform(-eps, eps) with the scalar eps,
/// which differs only in entries whose budget is lower than eps: here every start lies inside
/// the map. Each row's start is drawn from the stream keyed by (seed, random start, the row's
/// dataset index), so it does not depend on the batch.
public struct PGD: Attack {
    public let steps: Int
    /// Step size alpha, the same for every entry.
    public let stepSize: Float
    public let randomStart: Bool
    public let loss: AttackLoss

    public init(steps: Int, stepSize: Float, randomStart: Bool = true, loss: AttackLoss = CrossEntropyLoss()) {
        precondition(steps >= 0 && stepSize >= 0)
        self.steps = steps
        self.stepSize = stepSize
        self.randomStart = randomStart
        self.loss = loss
    }

    public var name: String { "pgd-\(steps)" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let images = batch.images, map = batch.budget.values
        var x = images
        if randomStart {
            x = Perturbation.uniformStart(images, map: map, seed: seed, indices: batch.indices)
            Perturbation.project(&x, around: images, map: map)
        }
        for _ in 0..<steps {
            let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss).gradient
            Perturbation.signStep(&x, gradient: g, alpha: stepSize)
            Perturbation.project(&x, around: images, map: map)
        }
        return x
    }
}
