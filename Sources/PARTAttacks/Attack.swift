import PARTEngine
import PARTNN

/// An attack: adversarial examples for a batch inside an epsilon map.
///
/// Contract shared by every attack (SPEC sections 4 and 9): the model is run in evaluation mode
/// whatever the caller was doing and its state (weights, gradients, batch-norm statistics) is
/// left untouched; results lie inside the map and inside [0, 1]; a zero map returns the input
/// bit for bit; each example's result does not depend on the others in its batch.
public protocol Attack {
    /// A short name for logs ("pgd-20").
    var name: String { get }
    func perturb(_ model: ImageClassifier, images: Tensor, labels: [Int32], budget: EpsilonMap,
                 rng: inout RNG) throws -> Tensor
}

/// A loss an attack ascends, given as its gradient with respect to the logits.
public protocol AttackLoss {
    /// d(sum over the batch of per-example losses) / d logits, [N, K].
    func logitGradient(logits: Tensor, labels: [Int32]) -> Tensor
}

/// Cross-entropy of the true label (untargeted PGD).
public struct CrossEntropyLoss: AttackLoss {
    public init() {}
    public func logitGradient(logits: Tensor, labels: [Int32]) -> Tensor {
        CrossEntropy.perExample(logits: logits, labels: labels).gradient
    }
}

/// Checks shared by all attacks: images [N, H, W, C] in [0, 1] matching the model, one label
/// per image, a map of the images' shape.
public func validateAttackInput(_ model: ImageClassifier, images: Tensor, labels: [Int32], budget: EpsilonMap) throws {
    let expected = [images.shape.first ?? 0, model.inputHeight, model.inputWidth, model.inputChannels]
    guard images.shape == expected else {
        throw AttackError("images have shape \(images.shape), the model takes \(expected)")
    }
    guard labels.count == images.shape[0] else {
        throw AttackError("\(labels.count) labels for \(images.shape[0]) images")
    }
    guard labels.allSatisfy({ $0 >= 0 && Int($0) < model.numClasses }) else {
        throw AttackError("labels must lie in 0..<\(model.numClasses)")
    }
    guard budget.values.shape == images.shape else {
        throw AttackError("the epsilon map has shape \(budget.values.shape), the images \(images.shape)")
    }
    let inRange = images.withUnsafeBufferPointer { $0.allSatisfy { $0 >= 0 && $0 <= 1 } }
    guard inRange else {
        throw AttackError("images must lie in [0, 1] (normalisation belongs inside the model)")
    }
}

/// dLoss/dx at `x` with the model in evaluation mode; parameter gradients are not touched.
public func inputGradient(_ model: ImageClassifier, at x: Tensor, labels: [Int32], loss: AttackLoss) -> (logits: Tensor, gradient: Tensor) {
    let tape = Tape(parameterGradients: false)
    let logits = model.forward(x, mode: .eval, tape: tape)
    let g = tape.backward(loss.logitGradient(logits: logits, labels: labels))
    return (logits, g)
}

/// Projects `adversarial` onto {x' : |x' - x| <= eps} ∩ [0, 1], in place.
/// Always around the original input `x`, never the last iterate.
public func project(_ adversarial: inout Tensor, around x: Tensor, budget: EpsilonMap) {
    let o = x.readPointer, e = budget.values.readPointer
    adversarial.withUnsafeMutableBufferPointer { a in
        for i in 0..<a.count {
            let lo = Swift.max(o[i] - e[i], 0), hi = Swift.min(o[i] + e[i], 1)
            a[i] = Swift.min(Swift.max(a[i], lo), hi)
        }
    }
}
