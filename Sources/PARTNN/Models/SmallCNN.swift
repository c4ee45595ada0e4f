import PARTEngine

/// The 4-convolution MNIST-scale network of the reference zoo:
/// conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc, ReLU after every hidden layer.
/// CAM layer: `act4` = relu(conv4).
public final class SmallCNN: ImageClassifier {
    public let architecture = "small-cnn"
    public let numClasses, inputHeight, inputWidth, inputChannels: Int
    let conv1, conv2, conv3, conv4: Conv2d
    let fc1, fc2, fc3: Linear
    private let featureStack: Sequential
    private let headStack: Sequential

    /// - Parameters: `imageSize` is the side of the square input (28 for MNIST-like data).
    public init(numClasses: Int = 10, inChannels: Int = 1, imageSize: Int = 28, rng: inout RNG) {
        precondition(imageSize >= 16, "SmallCNN needs images of at least 16x16")
        self.numClasses = numClasses
        inputHeight = imageSize
        inputWidth = imageSize
        inputChannels = inChannels
        conv1 = Conv2d(inChannels, 32, kernel: 3, rng: &rng)
        conv2 = Conv2d(32, 32, kernel: 3, rng: &rng)
        conv3 = Conv2d(32, 64, kernel: 3, rng: &rng)
        conv4 = Conv2d(64, 64, kernel: 3, rng: &rng)
        let side = ((imageSize - 4) / 2 - 4) / 2
        fc1 = Linear(64 * side * side, 200, rng: &rng)
        fc2 = Linear(200, 200, rng: &rng)
        fc3 = Linear(200, numClasses, rng: &rng)
        featureStack = Sequential([conv1, ReLULayer(), conv2, ReLULayer(), MaxPool2d(kernel: 2, channels: 32),
                                   conv3, ReLULayer(), conv4, ReLULayer()])
        headStack = Sequential([MaxPool2d(kernel: 2, channels: 64), Flatten(), fc1, ReLULayer(), fc2, ReLULayer(), fc3])
    }

    public func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try featureStack.forward(x, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try headStack.forward(a, mode: mode, tape: tape)
    }

    public var state: [(String, StateEntry)] {
        [("conv1", conv1), ("conv2", conv2), ("conv3", conv3), ("conv4", conv4)].flatMap { prefixed($0.0, $0.1.state) }
            + [("fc1", fc1), ("fc2", fc2), ("fc3", fc3)].flatMap { prefixed($0.0, $0.1.state) }
    }
}
