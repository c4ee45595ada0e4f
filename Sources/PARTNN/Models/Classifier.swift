import PARTEngine

/// An image classifier that can be split at any of its named CAM layers:
/// `logits = head(features(x, upTo: L), from: L)` for every `L` in `camLayers`.
///
/// `features(upTo:)` ends at the layer whose activations a class activation map reads, so a CAM
/// method needs one forward and a backward through the head only. Layer names are the PyTorch
/// module names of scripts/torch_models.py, so a CAM at a named layer can be reproduced
/// there with a forward hook on that module.
///
/// A conforming type implements either the named split (`camLayers`, `defaultCAMLayer`,
/// `features(_:upTo:mode:tape:)`, `head(_:from:mode:tape:)`), as the zoo's models do, or only
/// the single split `features(_:mode:tape:)` / `head(_:mode:tape:)`, which then is its one CAM
/// layer, named "features" (wrappers and test models). Each pair has a default in terms of the
/// other, so a type that implements neither recurses forever.
public protocol ImageClassifier: AnyObject {
    /// The architecture's name in the model zoo ("small-cnn", "resnet18", "preact-resnet18",
    /// "wrn-34-10").
    var architecture: String { get }
    var numClasses: Int { get }
    /// Input images are [N, height, width, channels] in [0, 1].
    var inputHeight: Int { get }
    var inputWidth: Int { get }
    var inputChannels: Int { get }
    /// The layers a CAM can read, in forward order (ResNet-18 "layer1" ... "layer4").
    var camLayers: [String] { get }
    /// The layer CAMs read unless told otherwise (docs/method.md#3-from-cam-to-epsilon-map: SmallCNN "act4", ResNet-18
    /// and PreAct-ResNet-18 "layer4", WideResNet "block3").
    var defaultCAMLayer: String { get }
    /// Activations [N, h, w, K] of `layer`, one of `camLayers` (an `UnknownLayerError` otherwise).
    func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor
    /// Logits [N, classes] from the activations of `layer`, one of `camLayers`.
    func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor
    /// Activations [N, h, w, K] of the default CAM layer.
    func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor
    /// Logits [N, classes] from the activations of the default CAM layer.
    func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor
    /// Parameters and buffers under their PyTorch names, in `state_dict` order.
    var state: [(String, StateEntry)] { get }
}

/// A layer name that is not one of the model's CAM layers.
public struct UnknownLayerError: Error, CustomStringConvertible {
    public let architecture: String
    public let layer: String
    public let known: [String]

    public init(architecture: String, layer: String, known: [String]) {
        self.architecture = architecture
        self.layer = layer
        self.known = known
    }

    public var description: String {
        "\(architecture) has no layer '\(layer)'; its CAM layers are \(known.joined(separator: ", "))"
    }
}

extension ImageClassifier {
    public func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try features(x, upTo: defaultCAMLayer, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try head(a, from: defaultCAMLayer, mode: mode, tape: tape)
    }

    /// A single-split model's one CAM layer.
    public var defaultCAMLayer: String { "features" }

    public var camLayers: [String] { [defaultCAMLayer] }

    public func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        guard layer == defaultCAMLayer else {
            throw UnknownLayerError(architecture: architecture, layer: layer, known: camLayers)
        }
        return try features(x, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        guard layer == defaultCAMLayer else {
            throw UnknownLayerError(architecture: architecture, layer: layer, known: camLayers)
        }
        return try head(a, mode: mode, tape: tape)
    }

    /// Logits [N, classes].
    public func forward(_ x: Tensor, mode: Mode, tape: Tape? = nil) throws -> Tensor {
        try head(try features(x, mode: mode, tape: tape), mode: mode, tape: tape)
    }

    /// Throws unless `x` is a batch of this model's input images.
    public func validateInput(_ x: Tensor) throws {
        guard x.shape.count == 4 && x.shape[1] == inputHeight && x.shape[2] == inputWidth
                && x.shape[3] == inputChannels else {
            throw EngineError("\(architecture) takes images [N, \(inputHeight), \(inputWidth), \(inputChannels)], "
                              + "got \(x.shape)")
        }
    }

