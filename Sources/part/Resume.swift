import ArgumentParser
import Foundation
import PARTDistributed
import PARTTraining

/// `part train --resume RUN` and the checkpoint cadence.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint, with the configuration "
                               + "saved in it (flags given again must agree). The directory of a --seeds sweep "
                               + "continues the sweep: finished seeds are kept, the interrupted one resumes, the rest "
                               + "start, and <dir>/summary.json is written; <dir>/seed-K continues that seed alone.",
                               valueName: "dir"))
    var resume: String?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Also write a checkpoint every N batches (0: at each epoch's end only).", valueName: "n"))
    var checkpointEvery: Int = 0

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Also write a checkpoint when M minutes passed since the last one (0: never).",
                               valueName: "m"))
    var checkpointMinutes: Double = 0

    var policy: CheckpointPolicy { CheckpointPolicy(everyBatches: checkpointEvery, minutes: checkpointMinutes) }

    func validate() throws {
        guard checkpointEvery >= 0 else { throw ValidationError("--checkpoint-every must be >= 0, got \(checkpointEvery)") }
        guard checkpointMinutes.isFinite && checkpointMinutes >= 0 else {
            throw ValidationError("--checkpoint-minutes must be a finite number >= 0, got \(checkpointMinutes)")
        }
    }

    /// Flags that cannot go with --resume.
    func validateResume(seeds: String?, out: String?, overwrite: Bool) throws {
        if seeds != nil {
            throw ValidationError("--resume takes the seeds saved with the run: drop --seeds (--resume RUN continues a "
                                  + "whole --seeds sweep, --resume RUN/seed-K one seed of it)")
        }
        if out != nil { throw ValidationError("--resume names the run directory; drop --out") }
        if overwrite { throw ValidationError("--resume continues a run; --overwrite would replace it: drop one of them") }
    }
}

/// A run directory opened for `--resume`: its `config.json`, or why it cannot be resumed.
struct OpenedRun: Codable {
    var config: String
    var problem: String?
    var badArgument: Bool
}

/// What `config.json` holds that a resume needs.
private struct SavedRun: Decodable {
    let config: TrainingConfig
    let arguments: [String]?
    let trainImages: Int?
    let heldOutImages: Int?
    /// Present in the `config.json` of a `--seeds` sweep.
    let sweep: SweepRecord?
}

extension Train {
    /// Options that steer this process, not the run: they may differ on a resume and are not
    /// taken from the saved command.
    static let processOptions: Set<String> = ["--resume", "--out", "--overwrite", "--threads", "--precision", "--json",
                                              "--quiet", "--checkpoint-every", "--checkpoint-minutes"]

    /// The arguments of this `part train` command, with paths made absolute, as `config.json`
    /// records them.
    static func savedArguments() -> [String]? {
        let all = CommandLine.arguments
        guard all.count >= 2, all[1] == "train" else { return nil }
        return absolutePaths(Array(all.dropFirst(2)))
    }

    /// Options whose value is a path.
    static let pathOptions: Set<String> = ["--data", "--cache", "--tensorboard"]

