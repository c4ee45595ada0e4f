import Foundation
import PARTCAM
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN
import PARTONNX

/// A bad argument found once the command was parsed (exit code 64): a split larger than the
/// data, a map rule the images cannot take, a CAM layer the model lacks.
public struct TrainingArgumentError: ExitCoded, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var exitCode: Int32 { Self.badArgumentStatus }
}

extension RunPlan {
    /// The training split (the first `trainLimit` images, or the first of each class with
    /// `balancedTrainLimit`) and the held-out test images of the per-epoch check (the first
    /// `evalLimit`, or the first of each class with a balanced check); warnings go to `warn`.
    public func loadData(warn: (String) -> Void = { _ in }) throws -> (train: ImageDataset, heldOut: ImageDataset) {
        var train = try DatasetRegistry.load(dataset, split: .train, warn: warn)
        if options.trainLimit > 0 && options.trainLimit < train.count {
            let all = Set(train.labels)
            train = options.balancedTrainLimit ? try train.balancedPrefix(options.trainLimit) : train.prefix(options.trainLimit)
            let kept = Set(train.labels)
            if kept.count > 1 && kept.count < all.count {
                let dropped = all.subtracting(kept).sorted().map { train.classNames[Int($0)] }
                warn("--train-limit \(options.trainLimit) keeps \(kept.count) of the \(all.count) classes of the training images "
                     + "(drops \(dropped.prefix(5).joined(separator: ", "))\(dropped.count > 5 ? ", ..." : ""))\(limitHint(train))")
            }
        }
        let test = try DatasetRegistry.load(dataset, split: .test, warn: warn)
        // --balanced: the first ceil(N/K) test images of each class (an image folder's test split
        // is sorted by class, so its first N are one class).
        let heldOut = config.balancedCheck == true ? try test.balancedPrefix(options.evalLimit) : test.prefix(options.evalLimit)
        try DatasetRegistry.checkSplitsAgree(train: train, test: heldOut)
        if checksTrainingImages, let location = dataset.location {
            warn("\(location.path) has no train/ and test/ (or val/) folders, so its images are both splits: the "
                 + "per-epoch check measures training images, not held-out ones (--val-split N holds N of them out)")
        }
        return (train, heldOut)
    }

    /// Whether the per-epoch check reads the training images themselves: an image folder without
    /// split folders serves as both splits, and no --val-split holds images out.
    public var checksTrainingImages: Bool {
        guard dataset.name == .imagefolder, config.validationSplit == 0, let location = dataset.location else { return false }
        return ImageFolder.sharesSplits(location)
    }

    /// Why a --train-limit may miss classes: it takes the first images, and data sorted by class
    /// (as an image folder lists it) puts few classes first; `kept` is what the limit kept. A
    /// class-balanced limit keeps every class, so it needs no hint.
    func limitHint(_ kept: ImageDataset) -> String {
        guard options.trainLimit > 0, !options.balancedTrainLimit else { return "" }
        let sorted = zip(kept.labels, kept.labels.dropFirst()).allSatisfy { $0 <= $1 }
        return ": --train-limit takes the first images" + (sorted ? ", and these come sorted by class" : "")
            + " (--balanced takes the first of each class)"
    }
}

/// A run directory opened for `part train --resume`: the text of its `config.json`, or why it
/// cannot be resumed. Codable, so that under mpirun rank 0 opens the directory and sends the
/// outcome to the other ranks.
struct OpenedRun: Sendable, Codable {
    var config: String
    var problem: String?
    var badArgument: Bool
}

/// One `part train` job, new or resumed: a single run or a `--seeds` sweep of `plan` in
/// `directory`. It checks the data against the plan (and against the record of a resumed run),
/// makes the trainer, continues a resumed run from its checkpoint and trains; the command keeps
/// the printing, the progress line and the outputs (it gets them through `report`, `progress`,
/// `log` and `configure`).
public final class TrainingSession {
    public let plan: RunPlan
    public let directory: URL
    /// The record of the run being continued; nil for a new run.
    public let resumed: RunRecord?
    /// The data-parallel job this process is one rank of (nil: one process; sweeps never).
    public var parallel: DataParallel?
    /// Lines about what a resume does ("resuming RUN from the checkpoint ...", warnings).
    public var log: (String) -> Void = { _ in }
    /// Called with the trainer of a single run before it trains (per-batch loggers).
    public var configure: (Trainer) -> Void = { _ in }

