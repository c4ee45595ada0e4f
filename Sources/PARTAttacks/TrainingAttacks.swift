import PARTNN

/// The catalog's attacks that can make training examples (docs/architecture.md#training-is-objective-x-budget-x-generation).
///
/// Training names its generation attack by a catalog entry (`part train --generation pgd|mma|fgsm`);
/// an entry that can make training examples carries a `Training`, which builds the attack from what
/// the training recipe fixes: the objective's generation loss and start, and `--steps` and `--alpha`.
extension AttackCatalog {
    /// What a training recipe hands the generation attack.
    public struct TrainingRecipe {
        /// The objective's generation loss (CE for AT and MART, KL to the clean logits for TRADES).
        public let loss: AttackLoss
        /// The objective's start (uniform for AT, Gaussian for TRADES and MART).
        public let start: PGD.Start
        public let steps: Int
        public let stepSize: Float

        public init(loss: AttackLoss, start: PGD.Start, steps: Int, stepSize: Float) {
            self.loss = loss
            self.start = start
            self.steps = steps
            self.stepSize = stepSize
        }
    }

    /// How an entry makes training examples.
    public struct Training: Sendable {
        /// The attack in training, for `--generation`'s help ("PGD (--steps of --alpha)").
        public let summary: String
        /// One step of `--alpha` whatever `--steps` (fast adversarial training): `--alpha` then
        /// defaults to 1.25 eps and the per-epoch check steps eps/4.
        public let singleStep: Bool
        public let build: @Sendable (TrainingRecipe) throws -> Attack

        public init(_ summary: String, singleStep: Bool = false, build: @escaping @Sendable (TrainingRecipe) throws -> Attack) {
            self.summary = summary
            self.singleStep = singleStep
            self.build = build
        }
    }

    /// The entries that can make training examples, in catalog order.
    public var trainable: [Entry] { entries.filter { $0.training != nil } }

    /// The training form of the entry `name`; throws a one-line error listing the trainable entries.
    public func training(_ name: String) throws -> Training {
        guard let training = entries.first(where: { $0.name == name })?.training else {
            throw AttackError("'\(name)' cannot make training examples (attacks that can: "
                              + "\(trainable.map(\.name).joined(separator: ", ")))")
        }
        return training
    }

    /// The trainable entries' summaries as one phrase: "A, B, or C".
    public var trainingSummaries: String {
        let all = trainable.compactMap { $0.training?.summary }
        guard all.count > 1 else { return all.first ?? "" }
        return all.dropLast().joined(separator: ", ") + ", or " + all[all.count - 1]
    }
}
