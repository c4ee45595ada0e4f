import PARTEngine

/// The pre-activation residual block (He et al. 2016, "Identity Mappings in Deep Residual
/// Networks") of PreAct-ResNet-18 and WideResNet:
///
///     o = relu(bn1(x))
///     y = conv2(relu(bn2(conv1(o)))) + s,   s = shortcut(o) (1x1 strided conv) or x
///
/// The shortcut convolution reads the activated `o`, the identity shortcut the raw `x`, as in
/// both reference models. The two models name the shortcut differently in their state_dicts
/// (`shortcut.0` in PreAct-ResNet, `convShortcut` in WideResNet), hence `shortcutName`.
/// Parameter order is bn1, conv1, bn2, conv2, shortcut (their registration order in PyTorch).
public final class PreActivationBlock: Layer {
    let bn1: BatchNorm2d
    let conv1: Conv2d
    let bn2: BatchNorm2d
    let conv2: Conv2d
    let shortcut: Conv2d?
    let shortcutName: String
    private let preActivation: Sequential
    private let residual: Sequential

    /// - Parameters: `projection` says whether the block has a shortcut convolution (each
    ///   model has its own rule for when it does).
    public init(_ inPlanes: Int, _ planes: Int, stride: Int, projection: Bool, shortcutName: String, rng: inout RNG) {
        bn1 = BatchNorm2d(inPlanes)
        conv1 = Conv2d(inPlanes, planes, kernel: 3, stride: stride, padding: 1, bias: false, rng: &rng)
        bn2 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernel: 3, padding: 1, bias: false, rng: &rng)
        shortcut = projection ? Conv2d(inPlanes, planes, kernel: 1, stride: stride, bias: false, rng: &rng) : nil
        self.shortcutName = shortcutName
        preActivation = Sequential([bn1, ReLULayer()])
        residual = Sequential([conv1, bn2, ReLULayer(), conv2])
    }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let preTape = tape?.branch()
        let residualTape = tape?.branch()
        let shortcutTape = tape?.branch()
        let o = try preActivation.forward(x, mode: mode, tape: preTape)
        // Tensor.sum: f32 in place, bf16 (reduced-precision attack passes) on oneDNN.
        let y = try Tensor.sum(try residual.forward(o, mode: mode, tape: residualTape),
                               try shortcut?.forward(o, mode: mode, tape: shortcutTape) ?? x)
        if let tape, let preTape, let residualTape, let shortcutTape {
            let projected = shortcut != nil
            tape.record { dy in
                // dL/do collects the residual branch and, with a projection, the shortcut;
                // an identity shortcut adds dy to dL/dx directly.
                var dO = try residualTape.backward(dy)
                if projected { dO = try Tensor.sum(dO, try shortcutTape.backward(dy)) }
                let dx = try preTape.backward(dO)
                return projected ? dx : try Tensor.sum(dx, dy)
            }
        }
        return y
    }

    public var state: [(String, StateEntry)] {
        prefixed("bn1", bn1.state) + prefixed("conv1", conv1.state) + prefixed("bn2", bn2.state)
            + prefixed("conv2", conv2.state) + (shortcut.map { prefixed(shortcutName, $0.state) } ?? [])
    }
}
