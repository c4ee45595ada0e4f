import PARTEngine
import PARTNN

/// Max or average pooling with any stride and padding (`Pooling`), as a layer.
final class WindowPool: Layer {
    let op: Pooling

    init(_ op: Pooling) { self.op = op }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let (y, record) = try op.forward(x, backward: tape != nil)
        tape?.record { [op] dy in try op.backward(dy, record: record) }
        return y
    }
}
