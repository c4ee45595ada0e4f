import Foundation
import PARTData
import PARTEngine
import PARTNN

/// Starting runs: a model initialised from the seed, its trainer, and sweeps over seeds.
public enum TrainingRun {
    /// A trainer with a freshly initialised model (PyTorch's default initialisation, or the
    /// weights of `config.initialWeights`) for `config` and `data`. The seed's RNG first splits
    /// off the initialisation stream; shuffling continues from it (also when the weights come from
    /// a file, so a run with `--init` shuffles as the same run without it).
    public static func trainer(_ config: TrainingConfig, data: ImageDataset) throws -> Trainer {
        guard data.height == data.width else {
            throw TrainingError("\(data.name) has \(data.height)x\(data.width) images; the models take square images")
        }
        var rng = RNG(seed: config.seed)
        var initRng = rng.split()
        var config = config
        var model: ImageClassifier
        var warnings = [String]()
        if let path = config.model {
            // A user's ONNX graph; the initialisation stream is split off all the same.
            let onnx = try ONNXTraining.model(config, data: data)
            config.camLayer = ONNXTraining.camLayer(config.camLayer, model: onnx)
            warnings = ONNXTraining.warnings(onnx, path: path)
            model = onnx
        } else {
            model = try ModelZoo.make(config.architecture, numClasses: data.classes, inChannels: data.channels,
                                      imageSize: data.height, rng: &initRng)
        }
        if let normalize = config.normalize {
            // A layer of the model, so that attacks and CAMs work on images in [0, 1]; its state
            // is the wrapped model's, so checkpoints keep the architecture's names.
            do {
                model = try Normalized(model, text: normalize)
            } catch {
                throw TrainingError("--normalize \(normalize): \(error) (\(data.name) has \(data.channels) channels)")
            }
        }
        if let path = config.initialWeights {
            do {
                try Checkpoint.load(URL(fileURLWithPath: path), into: model)
            } catch {
                // The loader's message names the file already.
                let text = "\(error)"
                throw TrainingError(text.hasPrefix(path) ? "--init \(text)" : "--init \(path): \(text)")
            }
        }
        let trainer = try Trainer(config: config, model: model, rng: rng)
        trainer.modelWarnings = warnings
        return trainer
    }

    /// The directory of seed `seed`'s sub-run.
    public static func seedDirectory(_ directory: URL, seed: UInt64) -> URL {
        directory.appendingPathComponent("seed-\(seed)")
    }

    /// Trains `config` once per seed into `directory/seed-K` and writes `directory/summary.json`
    /// with each seed's final check and their mean and standard deviation (see `runSweep`).
    public static func sweep(_ config: TrainingConfig, seeds: [UInt64], data: ImageDataset, heldOut: ImageDataset,
                             directory: URL, options: SweepOptions = SweepOptions(),
                             progress: (UInt64, Int, Int, Int) -> Void = { _, _, _, _ in },
                             report: (UInt64, EpochReport) throws -> Void) throws -> SeedSummary {
        try runSweep(config, seeds: seeds, data: data, heldOut: heldOut, directory: directory, options: options,
                     progress: progress, report: report).summary
    }

