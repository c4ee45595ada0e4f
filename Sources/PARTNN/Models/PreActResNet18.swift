import PARTEngine

/// Pre-activation ResNet-18 (the kuangliu CIFAR version of the reference zoo): a 3x3 stem
/// convolution, four stages of two `PreActivationBlock`s (64, 128, 256, 512 channels; the first
/// block of stages 2-4 has stride 2), then relu(bn(.)), global average pooling and `linear`.
///
/// CAM layers `layer1` ... `layer4`, the stages' outputs; the default `layer4` is read before
/// the final bn/relu, as in the reference zoo.
public final class PreActResNet18: StagedClassifier {
    public let architecture = "preact-resnet18"
    public let numClasses, inputHeight, inputWidth, inputChannels: Int
    public let defaultCAMLayer = "layer4"
    let conv1: Conv2d
    let layers: [Sequential]
    let bn: BatchNorm2d
    let linear: Linear
    public let chain: StageChain

    public init(numClasses: Int = 10, inChannels: Int = 3, imageSize: Int = 32, rng: inout RNG) {
        self.numClasses = numClasses
        inputHeight = imageSize
        inputWidth = imageSize
        inputChannels = inChannels
        conv1 = Conv2d(inChannels, 64, kernel: 3, padding: 1, bias: false, rng: &rng)
        var planes = 64
        var built = [Sequential]()
        for (width, stride) in [(64, 1), (128, 2), (256, 2), (512, 2)] {
            built.append(Sequential([
                PreActivationBlock(planes, width, stride: stride, projection: stride != 1 || planes != width,
                                   names: .preActResNet, rng: &rng),
                PreActivationBlock(width, width, stride: 1, projection: false, names: .preActResNet, rng: &rng),
            ]))
            planes = width
        }
        layers = built
        bn = BatchNorm2d(512)
        linear = Linear(512, numClasses, rng: &rng)
        chain = StageChain(architecture: "preact-resnet18",
                           stages: [("layer1", Sequential([conv1, layers[0]])), ("layer2", layers[1]),
                                    ("layer3", layers[2]), ("layer4", layers[3])],
                           head: Sequential([bn, ReLULayer(), GlobalAvgPool(), linear]))
    }

    public var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state)
            + layers.enumerated().flatMap { prefixed("layer\($0.offset + 1)", $0.element.state) }
            + prefixed("bn", bn.state) + prefixed("linear", linear.state)
    }
}

extension PreActResNet18 {
    /// PreAct-ResNet-18 in the zoo (scripts/torch_models.py: PreActResNet18).
    public static let zooEntry = Architecture(
        name: "preact-resnet18", torchDefinition: "PreActResNet18", camLayers: ["layer1", "layer2", "layer3", "layer4"],
        defaultCAMLayer: "layer4", headTensor: "linear.weight",
        signatureTensors: ["layer4.1.conv2.weight", "bn.weight", "linear.weight"],
        defaultInput: ZooInput(side: 32, channels: 3), minimumImageSize: 4,
        builder: { classes, channels, side, rng in
            PreActResNet18(numClasses: classes, inChannels: channels, imageSize: side, rng: &rng)
        },
        leastValues: { classes, _ in 512 * classes })
}
