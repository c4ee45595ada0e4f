import Foundation

/// The result of `part eval --protocol robustbench` in the layout of RobustBench's model-info
/// files (`model_info/<dataset>/<threat model>/<name>.json`): accuracies as strings in percent
/// with two decimals, eps as a fraction. The fields a tool cannot know (name, authors, link,
/// venue, reported figure, additional data) are left for the author to add; the evaluation's own
/// settings follow, so a figure can be traced to the command that produced it.
public struct ModelInfo: Encodable, Sendable {
    public let dataset: String
    public let eps: String
    public let threatModel: String
    public let architecture: String
    public let cleanAcc: String
    public let autoattackAcc: String
    /// One pass per prediction: the models `part` evaluates are deterministic.
    public let numberForwardPasses = 1
    /// true when the evaluation printed a `warning: gradient masking:` line.
    public let unreliable: Bool
    public let nExamples: Int
    public let checkpointSHA256: String
    public let attacks: [String]
    public let seed: UInt64
    public let precision: String

    enum CodingKeys: String, CodingKey {
        case dataset, eps, architecture, unreliable, attacks, seed, precision
        case threatModel = "threat_model"
        case cleanAcc = "clean_acc"
        case autoattackAcc = "autoattack_acc"
        case numberForwardPasses = "number_forward_passes"
        case nExamples = "n_examples"
        case checkpointSHA256 = "checkpoint_sha256"
    }

    public init(dataset: String, eps: String, threatModel: String, architecture: String, cleanAccuracy: Double,
                robustAccuracy: Double, points: Int, checkpointSHA256: String, attacks: [String], seed: UInt64,
                precision: String, unreliable: Bool) {
        self.dataset = dataset
        self.eps = eps
        self.threatModel = threatModel
        self.architecture = architecture
        cleanAcc = String(format: "%.2f", 100 * cleanAccuracy)
        autoattackAcc = String(format: "%.2f", 100 * robustAccuracy)
        nExamples = points
        self.checkpointSHA256 = checkpointSHA256
        self.attacks = attacks
        self.seed = seed
        self.precision = precision
        self.unreliable = unreliable
    }
}
