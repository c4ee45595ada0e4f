import ArgumentParser
import Foundation
import PARTAttacks
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
        subcommands: [Train.self, Eval.self, Bench.self])
}

/// Where the data is.
struct DataOptions: ParsableArguments {
    @Option(name: .customLong("data"), help: ArgumentHelp("Directory with the dataset's files (MNIST-format IDX, raw or .gz).", valueName: "dir"))
    var directory: String = "/usr/share/datasets/fashion-mnist"
}

/// A budget or step size: a decimal ("0.1") or a fraction ("8/255").
struct Fraction: ExpressibleByArgument, CustomStringConvertible {
    let value: Float
    let text: String

    init(_ value: Float) {
        self.value = value
        self.text = String(value)
    }

    init?(argument: String) {
        guard let v = AttackCatalog.number(argument) else { return nil }
        value = v
        text = argument
    }

    var description: String { text }
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
