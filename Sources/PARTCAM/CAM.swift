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
        let (n, h, w, k) = (activations.shape[0], activations.shape[1], activations.shape[2], activations.shape[3])
        let hw = h * w
        var cam = Tensor.uninitialized(shape: [n, h, w])
        let a = activations.readPointer, g = gradients.readPointer
        var weights = [Float](repeating: 0, count: k)
        cam.withUnsafeMutableBufferPointer { out in
            for b in 0..<n {
                for c in 0..<k { weights[c] = 0 }
                for p in 0..<hw {
                    let row = g + (b * hw + p) * k
                    for c in 0..<k { weights[c] += row[c] }
                }
                for c in 0..<k { weights[c] /= Float(hw) }
                for p in 0..<hw {
                    let row = a + (b * hw + p) * k
                    var s: Float = 0
                    for c in 0..<k { s += weights[c] * row[c] }
                    out[b * hw + p] = Swift.max(s, 0)
                }
            }
        }
        return cam
    }
}

/// Class activation maps of a batch, for the model's predicted classes.
public enum ClassActivation {
    /// Min-max normalised maps [N, h, w] in [0, 1] (a constant map becomes zeros) and the
    /// predicted classes, from one forward and one head-only backward for the whole batch.
    ///
    /// The model runs in evaluation mode with an input-only tape, so its weights, gradients and
    /// batch-norm statistics are untouched, and each image's map does not depend on the others.
    public static func maps(_ model: ImageClassifier, images: Tensor, method: CAMMethod) -> (maps: Tensor, predictions: [Int32]) {
        let activations = model.features(images, mode: .eval, tape: nil)
        let tape = Tape(parameterGradients: false)
        let logits = model.head(activations, mode: .eval, tape: tape)
        let predictions = logits.argmaxRows()
        var seed = Tensor(shape: logits.shape)
        let k = logits.shape[1]
        seed.withUnsafeMutableBufferPointer { s in
            for (b, c) in predictions.enumerated() { s[b * k + Int(c)] = 1 }
        }
        let gradients = tape.backward(seed)
        return (normalise(method.combine(activations: activations, gradients: gradients)), predictions)
    }

    /// Per-image min-max normalisation to [0, 1]; a map whose range is zero becomes all zeros.
    public static func normalise(_ maps: Tensor) -> Tensor {
        let n = maps.shape[0], size = maps.count / Swift.max(n, 1)
        var out = maps
        out.withUnsafeMutableBufferPointer { m in
            for b in 0..<n {
                let img = UnsafeMutableBufferPointer(rebasing: m[(b * size)..<((b + 1) * size)])
                let lo = img.min() ?? 0, hi = img.max() ?? 0
                let range = hi - lo
                for i in 0..<size { img[i] = range > 0 ? (img[i] - lo) / range : 0 }
            }
        }
        return out
    }
}
