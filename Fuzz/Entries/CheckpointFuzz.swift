import PARTEngine
import PARTNN

/// Checkpoint loading on decoded files: the metadata that says which model to build
/// (`Checkpoint.declaredShape`), `Checkpoint.apply` and `Checkpoint.loadModel`.
///
/// The zoo's models have 10^5 to 10^7 parameters, far too many to build for every input of a
/// fuzzer, so the loading rules run on `TinyClassifier`, a real convolution, batch norm and
/// linear layer with PyTorch's names and a few dozen parameters; `apply` and `loadModel` do not
/// depend on the architecture beyond its `state`. Checks: a refusal is a `CheckpointError` or
/// `SafetensorsError`; a refused `apply` leaves the model untouched; an accepted one leaves
/// exactly the file's values in it.
enum CheckpointFuzz {
    /// One model reused across inputs, so `apply`'s no-change-on-error rule is checked across
    /// many refusals.
    private static let shared = Locked(TinyClassifier(classes: 2, channels: 1, imageSize: 8, seed: 1))

    static func run(_ bytes: [UInt8]) throws {
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile.decode(bytes, source: "input")
        } catch {
            try requireRefusal(error, [SafetensorsError.self], "SafetensorsFile.decode")
            return
        }
        do {
            _ = try Checkpoint.declaredShape(file.metadata, source: "input")
        } catch {
            try requireRefusal(error, [CheckpointError.self], "Checkpoint.declaredShape")
        }
        try shared.withLock { model in try checkApply(file, to: model) }

        var rng = RNG(seed: 7)
        do {
            let (model, _) = try Checkpoint.loadModel(file, source: "input", architecture: nil, numClasses: nil,
                                                      inputShape: nil, rng: &rng, build: TinyClassifier.build)
            try requireHolds(file, model)
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            try requireRefusal(error, [CheckpointError.self], "Checkpoint.loadModel")
        }
    }

    /// `apply` either refuses and changes nothing, or loads exactly the file's values.
    private static func checkApply(_ file: SafetensorsFile, to model: TinyClassifier) throws {
        let before = model.state.map { ($0.0, bits($0.1.tensor.scalars), version($0.1)) }
        do {
            try Checkpoint.apply(file, to: model, source: "input")
        } catch {
            try requireRefusal(error, [CheckpointError.self], "Checkpoint.apply")
            let after = model.state.map { ($0.0, bits($0.1.tensor.scalars), version($0.1)) }
            guard before.elementsEqual(after, by: { $0.0 == $1.0 && $0.1 == $1.1 && $0.2 == $1.2 }) else {
                throw FuzzFinding("a refused Checkpoint.apply changed the model")
            }
            return
        }
        try requireHolds(file, model)
    }

    /// Every entry of the model's state holds the file's tensor of that name, finite.
    private static func requireHolds(_ file: SafetensorsFile, _ model: ImageClassifier) throws {
        let byPlainName = Dictionary(file.tensors.map { (name: String, t: Tensor) -> (String, Tensor) in
            (name.hasPrefix("module.") ? String(name.dropFirst(7)) : name, t)
        }, uniquingKeysWith: { a, _ in a })
        for (name, entry) in model.state {
            guard let t = byPlainName[name] else { throw FuzzFinding("model loaded without tensor \(name)") }
            let values = entry.tensor.scalars
            guard bits(values) == bits(t.scalars), values.allSatisfy(\.isFinite) else {
                throw FuzzFinding("tensor \(name) does not hold the file's finite values after loading")
            }
        }
    }

    private static func version(_ entry: StateEntry) -> Int {
        switch entry {
        case .parameter(let p): return p.version
        case .buffer(let b): return b.version
        }
    }
}

/// A real classifier small enough to build for every fuzz input: conv1 (3x3, bias) -> bn1 ->
/// ReLU -> global average pool -> linear, with PyTorch's parameter names.
final class TinyClassifier: ImageClassifier {
    let architecture = "fuzz-tiny"
    let numClasses, inputHeight, inputWidth, inputChannels: Int
    let conv1: Conv2d
    let bn1: BatchNorm2d
    let linear: Linear

    init(classes: Int, channels: Int, imageSize: Int, seed: UInt64) {
        var rng = RNG(seed: seed)
        numClasses = classes
        inputHeight = imageSize
        inputWidth = imageSize
        inputChannels = channels
        conv1 = Conv2d(channels, 2, kernel: 3, padding: 1, rng: &rng)
        bn1 = BatchNorm2d(2)
        linear = Linear(2, classes, rng: &rng)
    }

    /// `Checkpoint.ModelBuilder` for the fuzz model: only "fuzz-tiny", and only small shapes.
    static func build(_ architecture: String, _ classes: Int, _ channels: Int, _ imageSize: Int,
                      _ rng: inout RNG) throws -> ImageClassifier {
        guard architecture == "fuzz-tiny" else {
            throw CheckpointError("unknown architecture '\(architecture)' (the fuzz target builds only fuzz-tiny)")
        }
        guard (1...16).contains(classes), (1...4).contains(channels), (1...64).contains(imageSize) else {
            throw CheckpointError("fuzz-tiny is built for 1-16 classes, 1-4 channels and sides up to 64")
        }
        return TinyClassifier(classes: classes, channels: channels, imageSize: imageSize, seed: rng.next())
    }

    func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try ReLULayer().forward(try bn1.forward(try conv1.forward(x, mode: mode, tape: tape), mode: mode, tape: tape),
                                mode: mode, tape: tape)
    }

    func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try linear.forward(try GlobalAvgPool().forward(a, mode: mode, tape: tape), mode: mode, tape: tape)
    }

    var state: [(String, StateEntry)] {
        prefixed("conv1", conv1.state) + prefixed("bn1", bn1.state) + prefixed("linear", linear.state)
    }
}
