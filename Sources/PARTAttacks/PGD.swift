import PARTEngine
import PARTNN

/// Projected gradient descent under an L-inf epsilon map (Madry et al. 2018).
///
///     x_0     = clip(x + eps ⊙ U(-1, 1))              (random start, inside the map)
///     x_{t+1} = clip(x_t + alpha * sign(∇ loss(x_t)))
///
/// where clip projects onto |x' - x| <= eps (the map) and [0, 1]. With a constant map this is
/// the PGD of the official PART code; its random start draws uniform(-eps, eps) with the scalar
/// eps, which differs only in entries whose budget is lower than eps: here every start lies
/// inside the map.
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

    public func perturb(_ model: ImageClassifier, images: Tensor, labels: [Int32], budget: EpsilonMap,
                        rng: inout RNG) throws -> Tensor {
        try validateAttackInput(model, images: images, labels: labels, budget: budget)
        var x = images
        if randomStart {
            let e = budget.values.readPointer
            x.withUnsafeMutableBufferPointer { a in
                for i in 0..<a.count { a[i] += e[i] * (rng.uniform() * 2 - 1) }
            }
            project(&x, around: images, budget: budget)
        }
        let alpha = stepSize
        for _ in 0..<steps {
            let gradient = inputGradient(model, at: x, labels: labels, loss: loss).gradient
            gradient.withUnsafeBufferPointer { g in
                x.withUnsafeMutableBufferPointer { a in
                    for i in 0..<a.count { a[i] += g[i] > 0 ? alpha : (g[i] < 0 ? -alpha : 0) }
                }
            }
            project(&x, around: images, budget: budget)
        }
        return x
    }
}
