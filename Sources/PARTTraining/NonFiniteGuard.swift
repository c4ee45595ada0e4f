import PARTEngine
import PARTNN

/// A training run stopped because a loss, gradient or weight stopped being finite. Nothing
/// of the diverged step is saved: the last committed checkpoint stays as it was.
public struct NonFiniteError: Error, CustomStringConvertible {
    public let description: String
}

/// The checks after each training step: the loss, then every gradient (before the update),
/// then every weight (after it), each with `Tensor.allFinite` on all cores.
enum NonFiniteGuard {
    /// What is not finite in the step, nil when all is finite: "the training loss is nan",
    /// "the gradient of 'conv1.weight' holds nan".
    static func lossOrGradient(loss: Float, parameters: [(String, Parameter)]) -> String? {
        if !loss.isFinite { return "the training loss is \(loss)" }
        for (name, p) in parameters where !p.gradient.allFinite {
            return "the gradient of '\(name)' holds \(value(p.gradient))"
        }
        return nil
    }

    /// The first weight that the update made non-finite, nil when all are finite.
    static func weights(_ parameters: [(String, Parameter)]) -> String? {
        for (name, p) in parameters where !p.value.allFinite {
            return "the weight '\(name)' holds \(value(p.value)) after the update"
        }
        return nil
    }

    /// "nan at element 17".
    private static func value(_ t: Tensor) -> String {
        guard let i = t.firstNonFinite() else { return "a non-finite value" }
        return "\(t[flat: i]) at element \(i)"
    }
}