    /// Trains `config` once per seed into `directory/seed-K`, one seed after another.
    ///
    /// A new sweep writes `directory/config.json` (the configuration, the plan and the seed
    /// list: what marks the directory as a sweep) before its first seed starts. Every seed's run
    /// writes its own `config.json` and checkpoints as a single run does, and after every seed
    /// `directory/summary.json` is written with the seeds finished so far.
    ///
    /// With `options.resuming` the sweep continues in `directory`: a seed whose run is complete is
    /// not trained again (its final check is read back from its `log.jsonl`), a seed with a
    /// checkpoint continues from it exactly as `part train --resume` does (same final weights as
    /// an uninterrupted run), a seed directory without a checkpoint or without files starts over,
    /// and a missing one starts. Nothing a seed already trained is removed or overwritten: a
    /// seed directory of another configuration is refused. `summary.json` is written only when
    /// its content changes, so resuming a complete sweep changes no file.
    public static func runSweep(_ config: TrainingConfig, seeds: [UInt64], data: ImageDataset, heldOut: ImageDataset,
                                directory: URL, options: SweepOptions = SweepOptions(),
                                progress: (UInt64, Int, Int, Int) -> Void = { _, _, _, _ in },
                                report: (UInt64, EpochReport) throws -> Void) throws -> SweepOutcome {
        guard !seeds.isEmpty else { throw TrainingError("--seeds needs at least one seed") }
        guard Set(seeds).count == seeds.count else { throw TrainingError("--seeds lists a seed twice") }
        if !options.resuming { try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true) }
        var results = [SeedResult](), complete = [UInt64]()
        var heldOutKind = config.validationSplit > 0 ? "validation" : "test"
        var summaryWritten = false
        for (n, seed) in seeds.enumerated() {
            var c = config
            c.seed = seed
            let sub = seedDirectory(directory, seed: seed)
            let trainer = try trainer(c, data: data)
            trainer.checkpointing = options.checkpointing
            trainer.plan = options.plan?.seedRun(seed)
            trainer.warn = options.log
            if n == 0 { for warning in trainer.modelWarnings { options.log("part: warning: \(warning)") } }
            if n == 0 && !options.resuming {
                try writeSweepConfig(config, camLayer: trainer.camLayer, seeds: seeds, data: data, heldOut: heldOut,
                                     plan: options.plan, to: directory)
            }
            // The seed's directory stays locked while it trains.
            let (lock, wasComplete) = try openSeed(trainer, seed: seed, directory: sub, sweep: directory,
                                                   resuming: options.resuming, log: options.log)
            let outcome: TrainingOutcome
            do {
                outcome = try trainer.train(on: data, heldOut: heldOut, runDirectory: sub,
                                            progress: { progress(seed, $0, $1, $2) },
                                            report: { try report(seed, $0) })
            } catch let stop as TrainingInterrupted {
                // The whole sweep resumes from its directory, this seed from its checkpoint.
                throw TrainingInterrupted(signal: stop.signal, position: "\(stop.position) (seed \(seed))",
                                          directory: directory)
            }
            withExtendedLifetime(lock) {}
            if wasComplete { complete.append(seed) }
            heldOutKind = outcome.last.heldOut
            results.append(SeedResult(seed: seed, directory: sub, outcome: outcome))
            // Written after every seed trained here and at the end, so an interrupted sweep keeps
            // what it finished (a seed complete before is in the file already, or read back at the end).
            if !wasComplete || n + 1 == seeds.count,
               try writeIfChanged(SeedSummary(config: config, results: results, heldOut: heldOutKind), to: directory) {
                summaryWritten = true
            }
            if Interrupt.requested && n + 1 < seeds.count {
                throw TrainingInterrupted(signal: Interrupt.signal, position: "after seed \(seed) finished",
                                          directory: directory)
            }
        }
        return SweepOutcome(summary: SeedSummary(config: config, results: results, heldOut: heldOutKind),
                            alreadyComplete: complete, summaryWritten: summaryWritten)
    }

    /// Claims seed `seed`'s directory `sub` of the sweep in `sweep`, and on a resume sets
    /// `trainer` to continue the run found there. Returns the held directory and whether that
    /// run was already complete.
    private static func openSeed(_ trainer: Trainer, seed: UInt64, directory sub: URL, sweep: URL, resuming: Bool,
                                 log: (String) -> Void) throws -> (RunDirectory, Bool) {
        let configURL = sub.appendingPathComponent("config.json")
        guard resuming else { return (try RunDirectory.claim(sub.path, overwrite: false), false) }
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            // Killed before the seed's first file: nothing of it was trained.
            if RunDirectory.holdsRun(sub) {
                throw RunDirectoryError("\(sub.path) holds files of a run but no config.json, so it cannot be shown to be "
                                        + "seed \(seed) of the sweep in \(sweep.path); move it out of the sweep to train "
                                        + "seed \(seed) again", badArgument: false)
            }
            let existed = FileManager.default.fileExists(atPath: sub.path)
            let held = try RunDirectory.claim(sub.path, overwrite: false, flag: "--resume")
            log("seed \(seed): " + (existed ? "\(sub.path) holds no checkpoint; the seed starts over" : "starts"))
            return (held, false)
        }
        let held = try RunDirectory.existing(sub.path)
        // The session checks this first and names the flag; this is the guarantee.
        let recorded: TrainingConfig?
        do {
            recorded = try RunRecord.read(sub)?.config
        } catch {
            throw RunDirectoryError("\(error); the sweep cannot be resumed", badArgument: false)
        }
        guard recorded == trainer.config else {
            throw RunDirectoryError("\(configURL.path) records another configuration than seed \(seed) of the sweep in "
                                    + "\(sweep.path)/config.json; move \(sub.path) out of the sweep", badArgument: false)
        }
        let info = try trainer.resume(from: sub)
        for warning in info.warnings { log("part: warning: seed \(seed): \(warning)") }
        if info.finished {
            log("seed \(seed): complete (\(info.position ?? "")); its final check is read back from \(sub.path)")
        } else if let position = info.position {
            log("seed \(seed): resuming \(sub.path) from the checkpoint \(position)")
        } else {
            log("seed \(seed): \(sub.path) holds no checkpoint; the seed starts over")
        }
        return (held, info.finished)
    }

    /// Writes `summary` as `directory/summary.json` unless the file already holds it; whether it wrote.
    private static func writeIfChanged(_ summary: SeedSummary, to directory: URL) throws -> Bool {
        let url = directory.appendingPathComponent("summary.json")
        // Compared as JSON values (parsed and written again with sorted keys), so the file's layout
        // does not matter.
        func canonical(_ data: Data) -> Data? {
            guard let object = try? JSONSerialization.jsonObject(with: data) else { return nil }
            return try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        }
        if let data = try? Data(contentsOf: url), let old = canonical(data),
           old == canonical(try JSONOutput.encoder().encode(summary)) {
            return false
        }
        try summary.write(to: directory)
        return true
    }

    /// The sweep's `config.json`: the fields of a single run's (the configuration with the seed of
    /// `--seed`, the data request and options) and the seed list.
    private static func writeSweepConfig(_ config: TrainingConfig, camLayer: String?, seeds: [UInt64], data: ImageDataset,
                                         heldOut: ImageDataset, plan: RunPlan?, to directory: URL) throws {
        let split = config.validationSplit
        var record = RunRecord(config: config, plan: plan, camLayer: camLayer, trainImages: data.count - split,
                               heldOut: split > 0 ? "validation" : "test",
                               heldOutImages: split > 0 ? split : heldOut.count, data: data.name)
        record.sweep = SweepRecord(seeds: seeds)
        try record.write(to: directory)
    }
}

