import PARTAttacks
import PARTEngine
import PARTNN

extension GenerationKind {
    /// The kinds this build can run.
    public static var available: [GenerationKind] { [.pgd, .mma, .fgsm] }

    /// The attack that makes an objective's training examples.
    ///
    /// PGD ascends the objective's generation loss from its start (`PGD` for the uniform start,
    /// `NoiseStartPGD` for TRADES' and MART's Gaussian one), with sign steps of size `stepSize`
    /// projected under the batch's epsilon map. FGSM-RS is one such step of `stepSize` from a
    /// uniform start inside the map, whatever the objective's own start (`steps` is ignored).
    /// MMA ascends its own margin loss towards the
    /// three most likely wrong classes whatever the objective; the objective's training loss is
    /// unchanged.
    public func attack(for recipe: GenerationRecipe, steps: Int, stepSize: Float) throws -> Attack {
        switch self {
        case .pgd:
            switch recipe.start {
            case .uniform: return PGD(steps: steps, stepSize: stepSize, randomStart: true, loss: recipe.loss)
            case .gaussian(let sigma): return NoiseStartPGD(steps: steps, stepSize: stepSize, sigma: sigma, loss: recipe.loss)
            }
        case .mma:
            return try MMA(steps: steps, stepSize: stepSize, k: 3)
        case .fgsm:
            return PGD(steps: 1, stepSize: stepSize, randomStart: true, loss: recipe.loss)
        }
    }
}

/// PGD from a Gaussian start, the generation of TRADES and MART (SPEC section 4):
///
///     x_0     = x + sigma N(0, 1)                       (not projected: the first gradient is
///                                                        taken there, as in the reference code)
///     x_{t+1} = clip(x_t + alpha * sign(∇ loss(x_t)))
///
/// where clip projects onto |x' - x| <= map and [0, 1]. Row b's noise comes from the stream keyed
/// by (seed, start noise, the row's dataset index), so it does not depend on the batch. With 0
/// steps the start itself is projected and returned.
public struct NoiseStartPGD: Attack {
    public let steps: Int
    public let stepSize: Float
    public let sigma: Float
    public let loss: AttackLoss

    public init(steps: Int, stepSize: Float, sigma: Float, loss: AttackLoss) {
        self.steps = max(steps, 0)
        self.stepSize = stepSize
        self.sigma = sigma
        self.loss = loss
    }

    public var name: String { "pgd-\(steps)-\(loss.name)" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let start = Perturbation.gaussianStart(batch.images, sigma: sigma, seed: seed, indices: batch.indices)
        return try ascend(model, batch, from: start)
    }

    /// The steps from a given start [N, H, W, C] (`perturb` draws it).
    public func ascend(_ model: ImageClassifier, _ batch: AttackBatch, from start: Tensor) throws -> Tensor {
        let images = batch.images, map = batch.budget.values
        var x = start
        for _ in 0..<steps {
            let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss).gradient
            Perturbation.signStep(&x, gradient: g, alpha: stepSize)
            Perturbation.project(&x, around: images, map: map)
        }
        if steps == 0 { Perturbation.project(&x, around: images, map: map) }
        return x
    }
}

/// A training problem (a diverged loss, an unavailable part), in one sentence.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
