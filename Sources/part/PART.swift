import ArgumentParser
import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTTraining

@main
struct PART: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "part",
        abstract: "Pixel-reweighted adversarial training (PART) and robustness evaluation.",
        discussion: """
        Images are in [0, 1]; training budgets are L-inf epsilon maps, and evaluation also attacks in the L2 ball. Results go to standard output \
        (human-readable, or JSON with --json); progress goes to standard error.
        """,
        version: "0.1.0",
        subcommands: [Train.self, Eval.self, Cam.self, Convert.self, Report.self, Bench.self, DataCommand.self, PresetsCommand.self, MPICheck.self])

    /// Parses and runs the command. A refused argument is one line on standard error, "Error: "
    /// and what to change (newlines in it escaped), exit code 64; ArgumentParser's own report
    /// adds help and usage lines, which bury the reason in scripts and logs (`--help` shows them).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            // Help and version go to standard output; an ExitCode was already reported in one line.
            if error is ExitCode || exitCode(for: error) == .success { exit(withError: error) }
            FileHandle.standardError.write(Data("Error: \(oneLine(message(for: error)))\n".utf8))
            Foundation.exit(exitCode(for: error).rawValue)
        }
    }
}

/// Which dataset, where its files are, and the options of its format (the dataset registry).
struct DataOptions: ParsableArguments {
    /// nil when --dataset was not given: `part train` then takes a preset's dataset, or a resumed
    /// run's (`dataset` applies the default).
    @Option(name: .customLong("dataset"), help: ArgumentHelp("The dataset (see docs/datasets.md). (default: a preset's or a resumed "
                                                                          + "run's; for eval, cam and report, the one the checkpoint's "
                                                                          + "run or metadata records; else fashion-mnist)",
                                                             valueName: "name"))
    var givenDataset: DatasetName?

    var dataset: DatasetName { givenDataset ?? .fashionMNIST }

    @Option(name: .customLong("data"), help: ArgumentHelp(
        "The dataset's files (default for fashion-mnist: /usr/share/datasets/fashion-mnist). cifar10/cifar100: the "
            + "extracted folder or the .tar.gz; svhn: the folder of the .mat files; tinyimagenet: the tiny-imagenet-200 "
            + "folder; imagefolder: a folder with train/ and test/ (or val/) of class folders; npy: an .npz, or a "
            + "folder with train.npz and test.npz.", valueName: "dir"))
    var directory: String?

    @Option(name: .customLong("label-mode"),
            help: "CIFAR-100 labels: fine (100 classes) or coarse (20 superclasses). (default: fine)")
    var givenLabelMode: CIFAR.LabelMode?

    var labelMode: CIFAR.LabelMode { givenLabelMode ?? .fine }

    @Flag(help: "SVHN: add extra_32x32.mat (531,131 images) to the training split.")
    var svhnExtra = false

    @Option(help: "NumPy images: nhwc or nchw, when the shape does not tell (a channel axis of size 1 or 3).")
    var layout: NumPyData.Layout?

    @Option(parsing: .unconditional, help: "imagefolder, npy: the number of classes (default: the class folders, or the largest label + 1).")
    var classes: Int?

    @Option(name: .customLong("channels"), parsing: .unconditional,
            help: "imagefolder: 3 (RGB; grey images are replicated) or 1 (grey images only). (default: 3)")
    var givenChannels: Int?

    var channels: Int { givenChannels ?? 3 }

    @Option(help: ArgumentHelp("Folder for decoded-image caches of tinyimagenet and imagefolder (default: "
                               + ".part-cache beside the data when writable, else ~/.cache/part).", valueName: "dir"))
    var cache: String?

    var request: DatasetRequest {
        var r = DatasetRequest(name: dataset, location: directory.map { URL(fileURLWithPath: $0) })
        r.labelMode = labelMode
        r.svhnExtra = svhnExtra
        r.layout = layout
        r.classes = classes
        r.channels = channels
        r.cache = cache.map { URL(fileURLWithPath: $0) }
        return r
    }

    /// `request` with only the options given on the command line replacing its fields (a
    /// resumed run's recorded request, overridden by what the resume command gives).
    func overriding(_ recorded: DatasetRequest) -> DatasetRequest {
        var r = recorded
        if let givenDataset { r.name = givenDataset }
        if let directory { r.location = URL(fileURLWithPath: directory).standardizedFileURL }
        if let givenLabelMode { r.labelMode = givenLabelMode }
        if svhnExtra { r.svhnExtra = true }
        if let layout { r.layout = layout }
        if let classes { r.classes = classes }
        if let givenChannels { r.channels = givenChannels }
        if let cache { r.cache = URL(fileURLWithPath: cache).standardizedFileURL }
        return r
    }

