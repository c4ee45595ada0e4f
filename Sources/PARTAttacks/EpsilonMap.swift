import PARTEngine

/// The attack budget as a tensor: a perturbed input x' must satisfy |x' - x| <= map
/// element-wise and 0 <= x' <= 1 (SPEC section 1).
///
/// Plain adversarial training is the constant map; PART lowers the budget of unimportant
/// pixels. Every attack takes a map; a scalar epsilon is only a way to build one.
public struct EpsilonMap: Sendable {
    /// Per-entry budgets, the images' shape [N, H, W, C], all >= 0.
    public let values: Tensor

    public init(_ values: Tensor) throws {
        guard values.withUnsafeBufferPointer({ $0.allSatisfy { $0 >= 0 && $0.isFinite } }) else {
            throw AttackError("an epsilon map must hold finite values >= 0")
        }
        self.values = values
    }

    /// The same budget for every entry.
    public static func constant(_ epsilon: Float, shape: [Int]) throws -> EpsilonMap {
        guard epsilon >= 0 && epsilon.isFinite else { throw AttackError("epsilon must be finite and >= 0, got \(epsilon)") }
        return try EpsilonMap(Tensor(shape: shape, repeating: epsilon))
    }

    /// Fraction of entries whose budget is at least `epsilon` (the "full eps" share logged in training).
    public func fraction(atLeast epsilon: Float) -> Double {
        guard values.count > 0 else { return 0 }
        let n = values.withUnsafeBufferPointer { $0.reduce(0) { $0 + ($1 >= epsilon ? 1 : 0) } }
        return Double(n) / Double(values.count)
    }

    /// Budgets of the rows `range` (a sub-batch).
    public func slice(_ range: Range<Int>) -> EpsilonMap {
        // Values were validated when the full map was built.
        try! EpsilonMap(values.slice(range))
    }
}

/// A problem with an attack's input, in a sentence the user can act on.
public struct AttackError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
