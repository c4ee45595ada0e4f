import PARTEngine
import PARTNN

/// A class activation map method: how activations A and gradients G = d logit_c / dA of the CAM
/// layer combine into one map per image (docs/method.md#3-from-cam-to-epsilon-map).
public protocol CAMMethod: Sendable {
    /// The name used on the command line ("gradcam").
    var name: String { get }
    /// Maps [N, h, w] (before normalisation, after the final ReLU) from A and G, both [N, h, w, K].
    func combine(activations: Tensor, gradients: Tensor) -> Tensor
}

/// Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij G_kij; cam = ReLU(sum_k w_k A_k).
public struct GradCAM: CAMMethod {
    public init() {}
    public var name: String { "gradcam" }

    public func combine(activations: Tensor, gradients: Tensor) -> Tensor {
        var weights = Channels.sums(gradients)
        weights.scale(by: 1 / Float(activations.shape[1] * activations.shape[2]))
        return weightedMap(activations, weights)
    }
}

/// XGrad-CAM (Fu et al. 2020): w_k = sum_ij(A_kij G_kij) / (sum_ij A_kij + 1e-7);
/// cam = ReLU(sum_k w_k A_k).
public struct XGradCAM: CAMMethod {
    public init() {}
    public var name: String { "xgradcam" }

    public func combine(activations: Tensor, gradients: Tensor) -> Tensor {
        weightedMap(activations, CAMKernels.xgradWeights(activations: activations, gradients: gradients))
    }
}

/// Layer-CAM (Jiang et al. 2021): cam = ReLU(sum_k ReLU(G_k) ⊙ A_k), a weight per position.
public struct LayerCAM: CAMMethod {
    public init() {}
    public var name: String { "layercam" }

    public func combine(activations: Tensor, gradients: Tensor) -> Tensor {
        var cam = CAMKernels.layerCAM(activations: activations, gradients: gradients)
        cam.clamp(0, .infinity)
        return cam
    }
}

/// Grad-CAM++ (Chattopadhyay et al. 2018): w_k = sum_ij alpha_kij ReLU(G_kij) with
/// alpha = G^2 / (2 G^2 + (sum_ab A_kab) G^3); cam = ReLU(sum_k w_k A_k). See
/// `CAMKernels.gradCAMPlusPlusWeights`.
public struct GradCAMPlusPlus: CAMMethod {
    public init() {}
    public var name: String { "gradcam++" }

    public func combine(activations: Tensor, gradients: Tensor) -> Tensor {
        weightedMap(activations, CAMKernels.gradCAMPlusPlusWeights(activations: activations, gradients: gradients))
    }
}

/// ReLU(sum_k w_k A_k) for weights [N, K].
private func weightedMap(_ activations: Tensor, _ weights: Tensor) -> Tensor {
    var cam = Channels.weightedSum(activations, weights: weights)
    cam.clamp(0, .infinity)
    return cam
}

/// The CAM methods by their command-line names.
public enum CAMMethodName: String, CaseIterable, Codable, Sendable {
    case gradcam, xgradcam, layercam
    case gradcamPlusPlus = "gradcam++"

    public var method: CAMMethod {
        switch self {
        case .gradcam: return GradCAM()
        case .xgradcam: return XGradCAM()
        case .layercam: return LayerCAM()
        case .gradcamPlusPlus: return GradCAMPlusPlus()
        }
    }
}

/// A problem with a CAM request, in a sentence the user can act on.
public struct CAMError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The layer whose activations a CAM reads: one of the model's `camLayers`.
///
/// Every method defaults to the model's `defaultCAMLayer` (docs/method.md#3-from-cam-to-epsilon-map: SmallCNN `act4`,
/// ResNet-18 and PreAct-ResNet-18 `layer4`, WideResNet `block3`); `--cam-layer` picks another,
/// e.g. a shallower one for Layer-CAM's finer maps.
public enum CAMLayer {
    /// The layer to use in a model of `architecture`: `requested`, or the architecture's default
    /// when nil. The zoo knows the layer names without building the model.
    public static func resolve(_ requested: String?, architecture: Architecture) throws -> String {
        try pick(requested, default: architecture.defaultCAMLayer, of: architecture.camLayers, in: architecture.name)
    }

    /// The layer to use: `requested`, or the model's default when nil.
    public static func resolve(_ requested: String?, model: ImageClassifier) throws -> String {
        try pick(requested, default: model.defaultCAMLayer, of: model.camLayers, in: model.architecture)
    }

    /// `requested` when it is one of `layers` of the model named `name`, `fallback` when nil.
    private static func pick(_ requested: String?, default fallback: String, of layers: [String],
                             in name: String) throws -> String {
        guard let requested else { return fallback }
        guard layers.contains(requested) else {
            throw CAMError("--cam-layer \(requested) is not a CAM layer of \(name) "
                           + "(available: \(layers.joined(separator: ", ")))")
        }
        return requested
    }
}

/// Class activation maps of a batch, for the model's predicted classes.
public enum ClassActivation {
    /// Min-max normalised maps [N, h, w] in [0, 1] (a constant map becomes zeros) and the
    /// predicted classes, from one forward and one head-only backward for the whole batch.
    ///
    /// The model runs in evaluation mode with an input-only tape, so its weights, gradients and
    /// batch-norm statistics are untouched, and each image's map does not depend on the others;
    /// the passes run in `Engine.attackPrecision`. `layer` names the CAM layer (nil: the
    /// model's default); the forward stops there and the backward runs through the rest only.
    public static func maps(_ model: ImageClassifier, images: Tensor, method: CAMMethod, layer: String? = nil) throws
        -> (maps: Tensor, predictions: [Int32]) {
        let layer = try CAMLayer.resolve(layer, model: model)
        let activations = try model.features(try images.converted(to: Engine.attackPrecision), upTo: layer,
                                             mode: .eval, tape: nil)
        let tape = Tape(parameterGradients: false)
        let output = try model.head(activations, from: layer, mode: .eval, tape: tape)
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
