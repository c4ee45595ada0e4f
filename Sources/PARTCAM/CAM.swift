import PARTEngine
import PARTNN

/// A class activation map method: how activations A and gradients G = d logit_c / dA of the CAM
/// layer combine into one map per image (SPEC section 3).
public protocol CAMMethod: Sendable {
    /// The name used on the command line ("gradcam").
    var name: String { get }
    /// Maps [N, h, w] (before normalisation) from A and G, both [N, h, w, K].
    func combine(activations: Tensor, gradients: Tensor) -> Tensor
}

/// Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij G_kij; cam = ReLU(sum_k w_k A_k).
public struct GradCAM: CAMMethod {
    public init() {}
    public var name: String { "gradcam" }

    public func combine(activations: Tensor, gradients: Tensor) -> Tensor {
        var weights = Channels.sums(gradients)
        weights.scale(by: 1 / Float(activations.shape[1] * activations.shape[2]))
        var cam = Channels.weightedSum(activations, weights: weights)
        cam.clamp(0, .infinity)
        return cam
    }
}

/// Class activation maps of a batch, for the model's predicted classes.
public enum ClassActivation {
    /// Min-max normalised maps [N, h, w] in [0, 1] (a constant map becomes zeros) and the
    /// predicted classes, from one forward and one head-only backward for the whole batch.
    ///
    /// The model runs in evaluation mode with an input-only tape, so its weights, gradients and
    /// batch-norm statistics are untouched, and each image's map does not depend on the others;
    /// the passes run in `Engine.attackPrecision`.
    public static func maps(_ model: ImageClassifier, images: Tensor, method: CAMMethod) throws
        -> (maps: Tensor, predictions: [Int32]) {
        let activations = try model.features(try images.converted(to: Engine.attackPrecision), mode: .eval, tape: nil)
        let tape = Tape(parameterGradients: false)
        let output = try model.head(activations, mode: .eval, tape: tape)
        let predictions = try output.converted(to: .f32).argmaxRows()
        var seed = Tensor(shape: output.shape)
        let k = output.shape[1]
        for (b, c) in predictions.enumerated() { seed[flat: b * k + Int(c)] = 1 }
        let gradients = try tape.backward(try seed.converted(to: output.dtype)).converted(to: .f32)
        return (normalise(method.combine(activations: try activations.converted(to: .f32), gradients: gradients)),
                predictions)
    }

    /// Per-image min-max normalisation to [0, 1]; a map whose range is zero becomes all zeros.
    public static func normalise(_ maps: Tensor) -> Tensor {
        maps.minMaxNormalisedRows()
    }
}