    func validate() throws {
        if let problem = request.problem() { throw ValidationError(problem) }
    }

    /// The request of a command that reads a run's checkpoint: the data the run recorded
    /// (`recorded`, from its config.json) when --dataset is not given, with the flags given now
    /// over it (--data: the same dataset in another folder); else the flags alone.
    func request(recorded: DatasetRequest?) -> DatasetRequest {
        guard givenDataset == nil, let recorded else { return request }
        var r = overriding(recorded)
        r.augmentation = nil
        return r
    }

    /// Loads a split through the registry (of `recorded`, see `request(recorded:)`); warnings go
    /// to standard error.
    func load(_ split: DatasetSplit, augmentation: Augmentation? = nil, recorded: DatasetRequest? = nil) throws -> ImageDataset {
        var r = request(recorded: recorded)
        r.augmentation = augmentation
        return try DatasetRegistry.load(r, split: split) { warning in
            FileHandle.standardError.write(Data("part: warning: \(warning)\n".utf8))
        }
    }
}

/// The training augmentation (`part train`, `part data bench`).
struct AugmentOptions: ParsableArguments {
    enum Choice: String, ExpressibleByArgument, CaseIterable {
        case auto, none, cropFlip = "crop-flip"
    }

    @Option(name: .customLong("augment"),
            help: ArgumentHelp("Training augmentation: auto (the dataset's recipe: random crop with 4-pixel zero padding "
                               + "and horizontal flip for cifar10, cifar100 and tinyimagenet, none otherwise), none, or "
                               + "crop-flip. (default: auto)"))
    var givenAugment: Choice?

    var augment: Choice { givenAugment ?? .auto }

    /// nil keeps the dataset's own policy.
    var policy: Augmentation? {
        switch augment {
        case .auto: return nil
        case .none: return Augmentation.none
        case .cropFlip: return .cropFlip
        }
    }
}

extension DatasetName: ExpressibleByArgument {}
extension CIFAR.LabelMode: ExpressibleByArgument {}
extension NumPyData.Layout: ExpressibleByArgument {}

/// A seed: a whole number from 0 to 2^64 - 1 ("-1" is read as a value, not as a flag, and
/// refused saying so).
func parseSeed(_ text: String) throws -> UInt64 {
    guard let value = UInt64(text) else {
        throw ValidationError("--seed must be a whole number >= 0 (at most \(UInt64.max)), got '\(text)'")
    }
    return value
}

/// Output format and randomness.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print results as JSON (one object per line).")
    var json = false

    /// nil when --seed was not given (a resumed run keeps its own).
    @Option(name: .customLong("seed"), parsing: .unconditional,
            help: "Seed of every random choice (initialisation, shuffling, attack starts). (default: 0)",
            transform: parseSeed)
    var givenSeed: UInt64?

    var seed: UInt64 { givenSeed ?? 0 }
}

/// `text` with its line breaks escaped (`\\n`), so that an error quoting a path or a value that
/// holds one stays one line.
func oneLine(_ text: String) -> String {
    text.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
}

/// A bad argument found only after reading the data or the checkpoint (exit code 64).
struct BadArgument: ExitCoded, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
    var exitCode: Int32 { Self.badArgumentStatus }
}

/// Prints `error` as one line on standard error and exits with the error's own status
/// (`ExitCoded`), 1 for any other error.
func fail(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("part: error: \(oneLine("\(error)"))\n".utf8))
    return ExitCode((error as? ExitCoded)?.exitCode ?? 1)
}

/// Refuses (as a usage error, before any work) outputs that `OutputPath.check` refuses: not a
/// regular file, one of `inputs`, another output's file, or a run file not in `owned`.
func checkOutputs(_ outputs: [OutputPath.Output], inputs: [String?], owned: [String] = []) throws {
    do {
        try OutputPath.check(outputs, inputs: inputs.compactMap { $0 }, owned: owned)
    } catch let error as OutputPathError {
        throw ValidationError(error.description)
    }
}

/// The optimiser state written beside a checkpoint (`NAME.state.safetensors`), an input too.
func stateFile(beside checkpoint: String) -> String {
    let url = URL(fileURLWithPath: checkpoint)
    return url.deletingLastPathComponent().appendingPathComponent(url.deletingPathExtension().lastPathComponent
                                                                  + ".state.safetensors").path
}

/// Prints `value` as one line of JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    print(try JSONOutput.line(value))
}
