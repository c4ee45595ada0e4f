import Foundation
import PARTEngine

/// A checkpoint problem, in one sentence that names the file and the tensor.
public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The architectures the project builds, by their zoo names (shared/reference/models.py).
public enum ModelZoo {
    /// The named architectures (`--arch`). `make` also builds any WideResNet "wrn-<depth>-<widen>"
    /// (depth 6n + 4), e.g. a small "wrn-16-2" for tests.
    public static let architectures = ["small-cnn", "resnet18", "preact-resnet18", "wrn-34-10"]

    /// Whether `make` builds `architecture`: a named one or "wrn-<depth>-<widen>" with depth
    /// 6n + 4 in 10...250 and widen in 1...32.
    public static func recognises(_ architecture: String) -> Bool {
        if architectures.contains(architecture) { return true }
        guard let (depth, widen) = wideResNetShape(architecture) else { return false }
        return (10...250).contains(depth) && (depth - 4) % 6 == 0 && (1...32).contains(widen)
    }

    /// Why `--arch architecture` is refused, in one sentence that states the limits (a name of
    /// the WideResNet form outside them says which limit it passes).
    public static func unknownArchitecture(_ architecture: String) -> String {
        let limits = "wrn-<depth>-<widen> with depth 6n + 4 from 10 to 250 and widen from 1 to 32"
        if let (depth, widen) = wideResNetShape(architecture) {
            if !((10...250).contains(depth) && (depth - 4) % 6 == 0) {
                return "--arch \(architecture): a WideResNet's depth must be 6n + 4 from 10 to 250 (10, 16, 22, 28, 34, ...), "
                    + "got \(depth)"
            }
            return "--arch \(architecture): a WideResNet's widen factor must be from 1 to 32, got \(widen)"
        }
        return "unknown --arch '\(architecture)' (known: \(architectures.joined(separator: ", ")), or \(limits))"
    }

    /// (depth, widen factor) of "wrn-<depth>-<widen>", if the name has that form.
    static func wideResNetShape(_ architecture: String) -> (depth: Int, widen: Int)? {
        let parts = architecture.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3 && parts[0] == "wrn", let depth = Int(parts[1]), let widen = Int(parts[2]) else { return nil }
        return (depth, widen)
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

    /// A freshly initialised model (PyTorch's default initialisation, drawn from `rng`).
    public static func make(_ architecture: String, numClasses: Int, inChannels: Int, imageSize: Int,
                            rng: inout RNG) throws -> ImageClassifier {
        guard numClasses >= 1 && inChannels >= 1 else {
            throw CheckpointError("\(architecture) needs at least one class and one input channel, "
                                  + "got \(numClasses) classes and \(inChannels) channels")
        }
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
        switch architecture {
        case "small-cnn":
            guard imageSize >= 16 else { throw CheckpointError("small-cnn needs images of at least 16x16, got \(imageSize)") }
            return SmallCNN(numClasses: numClasses, inChannels: inChannels, imageSize: imageSize, rng: &rng)
        case "resnet18", "preact-resnet18":
            // The residual networks halve the image at most three times, down to 1x1 at 4x4.
            guard imageSize >= 4 else {
                throw CheckpointError("\(architecture) needs images of at least 4x4, got \(imageSize)")
            }
            return architecture == "resnet18"
                ? ResNet18(numClasses: numClasses, inChannels: inChannels, imageSize: imageSize, rng: &rng)
                : PreActResNet18(numClasses: numClasses, inChannels: inChannels, imageSize: imageSize, rng: &rng)
        default:
            guard let (depth, widen) = wideResNetShape(architecture) else {
                throw CheckpointError("unknown architecture '\(architecture)' (known: \(architectures.joined(separator: ", ")), "
                                      + "or wrn-<depth>-<widen>)")
            }
            guard imageSize >= 4 else { throw CheckpointError("\(architecture) needs images of at least 4x4, got \(imageSize)") }
            return try WideResNet(depth: depth, widenFactor: widen, numClasses: numClasses, inChannels: inChannels,
                                  imageSize: imageSize, rng: &rng)
        }
    }
}

/// Model state in safetensors files with PyTorch's names and layouts (conv OIHW, linear
/// [out, in]), so `models.py` loads what `part` saves and `part` loads what `models.py` saves.
public enum Checkpoint {
    /// Metadata keys written by `part` (all values are strings, as safetensors requires).
    public enum Key {
        public static let architecture = "architecture"
        public static let classes = "classes"
        public static let inputShape = "input_shape"   // "H,W,C"
        public static let format = "format"
    }

