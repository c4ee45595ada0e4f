import PARTEngine

/// The residual block of CIFAR ResNet-18: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
/// where the shortcut is a 1x1 strided convolution with batch norm when the shape changes.
public final class BasicBlock: Layer {
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let conv2: Conv2d
    let bn2: BatchNorm2d
    let shortcut: Sequential?
    private let main: Sequential

    public init(_ inPlanes: Int, _ planes: Int, stride: Int, rng: inout RNG) {
        conv1 = Conv2d(inPlanes, planes, kernel: 3, stride: stride, padding: 1, bias: false, rng: &rng)
        bn1 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernel: 3, padding: 1, bias: false, rng: &rng)
        bn2 = BatchNorm2d(planes)
        if stride != 1 || inPlanes != planes {
            shortcut = Sequential([Conv2d(inPlanes, planes, kernel: 1, stride: stride, bias: false, rng: &rng),
                                   BatchNorm2d(planes)])
        } else {
            shortcut = nil
        }
        main = Sequential([conv1, bn1, ReLULayer(), conv2, bn2])
    }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        if mode == .eval && !(tape?.parameterGradients ?? false) && Optimizations.isEnabled(.fold)
            && Optimizations.isEnabled(.fuse) {
            return try foldedForward(x, tape: tape)
        }
        let mainTape = tape?.branch()
        let shortTape = tape?.branch()
        let sum = try Tensor.sum(try main.forward(x, mode: mode, tape: mainTape),
                                 try shortcut?.forward(x, mode: mode, tape: shortTape) ?? x)
        let y = try ReLU.forward(sum)
        if let tape, let mainTape, let shortTape {
            let hasShortcut = shortcut != nil
            tape.record { dy in
                let dsum = try ReLU.backward(dy, output: y)
                return try Tensor.sum(try mainTape.backward(dsum), hasShortcut ? try shortTape.backward(dsum) : dsum)
            }
        }
        return y
    }

    /// Evaluation mode with batch norm folded: conv1+bn1+ReLU as one kernel, then conv2+bn2
    /// with the shortcut's output accumulated and the final ReLU fused, as a second.
    private func foldedForward(_ x: Tensor, tape: Tape?) throws -> Tensor {
        let shortTape = tape?.branch()
        let innerTape = tape?.branch()
        let residual = try shortcut?.forward(x, mode: .eval, tape: shortTape) ?? x
        let h = try conv1.forwardFolded(x, batchNorm: bn1, relu: true, tape: innerTape)
        var residualGradient: Tensor?
        let outTape = tape.map { _ in Tape(parameterGradients: false, inputGradient: true) }
        let y = try conv2.forwardFolded(h, batchNorm: bn2, relu: true, accumulate: residual, tape: outTape,
                                        residualGradient: { residualGradient = $0 })
        if let tape, let shortTape, let innerTape, let outTape {
            let hasShortcut = shortcut != nil
            tape.record { dy in
                let dh = try outTape.backward(dy)
                let dx = try innerTape.backward(dh)
                guard let g = residualGradient else { throw EngineError("residual gradient missing in a folded block") }
                return try Tensor.sum(dx, hasShortcut ? try shortTape.backward(g) : g)
            }
        }
        return y
    }

    public var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state) + prefixed("bn1", bn1.state) + prefixed("conv2", conv2.state)
            + prefixed("bn2", bn2.state) + (shortcut.map { prefixed("shortcut", $0.state) } ?? [])
    }
}

/// CIFAR ResNet-18 (3x3 stem, no max-pool), as in the reference zoo.
/// CAM layers `layer1` ... `layer4` (the outputs of the four residual stages); default `layer4`.
public final class ResNet18: ZooClassifier {
    public let geometry: ModelGeometry
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let layers: [Sequential]
    let linear: Linear
    public let chain: StageChain

    public init(numClasses: Int = 10, inChannels: Int = 3, imageSize: Int = 32, rng: inout RNG) {
        geometry = ModelGeometry(numClasses: numClasses, channels: inChannels, side: imageSize)
        conv1 = Conv2d(inChannels, 64, kernel: 3, padding: 1, bias: false, rng: &rng)
        bn1 = BatchNorm2d(64)
        layers = residualStages(widths: [64, 64, 128, 256, 512], strides: [1, 2, 2, 2], blocks: 2, rng: &rng) {
            BasicBlock($0, $1, stride: $2, rng: &$3)
        }
        linear = Linear(512, numClasses, rng: &rng)
        chain = StageChain(architecture: "resnet18", stem: [conv1, bn1, ReLULayer()], stages: layers,
                           names: ["layer1", "layer2", "layer3", "layer4"], head: [GlobalAvgPool(), linear])
    }

    public var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state) + prefixed("bn1", bn1.state)
            + stagesState(layers) { "layer\($0 + 1)" }
            + prefixed("linear", linear.state)
    }
}

extension ResNet18 {
    /// ResNet-18 in the zoo (scripts/torch_models.py: ResNet18). It halves the image at most
    /// three times, down to 1x1 at 4x4.
    public static let zooEntry = Architecture.cifarResNet18(
        name: "resnet18", torchDefinition: "ResNet18", signatureTensors: ["layer4.1.bn2.weight", "bn1.weight", "linear.weight"]
    ) { ResNet18(numClasses: $0, inChannels: $1, imageSize: $2, rng: &$3) }
}
