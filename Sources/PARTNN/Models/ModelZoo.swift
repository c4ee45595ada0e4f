import Foundation
import PARTEngine

/// The input a model of the zoo is built for when nothing else says: square images of `side`
/// pixels with `channels` channels.
public struct ZooInput: Sendable, Equatable {
    public let side: Int
    public let channels: Int

    public init(side: Int, channels: Int) {
        self.side = side
        self.channels = channels
    }
}

/// One architecture of the zoo: what the project knows about it, in one place. The model file
/// declares it (`SmallCNN.zooEntry`, ...) and `ModelZoo` lists it; checkpoints, `part bench`
/// and the help texts read it from here.
public struct Architecture: Sendable {
    /// The zoo name (`--arch`), e.g. "resnet18" or "wrn-34-10".
    public let name: String
    /// The class of scripts/torch_models.py whose `state_dict` the model reads and writes.
    public let torchDefinition: String
    /// The layers a CAM can read, in forward order (the PyTorch module names), and the default.
    public let camLayers: [String]
    public let defaultCAMLayer: String
    /// The classifier head's weight ([classes, features]): its rows are the class count of a
    /// plain `state_dict`.
    public let headTensor: String
    /// The first convolution's weight (OIHW): its second axis is the input channels.
    public let inputTensor: String
    /// Tensor names that together mark a `state_dict` as this architecture's.
    public let signatureTensors: [String]
    /// The input when neither flags nor the checkpoint's metadata give one.
    public let defaultInput: ZooInput
    /// The smallest image side the model takes.
    public let minimumImageSize: Int
    /// Builds a freshly initialised model for (classes, input channels, image side).
    let builder: @Sendable (_ classes: Int, _ channels: Int, _ imageSize: Int, _ rng: inout RNG) throws -> ImageClassifier
    /// A lower bound on the values a checkpoint of the model holds (see `Checkpoint.leastValues`).
    let leastValuesOf: @Sendable (_ classes: Int, _ imageSize: Int) -> Int

    public init(name: String, torchDefinition: String, camLayers: [String], defaultCAMLayer: String, headTensor: String,
                inputTensor: String = "conv1.weight", signatureTensors: [String], defaultInput: ZooInput,
                minimumImageSize: Int,
                builder: @escaping @Sendable (_ classes: Int, _ channels: Int, _ imageSize: Int, _ rng: inout RNG) throws -> ImageClassifier,
                leastValues: @escaping @Sendable (_ classes: Int, _ imageSize: Int) -> Int) {
        self.name = name
        self.torchDefinition = torchDefinition
        self.camLayers = camLayers
        self.defaultCAMLayer = defaultCAMLayer
        self.headTensor = headTensor
        self.inputTensor = inputTensor
        self.signatureTensors = signatureTensors
        self.defaultInput = defaultInput
        self.minimumImageSize = minimumImageSize
        self.builder = builder
        self.leastValuesOf = leastValues
    }

    /// A freshly initialised model (PyTorch's default initialisation, drawn from `rng`).
    public func make(numClasses: Int, inChannels: Int, imageSize: Int, rng: inout RNG) throws -> ImageClassifier {
        guard numClasses >= 1 && inChannels >= 1 else {
            throw CheckpointError("\(name) needs at least one class and one input channel, "
                                  + "got \(numClasses) classes and \(inChannels) channels")
        }
        guard imageSize >= minimumImageSize else {
            throw CheckpointError("\(name) needs images of at least \(minimumImageSize)x\(minimumImageSize), got \(imageSize)")
        }
        return try builder(numClasses, inChannels, imageSize, &rng)
    }

    public func leastValues(classes: Int, imageSize: Int) -> Int { leastValuesOf(classes, imageSize) }
}

/// A family of architectures named by a pattern ("wrn-<depth>-<widen>"), each a zoo architecture
/// once its parameters are read off the name.
public struct ArchitecturePattern: Sendable {
    /// The pattern's form, "wrn-<depth>-<widen>".
    public let template: String
    /// The default CAM layer of every member.
    public let defaultCAMLayer: String
    /// The pattern as help shows it, with its limits ("wrn-<depth>-<widen> with depth 6n + 4 in
    /// 10...250 and widen 1...32").
    public let description: String
    /// The classifier head's weight of every member.
    public let headTensor: String
    /// The architecture a name of the pattern gives; nil when the name is not of the pattern,
    /// a `CheckpointError` naming the limit when it is but its parameters are out of range.
    let resolve: @Sendable (String) throws -> Architecture?
    /// The name of the family member a plain `state_dict` holds, from its tensor names and shapes.
    let infer: @Sendable ([String: [Int]]) -> String?

    /// Whether `name` is of the pattern (whatever its parameters).
    public func matches(_ name: String) -> Bool {
        do { return try resolve(name) != nil } catch { return true }
    }