    public init(plan: RunPlan, directory: URL, resumed: RunRecord?) {
        self.plan = plan
        self.directory = directory
        self.resumed = resumed
    }

    /// What a job did.
    public enum Outcome {
        /// A single run trained to its end.
        case trained(Trainer, TrainingOutcome)
        /// A resumed single run that was already complete: nothing trained, nothing written.
        case alreadyComplete
        /// A sweep (new or resumed).
        case sweep(SweepOutcome)
    }

    /// Refuses data the plan cannot train on: an empty split (exit 1), a validation split as
    /// large as the data or a map rule the images cannot take (bad arguments), and for a resumed
    /// run data of other image counts than the run trained on (its files changed).
    public func check(train: ImageDataset, heldOut: ImageDataset) throws {
        let config = plan.config
        guard train.count > 0 else {
            throw DatasetError("the training split of \(train.name) has no images; check --data (and the limit flags)")
        }
        let present = Set(train.labels)
        if present.count < 2, let only = present.first {
            throw DatasetError("the \(train.count) training images of \(train.name) are all of one class "
                               + "(\(train.classNames[Int(only)])): a classifier needs two or more\(plan.limitHint(train))")
        }
        if config.validationSplit == 0 && heldOut.count == 0 {
            throw DatasetError("the test split of \(heldOut.name) has no images; check --data (and the limit flags)")
        }
        if let problem = ModelZoo.batchProblem(config.architecture, imageSize: max(train.height, train.width),
                                               batch: config.batchSize) {
            throw TrainingArgumentError(problem)
        }
        if config.validationSplit >= train.count {
            throw TrainingArgumentError("--val-split \(config.validationSplit) must be smaller than the \(train.count) "
                                        + "training images")
        }
        if let resumed, let saved = resumed.trainImages, let savedHeld = resumed.heldOutImages {
            // The same plan on other files would shuffle other images: not this run.
            let now = train.count - config.validationSplit
            let held = config.validationSplit > 0 ? config.validationSplit : heldOut.count
            guard now == saved && held == savedHeld else {
                throw TrainingError("--resume \(directory.path): the run trained on \(saved) images and checked "
                                    + "\(savedHeld); its data now gives \(now) and \(held): the files under --data changed")
            }
        }
        if config.budget == .cam, let problem = config.mapRule.channelProblem(channels: train.channels, images: train.name) {
            throw TrainingArgumentError(problem)
        }
    }

    /// The CAM layer of a CAM budget (nil for a constant budget), checked against the layers the
    /// zoo lists for the architecture.
    public func camLayer() throws -> String? {
        let config = plan.config
        guard config.budget == .cam else { return nil }
        // An ONNX model that does not load is a bad file (exit 1); a layer it lacks, a bad argument.
        let onnx = try config.model.map { path in
            do { return try ONNXClassifier.load(URL(fileURLWithPath: path)) } catch { throw TrainingError("--model \(error)") }
        }
        do {
            if let onnx { return try CAMLayer.resolve(ONNXTraining.camLayer(config.camLayer, model: onnx), model: onnx) }
            return try CAMLayer.resolve(config.camLayer, architecture: ModelZoo.architecture(config.architecture))
        } catch {
            throw TrainingArgumentError("\(error)")
        }
    }

