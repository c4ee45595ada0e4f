import Foundation
import PARTEngine

/// A checkpoint problem, in one sentence that names the file and the tensor.
public struct CheckpointError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Model state in safetensors files (and, for reading, `torch.save` files) with PyTorch's names and layouts (conv OIHW, linear
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

    /// Reads `url` (safetensors or a `torch.save` file, see `CheckpointFile`) into `model`;
    /// returns the file's metadata. `key` picks the weights' dict inside a `.pt` file.
    @discardableResult
    public static func load(_ url: URL, into model: ImageClassifier, key: String? = nil) throws -> [String: String] {
        let file = try CheckpointFile.read(from: url, key: key)
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
        ModelZoo.infer(shapes, names: Set(shapes.keys.map(withoutDataParallelPrefix)))
    }

    /// (classes, input channels) that a plain `state_dict` of `architecture` implies: the rows of
    /// its last linear layer and the input channels of its first convolution.
    static func inferDimensions(_ shapes: [String: [Int]], architecture: String) -> (classes: Int?, channels: Int?) {
        let plain = Dictionary(shapes.map { (withoutDataParallelPrefix($0.key), $0.value) }) { first, _ in first }
        let entry = try? ModelZoo.architecture(architecture)
        let classes = entry.flatMap { plain[$0.headTensor] }.flatMap { $0.count == 2 ? $0[0] : nil }
        let channels = plain[entry?.inputTensor ?? "conv1.weight"].flatMap { $0.count == 4 ? $0[1] : nil }
        return (classes, channels)
    }

    /// Builds the architecture a checkpoint describes (the given architecture first, then the
    /// file's metadata, then its tensor names) and loads it.
    public static func loadModel(_ url: URL, architecture: String?, numClasses: Int?, inputShape: (Int, Int, Int)?,
                                 key: String? = nil, rng: inout RNG) throws -> (ImageClassifier, [String: String]) {
        try loadModel(CheckpointFile.read(from: url, key: key), source: url.path, architecture: architecture,
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
                                  + "of \(ModelZoo.choices): pass --arch")
        }
        let declared = try declaredShape(meta, source: source)
        let inferred = inferDimensions(shapes, architecture: arch)
        // Only the dimensions that size the model (no flag or metadata gave them) are checked.
        try checkInferred((classes: (numClasses ?? declared.classes) == nil ? inferred.classes : nil,
                           channels: (inputShape ?? declared.input) == nil ? inferred.channels : nil), source: source)
        let classes = numClasses ?? declared.classes ?? inferred.classes ?? 10
        let zooInput = (try? ModelZoo.architecture(arch))?.defaultInput ?? ZooInput(side: 32, channels: 3)
        let shape = inputShape ?? declared.input
            ?? (zooInput.side, zooInput.side, inferred.channels ?? zooInput.channels)
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
