import Foundation
import PARTEngine
import PARTNN

/// Turns upsampled importance maps u [N, H, W] into per-entry budgets [N, H, W, C] with values
/// eps (important) or epsLow (SPEC section 3).
public protocol MapRule: Sendable {
    var name: String { get }
    func budgets(_ upsampled: Tensor, channels: Int, epsilon: Float, epsilonLow: Float) throws -> Tensor
}

/// The project's default rule, the paper's stated intent, for any channel count:
/// z = (u - mean(u)) / std(u) over each image's pixels (population std); eps where z > 1, else
/// epsLow, the same for every channel. An image with std 0 gets epsLow everywhere.
public struct ZScoreRule: MapRule {
    public init() {}
    public var name: String { "zscore" }

    public func budgets(_ upsampled: Tensor, channels: Int, epsilon: Float, epsilonLow: Float) throws -> Tensor {
        BudgetMaps.zscore(upsampled, channels: channels, epsilon: epsilon, epsilonLow: epsilonLow)
    }
}

/// The whole CAM-to-budget path of PART: maps of the predicted classes, bicubic upsampling to
/// the image size, squaring, then the rule.
public struct CAMBudget: Sendable {
    public let method: CAMMethod
    public let rule: MapRule

    public init(method: CAMMethod, rule: MapRule) {
        self.method = method
        self.rule = rule
    }

    /// The upsampled, squared importance maps [N, H, W] of a batch.
    public func importance(_ model: ImageClassifier, images: Tensor) throws -> Tensor {
        let maps = try ClassActivation.maps(model, images: images, method: method).maps
        return Bicubic.resize(maps, height: images.shape[1], width: images.shape[2]).squared()
    }

    /// Per-entry budgets [N, H, W, C] for a batch of images [N, H, W, C].
    public func budgets(_ model: ImageClassifier, images: Tensor, epsilon: Float, epsilonLow: Float) throws -> Tensor {
        try rule.budgets(try importance(model, images: images), channels: images.shape[3], epsilon: epsilon,
                         epsilonLow: epsilonLow)
    }
}
