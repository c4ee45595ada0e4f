import Foundation
import PARTData

/// The options of a `part train` process that a resume keeps besides the training
/// configuration and the data: what it trains on and checks (image limits), how the engine
/// computes (`--without`, `--precision`, `--sync-bn`), the checkpoint cadence and the run's own
/// outputs (TensorBoard, report). A resume takes them from the record; a flag given again on the
/// resume replaces the cadence, engine and output options, and must agree for the image limits.
public struct RunOptions: Sendable, Codable, Equatable {
    /// `--train-limit`: the first N training images (0: all).
    public var trainLimit = 0
    /// Whether `--train-limit N` takes the first ceil(N/K) training images of each of the K
    /// classes instead of the first N: set for a new run with a class-balanced check
    /// (`--balanced`, or a preset's), since an image folder lists its images class by class.
    /// False in records written before it, whose runs took the first N and resume so.
    public var balancedTrainLimit = false
    /// `--eval-limit`: the held-out test images of the per-epoch check.
    public var evalLimit = 1000
    /// `--without`: engine optimisations turned off (results differ by rounding only).
    public var without: [String] = []
    /// `--precision` of attack and CAM passes ("fp32", "bf16").
    public var precision = "fp32"
    /// `--checkpoint-every`, `--checkpoint-minutes`.
    public var checkpointEvery = 0
    public var checkpointMinutes = 0.0
    /// `--tensorboard` (an absolute path), `--tensorboard-every` and `--report`.
    public var tensorboard: String?
    public var tensorboardEvery = 20
    public var report = false
    /// `--sync-bn`: under mpirun, batch norm with the global batch's statistics. Kept on a
    /// resume, since a resume without the flag would otherwise switch to each rank's own.
    public var syncBatchNorm = false

    public init() {}

    public init(from decoder: Decoder) throws {
        // Every field has a default, so that a record of a later version with fewer of them reads.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = RunOptions()
        trainLimit = try c.decodeIfPresent(Int.self, forKey: .trainLimit) ?? d.trainLimit
        balancedTrainLimit = try c.decodeIfPresent(Bool.self, forKey: .balancedTrainLimit) ?? d.balancedTrainLimit
        evalLimit = try c.decodeIfPresent(Int.self, forKey: .evalLimit) ?? d.evalLimit
        without = try c.decodeIfPresent([String].self, forKey: .without) ?? d.without
        precision = try c.decodeIfPresent(String.self, forKey: .precision) ?? d.precision
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        checkpointMinutes = try c.decodeIfPresent(Double.self, forKey: .checkpointMinutes) ?? d.checkpointMinutes
        tensorboard = try c.decodeIfPresent(String.self, forKey: .tensorboard)
        tensorboardEvery = try c.decodeIfPresent(Int.self, forKey: .tensorboardEvery) ?? d.tensorboardEvery
        report = try c.decodeIfPresent(Bool.self, forKey: .report) ?? d.report
        syncBatchNorm = try c.decodeIfPresent(Bool.self, forKey: .syncBatchNorm) ?? d.syncBatchNorm
    }

    public var checkpointPolicy: CheckpointPolicy {
        CheckpointPolicy(everyBatches: checkpointEvery, minutes: checkpointMinutes)
    }

    /// What defines the images of a run besides the dataset request, as (flag, value) pairs.
    public var dataFingerprint: [(flag: String, value: String)] {
        [("--train-limit", String(trainLimit)), ("--eval-limit", String(evalLimit))]
    }
}

/// Everything that starts or continues a `part train` job: the training configuration, the
/// dataset request, the process options and, for a `--seeds` sweep, its seeds.
public struct RunPlan: Sendable, Equatable {
    public var config: TrainingConfig
    public var dataset: DatasetRequest
    public var options: RunOptions
    /// The seeds of a sweep, in training order; nil for a single run.
    public var seeds: [UInt64]?

    public init(config: TrainingConfig, dataset: DatasetRequest, options: RunOptions, seeds: [UInt64]? = nil) {
        self.config = config
        self.dataset = dataset
        self.options = options
        self.seeds = seeds
    }

    /// The plan of seed `seed`'s run of this sweep: the same recipe, data and options with that
    /// seed, as a single run (what `part train --resume RUN/seed-K` continues).
    public func seedRun(_ seed: UInt64) -> RunPlan {
        var plan = self
        plan.config.seed = seed
        plan.seeds = nil
        return plan
    }

    /// The first setting in which `other` differs from this plan, as a clause naming the flag
    /// ("the run was trained with --lr 0.01, this command gives 0.5"), nil when both compute the
    /// same run. The engine, cadence and output options do not count; seeds do not either
    /// (the caller compares them).
    public func difference(_ other: RunPlan, subject: String = "the run", other otherName: String = "this command") -> String? {
        let a = TrainingConfig.fieldTexts(config.resolved), b = TrainingConfig.fieldTexts(other.config.resolved)
        for key in a.keys.sorted() where a[key] != b[key] {
            return "\(subject) was trained with \(TrainingConfig.flag(forKey: key)) \(a[key] ?? "(none)"), \(otherName) "
                + "gives \(b[key] ?? "(none)")"
        }
        let mine = dataset.fingerprint + options.dataFingerprint, theirs = other.dataset.fingerprint + other.options.dataFingerprint
        for (x, y) in zip(mine, theirs) where x.value != y.value {
            return "\(subject) was trained with \(x.flag) \(x.value), \(otherName) gives \(y.value)"
        }
        return nil
    }
}

