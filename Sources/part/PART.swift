import ArgumentParser
import Foundation
import PARTTraining

@main
struct PART: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "part",
        abstract: "Pixel-reweighted adversarial training (PART) and robustness evaluation.",
        discussion: """
        Images are in [0, 1]; budgets are L-inf epsilon maps. Results go to standard output \
        (human-readable, or JSON with --json); progress goes to standard error.
        """,
        version: "0.1.0",
        subcommands: [Train.self, Eval.self, Bench.self, PresetsCommand.self])
}

/// Where the data is.
struct DataOptions: ParsableArguments {
    @Option(name: .customLong("data"), help: ArgumentHelp("Directory with the dataset's files (MNIST-format IDX, raw or .gz).", valueName: "dir"))
    var directory: String = "/usr/share/datasets/fashion-mnist"
}

/// The attack used for robust accuracy.
struct AttackOptions: ParsableArguments {
    @Option(name: .customLong("eps"), help: "L-inf budget of the evaluation attack.")
    var epsilon: Float = 0.1

    @Option(name: .customLong("alpha"), help: "PGD step size (default: eps / 4).")
    var stepSize: Float?

    @Option(name: .customLong("pgd-steps"), help: "PGD steps of the evaluation attack.")
    var steps: Int = 20

    func validate() throws {
        guard epsilon >= 0 && epsilon <= 1 else { throw ValidationError("--eps must be in [0, 1], got \(epsilon)") }
        if let stepSize, !(stepSize >= 0) { throw ValidationError("--alpha must be >= 0") }
        guard steps >= 0 else { throw ValidationError("--pgd-steps must be >= 0") }
    }

    var alpha: Float { stepSize ?? epsilon / 4 }
}

/// Output format and randomness.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print results as JSON (one object per line).")
    var json = false

    @Option(help: "Seed of every random choice (initialisation, shuffling, attack starts).")
    var seed: UInt64 = 0
}

/// Prints `error` as one line on standard error and exits non-zero.
func fail(_ error: Error) -> ExitCode {
    FileHandle.standardError.write(Data("part: error: \(error)\n".utf8))
    return ExitCode(1)
}

/// Prints `value` as one line of JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    print(try JSONOutput.line(value))
}

/// A progress line on standard error, redrawn in place on a terminal.
struct Progress {
    let isTerminal = isatty(2) == 1
    private var lastPrinted = Date.distantPast

    mutating func update(_ text: @autoclosure () -> String, final: Bool = false) {
        let now = Date()
        guard final || now.timeIntervalSince(lastPrinted) >= (isTerminal ? 0.2 : 30) else { return }
        lastPrinted = now
        let line = text()
        FileHandle.standardError.write(Data((isTerminal ? "\r\u{1B}[K\(line)" : "\(line)\n").utf8))
        if final && isTerminal { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    func clear() {
        if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
