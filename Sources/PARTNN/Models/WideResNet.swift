import PARTEngine

/// WideResNet-depth-widen (Zagoruyko & Komodakis 2016) in the TRADES layout of the reference
/// zoo (WRN-34-10 in the PART paper): a 3x3 stem convolution to 16 channels, three groups of
/// n = (depth - 4) / 6 `PreActivationBlock`s with 16w, 32w and 64w channels (the first block of
/// groups 2 and 3 has stride 2), then relu(bn1(.)), global average pooling and `fc`.
///
/// State names follow PyTorch: `block1.layer.0.conv1.weight`, `block1.layer.0.convShortcut.weight`
/// (a block has a shortcut convolution when its input and output widths differ), `bn1`, `fc`.
/// Checkpoints of this lineage also carry an unused `sub_block1`, which loading ignores.
///
/// CAM layers `block1` ... `block3`, the groups' outputs; the default `block3` is read before
/// the final bn/relu.
public final class WideResNet: ZooClassifier {
    public let geometry: ModelGeometry
    public let depth, widenFactor: Int
    let conv1: Conv2d
    let groups: [Sequential]
    let bn1: BatchNorm2d
    let fc: Linear
    public let chain: StageChain

    /// The zoo name of a WideResNet of this depth and width, "wrn-34-10".
    public static func architectureName(depth: Int, widenFactor: Int) -> String { "wrn-\(depth)-\(widenFactor)" }

    /// Throws unless depth = 6n + 4 with n >= 1 and the widen factor is at least 1. Depth and
    /// width are capped (250, 32: WRN-70-16, the largest in common use, is far inside) so that
    /// a malformed name in a checkpoint cannot ask for terabytes.
    public init(depth: Int = 34, widenFactor: Int = 10, numClasses: Int = 10, inChannels: Int = 3, imageSize: Int = 32,
                rng: inout RNG) throws {
        try WideResNet.checkShape(depth: depth, widenFactor: widenFactor)
        let name = WideResNet.architectureName(depth: depth, widenFactor: widenFactor)
        self.depth = depth
        self.widenFactor = widenFactor
        geometry = ModelGeometry(numClasses: numClasses, channels: inChannels, side: imageSize)
        let widths = [16, 16 * widenFactor, 32 * widenFactor, 64 * widenFactor]
        let n = (depth - 4) / 6
        conv1 = Conv2d(inChannels, widths[0], kernel: 3, padding: 1, bias: false, rng: &rng)
        groups = residualStages(widths: widths, strides: [1, 2, 2], blocks: n, rng: &rng) {
            PreActivationBlock($0, $1, stride: $2, projection: $0 != $1, names: .wideResNet, rng: &$3)
        }
        bn1 = BatchNorm2d(widths[3])
        fc = Linear(widths[3], numClasses, rng: &rng)
        chain = StageChain(architecture: name, stem: [conv1], stages: groups, names: ["block1", "block2", "block3"],
                           head: [bn1, ReLULayer(), GlobalAvgPool(), fc])
    }

    public var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state)
            + stagesState(groups) { "block\($0 + 1).layer" }
            + prefixed("bn1", bn1.state) + prefixed("fc", fc.state)
    }
}

extension WideResNet {
    static let depths = 10...250
    static let widenFactors = 1...32

    /// WideResNet-depth-widen in the zoo (scripts/torch_models.py: WideResNet).
    public static func zooEntry(depth: Int, widenFactor: Int) -> Architecture {
        Architecture(
            name: architectureName(depth: depth, widenFactor: widenFactor), torchDefinition: "WideResNet",
            camLayers: ["block1", "block2", "block3"], defaultCAMLayer: "block3", headTensor: "fc.weight",
            signatureTensors: ["block3.layer.0.conv1.weight", "bn1.weight", "fc.weight"],
            defaultInput: ZooInput(side: 32, channels: 3), minimumImageSize: 4,
            builder: { classes, channels, side, rng in
                try WideResNet(depth: depth, widenFactor: widenFactor, numClasses: classes, inChannels: channels,
                               imageSize: side, rng: &rng)
            },
            leastValues: { classes, _ in leastValues(depth: depth, widenFactor: widenFactor, classes: classes) })
    }

    /// The fewest values a checkpoint of a WideResNet (either layout) holds: every block's second
    /// convolution, and the classifier layer.
    static func leastValues(depth: Int, widenFactor: Int, classes: Int) -> Int {
        let perGroup = [16, 32, 64].reduce(0) { $0 + 9 * ($1 * widenFactor) * ($1 * widenFactor) }
        return (depth - 4) / 6 * perGroup + 64 * widenFactor * classes
    }

    /// (depth, widen factor) of "<prefix><depth>-<widen>" ("wrn-34-10" with prefix "wrn-"), if the
    /// name has that form.
    static func shape(_ name: String, prefix: String = "wrn-") -> (depth: Int, widen: Int)? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let depth = Int(parts[0]), let widen = Int(parts[1]) else { return nil }
        return (depth, widen)
    }

    /// Throws unless depth = 6n + 4 and both depth and widen factor are within the limits of
    /// every WideResNet family (the TRADES and the DeepMind form).
    static func checkShape(depth: Int, widenFactor: Int) throws {
        guard depths.contains(depth) && (depth - 4) % 6 == 0 else {
            throw CheckpointError("a WideResNet's depth must be 6n + 4 between \(depths.lowerBound) "
                                  + "and \(depths.upperBound) (10, 16, 22, 28, 34, ...), got \(depth)")
        }
        guard widenFactors.contains(widenFactor) else {
            throw CheckpointError("a WideResNet's widen factor must be between "
                                  + "\(widenFactors.lowerBound) and \(widenFactors.upperBound), got \(widenFactor)")
        }
    }

    /// Every "wrn-<depth>-<widen>" within the limits (a small "wrn-16-2" for tests); a depth
    /// is 6n + 4. The limits keep a malformed name in a checkpoint from asking for terabytes.
    public static let pattern = ArchitecturePattern(
        template: "wrn-<depth>-<widen>", defaultCAMLayer: "block3",
        description: "wrn-<depth>-<widen> with depth 6n + 4 in \(depths.lowerBound)...\(depths.upperBound) and widen "
            + "\(widenFactors.lowerBound)...\(widenFactors.upperBound)",
        headTensor: "fc.weight",
        resolve: { name in
            guard let (depth, widen) = shape(name) else { return nil }
            try checkShape(depth: depth, widenFactor: widen)
            return zooEntry(depth: depth, widenFactor: widen)
        },
        infer: { shapes in
            // The depth from the number of blocks in block1, the width from their convolutions.
            let plain = Dictionary(shapes.map { (Checkpoint.withoutDataParallelPrefix($0.key), $0.value) }) { a, _ in a }
            guard Set(plain.keys).isSuperset(of: ["block3.layer.0.conv1.weight", "bn1.weight", "fc.weight"]) else { return nil }
            let blocks = Set(plain.keys.compactMap { name -> Int? in
                guard name.hasPrefix("block1.layer.") else { return nil }
                return Int(name.dropFirst("block1.layer.".count).prefix { $0 != "." })
            })
            guard let out = plain["block1.layer.0.conv1.weight"]?.first, out % 16 == 0, out > 0, !blocks.isEmpty else {
                return nil
            }
            return architectureName(depth: 6 * blocks.count + 4, widenFactor: out / 16)
        })
}