extension TrainingConfig {
    /// The configuration's fields as JSON texts (without quotes), by key.
    static func fieldTexts(_ config: TrainingConfig) -> [String: String] {
        guard let data = try? JSONOutput.encoder().encode(config),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        var out = [String: String]()
        for (key, value) in object {
            // Unescaped slashes: "--normalize 0.5/0.25", not "0.5\/0.25".
            let text = (try? JSONSerialization.data(withJSONObject: value,
                                                    options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
            out[key] = text.replacingOccurrences(of: "\"", with: "")
        }
        return out
    }

    /// The `part train` flag of a field.
    public static func flag(forKey key: String) -> String {
        let names = ["learningRate": "--lr", "epsilon": "--eps", "epsilonLow": "--eps-low", "stepSize": "--alpha",
                     "gamma": "--lr-gamma", "milestones": "--lr-milestones", "validationSplit": "--val-split",
                     "architecture": "--arch", "initialWeights": "--init",
                     "model": "--model", "modelMD5": "--model (the file's MD5)"]
        if let name = names[key] { return name }
        // camelCase to --kebab-case (batchSize: --batch-size).
        return "--" + key.reduce(into: "") { s, c in s += c.isUppercase ? "-" + c.lowercased() : String(c) }
    }
}

/// A run directory's `config.json`: one typed record of what the run is (its plan) and what it
/// found (image counts, CAM layer). `part train --resume`, `part cam` and `part report` read it
/// through `RunRecord.read`.
///
/// Records written before version 2 held the command line (`arguments`) instead of `dataset`
/// and `options`; `read` converts them with the caller's `legacy` function, which parses those
/// arguments once.
public struct RunRecord: Sendable, Codable {
    /// The record's layout: 2 since the record is typed (absent in older files).
    public var version: Int?
    public var method: String
    public var config: TrainingConfig
    /// The CAM layer the run uses (nil for a constant budget).
    public var camLayer: String?
    public var trainImages: Int?
    /// "test" or "validation": what the per-epoch check runs on.
    public var heldOut: String?
    public var heldOutImages: Int?
    /// The dataset's display name.
    public var data: String?
    public var dataset: DatasetRequest?
    public var options: RunOptions?
    /// Present in the record of a `--seeds` sweep's directory (absent for a single run).
    public var sweep: SweepRecord?
    /// The command line, in records of older versions only (never written now).
    public var arguments: [String]?

    public static let currentVersion = 2
    public static let fileName = "config.json"

    /// The record of a run or sweep of `config` about to train on `trainImages` images and check
    /// `heldOutImages`; `plan` (nil when a library caller trains without one) adds the data
    /// request, the options and the seeds of a sweep.
    public init(config: TrainingConfig, plan: RunPlan?, camLayer: String?, trainImages: Int, heldOut: String,
                heldOutImages: Int, data: String) {
        version = RunRecord.currentVersion
        method = config.method
        self.config = config
        self.camLayer = camLayer
        self.trainImages = trainImages
        self.heldOut = heldOut
        self.heldOutImages = heldOutImages
        self.data = data
        dataset = plan?.dataset
        options = plan?.options
        sweep = plan?.seeds.map(SweepRecord.init(seeds:))
    }

    /// The plan the record describes; nil for an old record not yet converted.
    public var plan: RunPlan? {
        guard let dataset, let options else { return nil }
        return RunPlan(config: config, dataset: dataset, options: options, seeds: sweep?.seeds)
    }

    /// Converts the saved command of an old record to its dataset request and options.
    public typealias LegacyConversion = (_ arguments: [String], _ config: TrainingConfig) throws -> (DatasetRequest, RunOptions)

    /// Decodes a record from the text of `config.json` (`path` names it in messages).
    ///
    /// An old record (no `dataset`) is converted through `legacy` when it kept its command; one
    /// without a command, or read without `legacy`, is returned as it is (`plan` is nil).
    public static func decode(_ data: Data, path: String, legacy: LegacyConversion? = nil) throws -> RunRecord {
        var record: RunRecord
        do {
            // Fields added to the configuration since the record was written take their defaults.
            var text = data
            if var object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let config = object["config"] as? [String: Any], let filled = TrainingConfig.fillingDefaults(config) {
                object["config"] = filled
                text = try JSONSerialization.data(withJSONObject: object)
            }
            record = try JSONDecoder().decode(RunRecord.self, from: text)
        } catch {
            throw RunDirectoryError("\(path) is not the configuration of a part train run (damaged or edited)",
                                    badArgument: false)
        }
        if record.dataset == nil, let arguments = record.arguments, let legacy {
            do {
                (record.dataset, record.options) = try legacy(arguments, record.config)
            } catch {
                throw RunDirectoryError("\(path) was written by an older version and its saved command no longer "
                                        + "parses (\(error)); start a new run", badArgument: true)
            }
        }
        return record
    }

    /// Reads `directory/config.json`; nil when there is none.
    public static func read(_ directory: URL, legacy: LegacyConversion? = nil) throws -> RunRecord? {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunDirectoryError("\(url.path) cannot be read", badArgument: false)
        }
        return try decode(data, path: url.path, legacy: legacy)
    }

    /// Writes `directory/config.json` (pretty-printed, atomically).
    public func write(to directory: URL) throws {
        let encoder = JSONOutput.encoder()
        encoder.outputFormatting.insert(.prettyPrinted)
        try (try encoder.encode(self) + Data("\n".utf8)).write(to: directory.appendingPathComponent(RunRecord.fileName),
                                                                options: .atomic)
    }
}
