import PARTEngine

/// A trainable tensor with its gradient and a version that changes with its value.
///
/// The version lets oneDNN ops keep a reordered copy of the weights and refresh it only when
/// the optimiser has changed them (ten PGD steps reuse one copy).
public final class Parameter {
    /// Change it through `update` or `assign`, which keep the version right.
    public private(set) var value: Tensor
    /// dL/dvalue, accumulated by backward passes until `zeroGradient()`.
    public var gradient: Tensor
    public private(set) var version: Int

    public init(_ value: Tensor) {
        self.value = value
        self.gradient = Tensor(shape: value.shape)
        self.version = Versions.next()
    }

    public func zeroGradient() { gradient.fill(0) }

    /// Mutates the value in place (no copy) and marks it changed.
    public func update(_ body: (inout Tensor) -> Void) {
        body(&value)
        version = Versions.next()
    }

    /// Replaces the value (same shape) and marks it changed.
    public func assign(_ newValue: Tensor) {
        precondition(newValue.shape == value.shape, "parameter shape \(value.shape), got \(newValue.shape)")
        value = newValue
        version = Versions.next()
    }
}

/// Process-wide version numbers: every change of a parameter's or buffer's value (and every
/// derived tensor such as folded weights) gets a new one, so caches keyed by versions (weights
/// reordered into a kernel's layout, batch norm folded into a convolution) know when to refresh.
public enum Versions {
    private static let counter = Locked(0)

    public static func next() -> Int {
        counter.withLock { c in
            c += 1
            return c
        }
    }
}

/// A non-trainable tensor saved with the model (batch-norm running statistics).
public final class Buffer {
    public var value: Tensor {
        didSet { version = Versions.next() }
    }
    /// Changes with the value (see `Versions`).
    public private(set) var version: Int
    /// Stored as an integer in checkpoints (PyTorch's `num_batches_tracked` is int64).
    public let isInteger: Bool

    public init(_ value: Tensor, isInteger: Bool = false) {
        self.value = value
        self.isInteger = isInteger
        self.version = Versions.next()
    }
}

/// One named entry of a model's state, in PyTorch `state_dict` order.
public enum StateEntry {
    case parameter(Parameter)
    case buffer(Buffer)

    public var tensor: Tensor {
        switch self {
        case .parameter(let p): return p.value
        case .buffer(let b): return b.value
        }
    }
}

/// Whether a forward pass trains (batch statistics, running-stat update) or evaluates.
///
/// The mode is an argument of every forward call rather than a flag stored on the model, so an
/// attack or a CAM computed in evaluation mode can never leave the model in another mode.
public enum Mode: Sendable {
    case train, eval
}

/// The record of one forward pass: for every op, a closure that maps dL/d(output) to
/// dL/d(input), holding exactly what that op's backward needs.
///
/// Two forward passes have two tapes and can be back-propagated independently. A tape made with
/// `parameterGradients: false` computes input gradients only (attack steps, CAM); with `true`
/// the closures also add dL/dθ into each parameter's `gradient`.
public final class Tape {
    public let parameterGradients: Bool
    /// When false, the first recorded op skips its input gradient (a training step does not
    /// need dL/dx of the images).
    public let inputGradient: Bool
    private var steps: [(Tensor) throws -> Tensor] = []

    public init(parameterGradients: Bool, inputGradient: Bool = true) {
        self.parameterGradients = parameterGradients
        self.inputGradient = inputGradient
    }

    /// True when the op about to be recorded must produce an input gradient.
    public var needsInputGradient: Bool { inputGradient || !steps.isEmpty }

    public func record(_ step: @escaping (Tensor) throws -> Tensor) { steps.append(step) }

    /// A tape for a branch inside a composite op, with the same gradient settings.
    public func branch() -> Tape { Tape(parameterGradients: parameterGradients, inputGradient: true) }

    /// Runs the recorded steps in reverse and returns dL/d(input). The tape is consumed.
    @discardableResult
    public func backward(_ gradient: Tensor) throws -> Tensor {
        var g = gradient
        while let step = steps.popLast() { g = try step(g) }
        return g
    }
}

/// A network piece with a forward pass that records its backward on a tape.
public protocol Layer: AnyObject {
    /// Forward. `x` is NHWC for image layers, [N, features] for linear ones.
    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor
    /// Parameters and buffers with names relative to this layer, in `state_dict` order.
    var state: [(String, StateEntry)] { get }
}

extension Layer {
    public var state: [(String, StateEntry)] { [] }
}

/// Prefixes child names, as PyTorch's module tree does ("layer1.0.conv1.weight").
public func prefixed(_ prefix: String, _ entries: [(String, StateEntry)]) -> [(String, StateEntry)] {
    entries.map { ("\(prefix).\($0.0)", $0.1) }
}

/// Layers applied in order.
public final class Sequential: Layer {
    public let layers: [Layer]
    /// Names used in `state` (PyTorch indexes `nn.Sequential` children "0", "1", ...).
    public let names: [String]

    public init(_ layers: [Layer], names: [String]? = nil) {
        self.layers = layers
        self.names = names ?? layers.indices.map(String.init)
    }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try fusedForward(x, mode: mode, tape: tape)
    }

    public var state: [(String, StateEntry)] {
        zip(names, layers).flatMap { prefixed($0.0, $0.1.state) }
    }
}
