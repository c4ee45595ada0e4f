import PARTAttacks
import PARTEngine
import PARTNN

/// The attack that makes the training examples: the name of an `AttackCatalog` entry that can
/// (`AttackCatalog.Training`), as `--generation` and config.json's "generation" write it (pgd,
/// mma, fgsm). A name the catalog cannot train with is refused when read.
public struct GenerationAttack: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init?(rawValue: String) {
        guard (try? AttackCatalog.standard.training(rawValue)) != nil else { return nil }
        self.rawValue = rawValue
    }

    /// The entry `name`; throws a one-line error listing the entries that can make training examples.
    public init(_ name: String) throws {
        _ = try AttackCatalog.standard.training(name)
        rawValue = name
    }

    /// The default (PGD), and FGSM-RS of the fast presets.
    public static let pgd = GenerationAttack(named: "pgd")
    public static let fgsm = GenerationAttack(named: "fgsm")

    /// A name the code itself uses (checked against the catalog by the tests).
    private init(named name: String) { rawValue = name }

    /// Every attack training can name, in catalog order.
    public static var available: [GenerationAttack] { AttackCatalog.standard.trainable.map { GenerationAttack(named: $0.name) } }

    public var description: String { rawValue }

    /// The catalog's training form of this attack.
    public var training: AttackCatalog.Training {
        get throws { try AttackCatalog.standard.training(rawValue) }
    }

    /// One step whatever `--steps` (FGSM-RS).
    public var singleStep: Bool { (try? training.singleStep) ?? false }

    /// The attack that makes an objective's training examples: the catalog entry built from the
    /// objective's generation loss and start (uniform for AT, Gaussian for TRADES and MART) and
    /// the recipe's steps and step size. PGD ascends that loss with sign steps projected under
    /// the batch's epsilon map; FGSM-RS is one such step from a uniform start whatever the
    /// objective's own; MMA ascends its own margin loss towards the three most likely wrong
    /// classes (the objective's training loss is unchanged).
    public func attack(for recipe: GenerationRecipe, steps: Int, stepSize: Float) throws -> Attack {
        let start: PGD.Start
        switch recipe.start {
        case .uniform: start = .uniform
        case .gaussian(let sigma): start = .gaussian(sigma: sigma)
        }
        return try training.build(AttackCatalog.TrainingRecipe(loss: recipe.loss, start: start, steps: steps, stepSize: stepSize))
    }
}

/// A training problem (a diverged loss, an unavailable part), in one sentence.
public struct TrainingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