/// What marks `RUN/config.json` as the one of a `--seeds` sweep: its seeds, in training order.
public struct SweepRecord: Sendable, Codable, Equatable {
    public let seeds: [UInt64]

    public init(seeds: [UInt64]) {
        self.seeds = seeds
    }
}

/// How a sweep runs besides its recipe.
public struct SweepOptions {
    /// Every seed's checkpoint cadence.
    public var checkpointing = CheckpointPolicy()
    /// The sweep's data request and options, recorded in its `config.json` and (with the seed)
    /// in every seed's, with which `part train --resume RUN/seed-K` continues that seed alone.
    public var plan: RunPlan?
    /// Continue the sweep in the directory instead of starting it.
    public var resuming = false
    /// Receives a line per seed of a resumed sweep saying what happens to it.
    public var log: (String) -> Void = { _ in }

    public init() {}
}

/// What a sweep did.
public struct SweepOutcome: Sendable {
    public let summary: SeedSummary
    /// The seeds whose runs were complete before (read back, not trained).
    public let alreadyComplete: [UInt64]
    /// Whether `summary.json` was written (it is not when it already held this summary).
    public let summaryWritten: Bool

    /// Whether the sweep was complete before and nothing was written.
    public var nothingToDo: Bool { alreadyComplete.count == summary.seeds.count && !summaryWritten }
}
