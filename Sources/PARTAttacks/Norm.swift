import PARTEngine

/// The norm of an attack's threat model: the L-inf epsilon map (every entry within its own
/// budget), or an L2 ball of one radius around each example (docs/evaluation.md#threat-models).
public enum Norm: String, Sendable, CaseIterable {
    case linf, l2
}

/// An attack's threat model: the norm it works in and, for L2, the radius the attack item gave
/// (`aa-l2:eps=0.5`; nil: the constant value of the epsilon map).
public struct Threat: Sendable, Equatable {
    public let norm: Norm
    public let radius: Float?

    public init(_ norm: Norm = .linf, radius: Float? = nil) {
        self.norm = norm
        self.radius = radius
    }
}

/// An attack that can work in an L2 ball rather than the L-inf epsilon map: evaluation
/// re-verifies its results against the ball.
public protocol L2Attack: Attack {
    var threat: Threat { get }
    /// The ball's radius for `budget`, or nil when the attack works under the L-inf map (an
    /// attack with a norm option); throws when the attack cannot work under `budget`.
    func radius(for budget: EpsilonMap) throws -> Float?
}

extension L2Attack {
    /// The norm this attack works in.
    public var norm: Norm { threat.norm }

    public func radius(for budget: EpsilonMap) throws -> Float? {
        norm == .l2 ? try l2Radius(name, override: threat.radius, budget: budget) : nil
    }

    /// The batch the attack works on: unchanged for L-inf; for L2, the budget becomes the
    /// constant map of the radius, so that the rows with a budget, the random starts and the step
    /// sizes (in units of the map) read the radius where the L-inf forms read the map.
    func threatBatch(_ batch: AttackBatch) throws -> AttackBatch {
        guard norm == .l2 else { return batch }
        let radius = try l2Radius(name, override: threat.radius, budget: batch.budget)
        var out = batch
        out.budget = try .constant(radius, shape: batch.images.shape)
        return out
    }
}

/// The radius of an L2 attack: `override` when the item gave one, else the constant value of the
/// map. An L2 ball has no per-pixel budget, so a varying map is refused with one line.
func l2Radius(_ attack: String, override: Float?, budget: EpsilonMap) throws -> Float {
    guard let constant = budget.constantValue else {
        throw AttackError("\(attack) cannot honour a varying epsilon map (an L2 ball has no per-pixel budget): "
                          + "use a constant map or an L-inf attack")
    }
    let radius = override ?? constant
    guard radius >= 0 && radius.isFinite else {
        throw AttackError("\(attack): the L2 radius must be finite and >= 0, got \(radius)")
    }
    return radius
}