    /// Copies the tensors of `file` into `model`.
    ///
    /// Names may carry the `module.` prefix of a `DataParallel` checkpoint; WideResNet's unused
    /// `sub_block1` entries are ignored. Any other unknown, missing or mis-shaped tensor, a
    /// name given both with and without the prefix, and a NaN or infinity in any tensor are
    /// errors naming the tensor; the model is changed only when every check has passed.
    public static func apply(_ file: SafetensorsFile, to model: ImageClassifier, source: String) throws {
        var tensors = [String: Tensor]()
        for name in file.tensors.keys.sorted() {
            let plain = withoutDataParallelPrefix(name)
            if plain.hasPrefix("sub_block1.") { continue }
            guard tensors[plain] == nil else {
                throw CheckpointError("\(source): tensor '\(messageText(plain))' is given twice, with and without the 'module.' prefix")
            }
            tensors[plain] = file.tensors[name]
        }
        let entries = model.state
        let known = Set(entries.map(\.0))
        if let unknown = tensors.keys.sorted().first(where: { !known.contains($0) }) {
            throw CheckpointError("\(source): tensor '\(messageText(unknown))' is not part of \(model.architecture)")
        }
        var checked = [(StateEntry, Tensor)]()
        checked.reserveCapacity(entries.count)
        for (name, entry) in entries {
            guard let t = tensors[name] else {
                throw CheckpointError("\(source): tensor '\(name)' of \(model.architecture) is missing")
            }
            let expected = entry.tensor.shape
            // A scalar buffer may be stored as [] or [1].
            guard t.shape == expected || (t.count == 1 && expected.isEmpty) else {
                throw CheckpointError("\(source): tensor '\(name)' has shape \(t.shape), \(model.architecture) needs \(expected)")
            }
            if let bad = t.firstNonFinite() {
                throw CheckpointError("\(source): tensor '\(name)' holds \(t[flat: bad]) at element \(bad); a checkpoint with "
                                      + "non-finite weights is corrupt or comes from a run that diverged")
            }
            checked.append((entry, t.reshaped(expected)))
        }
        for (entry, t) in checked {
            switch entry {
            case .parameter(let p): p.assign(t)
            case .buffer(let b): b.value = t
            }
        }
    }

    /// Reads `url` into `model`; returns the file's metadata.
    @discardableResult
    public static func load(_ url: URL, into model: ImageClassifier) throws -> [String: String] {
        let file = try SafetensorsFile.read(from: url)
        try apply(file, to: model, source: url.path)
        return file.metadata
    }

    /// The model's state as a safetensors file (buffers flagged integer are written as I64).
    public static func file(of model: ImageClassifier, metadata: [String: String] = [:]) -> SafetensorsFile {
        var file = SafetensorsFile()
        for (name, entry) in model.state {
            file.tensors[name] = entry.tensor
            if case .buffer(let b) = entry, b.isInteger { file.dtypes[name] = .i64 }
        }
        file.metadata = metadata.merging(describe(model)) { mine, _ in mine }
        return file
    }

    /// Writes the model's state atomically (temporary file, then rename).
    public static func save(_ model: ImageClassifier, to url: URL, metadata: [String: String] = [:]) throws {
        try file(of: model, metadata: metadata).write(to: url)
    }

    /// Metadata that lets `part eval` rebuild the architecture without flags.
    public static func describe(_ model: ImageClassifier) -> [String: String] {
        [Key.format: "pt", Key.architecture: model.architecture, Key.classes: String(model.numClasses),
         Key.inputShape: "\(model.inputHeight),\(model.inputWidth),\(model.inputChannels)"]
    }

    /// `name` without the `module.` prefix that `nn.DataParallel` checkpoints carry.
    static func withoutDataParallelPrefix(_ name: String) -> String {
        name.hasPrefix("module.") ? String(name.dropFirst("module.".count)) : name
    }