    /// The trainable parameters in `state_dict` order.
    public var parameters: [(String, Parameter)] {
        state.compactMap { name, entry in
            if case .parameter(let p) = entry { return (name, p) }
            return nil
        }
    }

    /// Batch-norm running statistics and counters, by name.
    public var buffers: [(String, Buffer)] {
        state.compactMap { name, entry in
            if case .buffer(let b) = entry { return (name, b) }
            return nil
        }
    }
}

/// A classifier whose forward pass is a `StageChain`: its named split (CAM layers, features,
/// head) is the chain's, so a model file builds its layers and its chain and names its state,
/// nothing more (docs/architecture.md#adding-an-architecture).
public protocol StagedClassifier: ImageClassifier {
    var chain: StageChain { get }
}

extension StagedClassifier {
    /// The zoo name the chain was built under.
    public var architecture: String { chain.architecture }

    public var camLayers: [String] { chain.names }

    /// The last stage: the deepest feature map, which every zoo model's CAMs read by default
    /// (its registry entry says the same, and ModelZooTests checks that they agree).
    public var defaultCAMLayer: String { chain.names[chain.names.count - 1] }

    public func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try validateInput(x)
        return try chain.features(x, upTo: layer, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try chain.head(a, from: layer, mode: mode, tape: tape)
    }
}

/// A network's forward pass as a chain of stages, each ending at a named CAM layer, followed
/// by the head that maps the last CAM layer's activations to logits.
///
/// `features(upTo: L)` runs the stages up to and including the one that ends at `L`;
/// `head(from: L)` runs the remaining stages and the head, so both compose to the full forward.
public struct StageChain {
    let architecture: String
    /// The names of the layers the stages end at (the CAM layers), in forward order.
    let names: [String]
    /// Per CAM layer i: stages 0...i, and the stages after i followed by the head, each as one
    /// sequence of layers (a `Sequential` stage contributes its layers), so that a layer that
    /// ends one stage fuses with one that starts the next (SmallCNN's convolutions with the ReLU
    /// that opens the following stage). The results are the same as stage by stage.
    private let featureRuns: [Sequential]
    private let headRuns: [Sequential]

    /// `stages`: (name of the layer the stage ends at, the stage), in forward order.
    init(architecture: String, stages: [(name: String, layer: Layer)], head: Layer) {
        self.architecture = architecture
        names = stages.map(\.name)
        func flat(_ parts: [Layer]) -> Sequential { Sequential(parts.flatMap { ($0 as? Sequential)?.layers ?? [$0] }) }
        featureRuns = stages.indices.map { end in flat(stages[...end].map(\.layer)) }
        headRuns = stages.indices.map { i in flat(stages[(i + 1)...].map(\.layer) + [head]) }
    }

    /// Every layer of the whole forward pass, in order, as it runs (`featureRuns` then the head).
    var layers: [Layer] { (featureRuns.last?.layers ?? []) + (headRuns.last?.layers ?? []) }

    func index(of layer: String) throws -> Int {
        guard let i = names.firstIndex(of: layer) else {
            throw UnknownLayerError(architecture: architecture, layer: layer, known: names)
        }
        return i
    }

    func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try featureRuns[try index(of: layer)].forward(x, mode: mode, tape: tape)
    }

    func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try headRuns[try index(of: layer)].forward(a, mode: mode, tape: tape)
    }
}

/// What a zoo model is built for: its number of classes and its square input of `channels`
/// channels and `side` pixels a side.
public struct ModelGeometry: Sendable, Equatable {
    public let numClasses, channels, side: Int

    public init(numClasses: Int, channels: Int, side: Int) {
        self.numClasses = numClasses
        self.channels = channels
        self.side = side
    }
}

/// A model of the zoo: a staged classifier whose classes and input come from its `geometry`.
public protocol ZooClassifier: StagedClassifier {
    var geometry: ModelGeometry { get }
}

extension ZooClassifier {
    public var numClasses: Int { geometry.numClasses }
    public var inputHeight: Int { geometry.side }
    public var inputWidth: Int { geometry.side }
    public var inputChannels: Int { geometry.channels }
}
