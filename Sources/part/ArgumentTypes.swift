import ArgumentParser
import Foundation
import PARTAttacks
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
extension ScheduleKind: ExpressibleByArgument {}

/// `--generation`: the catalog's entries that can make training examples.
extension GenerationAttack: ExpressibleByArgument {
    public static var allValueStrings: [String] { available.map(\.rawValue) }

    /// The option's help: the trainable entries as the catalog describes them.
    static var help: String {
        "Attack that makes the training examples: \(AttackCatalog.standard.trainingSummaries). (default: pgd)"
    }
}
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

/// `--normalize MEAN/STD` of `part train`, `part eval` and `part cam`: the per-channel
/// normalisation the model computes on its inputs (`Normalized`), which stay images in [0, 1].
enum NormalizeOption {
    /// The flag's help, `what` saying whose normalisation it is.
    static func help(_ what: String) -> ArgumentHelp {
        ArgumentHelp("Per-channel normalisation \(what), as MEAN/STD (e.g. 0.2860/0.3530 or "
                     + "0.4914,0.4822,0.4465/0.2470,0.2435,0.2616); inputs stay images in [0, 1].", valueName: "mean/std")
    }

    /// Throws the one-line usage error unless `text` is nil or parses.
    static func validate(_ text: String?) throws {
        guard let text, Normalized.parse(text) == nil else { return }
        throw ValidationError("--normalize takes \(Normalized.syntax); got '\(messageText(text, limit: 80))'")
    }

    /// The normalisation to apply: the flag's, else the one the checkpoint's metadata records
    /// (a model trained with `part train --normalize`). A flag that disagrees with the metadata
    /// wins with a warning on standard error (when `warn`).
    static func effective(_ flag: String?, metadata: [String: String], warn: Bool) -> String? {
        let recorded = metadata[Normalized.metadataKey].flatMap(Normalized.canonical)
        guard let flag else { return recorded }
        if warn, let recorded, Normalized.canonical(flag) != recorded {
            FileHandle.standardError.write(Data(("warning: --normalize \(messageText(flag, limit: 80)) replaces the "
                                                 + "normalisation \(recorded) the checkpoint was trained with\n").utf8))
        }
        return flag
    }
}
