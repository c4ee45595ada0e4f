import PARTAttacks
import PARTEngine
import PARTNN

extension GenerationKind {
    /// The kinds this build can run.
    public static var available: [GenerationKind] { [.pgd, .mma, .fgsm] }

    /// The attack that makes an objective's training examples.
    ///
    /// PGD ascends the objective's generation loss from its start (uniform for AT, Gaussian for
    /// TRADES and MART), with sign steps of size `stepSize`
    /// projected under the batch's epsilon map. FGSM-RS is one such step of `stepSize` from a
    /// uniform start inside the map, whatever the objective's own start (`steps` is ignored).
    /// MMA ascends its own margin loss towards the
    /// three most likely wrong classes whatever the objective; the objective's training loss is
    /// unchanged.
    public func attack(for recipe: GenerationRecipe, steps: Int, stepSize: Float) throws -> Attack {
        switch self {
        case .pgd:
            switch recipe.start {
            case .uniform: return PGD(steps: steps, stepSize: stepSize, start: .uniform, loss: recipe.loss)
            case .gaussian(let sigma): return PGD(steps: steps, stepSize: stepSize, start: .gaussian(sigma: sigma), loss: recipe.loss)
            }
        case .mma:
            return try MMA(steps: steps, stepSize: stepSize, k: 3)
        case .fgsm:
            return PGD(steps: 1, stepSize: stepSize, start: .uniform, loss: recipe.loss)
        }
    }
}

/// A training problem (a diverged loss, an unavailable part), in one sentence.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