    /// Trains the job: the single run (from its checkpoint when resumed) or every seed of the sweep.
    /// - Parameters:
    ///   - progress: (seed, epoch, batches done, batches in the epoch) after every batch.
    ///   - report: every epoch's report.
    public func run(train: ImageDataset, heldOut: ImageDataset,
                    progress: @escaping (UInt64, Int, Int, Int) -> Void = { _, _, _, _ in },
                    report: @escaping (EpochReport) throws -> Void) throws -> Outcome {
        if let seeds = plan.seeds {
            var options = SweepOptions()
            options.checkpointing = plan.options.checkpointPolicy
            options.resuming = resumed != nil
            options.plan = plan
            options.log = log
            // A sweep runs in one process.
            Interrupt.install()
            return .sweep(try TrainingRun.runSweep(plan.config, seeds: seeds, data: train, heldOut: heldOut,
                                                   directory: directory, options: options, progress: progress,
                                                   report: { _, r in try report(r) }))
        }
        let config = plan.config
        let trainer = try TrainingRun.trainer(config, data: train)
        trainer.checkpointing = plan.options.checkpointPolicy
        trainer.plan = plan
        trainer.parallel = parallel
        trainer.warn = log
        for warning in trainer.modelWarnings { log("part: warning: \(warning)") }
        configure(trainer)
        if resumed != nil {
            // Under mpirun rank 0 reads the checkpoint and sends it to the other ranks.
            let info = try parallel.map { try trainer.resume(from: directory, job: $0) } ?? trainer.resume(from: directory)
            for warning in info.warnings { log("part: warning: \(warning)") }
            if info.finished { return .alreadyComplete }
            let from = info.position.map { "from the checkpoint \($0)" } ?? "from its start (it had no checkpoint yet)"
            let ranks = parallel.map { " with \($0.communicator.size) ranks" } ?? ""
            log("resuming \(directory.path) \(from)\(ranks)")
        }
        // Under mpirun a SIGTERM comes from the launcher stopping the job: no graceful stop then.
        if parallel == nil { Interrupt.install() }
        let outcome = try trainer.train(on: train, heldOut: heldOut, runDirectory: directory,
                                        progress: { progress(config.seed, $0, $1, $2) }, report: report)
        return .trained(trainer, outcome)
    }
}

// MARK: resuming

/// A run directory opened for `part train --resume`: held by this process (rank 0 under
/// mpirun; nil on the other ranks), its record and the plan the record describes.
public struct ResumedRun {
    public let directory: RunDirectory?
    public let url: URL
    public let record: RunRecord
    public let plan: RunPlan
}

extension TrainingSession {
    /// Opens the run directory `path` for a resume and rebuilds its plan from its record
    /// (`legacy` converts an older record's command); a directory that cannot be resumed is a
    /// `RunDirectoryError` (its `badArgument` telling a flag to change from a damaged file).
    ///
    /// Under mpirun (`communicator` of more than one rank) rank 0 alone opens the directory (it
    /// may exist only on rank 0's machine) and sends its `config.json` to the other ranks, so
    /// every rank refuses, or continues, with rank 0's answer. A sweep is not resumed under
    /// mpirun (its seeds train one after another in one process).
    public static func openForResume(_ path: String, communicator: Communicator?,
                                     legacy: RunRecord.LegacyConversion?) throws -> ResumedRun {
        var directory: RunDirectory?
        let opened = try communicator.map { c in try c.rootDecides { openRun(path, into: &directory) } }
            ?? openRun(path, into: &directory)
        if let problem = opened.problem { throw RunDirectoryError(problem, badArgument: opened.badArgument) }
        let url = directory?.url ?? URL(fileURLWithPath: path)
        let record = try RunRecord.decode(Data(opened.config.utf8), path: url.appendingPathComponent(RunRecord.fileName).path,
                                          legacy: legacy)
        if record.sweep != nil, let communicator {
            throw RunDirectoryError("--resume \(path) holds a --seeds sweep, which trains one seed after another and is "
                                    + "not resumed under mpirun (\(communicator.size) ranks): run part train --resume "
                                    + "\(path) without mpirun", badArgument: true)
        }
        // Every seed directory of a sweep is checked here, before any seed trains.
        let plan = try resumablePlan(record, at: url, legacy: legacy)
        return ResumedRun(directory: directory, url: url, record: record, plan: plan)
    }

    /// Opens the run directory at `path` (held in `directory`) and reads its `config.json`; a
    /// problem is returned as its sentence, and whether it is a bad argument (exit 64) or a
    /// missing or damaged file (exit 1).
    static func openRun(_ path: String, into directory: inout RunDirectory?) -> OpenedRun {
        do {
            let run = try RunDirectory.existing(path)
            let configURL = run.url.appendingPathComponent(RunRecord.fileName)
            guard let data = try? Data(contentsOf: configURL) else {
                return OpenedRun(config: "", problem: "\(configURL.path) is not the configuration of a part train run "
                                 + "(damaged or edited); the run cannot be resumed", badArgument: false)
            }
            directory = run
            return OpenedRun(config: String(decoding: data, as: UTF8.self), problem: nil, badArgument: false)
        } catch let problem as RunDirectoryError {
            let url = URL(fileURLWithPath: path)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            if !FileManager.default.fileExists(atPath: url.appendingPathComponent(RunRecord.fileName).path),
               names.contains(where: { $0.hasPrefix("seed-") }) {
                // Sweeps record themselves in config.json since they can be resumed.
                return OpenedRun(config: "", problem: "--resume \(path) holds a --seeds sweep without config.json "
                                 + "(written by an older version, which did not record its command): it cannot be "
                                 + "resumed; start the sweep again with another --out", badArgument: true)
            }
            return OpenedRun(config: "", problem: problem.description, badArgument: problem.badArgument)
        } catch {
            return OpenedRun(config: "", problem: "\(error)", badArgument: false)
        }
    }

