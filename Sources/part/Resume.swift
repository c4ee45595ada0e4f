import ArgumentParser
import Foundation
import PARTData
import PARTDistributed
import PARTTraining

/// `part train --resume RUN` and the checkpoint cadence.
struct CheckpointOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Continue the run in this directory from its last checkpoint, with the configuration, "
                               + "data and options recorded in its config.json (recipe and data flags given again must "
                               + "agree; checkpoint, engine and output flags replace the recorded ones). The directory "
                               + "of a --seeds sweep continues the sweep: finished seeds are kept, the interrupted one resumes, the rest "
                               + "start, and <dir>/summary.json is written; <dir>/seed-K continues that seed alone.",
                               valueName: "dir"))
    var resume: String?

    /// nil when not given: a resumed run keeps the cadence it recorded.
    @Option(parsing: .unconditional,
            help: ArgumentHelp("Also write a checkpoint every N batches (0: at each epoch's end only). (default: 0)",
                               valueName: "n"))
    var checkpointEvery: Int?

    @Option(parsing: .unconditional,
            help: ArgumentHelp("Also write a checkpoint when M minutes passed since the last one (0: never). (default: 0)",
                               valueName: "m"))
    var checkpointMinutes: Double?

    func validate() throws {
        if let checkpointEvery, checkpointEvery < 0 {
            throw ValidationError("--checkpoint-every must be >= 0, got \(checkpointEvery)")
        }
        if let checkpointMinutes, !(checkpointMinutes.isFinite && checkpointMinutes >= 0) {
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

extension Train {
    /// Opens the run directory `path` for `--resume` and rebuilds its job from the typed record
    /// in its `config.json`, with the flags given now applied: recipe and data flags must agree
    /// with the record, process options (threads, precision, checkpoint cadence, outputs)
    /// replace the recorded ones.
    ///
    /// Under mpirun, rank 0 alone opens the directory (it may exist only on rank 0's machine) and
    /// sends its `config.json` to the other ranks; a directory it refuses stops every rank with
    /// rank 0's message and exit code.
    func resumedJob(_ path: String) throws -> Job {
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
        let opened: ResumedRun
        do {
            opened = try TrainingSession.openForResume(path, communicator: communicator, legacy: Train.legacyPlan)
        } catch let problem as RunDirectoryError {
            throw refuse(problem.description, badArgument: problem.badArgument)
        } catch {
            if let communicator { throw failRank(error, communicator) }
            throw fail(error)
        }
        let now: RunPlan
        do {
            now = try resumedPlan(opened.plan)
        } catch {
            throw refuse("--resume \(path): \(Train.message(for: error))", badArgument: true)
        }
        if let difference = opened.plan.difference(now) {
            throw refuse("--resume \(path): \(difference); drop the flag or start a new run", badArgument: true)
        }
        return Job(plan: now, claimed: opened.directory, url: opened.url, resumed: opened.record)
    }

    /// The recorded plan of a resumed run with the flags given now applied over it.
    func resumedPlan(_ recorded: RunPlan) throws -> RunPlan {
        var plan = recorded
        var c = recorded.config
        if let preset { c.preset = preset }
        if let dataset = data.givenDataset { c.dataset = dataset.rawValue }
        try applyRecipeFlags(to: &c, preset: recorded.config.preset)
        plan.config = c.resolved
        plan.dataset = data.overriding(recorded.dataset)
        if augmentation.givenAugment != nil { plan.dataset.augmentation = augmentation.policy }
        plan.options = runOptions(over: recorded.options)
        return plan
    }

    /// The data request and options of a record written before the record was typed, from the
    /// command it saved instead (`arguments`, paths absolute): the one place that parses a saved
    /// command. The options of the process were not saved and take their defaults; the dataset
    /// is the recorded configuration's.
    static func legacyPlan(_ arguments: [String], config: TrainingConfig) throws -> (DatasetRequest, RunOptions) {
        // What the older versions left out of the command they replayed on a resume.
        let processOptions: Set<String> = ["--resume", "--out", "--overwrite", "--threads", "--precision", "--json",
                                           "--quiet", "--checkpoint-every", "--checkpoint-minutes"]
        var kept = [String](), skipping = false
        for a in arguments {
            if a.hasPrefix("--") {
                let name = a.split(separator: "=", maxSplits: 1).first.map(String.init) ?? a
                skipping = processOptions.contains(name) && !a.contains("=")
                if processOptions.contains(name) { continue }
            } else if skipping {
                continue
            }
            kept.append(a)
        }
        let command = try Train.parse(kept)
        var request = command.data.request.absolute
        if let name = DatasetName(rawValue: config.dataset) { request.name = name }
        request.augmentation = command.augmentation.policy
        return (request, command.runOptions(over: RunOptions()))
    }
}
