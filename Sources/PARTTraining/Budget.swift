import PARTAttacks
import PARTCAM
import PARTEngine
import PARTNN

/// Where a batch's epsilon map comes from (DESIGN: "epsilon-map providers").
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
