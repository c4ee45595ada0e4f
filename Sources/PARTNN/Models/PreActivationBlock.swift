import PARTEngine

/// The activation of a pre-activation network: ReLU (PreAct-ResNet, the TRADES WideResNet) or
/// SiLU (the DeepMind WideResNets).
public enum Activation: Sendable {
    case relu, silu

    public func layer() -> Layer {
        switch self {
        case .relu: return ReLULayer()
        case .silu: return SiLULayer()
        }
    }
}

/// The pre-activation residual block (He et al. 2016, "Identity Mappings in Deep Residual
/// Networks") of PreAct-ResNet-18 and the WideResNets:
///
///     o = act(bn1(x))
///     y = conv2(act(bn2(conv1(o)))) + s,   s = shortcut(o) (1x1 strided conv) or x
///
/// The shortcut convolution reads the activated `o`, the identity shortcut the raw `x`, as in
/// every reference model. The models name the block's tensors differently in their
/// state_dicts (`Names`). Parameter order is bn1, conv1, bn2, conv2, shortcut (their
/// registration order in PyTorch, the same in all of them).
public final class PreActivationBlock: Layer {
    /// The state_dict names of the block's five modules.
    public struct Names: Sendable {
        let bn1, conv1, bn2, conv2, shortcut: String

        /// PreAct-ResNet-18 (kuangliu): `shortcut.0`.
        public static let preActResNet = Names(bn1: "bn1", conv1: "conv1", bn2: "bn2", conv2: "conv2", shortcut: "shortcut.0")
        /// The TRADES WideResNet: `convShortcut`.
        public static let wideResNet = Names(bn1: "bn1", conv1: "conv1", bn2: "bn2", conv2: "conv2", shortcut: "convShortcut")
        /// RobustBench's `DMWideResNet` (`_Block`).
        public static let deepMind = Names(bn1: "batchnorm_0", conv1: "conv_0", bn2: "batchnorm_1", conv2: "conv_1",
                                           shortcut: "shortcut")
    }

    let bn1: BatchNorm2d
    let conv1: Conv2d
    let bn2: BatchNorm2d
    let conv2: Conv2d
    let shortcut: Conv2d?
    let names: Names
    private let preActivation: Sequential
    private let residual: Sequential

    /// - Parameters: `projection` says whether the block has a shortcut convolution (each
    ///   model has its own rule for when it does). `samePadding`: a strided first convolution
    ///   pads only the bottom and right edges (TensorFlow's "SAME", as the DeepMind models pad
    ///   by hand), instead of one pixel on every side.
    public init(_ inPlanes: Int, _ planes: Int, stride: Int, projection: Bool, names: Names,
                activation: Activation = .relu, samePadding: Bool = false, rng: inout RNG) {
        bn1 = BatchNorm2d(inPlanes)
        let asymmetric = samePadding && stride > 1
        conv1 = Conv2d(inPlanes, planes, kernel: 3, stride: stride, padding: asymmetric ? 0 : 1,
                       paddingEnd: asymmetric ? 1 : nil, bias: false, rng: &rng)
        bn2 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernel: 3, padding: 1, bias: false, rng: &rng)
        shortcut = projection ? Conv2d(inPlanes, planes, kernel: 1, stride: stride, bias: false, rng: &rng) : nil
        self.names = names
        preActivation = Sequential([bn1, activation.layer()])
        residual = Sequential([conv1, bn2, activation.layer(), conv2])
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
        prefixed(names.bn1, bn1.state) + prefixed(names.conv1, conv1.state) + prefixed(names.bn2, bn2.state)
            + prefixed(names.conv2, conv2.state) + (shortcut.map { prefixed(names.shortcut, $0.state) } ?? [])
    }
}
