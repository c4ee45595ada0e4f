import PARTEngine

/// The WideResNet of DeepMind's adversarial-robustness models (Gowal et al. 2020, Rebuffi et al.
/// 2021), as RobustBench's `DMWideResNet` defines it: most of the CIFAR-10 L-inf leaderboard
/// (WRN-28-10, WRN-70-16) is this form. The same network as the TRADES `WideResNet`, with
///
/// - SiLU (swish) activations instead of ReLU;
/// - the input normalised inside the model, (x - mean) / std, with `mean` and `std` buffers of
///   shape [C, 1, 1] in the state_dict (CIFAR-10's by default for 3 channels; none for other
///   channel counts: mean 0, std 1);
/// - a strided block convolution padded on the bottom and right edges only (TensorFlow's
///   "SAME", which the reference reproduces with `F.pad(x, (0, 1, 0, 1))`), so the image side
///   must be a multiple of 4 for the two halvings to agree with the 1x1 shortcut;
/// - its own names: `init_conv`, `layer.<g>.block.<i>.{batchnorm_0, conv_0, batchnorm_1,
///   conv_1, shortcut}`, `batchnorm`, `logits`.
///
/// CAM layers `layer.0` ... `layer.2`, the block groups' outputs (the module names a forward
/// hook takes); the default `layer.2` is read before the final batchnorm/SiLU.
public final class DMWideResNet: ZooClassifier {
    public let geometry: ModelGeometry
    public let depth, widenFactor: Int
    let normalization: InputNormalization
    let initConv: Conv2d
    let groups: [Sequential]
    let batchnorm: BatchNorm2d
    let logits: Linear
    public let chain: StageChain

    /// "dm-wrn-", the prefix of the family's zoo names.
    public static let prefix = "dm-wrn-"

    /// The zoo name of a DeepMind WideResNet of this depth and width, "dm-wrn-28-10".
    public static func architectureName(depth: Int, widenFactor: Int) -> String { "\(prefix)\(depth)-\(widenFactor)" }

    /// RobustBench's CIFAR-10 constants, the buffers' defaults for 3-channel inputs.
    public static let cifar10Mean: [Float] = [0.4914, 0.4822, 0.4465]
    public static let cifar10Std: [Float] = [0.2471, 0.2435, 0.2616]

    /// Depth and widen factor within the limits of `WideResNet`; the image side a multiple of 4.
    public init(depth: Int = 28, widenFactor: Int = 10, numClasses: Int = 10, inChannels: Int = 3, imageSize: Int = 32,
                rng: inout RNG) throws {
        try WideResNet.checkShape(depth: depth, widenFactor: widenFactor)
        let name = DMWideResNet.architectureName(depth: depth, widenFactor: widenFactor)
        guard imageSize >= 4 && imageSize % 4 == 0 else {
            throw CheckpointError("\(name) needs an image side that is a multiple of 4 (its strided convolutions pad "
                                  + "one edge only), got \(imageSize)")
        }
        self.depth = depth
        self.widenFactor = widenFactor
        geometry = ModelGeometry(numClasses: numClasses, channels: inChannels, side: imageSize)
        normalization = inChannels == 3
            ? InputNormalization(mean: DMWideResNet.cifar10Mean, std: DMWideResNet.cifar10Std)
            : InputNormalization(mean: Array(repeating: 0, count: inChannels), std: Array(repeating: 1, count: inChannels))
        let widths = [16, 16 * widenFactor, 32 * widenFactor, 64 * widenFactor]
        let n = (depth - 4) / 6
        initConv = Conv2d(inChannels, widths[0], kernel: 3, padding: 1, bias: false, rng: &rng)
        groups = residualStages(widths: widths, strides: [1, 2, 2], blocks: n, rng: &rng) {
            PreActivationBlock($0, $1, stride: $2, projection: $0 != $1, names: .deepMind, activation: .silu,
                               samePadding: true, rng: &$3)
        }
        batchnorm = BatchNorm2d(widths[3])
        logits = Linear(widths[3], numClasses, rng: &rng)
        chain = StageChain(architecture: name, stem: [normalization, initConv], stages: groups,
                           names: ["layer.0", "layer.1", "layer.2"], head: [batchnorm, SiLULayer(), GlobalAvgPool(), logits])
    }

