import PARTEngine

/// Pre-activation ResNet-18 (the kuangliu CIFAR version of the reference zoo): a 3x3 stem
/// convolution, four stages of two `PreActivationBlock`s (64, 128, 256, 512 channels; the first
/// block of stages 2-4 has stride 2), then relu(bn(.)), global average pooling and `linear`.
///
/// CAM layers `layer1` ... `layer4`, the stages' outputs; the default `layer4` is read before
/// the final bn/relu, as in the reference zoo.
public final class PreActResNet18: ZooClassifier {
    public let geometry: ModelGeometry
    let conv1: Conv2d
    let layers: [Sequential]
    let bn: BatchNorm2d
    let linear: Linear
    public let chain: StageChain

    public init(numClasses: Int = 10, inChannels: Int = 3, imageSize: Int = 32, rng: inout RNG) {
        geometry = ModelGeometry(numClasses: numClasses, channels: inChannels, side: imageSize)
        conv1 = Conv2d(inChannels, 64, kernel: 3, padding: 1, bias: false, rng: &rng)
        layers = residualStages(widths: [64, 64, 128, 256, 512], strides: [1, 2, 2, 2], blocks: 2, rng: &rng) {
            PreActivationBlock($0, $1, stride: $2, projection: $2 != 1 || $0 != $1, names: .preActResNet, rng: &$3)
        }
        bn = BatchNorm2d(512)
        linear = Linear(512, numClasses, rng: &rng)
        chain = StageChain(architecture: "preact-resnet18", stem: [conv1], stages: layers,
                           names: ["layer1", "layer2", "layer3", "layer4"], head: [bn, ReLULayer(), GlobalAvgPool(), linear])
    }

    public var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state)
            + stagesState(layers) { "layer\($0 + 1)" }
            + prefixed("bn", bn.state) + prefixed("linear", linear.state)
    }
}

extension PreActResNet18 {
    /// PreAct-ResNet-18 in the zoo (scripts/torch_models.py: PreActResNet18).
    public static let zooEntry = Architecture.cifarResNet18(
        name: "preact-resnet18", torchDefinition: "PreActResNet18",
        signatureTensors: ["layer4.1.conv2.weight", "bn.weight", "linear.weight"]
    ) { PreActResNet18(numClasses: $0, inChannels: $1, imageSize: $2, rng: &$3) }
}
