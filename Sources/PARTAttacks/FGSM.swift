import PARTEngine
import PARTNN

/// Fast gradient sign method (Goodfellow et al. 2015) under an L-inf epsilon map: one step of
/// the full budget of every entry,
///
///     x' = clip(x + map ⊙ sign(∇_x loss(x))),
///
/// where clip projects onto |x' - x| <= map and [0, 1] (docs/conventions.md#3-epsilon-maps-in-attacks: a step of
/// "1 eps" is the map per entry). No random start, so no random draw.
public struct FGSM: Attack {
    public let loss: AttackLoss

    public init(loss: AttackLoss = CrossEntropyLoss()) {
        self.loss = loss
    }

    public var name: String { "fgsm" }

    public func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try validateAttackInput(model, batch)
        let images = batch.images, map = batch.budget.values
        guard batch.count > 0 else { return images }
        let g = try AttackPass.lossGradient(model, at: images, batch: batch, loss: loss).gradient
        var x = images
        Perturbation.signStep(&x, gradient: g, rowAlpha: [Float](repeating: 1, count: batch.count), map: map)
        Perturbation.project(&x, around: images, map: map)
        return x
    }
}