    public init(template: String, defaultCAMLayer: String, description: String, headTensor: String,
                resolve: @escaping @Sendable (String) throws -> Architecture?,
                infer: @escaping @Sendable ([String: [Int]]) -> String?) {
        self.template = template
        self.defaultCAMLayer = defaultCAMLayer
        self.description = description
        self.headTensor = headTensor
        self.resolve = resolve
        self.infer = infer
    }
}

/// The architectures the project builds, by their zoo names (scripts/torch_models.py holds the
/// PyTorch definitions they mirror). Adding one is its model file (with its `zooEntry`), a line
/// in `named` and its golden fixture (docs/architecture.md#model-zoo).
public enum ModelZoo {
    /// The named architectures, in the order help lists them: the project's own, then the sizes
    /// of RobustBench's CIFAR-10 leaderboard in its two WideResNet forms (TRADES and DeepMind).
    public static let named: [Architecture] = [SmallCNN.zooEntry, ResNet18.zooEntry, PreActResNet18.zooEntry,
                                               WideResNet.zooEntry(depth: 34, widenFactor: 10),
                                               WideResNet.zooEntry(depth: 28, widenFactor: 10),
                                               WideResNet.zooEntry(depth: 34, widenFactor: 20),
                                               DMWideResNet.zooEntry(depth: 28, widenFactor: 10),
                                               DMWideResNet.zooEntry(depth: 70, widenFactor: 16)]
    /// The families named by a pattern.
    public static let patterns: [ArchitecturePattern] = [WideResNet.pattern, DMWideResNet.pattern]

    /// The architecture `part train` trains by default (the quick Fashion-MNIST recipe).
    public static let defaultArchitecture = "small-cnn"
    /// The architecture of the speed measurements (`part bench`, `part data bench`, `part mpi`):
    /// the paper's CIFAR-scale model.
    public static let benchmarkArchitecture = "resnet18"

    /// The names of `named` (`--arch` values besides the patterns).
    public static var architectures: [String] { named.map(\.name) }

    /// The `--arch` values as help lists them: the names, then the patterns with their limits.
    public static var choices: String {
        architectures.joined(separator: ", ") + ", or " + patterns.map(\.description).joined(separator: ", or ")
    }

    /// The architecture named `name` (by a flag or a checkpoint's metadata); a `CheckpointError`
    /// in one sentence naming the known ones, or the limit a pattern's name exceeds.
    public static func architecture(_ name: String) throws -> Architecture {
        if let entry = named.first(where: { $0.name == name }) { return entry }
        for pattern in patterns {
            if let entry = try pattern.resolve(name) { return entry }
        }
        throw CheckpointError("unknown architecture '\(messageText(name, limit: 60))' (known: \(choices))")
    }

    /// Whether `make` builds `architecture`.
    public static func recognises(_ architecture: String) -> Bool { (try? self.architecture(architecture)) != nil }

    /// Why `--arch name` names no architecture ("unknown --arch ..." or the limit of its
    /// pattern), nil when it names one.
    public static func problem(_ name: String) -> String? {
        do {
            _ = try architecture(name)
            return nil
        } catch {
            if !patterns.contains(where: { $0.matches(name) }) {
                return "unknown --arch '\(messageText(name, limit: 60))' (known: \(choices))"
            }
            return "--arch \(messageText(name, limit: 60)): \(error)"
        }
    }

    /// A freshly initialised model (PyTorch's default initialisation, drawn from `rng`). Class
    /// and channel counts beyond the engine's bounds, and a model whose weights and optimiser
    /// state would not fit this machine's memory, are refused before anything is allocated.
    public static func make(_ architecture: String, numClasses: Int, inChannels: Int, imageSize: Int,
                            rng: inout RNG) throws -> ImageClassifier {
        guard numClasses <= Limits.classes && inChannels <= 4 else {
            throw CheckpointError("\(architecture) with \(numClasses) classes and \(inChannels) input channels is beyond what "
                                  + "part builds (at most \(Limits.classes) classes and 4 channels)")
        }
        if let parameters = estimatedParameters(architecture, numClasses: numClasses, inChannels: inChannels) {
            // Weights, gradients, momentum and a checkpoint's copy, before any activation.
            let bytes = Double(parameters) * 4 * 4
            if bytes > Double(Limits.memory) {
                throw CheckpointError(String(format: "%@ with %d classes has about %.0f million parameters: training it "
                                             + "needs more than %@ and this machine has %@; choose a smaller --arch",
                                             architecture, numClasses, Double(parameters) / 1e6,
                                             Limits.bytesText(bytes), Limits.bytesText(Double(Limits.memory))))
            }
        }
        return try self.architecture(architecture).make(numClasses: numClasses, inChannels: inChannels, imageSize: imageSize,
                                                 rng: &rng)
    }

