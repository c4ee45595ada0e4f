import ArgumentParser
import Foundation
import PARTDistributed
import PARTTraining

/// `part train --resume RUN` and the checkpoint cadence.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint, with the configuration "
                               + "saved in it (flags given again must agree).", valueName: "dir"))
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
            throw ValidationError("--resume continues one run; the runs of a --seeds sweep are <out>/seed-K")
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
        guard let savedArguments = saved.arguments else {
            throw refuse("--resume \(path): its config.json records no command (a sweep's seed run or an older "
                         + "version); start a new run", badArgument: true)
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
        try command.start(resumed: (directory, directory?.url ?? URL(fileURLWithPath: path), saved.config,
                                    saved.trainImages, saved.heldOutImages))
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
            return OpenedRun(config: "", problem: problem.description, badArgument: problem.badArgument)
        } catch {
            return OpenedRun(config: "", problem: "\(error)", badArgument: false)
        }
    }

    /// The first setting in which the resumed command differs from the saved run, as a clause
    /// naming the flag, nil when they agree.
    static func difference(saved: TrainingConfig, original: Train, now: Train) throws -> String? {
        let nowConfig = try now.resolvedConfig()
        let a = try fields(saved), b = try fields(nowConfig)
        for key in a.keys.sorted() where a[key] != b[key] {
            return "the run was trained with \(flag(forConfigKey: key)) \(a[key] ?? "(none)"), this command gives "
                + "\(b[key] ?? "(none)")"
        }
        for ((name, x), (_, y)) in zip(original.dataFingerprint, now.dataFingerprint) where x != y {
            return "the run was trained with \(name) \(x), this command gives \(y)"
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
