import PARTEngine

/// An element-wise function of the engine (`Eltwise`: sigmoid, tanh, leaky ReLU, softplus,
/// ELU, clip, ...) as a layer; its backward keeps the output or the input, whichever the
/// function's gradient reads.
public final class EltwiseLayer: Layer {
    public let function: Eltwise

    public init(_ function: Eltwise) { self.function = function }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let y = try function.forward(x)
        if let tape {
            let saved = function.usesOutput ? y : x
            tape.record { [function] dy in try function.backward(dy, saved: saved) }
        }
        return y
    }
}