    /// The plan of the run recorded in `record` (the `config.json` of `url`), refused with a
    /// `RunDirectoryError` when it cannot be continued: an old record without its command, or a
    /// sweep one of whose seed directories is not that seed's run of the sweep (checked before
    /// any seed trains, so that a foreign directory is found at once rather than hours later).
    public static func resumablePlan(_ record: RunRecord, at url: URL,
                                     legacy: RunRecord.LegacyConversion?) throws -> RunPlan {
        guard let plan = record.plan else {
            throw RunDirectoryError("--resume \(url.path): its config.json records neither its data nor its command "
                                    + "(written by an older version); start a new run", badArgument: true)
        }
        if plan.seeds != nil, let problem = sweepSeedProblem(url, plan: plan, trainImages: record.trainImages,
                                                               heldOutImages: record.heldOutImages, legacy: legacy) {
            throw RunDirectoryError(problem, badArgument: false)
        }
        return plan
    }

    /// The first reason why a seed directory of the sweep in `directory` is not that seed's run
    /// of `plan`, nil when each existing `seed-K` holds seed K's run of the sweep's recipe and data
    /// (whatever its progress), or nothing yet. Nothing is changed.
    ///
    /// A seed's run is recognised by what it computes, not by where it came from: its recorded
    /// plan and image counts must be those the sweep gives that seed (a copy of the same seed's
    /// run from a sweep of the same plan would train the same weights, and is accepted).
    static func sweepSeedProblem(_ directory: URL, plan: RunPlan, trainImages: Int?, heldOutImages: Int?,
                                 legacy: RunRecord.LegacyConversion?) -> String? {
        let fm = FileManager.default
        for seed in plan.seeds ?? [] {
            let sub = TrainingRun.seedDirectory(directory, seed: seed)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: sub.path, isDirectory: &isDirectory) else { continue }
            let away = "move it out of \(directory.path) (nothing is deleted) and resume again"
            guard isDirectory.boolValue else { return "\(sub.path) is not a directory, so seed \(seed) cannot be trained; \(away)" }
            let run: RunRecord
            do {
                guard let found = try RunRecord.read(sub, legacy: legacy) else {
                    if RunDirectory.holdsRun(sub) {
                        return "\(sub.path) holds files of a run but no config.json, so it cannot be shown to be seed "
                            + "\(seed) of this sweep; \(away)"
                    }
                    continue
                }
                run = found
            } catch {
                return "\(error); \(away)"
            }
            let notOurs = "\(sub.path) is not seed \(seed) of the sweep in \(directory.path)"
            if run.sweep != nil { return "\(notOurs): it holds a sweep of its own; \(away)" }
            if run.config.seed != seed {
                return "\(notOurs): it holds a run of seed \(run.config.seed) (copied or renamed from another sweep); \(away)"
            }
            guard let recorded = run.plan else {
                return "\(notOurs): its config.json records neither its data nor its command (written by an older "
                    + "version); \(away)"
            }
            if let difference = recorded.difference(plan.seedRun(seed), subject: "its run", other: "the sweep") {
                return "\(notOurs) (it comes from another sweep or configuration): \(difference); \(away)"
            }
            if let trainImages, let heldOutImages, run.trainImages != trainImages || run.heldOutImages != heldOutImages {
                return "\(notOurs): its run trained on \(run.trainImages.map(String.init) ?? "?") images and checked "
                    + "\(run.heldOutImages.map(String.init) ?? "?"), the sweep on \(trainImages) and \(heldOutImages); \(away)"
            }
        }
        return nil
    }
}
