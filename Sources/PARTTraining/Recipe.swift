import PARTCAM

// The three independent choices of a training recipe (docs/architecture.md#training-is-objective-x-budget-x-generation) and the shorthand names of the paper's family.

/// What the model is trained to minimise (docs/method.md#5-objectives); each pairs a generation loss with a
/// training loss.
public enum ObjectiveKind: String, CaseIterable, Codable, Sendable {
    /// CE of the adversarial examples (Madry et al. 2018).
    case at
    /// CE of the clean examples + beta KL(clean || adversarial) (Zhang et al. 2019).
    case trades
    /// Boosted CE of the adversarial examples + beta KL weighted by 1 - p_y (Wang et al. 2020).
    case mart
}

/// Where each batch's epsilon map comes from.
public enum BudgetKind: String, CaseIterable, Codable, Sendable {
    /// eps everywhere.
    case constant
    /// eps on the pixels a class activation map marks important, eps-low elsewhere, after the
    /// burn-in epochs (PART).
    case cam
    /// eps everywhere except on named regions of the image (`--regions`), where it is lower:
    /// a budget fixed in advance, the paper's Fig. 1 experiment (`RegionBudget`).
    case regions
}

/// The family's shorthand names: each sets all three choices (generation PGD).
public enum TrainingMethod: String, CaseIterable, Codable, Sendable {
    case at, trades, mart, part
    case partT = "part-t"
    case partM = "part-m"

    public var objective: ObjectiveKind {
        switch self {
        case .at, .part: return .at
        case .trades, .partT: return .trades
        case .mart, .partM: return .mart
        }
    }

    public var budget: BudgetKind {
        switch self {
        case .at, .trades, .mart: return .constant
        case .part, .partT, .partM: return .cam
        }
    }

    /// The shorthand of an objective and a budget.
    public init(objective: ObjectiveKind, budget: BudgetKind) {
        switch (objective, budget) {
        // A region budget is fixed like a constant one; `TrainingConfig.method` marks it.
        case (.at, .constant), (.at, .regions): self = .at
        case (.trades, .constant), (.trades, .regions): self = .trades
        case (.mart, .constant), (.mart, .regions): self = .mart
        case (.at, .cam): self = .part
        case (.trades, .cam): self = .partT
        case (.mart, .cam): self = .partM
        }
    }
}

/// Metadata keys of the recipe in `last.safetensors` / `best.safetensors`.
public enum RecipeKey {
    public static let method = "method"
    public static let objective = "objective"
    public static let budget = "budget"
    public static let generation = "generation"
    public static let cam = "cam"
    public static let camLayer = "cam_layer"
    public static let mapRule = "map_rule"
    public static let regions = "regions"
    public static let beta = "beta"
    public static let dataset = "dataset"
    public static let seed = "seed"
    public static let epoch = "epoch"
    /// The training budget (`--eps`), and eps-low of a CAM budget: what `part cam` draws and
    /// what `part eval` compares its --eps with, when the checkpoint travels without its run.
    public static let epsilon = "eps"
    public static let epsilonLow = "eps_low"

    /// A one-line description of the recipe a checkpoint was trained with ("part-t: trades
    /// objective (beta 6), gradcam/zscore budget at layer4, pgd generation"), nil for files
    /// without it (plain PyTorch state_dicts).
    public static func describe(_ metadata: [String: String]) -> String? {
        guard let method = metadata[method], let objective = metadata[objective], let budget = metadata[budget],
              let generation = metadata[generation] else { return nil }
        var text = "\(method): \(objective) objective"
        if objective != ObjectiveKind.at.rawValue, let beta = metadata[beta] { text += " (beta \(beta))" }
        if budget == BudgetKind.cam.rawValue {
            text += ", \(metadata[cam] ?? "?")/\(metadata[mapRule] ?? "?") budget"
            if let layer = metadata[camLayer] { text += " at \(layer)" }
        } else if budget == BudgetKind.regions.rawValue {
            text += ", region budget \(metadata[regions] ?? "?")"
        } else {
            text += ", constant budget"
        }
        return text + ", \(generation) generation"
    }
}

extension CAMMethodName {
    /// The names as the command line lists them.
    public static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}
