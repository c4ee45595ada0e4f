import Foundation
import PARTData
import PARTEngine
import PARTNN

/// The running sums of an epoch's report, carried across a mid-epoch checkpoint so that the
/// resumed epoch reports what the uninterrupted one would.
struct EpochSums: Equatable {
    var lossSum = 0.0
    var correct = 0
    var seen = 0
    var fullEntries = 0.0
    var entries = 0.0
    /// Training seconds of the epoch before the checkpoint.
    var seconds = 0.0
    /// Process CPU seconds of the same (nil: part of it ran under a version that did not count them).
    var cpuSeconds: Double? = 0
}

/// Where a run continues: epochs finished, batches of the next epoch done, and that epoch's
/// running sums.
struct TrainingPosition: Equatable {
    var epochsDone = 0
    var batchesDone = 0
    var sums = EpochSums()
}

/// `RUN/last.state.safetensors`: everything besides the weights that the rest of the run
/// depends on. Tensors: the optimiser's momentum buffers (`momentum.<parameter>`). Metadata:
/// the position, the run RNG at the start of the epoch in progress (the epoch's shuffle is
/// drawn again from it and the done batches skipped; every other draw is keyed by seed, epoch
/// and example), the epoch's running sums (doubles as bit patterns), the configuration, and the
/// instruction set and thread count it was computed with.
struct TrainingState {
    static let format = "part-train-state-1"

    var position: TrainingPosition
    var rng: [UInt64]
    var momentum: [String: Tensor]
    var config: TrainingConfig
    var instructionSet: String
    var threads: Int

    func file() throws -> SafetensorsFile {
        var file = SafetensorsFile()
        for (name, buffer) in momentum { file.tensors["momentum.\(name)"] = buffer }
        let s = position.sums
        func bits(_ v: Double) -> String { String(v.bitPattern, radix: 16) }
        file.metadata = [
            "format": TrainingState.format,
            "epochs_done": String(position.epochsDone),
            "batches_done": String(position.batchesDone),
            "rng_state": rng.map { String($0) }.joined(separator: ","),
            "loss_sum": bits(s.lossSum), "correct": String(s.correct), "seen": String(s.seen),
            "full_entries": bits(s.fullEntries), "entries": bits(s.entries), "seconds": bits(s.seconds),
            "cpu_seconds": s.cpuSeconds.map(bits) ?? "",
            "config": try JSONOutput.line(config),
            "instruction_set": instructionSet,
            "threads": String(threads),
        ]
        return file
    }

    /// Reads a state file; every field is checked, and a problem names `source` and the field.
    init(_ file: SafetensorsFile, source: String) throws {
        let m = file.metadata
        func fail(_ what: String) -> RunDirectoryError {
            RunDirectoryError("\(source): \(what); the state file is damaged or from another version", badArgument: false)
        }
        guard m["format"] == TrainingState.format else { throw fail("format '\(m["format"] ?? "")' is not \(TrainingState.format)") }
        func int(_ key: String) throws -> Int {
            guard let v = m[key].flatMap({ Int($0) }), v >= 0 else { throw fail("'\(key)' is not a count") }
            return v
        }
        func double(_ key: String) throws -> Double {
            guard let v = m[key].flatMap({ UInt64($0, radix: 16) }).map(Double.init(bitPattern:)), v.isFinite else {
                throw fail("'\(key)' is not a finite number")
            }
            return v
        }
        let batchesDone = try int("batches_done")
        // A state written without CPU seconds (an older version) leaves them unknown for the epoch in
        // progress, unless none of it was done yet.
        let cpuSeconds = m["cpu_seconds"]?.isEmpty == false ? try double("cpu_seconds") : batchesDone == 0 ? 0 : nil
        position = TrainingPosition(
            epochsDone: try int("epochs_done"), batchesDone: batchesDone,
            sums: EpochSums(lossSum: try double("loss_sum"), correct: try int("correct"), seen: try int("seen"),
                            fullEntries: try double("full_entries"), entries: try double("entries"),
                            seconds: try double("seconds"), cpuSeconds: cpuSeconds))
        let words = (m["rng_state"] ?? "").split(separator: ",").compactMap { UInt64($0) }
        guard words.count == 4, words.contains(where: { $0 != 0 }) else { throw fail("'rng_state' is not four words, not all zero") }
        rng = words
        guard let text = m["config"], let c = try? TrainingConfig.decodeFillingDefaults(Data(text.utf8)) else {
            throw fail("'config' is not a training configuration")
        }
        config = c
        instructionSet = m["instruction_set"] ?? "unknown"
        threads = try int("threads")
        var momentum = [String: Tensor]()
        for (name, tensor) in file.tensors {
            guard name.hasPrefix("momentum.") else { throw fail("tensor '\(name)' is not a momentum buffer") }
            guard tensor.allFinite else { throw fail("momentum buffer '\(name)' holds a non-finite value") }
            momentum[String(name.dropFirst("momentum.".count))] = tensor
        }
        self.momentum = momentum
    }

