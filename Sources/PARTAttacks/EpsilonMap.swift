import PARTEngine

/// The attack budget as a tensor: a perturbed input x' must satisfy |x' - x| <= map
/// element-wise and 0 <= x' <= 1 (docs/method.md#1-threat-model-and-epsilon-maps).
///
/// Plain adversarial training is the constant map; PART lowers the budget of unimportant
/// pixels. Every attack takes a map; a scalar epsilon is only a way to build one.
public struct EpsilonMap: Sendable {
    /// Per-entry budgets, the images' shape [N, H, W, C], all >= 0.
    public let values: Tensor
    /// The budget of every entry when the map is constant (nil for a varying map): attacks that
    /// cannot honour a varying map (L2) read it.
    public let constantValue: Float?

    public init(_ values: Tensor) throws {
        guard values.withUnsafeBufferPointer({ $0.allSatisfy { $0 >= 0 && $0.isFinite } }) else {
            throw AttackError("an epsilon map must hold finite values >= 0")
        }
        let first = values.count > 0 ? values[flat: 0] : 0
        let constant = values.withUnsafeBufferPointer { $0.allSatisfy { $0 == first } }
        self.init(checked: values, constant: constant ? first : nil)
    }

    private init(checked values: Tensor, constant: Float?) {
        self.values = values
        self.constantValue = constant
    }

    /// The same budget for every entry.
    public static func constant(_ epsilon: Float, shape: [Int]) throws -> EpsilonMap {
        guard epsilon >= 0 && epsilon.isFinite else { throw AttackError("epsilon must be finite and >= 0, got \(epsilon)") }
        return EpsilonMap(checked: Tensor(shape: shape, repeating: epsilon), constant: epsilon)
    }

    /// Fraction of entries whose budget is at least `epsilon` (the "full eps" share logged in training).
    public func fraction(atLeast epsilon: Float) -> Double {
        Perturbation.fraction(of: values, atLeast: epsilon)
    }

    /// Budgets of the rows `range` (a sub-batch).
    public func slice(_ range: Range<Int>) -> EpsilonMap {
        EpsilonMap(checked: values.slice(range), constant: constantValue)
    }

    /// Budgets of the rows `rows`, in that order.
    public func gatherRows(_ rows: [Int]) -> EpsilonMap {
        EpsilonMap(checked: values.gatherRows(rows), constant: constantValue)
    }
}

/// A problem with an attack's input, in a sentence the user can act on.
public struct AttackError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