    /// In `state_dict` order: the root module's buffers first, then its children.
    public var state: [(String, StateEntry)] {
        normalization.state + prefixed("init_conv", initConv.state)
            + stagesState(groups) { "layer.\($0).block" }
            + prefixed("batchnorm", batchnorm.state) + prefixed("logits", logits.state)
    }
}

/// (x - mean[c]) / std[c] inside a model, with `mean` and `std` as buffers of shape [C, 1, 1]
/// (saved and loaded with the model, never trained), as RobustBench's DeepMind models hold it.
/// A loaded `std` that is not positive is refused at the first pass.
final class InputNormalization: Layer {
    let mean: Buffer
    let std: Buffer

    init(mean: [Float], std: [Float]) {
        self.mean = Buffer(Tensor(shape: [mean.count, 1, 1], values: mean))
        self.std = Buffer(Tensor(shape: [std.count, 1, 1], values: std))
    }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let m = mean.value.scalars, s = std.value.scalars
        guard s.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw EngineError("the model's input normalisation std \(s) must be positive and finite")
        }
        // Reduced-precision passes hand in bf16 images: normalise in f32, pass on the input's type.
        let z = try ChannelNormalization.forward(try x.converted(to: .f32), mean: m, std: s).converted(to: x.dtype)
        // A tape that needs no input gradient (a training step) gets nothing, so the next layer
        // still skips its own input gradient.
        if let tape, tape.needsInputGradient {
            tape.record { dz in try ChannelNormalization.backward(try dz.converted(to: .f32), std: s).converted(to: dz.dtype) }
        }
        return z
    }

    var state: [(String, StateEntry)] { [("mean", .buffer(mean)), ("std", .buffer(std))] }
}

extension DMWideResNet {
    /// DeepMind WideResNet-depth-widen in the zoo (scripts/torch_models.py: DMWideResNet).
    public static func zooEntry(depth: Int, widenFactor: Int) -> Architecture {
        Architecture(
            name: architectureName(depth: depth, widenFactor: widenFactor), torchDefinition: "DMWideResNet",
            camLayers: ["layer.0", "layer.1", "layer.2"], defaultCAMLayer: "layer.2", headTensor: "logits.weight",
            inputTensor: "init_conv.weight", signatureTensors: signature,
            defaultInput: ZooInput(side: 32, channels: 3), minimumImageSize: 4,
            builder: { classes, channels, side, rng in
                try DMWideResNet(depth: depth, widenFactor: widenFactor, numClasses: classes, inChannels: channels,
                                 imageSize: side, rng: &rng)
            },
            leastValues: { classes, _ in WideResNet.leastValues(depth: depth, widenFactor: widenFactor, classes: classes) })
    }

    static let signature = ["init_conv.weight", "layer.2.block.0.conv_0.weight", "batchnorm.weight", "logits.weight"]

    /// Every "dm-wrn-<depth>-<widen>" within the WideResNet limits (a small "dm-wrn-16-2" for
    /// tests).
    public static let pattern = ArchitecturePattern(
        template: "dm-wrn-<depth>-<widen>", defaultCAMLayer: "layer.2",
        description: "dm-wrn-<depth>-<widen> (DeepMind form, SiLU) with the same limits",
        headTensor: "logits.weight",
        resolve: { name in
            guard let (depth, widen) = WideResNet.shape(name, prefix: prefix) else { return nil }
            try WideResNet.checkShape(depth: depth, widenFactor: widen)
            return zooEntry(depth: depth, widenFactor: widen)
        },
        infer: { shapes in
            // The depth from the number of blocks in layer.0, the width from their convolutions.
            let plain = Dictionary(shapes.map { (Checkpoint.withoutDataParallelPrefix($0.key), $0.value) }) { a, _ in a }
            guard Set(plain.keys).isSuperset(of: signature) else { return nil }
            let group = "layer.0.block."
            let blocks = Set(plain.keys.compactMap { name -> Int? in
                guard name.hasPrefix(group) else { return nil }
                return Int(name.dropFirst(group.count).prefix { $0 != "." })
            })
            guard let out = plain["layer.0.block.0.conv_0.weight"]?.first, out % 16 == 0, out > 0, !blocks.isEmpty else {
                return nil
            }
            return architectureName(depth: 6 * blocks.count + 4, widenFactor: out / 16)
        })
}
