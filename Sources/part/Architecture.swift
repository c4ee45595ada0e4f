import ArgumentParser
import PARTNN

/// An `--arch` value: an architecture of the model zoo, checked against the registry when the
/// command line is parsed (exit 64 with a sentence naming the known architectures, or the limit
/// of a pattern such as wrn-<depth>-<widen>).
struct ArchitectureName: ExpressibleByArgument, Sendable, CustomStringConvertible {
    let name: String

    init(_ name: String) { self.name = name }

    init?(argument: String) {
        guard ModelZoo.recognises(argument) else { return nil }
        name = argument
    }

    /// The option's transform: the registry's sentence when `text` names no architecture.
    static let parse: @Sendable (String) throws -> ArchitectureName = { text in
        if let problem = ModelZoo.problem(text) { throw ValidationError(problem) }
        return ArchitectureName(text)
    }

    static var allValueStrings: [String] { ModelZoo.architectures }
    var defaultValueDescription: String { name }
    var description: String { name }

    /// The default of `part train`, and of the speed measurements.
    static let training = ArchitectureName(ModelZoo.defaultArchitecture)
    static let benchmark = ArchitectureName(ModelZoo.benchmarkArchitecture)

    /// `--arch` help: `what`, then the registry's choices.
    static func help(_ what: String, default value: String? = nil) -> ArgumentHelp {
        ArgumentHelp("\(what) One of \(ModelZoo.choices)." + (value.map { " (default: \($0))" } ?? ""), valueName: "name")
    }
}
