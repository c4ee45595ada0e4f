import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN
import PARTTraining

/// A budget or step size: a decimal ("0.1") or a fraction ("8/255"), as the user wrote it.
/// "inf" and "nan" parse, so that the command's range check names the flag and its bounds.
struct Fraction: ExpressibleByArgument, CustomStringConvertible {
    let value: Float
    let text: String

    init(_ value: Float) {
        self.value = value
        self.text = String(value)
    }

    init?(argument: String) {
        let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, let n = Double(parts[0]), let d = Double(parts[1]), d != 0 {
            value = Float(n / d)
        } else if parts.count == 1, let v = Float(argument) {
            value = v
        } else {
            return nil
        }
        text = argument
    }

    var description: String { text }
}

extension TrainingMethod: ExpressibleByArgument {}
extension ObjectiveKind: ExpressibleByArgument {}
extension BudgetKind: ExpressibleByArgument {}
extension GenerationKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension CAMMethodName: ExpressibleByArgument {}
extension MapRuleName: ExpressibleByArgument {}

/// `--without LIST` of `part train`, `part eval` and `part bench`: the engine optimisations to
/// turn off, for ablations and for checking that a figure does not hang on one of them (the
/// results differ by rounding only).
struct OptimizationOptions: ParsableArguments {
    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Engine optimisations to turn off (results differ by rounding only): "
                               + Optimizations.Name.allCases.map(\.rawValue).joined(separator: ", ") + ".",
                               valueName: "name"))
    var without: [String] = []

    func validate() throws {
        for name in without where Optimizations.Name(rawValue: name) == nil {
            throw ValidationError("unknown optimisation '\(name)' in --without (known: "
                                  + Optimizations.Name.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
    }
}