    /// The zoo architecture of a plain PyTorch `state_dict`, from its tensor names and shapes.
    /// The patterns answer first: a named member of a family (wrn-34-10) is told apart from its
    /// relatives by its shapes, not by its names.
    public static func infer(_ shapes: [String: [Int]], names: Set<String>) -> String? {
        if let name = patterns.lazy.compactMap({ $0.infer(shapes) }).first { return name }
        return named.first { !$0.signatureTensors.isEmpty && names.isSuperset(of: $0.signatureTensors) }?.name
    }

    /// The default CAM layer of each named architecture, for help ("small-cnn act4, resnet18
    /// layer4, ..."), and of the patterns' members (a named member is listed with its pattern).
    public static var defaultCAMLayers: String {
        let own = named.filter { entry in !patterns.contains { $0.matches(entry.name) } }
        return (own.map { "\($0.name) \($0.defaultCAMLayer)" } + patterns.map { "\($0.template) \($0.defaultCAMLayer)" })
            .joined(separator: ", ")
    }

    /// The head tensors of every architecture (named and of the patterns), for readers of a
    /// checkpoint's header that do not know its architecture.
    public static var headTensors: [String] {
        var heads = [String]()
        for name in named.map(\.headTensor) + patterns.map(\.headTensor) where !heads.contains(name) { heads.append(name) }
        return heads
    }
}

/// Size estimates from an architecture's shape, without building it: a model or a batch too large
/// for the machine is refused in one line before its memory is allocated.
extension ModelZoo {
    /// (depth, widen factor) of "wrn-<depth>-<widen>" or "dm-wrn-<depth>-<widen>" (the two forms
    /// have the same convolutions), if the name has one of those forms.
    static func wideResNetShape(_ architecture: String) -> (depth: Int, widen: Int)? {
        WideResNet.shape(architecture) ?? WideResNet.shape(architecture, prefix: DMWideResNet.prefix)
    }

    /// The parameter count of `architecture` (nil for a name `make` does not build), computed
    /// from its shape without building it, so that a model too large for the machine is refused
    /// before its weights are allocated.
    public static func estimatedParameters(_ architecture: String, numClasses: Int, inChannels: Int) -> Int? {
        switch architecture {
        case "small-cnn": return 1_500_000 + 200 * numClasses
        case "resnet18", "preact-resnet18": return 11_200_000 + 9 * 64 * inChannels + 513 * numClasses
        default:
            // Names outside the WideResNet limits are refused by its own checks, which say why.
            guard recognises(architecture), let (depth, widen) = wideResNetShape(architecture) else { return nil }
            let n = max(1, (depth - 4) / 6)
            let widths = [16, 16 * widen, 32 * widen, 64 * widen]
            var total = 9 * inChannels * 16
            for g in 0..<3 {
                for i in 0..<n {
                    let input = i == 0 ? widths[g] : widths[g + 1], output = widths[g + 1]
                    total += 9 * input * output + 9 * output * output + (input != output ? input * output : 0)
                        + 4 * (input + output)
                }
            }
            return total + 4 * widths[3] + (widths[3] + 1) * numClasses
        }
    }

    /// Floats of activation one image of `imageSize` x `imageSize` keeps through a forward pass of
    /// `architecture` (nil for an unknown name): a coarse sum over its stages (channels x pixels
    /// x layers), enough to tell a batch that fits from one that is hundreds of times too large.
    public static func estimatedActivations(_ architecture: String, imageSize: Int) -> Double? {
        let pixels = Double(imageSize) * Double(imageSize)
        switch architecture {
        case "small-cnn": return pixels * (32 * 2 + 64 * 2 / 4)
        case "resnet18", "preact-resnet18": return pixels * (64 * 5 + 128 * 4 / 4 + 256 * 4 / 16 + 512 * 4 / 64)
        default:
            guard let (depth, widen) = wideResNetShape(architecture) else { return nil }
            let convs = Double(max(1, (depth - 4) / 6) * 2)
            let w = Double(16 * widen)
            return pixels * (16 + convs * (w + 2 * w / 4 + 4 * w / 16))
        }
    }

    /// Why a batch of `batch` images of `imageSize` cannot be trained with `architecture` on this
    /// machine (its activations, kept for the backward pass and with their gradients, exceed the
    /// physical memory), nil when it may fit. Checked before the first step, so that such a
    /// batch is one line instead of an allocation failure or the kernel's out-of-memory kill.
    public static func batchProblem(_ architecture: String, imageSize: Int, batch: Int) -> String? {
        guard let perImage = estimatedActivations(architecture, imageSize: imageSize) else { return nil }
        let bytes = perImage * Double(batch) * 4 * 3
        guard bytes > Double(Limits.memory) else { return nil }
        return "a batch of \(batch) \(imageSize)x\(imageSize) images through \(architecture) needs about "
            + "\(Limits.bytesText(bytes)) of activations and this machine has \(Limits.bytesText(Double(Limits.memory))); "
            + "lower --batch-size or choose a smaller --arch"
    }

}
