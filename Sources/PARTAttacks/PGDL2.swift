import PARTEngine
import PARTNN

/// Projected gradient descent in the L2 norm (Madry et al. 2018; torchattacks' `PGDL2`):
///
///     x_0     = clip(x + r * radius * n / ||n||),   n ~ N(0, I), r ~ U(0, 1)   (random start)
///     x_{t+1} = clip(x_t + alpha * g_t / ||g_t||),  g_t = ∇ loss(x_t)
///
/// where clip projects onto ||x' - x||_2 <= radius and then [0, 1], per example. An L2 ball
/// has no per-pixel budget, so the attack needs a constant epsilon map and refuses a varying
/// one; the radius is `radius` when given, else the map's constant value. Each row's start is
/// drawn from the stream keyed by (seed, random start, the row's dataset index).
public struct PGDL2: L2Attack {
    public let steps: Int
    public let stepSize: Float
    /// Always L2; the radius is the item's, or nil for the map's constant value.
    public let threat: Threat
    public let randomStart: Bool
    public let loss: AttackLoss

    public init(steps: Int, stepSize: Float, radius: Float? = nil, randomStart: Bool = true,
                loss: AttackLoss = CrossEntropyLoss()) throws {
        guard steps >= 0 else { throw AttackError("pgd-l2 steps must be >= 0, got \(steps)") }
        guard stepSize >= 0 && stepSize.isFinite else { throw AttackError("pgd-l2 alpha must be finite and >= 0") }
        if let radius, !(radius >= 0 && radius.isFinite) {
            throw AttackError("pgd-l2 eps (the L2 radius) must be finite and >= 0, got \(radius)")
        }
        self.steps = steps
        self.stepSize = stepSize
        self.threat = Threat(.l2, radius: radius)
        self.randomStart = randomStart
        self.loss = loss
    }

    public var name: String { "pgd-l2-\(steps)" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        guard let radius = try radius(for: batch.budget) else { return batch.images }
        let images = batch.images
        guard radius > 0, batch.count > 0 else { return images }
        var x = images
        if randomStart {
            x = L2Ball.randomStart(images, radius: radius, seed: seed, indices: batch.indices)
            L2Ball.project(&x, around: images, radius: radius)
        }
        for step in 0..<steps {
            let g = try AttackPass.lossGradient(model, at: x, batch: batch, loss: loss).gradient
            L2Ball.normalizedStep(&x, gradient: g, alpha: stepSize)
            L2Ball.project(&x, around: images, radius: radius)
            batch.progress?.steps(step + 1, of: steps)
        }
        return x
    }
}