    /// `arguments` with the values of path options as absolute paths, so a resume from another
    /// working directory reads and writes the same files.
    static func absolutePaths(_ arguments: [String]) -> [String] {
        var out = [String]()
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            if pathOptions.contains(a), i + 1 < arguments.count {
                out += [a, URL(fileURLWithPath: arguments[i + 1]).standardizedFileURL.path]
                i += 2
                continue
            }
            if let eq = a.firstIndex(of: "="), pathOptions.contains(String(a[..<eq])) {
                out.append(String(a[..<eq]) + "=" + URL(fileURLWithPath: String(a[a.index(after: eq)...])).standardizedFileURL.path)
            } else {
                out.append(a)
            }
            i += 1
        }
        return out
    }

    /// `arguments` without the options named in `names` and their values (an option's values
    /// run to the next token that starts with "--").
    static func removing(_ names: Set<String>, from arguments: [String]) -> [String] {
        var out = [String]()
        var skipping = false
        for a in arguments {
            if a.hasPrefix("--") {
                let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
                skipping = names.contains(name) && !a.contains("=")
                if names.contains(name) { continue }
            } else if skipping {
                continue
            }
            out.append(a)
        }
        return out
    }

    /// The option names among `arguments`.
    static func optionNames(_ arguments: [String]) -> Set<String> {
        Set(arguments.filter { $0.hasPrefix("--") }.map { $0.split(separator: "=", maxSplits: 1).first.map(String.init) ?? $0 })
    }

    /// What defines the run besides the training configuration: the data and the held-out check.
    var dataFingerprint: [(String, String)] {
        [("--data", data.directory.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "(default)"),
         ("--label-mode", data.labelMode.rawValue), ("--svhn-extra", String(data.svhnExtra)),
         ("--layout", data.layout?.rawValue ?? "(auto)"), ("--classes", data.classes.map(String.init) ?? "(auto)"),
         ("--channels", String(data.channels)), ("--augment", augmentation.augment.rawValue),
         ("--train-limit", String(trainLimit)), ("--eval-limit", String(evalLimit))]
    }

    /// Continues the run in `path`: the saved command, overridden by the flags given now, must
    /// describe the same run; then it trains from the last checkpoint.
    ///
    /// Under mpirun, rank 0 alone opens the directory (it may exist only on rank 0's machine) and
    /// sends its `config.json` to the other ranks; a directory it refuses stops every rank with
    /// rank 0's message and exit code.
    func runResumed(_ path: String) throws {
        var directory: RunDirectory?
        let opened: OpenedRun
        let communicator = Distributed.current.flatMap { $0.size > 1 ? $0 : nil }
        /// Stops with `message`: exit 64 for a bad argument, 1 for a damaged file. Under mpirun
        /// every rank meets the same problem here (rank 0's files, one command): rank 0 says it
        /// and each rank leaves the job in step.
        func refuse(_ message: String, badArgument bad: Bool) -> ExitCode {
            guard let communicator else { return bad ? badArgument(message) : fail(TrainingError(message)) }
            if communicator.isRoot { FileHandle.standardError.write(Data("part: error: \(message)\n".utf8)) }
            communicator.finalize()
            return bad ? ExitCode.validationFailure : ExitCode(1)
        }
        if let communicator {
            do {
                opened = try communicator.rootDecides { Train.openRun(path, into: &directory) }
            } catch {
                throw failRank(error, communicator)
            }
        } else {
            opened = Train.openRun(path, into: &directory)
        }
        if let problem = opened.problem { throw refuse(problem, badArgument: opened.badArgument) }
        let saved: SavedRun
        do {
            saved = try JSONDecoder().decode(SavedRun.self, from: Data(opened.config.utf8))
        } catch {
            throw refuse("\(path)/config.json is not the configuration of a part train run (damaged or edited); the run "
                         + "cannot be resumed", badArgument: false)
        }
        if saved.sweep != nil, let communicator {
            throw refuse("--resume \(path) holds a --seeds sweep, which trains one seed after another and is not "
                         + "resumed under mpirun (\(communicator.size) ranks): run part train --resume \(path) without "
                         + "mpirun", badArgument: true)
        }
        guard let savedArguments = saved.arguments else {
            throw refuse("--resume \(path): its config.json records no command (written by an older version); start "
                         + "a new run", badArgument: true)
        }
        let given = Train.absolutePaths(Train.savedArguments() ?? [])
        let overridden = Train.optionNames(given).subtracting(Train.processOptions)
        let base = Train.removing(Train.processOptions.union(overridden), from: savedArguments)
        let original: Train, command: Train
        do {
            original = try Train.parse(Train.removing(Train.processOptions, from: savedArguments))
            command = try Train.parse(base + Train.removing(["--resume"], from: given))
        } catch {
            throw refuse("--resume \(path): the saved command no longer parses (\(Train.message(for: error)))",
                         badArgument: true)
        }
        if let difference = try Train.difference(saved: saved.config, original: original, now: command) {
            throw refuse("--resume \(path): \(difference); drop the flag or start a new run", badArgument: true)
        }
        let url = directory?.url ?? URL(fileURLWithPath: path)
        let seeds = (try? command.parsedSeeds()) ?? nil
        if let sweep = saved.sweep {
            guard seeds == sweep.seeds else {
                throw refuse("\(url.path)/config.json: its seed list and its command disagree (damaged or edited); the "
                             + "sweep cannot be resumed", badArgument: false)
            }
            // Every seed directory is checked before any seed trains.
            if let problem = Train.sweepSeedProblem(url, seeds: sweep.seeds, sweepArguments: savedArguments,
                                                    trainImages: saved.trainImages, heldOutImages: saved.heldOutImages) {
                throw refuse(problem, badArgument: false)
            }
        } else if seeds != nil {
            throw refuse("\(url.path)/config.json records a --seeds command but no seed list (damaged or edited); the "
                         + "run cannot be resumed", badArgument: false)
        }
        try command.start(resumed: (directory, url, saved.config, saved.trainImages, saved.heldOutImages, savedArguments))
    }

    /// The command recorded in seed `seed`'s run of a sweep started with `arguments`: the same
    /// recipe and data with `--seed K` for `--seeds`, and without the sweep's directory, so that
    /// `part train --resume RUN/seed-K` continues that seed as a single run.
    static func seedArguments(_ arguments: [String], seed: UInt64) -> [String] {
        removing(["--seeds", "--seed", "--out", "--overwrite"], from: arguments) + ["--seed", String(seed)]
    }

    /// The first reason why a seed directory of the sweep in `directory` is not that seed's run
    /// of this sweep, nil when each existing `seed-K` holds seed K's run of the sweep's recipe and
    /// data (whatever its progress), or nothing yet. Checked before any seed trains, so that a
    /// foreign directory is found at once rather than hours later; nothing is changed.
    ///
    /// A seed's run is recognised by what it computes, not by where it came from: its recorded
    /// configuration, seed, command and image counts must be those the sweep gives that seed
    /// (a copy of the same seed's run from a sweep with the same command would train the same
    /// weights, and is accepted).
    static func sweepSeedProblem(_ directory: URL, seeds: [UInt64], sweepArguments: [String], trainImages: Int?,
                                 heldOutImages: Int?) -> String? {
        let fm = FileManager.default
        for seed in seeds {
            let sub = TrainingRun.seedDirectory(directory, seed: seed)
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: sub.path, isDirectory: &isDirectory) else { continue }
            let away = "move it out of \(directory.path) (nothing is deleted) and resume again"
            guard isDirectory.boolValue else { return "\(sub.path) is not a directory, so seed \(seed) cannot be trained; \(away)" }
            let configURL = sub.appendingPathComponent("config.json")
            guard fm.fileExists(atPath: configURL.path) else {
                if RunDirectory.holdsRun(sub) {
                    return "\(sub.path) holds files of a run but no config.json, so it cannot be shown to be seed \(seed) "
                        + "of this sweep; \(away)"
                }
                continue
            }
            guard let data = fm.contents(atPath: configURL.path),
                  let run = try? JSONDecoder().decode(SavedRun.self, from: data) else {
                return "\(configURL.path) is not the configuration of a part train run (damaged or edited); \(away)"
            }
            let notOurs = "\(sub.path) is not seed \(seed) of the sweep in \(directory.path)"
            if run.sweep != nil { return "\(notOurs): it holds a sweep of its own; \(away)" }
            if run.config.seed != seed {
                return "\(notOurs): it holds a run of seed \(run.config.seed) (copied or renamed from another sweep); \(away)"
            }
            guard let recordedArguments = run.arguments else {
                return "\(notOurs): its config.json records no command (written by an older version); \(away)"
            }
            do {
                let recorded = try Train.parse(removing(processOptions, from: recordedArguments))
                let expected = try Train.parse(removing(processOptions, from: seedArguments(sweepArguments, seed: seed)))
                if let difference = try Train.difference(saved: run.config, original: recorded, now: expected,
                                                         subject: "its run", other: "the sweep") {
                    return "\(notOurs) (it comes from another sweep or configuration): \(difference); \(away)"
                }
            } catch {
                return "\(notOurs): its recorded command no longer parses (\(Train.message(for: error))); \(away)"
            }
            if let trainImages, let heldOutImages, run.trainImages != trainImages || run.heldOutImages != heldOutImages {
                return "\(notOurs): its run trained on \(run.trainImages.map(String.init) ?? "?") images and checked "
                    + "\(run.heldOutImages.map(String.init) ?? "?"), the sweep on \(trainImages) and \(heldOutImages); \(away)"
            }
        }
        return nil
    }

    /// Opens the run directory at `path` (held in `directory`) and reads its `config.json`; a
    /// problem is returned as its sentence, and whether it is a bad argument (exit 64) or a
    /// missing or damaged file (exit 1).
    static func openRun(_ path: String, into directory: inout RunDirectory?) -> OpenedRun {
        do {
            let run = try RunDirectory.existing(path)
            let configURL = run.url.appendingPathComponent("config.json")
            guard let data = try? Data(contentsOf: configURL) else {
                return OpenedRun(config: "", problem: "\(configURL.path) is not the configuration of a part train run (damaged or edited); the run cannot be resumed",
                                 badArgument: false)
            }
            directory = run
            return OpenedRun(config: String(decoding: data, as: UTF8.self), problem: nil, badArgument: false)
        } catch let problem as RunDirectoryError {
            let url = URL(fileURLWithPath: path)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
            if !FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path),
               names.contains(where: { $0.hasPrefix("seed-") }) {
                // Sweeps record their command in config.json since they can be resumed.
                return OpenedRun(config: "", problem: "--resume \(path) holds a --seeds sweep without config.json "
                                 + "(written by an older version, which did not record its command): it cannot be "
                                 + "resumed; start the sweep again with another --out", badArgument: true)
            }
            return OpenedRun(config: "", problem: problem.description, badArgument: problem.badArgument)
        } catch {
            return OpenedRun(config: "", problem: "\(error)", badArgument: false)
        }
    }

    /// The first setting in which the resumed command differs from the saved run, as a clause
    /// naming the flag, nil when they agree.
    /// `subject` and `other` name the two sides in the clause ("the run", "this command").
    static func difference(saved: TrainingConfig, original: Train, now: Train, subject: String = "the run",
                           other: String = "this command") throws -> String? {
        let nowConfig = try now.resolvedConfig()
        let a = try fields(saved), b = try fields(nowConfig)
        for key in a.keys.sorted() where a[key] != b[key] {
            return "\(subject) was trained with \(flag(forConfigKey: key)) \(a[key] ?? "(none)"), \(other) gives "
                + "\(b[key] ?? "(none)")"
        }
        for ((name, x), (_, y)) in zip(original.dataFingerprint, now.dataFingerprint) where x != y {
            return "\(subject) was trained with \(name) \(x), \(other) gives \(y)"
        }
        return nil
    }

    /// The configuration's fields as JSON texts, by key.
    private static func fields(_ config: TrainingConfig) throws -> [String: String] {
        let data = try JSONOutput.encoder().encode(config)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        var out = [String: String]()
        for (key, value) in object {
            let text = (try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(value)"
            out[key] = text.replacingOccurrences(of: "\"", with: "")
        }
        return out
    }

    /// The flag of a `TrainingConfig` field.
    static func flag(forConfigKey key: String) -> String {
        let names = ["learningRate": "--lr", "epsilon": "--eps", "epsilonLow": "--eps-low", "stepSize": "--alpha",
                     "gamma": "--lr-gamma", "milestones": "--lr-milestones", "validationSplit": "--val-split",
                     "architecture": "--arch"]
        if let name = names[key] { return name }
        // camelCase to --kebab-case (batchSize: --batch-size).
        return "--" + key.reduce(into: "") { s, c in s += c.isUppercase ? "-" + c.lowercased() : String(c) }
    }
}