    init(position: TrainingPosition, rng: [UInt64], momentum: [String: Tensor], config: TrainingConfig) {
        self.position = position
        self.rng = rng
        self.momentum = momentum
        self.config = config
        instructionSet = Engine.instructionSet
        threads = Engine.threads
    }
}

/// How often a run writes a checkpoint besides each epoch's end.
public struct CheckpointPolicy: Sendable, Equatable {
    /// Every N batches of an epoch (0: never).
    public var everyBatches = 0
    /// When this many minutes passed since the last checkpoint (0: never).
    public var minutes = 0.0

    public init(everyBatches: Int = 0, minutes: Double = 0) {
        self.everyBatches = everyBatches
        self.minutes = minutes
    }

    /// Whether a checkpoint is due after `done` of `batches` batches (an epoch's last batch is
    /// followed by the epoch's own checkpoint).
    func due(done: Int, of batches: Int, since last: Date) -> Bool {
        guard done < batches else { return false }
        if everyBatches > 0 && done % everyBatches == 0 { return true }
        return minutes > 0 && Date().timeIntervalSince(last) >= minutes * 60
    }
}

/// What `Trainer.resume` found: where the run continues, and warnings for the user.
public struct ResumeInfo: Sendable {
    /// "after epoch 2", "in epoch 3 after batch 40 of 391", or nil when the run had no
    /// checkpoint yet (it starts from its first step).
    public let position: String?
    /// Whether every epoch is already done.
    public let finished: Bool
    public let warnings: [String]
}

/// What a resumed run continues from (set by `Trainer.resume`).
struct ResumeState {
    let store: CheckpointStore
    let position: TrainingPosition
    let reports: [EpochReport]
}

