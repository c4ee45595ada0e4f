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
        let (n, h, w) = (upsampled.shape[0], upsampled.shape[1], upsampled.shape[2])
        let hw = h * w
        var out = Tensor.uninitialized(shape: [n, h, w, channels])
        let u = upsampled.readPointer
        out.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                let img = u + b * hw
                var mean = 0.0
                for p in 0..<hw { mean += Double(img[p]) }
                mean /= Double(hw)
                var variance = 0.0
                for p in 0..<hw { variance += (Double(img[p]) - mean) * (Double(img[p]) - mean) }
                let std = (variance / Double(hw)).squareRoot()
                for p in 0..<hw {
                    let important = std > 0 && (Double(img[p]) - mean) / std > 1
                    let e = important ? epsilon : epsilonLow
                    for c in 0..<channels { dst[(b * hw + p) * channels + c] = e }
                }
            }
        }
        return out
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
    public func importance(_ model: ImageClassifier, images: Tensor) -> Tensor {
        let maps = ClassActivation.maps(model, images: images, method: method).maps
        return Bicubic.resize(maps, height: images.shape[1], width: images.shape[2]).map { $0 * $0 }
    }

    /// Per-entry budgets [N, H, W, C] for a batch of images [N, H, W, C].
    public func budgets(_ model: ImageClassifier, images: Tensor, epsilon: Float, epsilonLow: Float) throws -> Tensor {
        try rule.budgets(importance(model, images: images), channels: images.shape[3], epsilon: epsilon,
                         epsilonLow: epsilonLow)
    }
}
