import PARTAttacks
import PARTCAM
import PARTEngine
import PARTNN

/// Where a batch's epsilon map comes from (docs/architecture.md#epsilon-map-providers).
public protocol BudgetProvider {
    var name: String { get }
    /// The budget for `images` [N, H, W, C] under the current model.
    func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap
}

/// The same epsilon everywhere: plain adversarial training, and PART's burn-in.
public struct ConstantBudget: BudgetProvider {
    public let epsilon: Float
    public init(epsilon: Float) { self.epsilon = epsilon }
    public var name: String { "constant" }

    public func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap {
        try EpsilonMap.constant(epsilon, shape: images.shape)
    }
}

/// PART's pixel-reweighted budget: eps on the pixels a CAM marks important, epsLow elsewhere,
/// computed from the batch's own images (so maps stay aligned under shuffling and augmentation).
public struct CAMBudgetProvider: BudgetProvider {
    public let cam: CAMBudget
    public let epsilon: Float
    public let epsilonLow: Float

    public init(cam: CAMBudget, epsilon: Float, epsilonLow: Float) {
        self.cam = cam
        self.epsilon = epsilon
        self.epsilonLow = epsilonLow
    }

    public var name: String { "\(cam.method.name)/\(cam.rule.name)" }

    public func budget(_ model: ImageClassifier, images: Tensor) throws -> EpsilonMap {
        try EpsilonMap(cam.budgets(model, images: images, epsilon: epsilon, epsilonLow: epsilonLow))
    }
}

/// The budget of each epoch: a constant map for the first `burnIn` epochs (CAMs of an untrained
/// model are noise), then `main`.
public struct BudgetSchedule {
    public let burnIn: Int
    public let burnInProvider: BudgetProvider
    public let main: BudgetProvider

    public init(burnIn: Int, burnInProvider: BudgetProvider, main: BudgetProvider) {
        self.burnIn = burnIn
        self.burnInProvider = burnInProvider
        self.main = main
    }

    /// The schedule a configuration asks for.
    public init(_ config: TrainingConfig) {
        let constant = ConstantBudget(epsilon: config.epsilon)
        switch config.budget {
        case .constant:
            self.init(burnIn: 0, burnInProvider: constant, main: constant)
        case .cam:
            let cam = CAMBudget(method: config.cam.method, rule: config.mapRule.rule, layer: config.camLayer)
            self.init(burnIn: config.burnIn, burnInProvider: constant,
                      main: CAMBudgetProvider(cam: cam, epsilon: config.epsilon, epsilonLow: config.epsilonLow))
        }
    }

    /// The provider of epoch `epoch` (1-based).
    public func provider(epoch: Int) -> BudgetProvider { epoch > burnIn ? main : burnInProvider }
}