extension Trainer {
    /// Continues the run in `directory` from its last committed checkpoint: recovers the
    /// directory after a crash (see `CheckpointStore`), then loads the weights, the optimiser's
    /// momentum, the run RNG and the position. A run without a checkpoint yet starts over in the
    /// same directory. The trainer must have been made with the run's configuration; a state
    /// file of another configuration is refused.
    public func resume(from directory: URL) throws -> ResumeInfo {
        let store = try CheckpointStore.recover(directory)
        guard let manifest = store.committed else {
            resumeState = ResumeState(store: store, position: TrainingPosition(), reports: [])
            return ResumeInfo(position: nil, finished: false, warnings: [])
        }
        let modelURL = directory.appendingPathComponent("last.safetensors")
        let stateURL = directory.appendingPathComponent("last.state.safetensors")
        for name in ["last.safetensors", "last.state.safetensors"] where manifest.files[name] == nil {
            throw RunDirectoryError("\(directory.appendingPathComponent(CheckpointStore.manifestName).path) lists no "
                                    + "\(name); the run cannot be resumed from it", badArgument: false)
        }
        let state = try TrainingState(try SafetensorsFile.read(from: stateURL), source: stateURL.path)
        guard state.config == config else {
            throw RunDirectoryError("\(stateURL.path) was written by another configuration than \(directory.path)/config.json; "
                                    + "the run cannot be resumed", badArgument: false)
        }
        guard state.position.epochsDone == manifest.epochsDone, state.position.batchesDone == manifest.batchesDone else {
            throw RunDirectoryError("\(stateURL.path) holds another position than checkpoint.json", badArgument: false)
        }
        try Checkpoint.load(modelURL, into: model)
        for (name, p) in model.parameters {
            guard p.value.allFinite else {
                throw RunDirectoryError("\(modelURL.path): tensor '\(name)' holds a non-finite value", badArgument: false)
            }
        }
        try optimizer.restoreMomentum(state.momentum, source: stateURL.path)
        rng = RNG(state: state.rng)
        let reports = try store.committedReports()
        guard reports.count == manifest.epochsDone else {
            throw RunDirectoryError("\(directory.appendingPathComponent(CheckpointStore.logName).path) holds \(reports.count) "
                                    + "epoch lines for a checkpoint \(manifest.position)", badArgument: false)
        }
        resumeState = ResumeState(store: store, position: state.position, reports: reports)
        var warnings = [String]()
        if state.instructionSet != Engine.instructionSet || state.threads != Engine.threads {
            warnings.append("the checkpoint was computed with \(state.instructionSet) and \(state.threads) thread"
                            + "\(state.threads == 1 ? "" : "s"), this process runs \(Engine.instructionSet) with "
                            + "\(Engine.threads): the resumed run is not promised to be bit-identical to an uninterrupted "
                            + "one (pass --threads \(state.threads) on a machine with \(state.instructionSet) for that)")
        }
        return ResumeInfo(position: manifest.position, finished: manifest.epochsDone >= config.epochs, warnings: warnings)
    }

    /// Commits the checkpoint at `position`: the weights, the state with `rng` (the run RNG at
    /// the start of the epoch in progress), `best` (a copy of the weights) and the epoch's log line.
    func commitCheckpoint(_ store: CheckpointStore, position: TrainingPosition, rng: RNG, batches: Int,
                          logLine: EpochReport?, best: Bool) throws {
        var meta = recipeMetadata(epoch: position.epochsDone)
        if position.batchesDone > 0 { meta["batches_done"] = String(position.batchesDone) }
        let weights = try Checkpoint.file(of: model, metadata: meta).encode()
        let state = TrainingState(position: position, rng: rng.state, momentum: optimizer.momentumBuffers, config: config)
        var files = [("last.safetensors", weights), ("last.state.safetensors", try state.file().encode())]
        if best { files.append(("best.safetensors", weights)) }
        files += try ONNXTraining.checkpointFiles(model, best: best)
        let manifest = CheckpointManifest(epochsDone: position.epochsDone, batchesDone: position.batchesDone,
                                          batches: batches, epochs: config.epochs, files: [:], logBytes: 0, logLines: 0,
                                          instructionSet: Engine.instructionSet, threads: Engine.threads)
        try store.commit(files, logLine: try logLine.map { try JSONOutput.line($0) }, manifest: manifest)
    }
}

extension SGD {
    /// Restores momentum buffers saved by `momentumBuffers`; each must name a parameter and
    /// have its shape (none at all: before the first step).
    func restoreMomentum(_ buffers: [String: Tensor], source: String) throws {
        let shapes = Dictionary(uniqueKeysWithValues: parameterShapes)
        for (name, buffer) in buffers {
            guard let shape = shapes[name] else {
                throw RunDirectoryError("\(source): momentum buffer '\(name)' names no parameter of the model", badArgument: false)
            }
            guard buffer.shape == shape else {
                throw RunDirectoryError("\(source): momentum buffer '\(name)' has shape \(buffer.shape), the parameter "
                                        + "\(shape)", badArgument: false)
            }
        }
        guard buffers.isEmpty || buffers.count == shapes.count else {
            throw RunDirectoryError("\(source) holds \(buffers.count) momentum buffers for \(shapes.count) parameters",
                                    badArgument: false)
        }
        momentumBuffers = buffers
    }
}
