import PARTEngine
import PARTNN

/// Projected gradient descent under an L-inf epsilon map (Madry et al. 2018), from one of three
/// starts:
///
///     uniform:   x_0 = clip(x + map ⊙ U(-1, 1))          (inside the map)
///     gaussian:  x_0 = x + sigma N(0, 1)                   (TRADES' and MART's start; not projected:
///                                                           the first gradient is taken there, as in
///                                                           their reference code)
///     none:      x_0 = x
///     x_{t+1} = clip(x_t + alpha * sign(∇ loss(x_t)))
///
/// where clip projects onto |x' - x| <= map and [0, 1]. With a constant map the uniform start is
/// the official PART code's, whose uniform(-eps, eps) with the scalar eps differs only in entries
/// whose budget is lower than eps: here every start lies inside the map. Each row's start is
/// drawn from the stream keyed by (seed, purpose, the row's dataset index), so it does not depend
/// on the batch. With 0 steps the start itself is projected and returned.
public struct PGD: Attack {
    /// Where the ascent starts.
    public enum Start: Sendable, Equatable {
        case none
        case uniform
        case gaussian(sigma: Float)
    }

    public let steps: Int
    /// Step size alpha, the same for every entry.
    public let stepSize: Float
    public let start: Start
    public let loss: AttackLoss

    public init(steps: Int, stepSize: Float, start: Start, loss: AttackLoss = CrossEntropyLoss()) {
        precondition(steps >= 0 && stepSize >= 0)
        self.steps = steps
        self.stepSize = stepSize
        self.start = start
        self.loss = loss
    }

    /// PGD from the uniform start (`randomStart`) or from the input itself.
    public init(steps: Int, stepSize: Float, randomStart: Bool = true, loss: AttackLoss = CrossEntropyLoss()) {
        self.init(steps: steps, stepSize: stepSize, start: randomStart ? .uniform : .none, loss: loss)
    }

    public var randomStart: Bool { start != .none }

    public var name: String { "pgd-\(steps)" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let images = batch.images, map = batch.budget.values
        switch start {
        case .none:
            return try ascend(model, batch, from: images)
        case .uniform:
            var x = Perturbation.uniformStart(images, map: map, seed: seed, indices: batch.indices)
            Perturbation.project(&x, around: images, map: map)
            return try ascend(model, batch, from: x)
        case .gaussian(let sigma):
            return try ascend(model, batch, from: Perturbation.gaussianStart(images, sigma: sigma, seed: seed,
                                                                             indices: batch.indices))
        }
    }

    /// The steps from a given start [N, H, W, C] (`perturb` draws it).
    public func ascend(_ model: ImageClassifier, _ batch: AttackBatch, from start: Tensor) throws -> Tensor {
        let images = batch.images, map = batch.budget.values
        var x = start
        for step in 0..<steps {
            let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss).gradient
            Perturbation.signStep(&x, gradient: g, alpha: stepSize)
            Perturbation.project(&x, around: images, map: map)
            batch.progress?.steps(step + 1, of: steps)
        }
        if steps == 0 { Perturbation.project(&x, around: images, map: map) }
        return x
    }
}