    /// The zoo architecture of a plain PyTorch `state_dict`, from its tensor names and shapes
    /// (a WideResNet's depth from the number of blocks in `block1`, its width from their
    /// convolutions).
    public static func inferArchitecture(_ shapes: [String: [Int]]) -> String? {
        let names = Set(shapes.keys.map(withoutDataParallelPrefix))
        if names.isSuperset(of: ["conv4.weight", "fc1.weight", "fc3.weight"]) { return "small-cnn" }
        if names.isSuperset(of: ["layer4.1.conv2.weight", "bn.weight", "linear.weight"]) { return "preact-resnet18" }
        if names.isSuperset(of: ["layer4.1.bn2.weight", "bn1.weight", "linear.weight"]) { return "resnet18" }
        if names.isSuperset(of: ["block3.layer.0.conv1.weight", "bn1.weight", "fc.weight"]) {
            let blocks = Set(names.compactMap { name -> Int? in
                guard name.hasPrefix("block1.layer.") else { return nil }
                return Int(name.dropFirst("block1.layer.".count).prefix { $0 != "." })
            })
            let conv = shapes.first { withoutDataParallelPrefix($0.key) == "block1.layer.0.conv1.weight" }?.value
            guard let out = conv?.first, out % 16 == 0, out > 0, !blocks.isEmpty else { return nil }
            return WideResNet.architectureName(depth: 6 * blocks.count + 4, widenFactor: out / 16)
        }
        return nil
    }

    /// (classes, input channels) that a plain `state_dict` of `architecture` implies: the rows of
    /// its last linear layer and the input channels of its first convolution.
    static func inferDimensions(_ shapes: [String: [Int]], architecture: String) -> (classes: Int?, channels: Int?) {
        let plain = Dictionary(shapes.map { (withoutDataParallelPrefix($0.key), $0.value) }) { first, _ in first }
        let headName = architecture == "small-cnn" ? "fc3.weight"
            : ModelZoo.wideResNetShape(architecture) != nil ? "fc.weight" : "linear.weight"
        let classes = plain[headName].flatMap { $0.count == 2 ? $0[0] : nil }
        let channels = plain["conv1.weight"].flatMap { $0.count == 4 ? $0[1] : nil }
        return (classes, channels)
    }

    /// Builds the architecture a checkpoint describes (the given architecture first, then the
    /// file's metadata, then its tensor names) and loads it.
    public static func loadModel(_ url: URL, architecture: String?, numClasses: Int?, inputShape: (Int, Int, Int)?,
                                 rng: inout RNG) throws -> (ImageClassifier, [String: String]) {
        try loadModel(SafetensorsFile.read(from: url), source: url.path, architecture: architecture,
                      numClasses: numClasses, inputShape: inputShape, rng: &rng)
    }

    /// `loadModel` of a file already decoded; `source` names it in errors. `build` makes the
    /// model once its architecture, classes and input shape are settled (tools that test the
    /// loading rules on a model of their own pass theirs).
    public static func loadModel(_ file: SafetensorsFile, source: String, architecture: String?, numClasses: Int?,
                                 inputShape: (Int, Int, Int)?, rng: inout RNG,
                                 build: ModelBuilder = ModelZoo.make) throws -> (ImageClassifier, [String: String]) {
        let meta = file.metadata
        let shapes = file.tensors.mapValues(\.shape)
        guard let arch = architecture ?? meta[Key.architecture] ?? inferArchitecture(shapes) else {
            throw CheckpointError("\(source) does not say its architecture and its tensor names match none "
                                  + "of \(ModelZoo.architectures.joined(separator: ", ")): pass --arch")
        }
        let declared = try declaredShape(meta, source: source)
        let inferred = inferDimensions(shapes, architecture: arch)
        // Only the dimensions that size the model (no flag or metadata gave them) are checked.
        try checkInferred((classes: (numClasses ?? declared.classes) == nil ? inferred.classes : nil,
                           channels: (inputShape ?? declared.input) == nil ? inferred.channels : nil), source: source)
        let classes = numClasses ?? declared.classes ?? inferred.classes ?? 10
        let shape = inputShape ?? declared.input
            ?? (arch == "small-cnn" ? (28, 28, inferred.channels ?? 1) : (32, 32, inferred.channels ?? 3))
        guard shape.0 == shape.1 else {
            throw CheckpointError("\(source): only square images are supported, got \(shape.0)x\(shape.1)")
        }
        let held = file.tensors.values.reduce(0) { $0 + $1.count }
        let least = leastValues(arch, classes: classes, imageSize: shape.0)
        guard held >= least else {
            throw CheckpointError("\(source) holds \(held) values, but a \(arch) for \(classes) classes and "
                                  + "\(shape.0)x\(shape.1) images has at least \(least): it is not a checkpoint of that model"
                                  + fitHint(declared, classes: classes, input: shape))
        }
        let model: ImageClassifier
        do {
            model = try build(arch, classes, shape.2, shape.0, &rng)
        } catch {
            throw CheckpointError("\(source): \(messageText("\(error)", limit: 1000))")
        }
        do {
            try apply(file, to: model, source: source)
        } catch let error as CheckpointError {
            throw CheckpointError(error.description + fitHint(declared, classes: classes, input: shape))
        }
        return (model, meta)
    }
}
