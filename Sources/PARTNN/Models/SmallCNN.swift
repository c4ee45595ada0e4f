import PARTEngine

/// The 4-convolution MNIST-scale network of the reference zoo:
/// conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc, ReLU after every hidden layer.
///
/// CAM layers, named after the PyTorch modules whose outputs they are: `conv1` ... `conv4`
/// (before their ReLU) and `act4` = relu(conv4), the default.
///
/// Its first layers, conv1-ReLU-conv2-ReLU-pool, are spatially local (`LocalPrefix`): the Square
/// attack recomputes only the window of their activations that a square changes.
public final class SmallCNN: ZooClassifier, LocallyComputable {
    public let geometry: ModelGeometry
    let conv1, conv2, conv3, conv4: Conv2d
    let fc1, fc2, fc3: Linear
    public let chain: StageChain
    public let localPrefix: LocalPrefix?

    /// - Parameters: `imageSize` is the side of the square input (28 for MNIST-like data).
    public init(numClasses: Int = 10, inChannels: Int = 1, imageSize: Int = 28, rng: inout RNG) {
        precondition(imageSize >= 16, "SmallCNN needs images of at least 16x16")
        geometry = ModelGeometry(numClasses: numClasses, channels: inChannels, side: imageSize)
        conv1 = Conv2d(inChannels, 32, kernel: 3, rng: &rng)
        conv2 = Conv2d(32, 32, kernel: 3, rng: &rng)
        conv3 = Conv2d(32, 64, kernel: 3, rng: &rng)
        conv4 = Conv2d(64, 64, kernel: 3, rng: &rng)
        let side = ((imageSize - 4) / 2 - 4) / 2
        fc1 = Linear(64 * side * side, 200, rng: &rng)
        fc2 = Linear(200, 200, rng: &rng)
        fc3 = Linear(200, numClasses, rng: &rng)
        chain = StageChain(
            architecture: "small-cnn",
            stages: [("conv1", conv1),
                     ("conv2", Sequential([ReLULayer(), conv2])),
                     // Max-pooling before the ReLU (they commute): the ReLU and its backward then
                     // touch a quarter of the values.
                     ("conv3", Sequential([MaxPool2d(kernel: 2, channels: 32), ReLULayer(), conv3])),
                     ("conv4", Sequential([ReLULayer(), conv4])),
                     ("act4", ReLULayer())],
            head: Sequential([MaxPool2d(kernel: 2, channels: 64), Flatten(), fc1, ReLULayer(), fc2, ReLULayer(), fc3]))
        // The forward pass split after the first max-pooling and its ReLU:
        // conv1, ReLU, conv2, max-pool, ReLU | conv3, ...
        localPrefix = LocalPrefix(splitting: chain.layers, after: 5)
    }

    public var state: [(String, StateEntry)] {
        [("conv1", conv1), ("conv2", conv2), ("conv3", conv3), ("conv4", conv4)].flatMap { prefixed($0.0, $0.1.state) }
            + [("fc1", fc1), ("fc2", fc2), ("fc3", fc3)].flatMap { prefixed($0.0, $0.1.state) }
    }
}

extension SmallCNN {
    /// SmallCNN in the zoo (scripts/torch_models.py: SmallCNN).
    public static let zooEntry = Architecture(
        name: "small-cnn", torchDefinition: "SmallCNN", camLayers: ["conv1", "conv2", "conv3", "conv4", "act4"],
        defaultCAMLayer: "act4", headTensor: "fc3.weight", signatureTensors: ["conv4.weight", "fc1.weight", "fc3.weight"],
        defaultInput: ZooInput(side: 28, channels: 1), minimumImageSize: 16,
        builder: { classes, channels, side, rng in SmallCNN(numClasses: classes, inChannels: channels, imageSize: side, rng: &rng) },
        leastValues: { classes, side in
            // fc1 and fc3: fc1 reads 64 maps of the twice-pooled side.
            let pooled = max(0, ((side - 4) / 2 - 4) / 2)
            return 64 * pooled * pooled * 200 + 200 * classes
        })
}
