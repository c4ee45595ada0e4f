import Foundation
import PARTEngine
import PARTNN

/// Turns upsampled importance maps u [N, H, W] into per-entry budgets [N, H, W, C] with values
/// eps (important) or epsLow (docs/method.md#3-from-cam-to-epsilon-map).
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

/// The official PART code's rule, replicated exactly, for 3-channel images only: u coloured by
/// matplotlib's `jet`, the RGB values standardised per image, eps per (pixel, channel) where the
/// z-score exceeds 1 (see `BudgetMaps.official`). Its quirk is kept: the blue channel of
/// unimportant regions is marked important.
public struct OfficialRule: MapRule {
    public init() {}
    public var name: String { "official" }

    public func budgets(_ upsampled: Tensor, channels: Int, epsilon: Float, epsilonLow: Float) throws -> Tensor {
        if let problem = MapRuleName.official.channelProblem(channels: channels) { throw CAMError(problem) }
        return BudgetMaps.official(upsampled, epsilon: epsilon, epsilonLow: epsilonLow)
    }
}

/// The map rules by their command-line names.
public enum MapRuleName: String, CaseIterable, Codable, Sendable {
    case zscore, official

    public var rule: MapRule {
        switch self {
        case .zscore: return ZScoreRule()
        case .official: return OfficialRule()
        }
    }

    /// Whether the rule can build budgets for images with `channels` channels.
    public func accepts(channels: Int) -> Bool { self == .zscore || channels == 3 }

    /// Why the rule cannot build budgets for the `channels`-channel images named `images` (a
    /// dataset's name), nil when it can: the one sentence of every command and layer that checks.
    public func channelProblem(channels: Int, images: String = "these images") -> String? {
        guard !accepts(channels: channels) else { return nil }
        return "--map-rule \(rawValue) colours maps as RGB and needs 3-channel images; \(images) has \(channels) "
            + "channel\(channels == 1 ? "" : "s"): use --map-rule zscore"
    }
}

/// The whole CAM-to-budget path of PART: maps of the predicted classes at the CAM layer, bicubic
/// upsampling to the image size, squaring, then the rule.
public struct CAMBudget: Sendable {
    public let method: CAMMethod
    public let rule: MapRule
    /// The CAM layer, one of the model's `camLayers` (nil: the model's default).
    public let layer: String?

    public init(method: CAMMethod, rule: MapRule, layer: String? = nil) {
        self.method = method
        self.rule = rule
        self.layer = layer
    }

    /// The upsampled, squared importance maps [N, H, W] of a batch.
    public func importance(_ model: ImageClassifier, images: Tensor) throws -> Tensor {
        let maps = try ClassActivation.maps(model, images: images, method: method, layer: layer).maps
        return Bicubic.resize(maps, height: images.shape[1], width: images.shape[2]).squared()
    }

    /// Per-entry budgets [N, H, W, C] for a batch of images [N, H, W, C].
    public func budgets(_ model: ImageClassifier, images: Tensor, epsilon: Float, epsilonLow: Float) throws -> Tensor {
        try rule.budgets(try importance(model, images: images), channels: images.shape[3], epsilon: epsilon,
                         epsilonLow: epsilonLow)
    }
}
