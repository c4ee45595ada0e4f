import ArgumentParser
import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN

/// `part eval --protocol NAME`: a fixed evaluation whose figures can be compared with a
/// leaderboard's (docs/evaluation.md#the-robustbench-protocol).
enum EvaluationProtocol: String, ExpressibleByArgument, CaseIterable {
    case robustbench
}

/// The threat model of `--protocol robustbench`: its norm, budget and AutoAttack version.
enum ThreatModel: String, ExpressibleByArgument, CaseIterable {
    case linf = "Linf"
    case l2 = "L2"

    init?(argument: String) {
        guard let match = Self.allCases.first(where: { $0.rawValue.lowercased() == argument.lowercased() }) else { return nil }
        self = match
    }

    /// RobustBench's budget for CIFAR-10 under this threat model.
    var epsilon: Fraction { self == .linf ? Fraction(argument: "8/255")! : Fraction(argument: "0.5")! }

    /// AutoAttack standard of this norm.
    var attacks: String { self == .linf ? "aa" : "aa-l2" }
}

/// The modes of `part eval` beyond one evaluation: several budgets (a robustness curve), a
/// transfer attack from another model, and the RobustBench protocol.
extension Eval {
    /// The leaderboard's number of test points.
    static let robustBenchPoints = 10_000

    /// The budgets to evaluate, in the order given (`--eps A,B,C`); the protocol's when one is given.
    func epsilons() throws -> [Fraction] {
        if evaluationProtocol == .robustbench { return [threatModel.epsilon] }
        let text = epsilonText ?? "0.1"
        var out = [Fraction]()
        for item in text.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let value = Fraction(argument: item) else {
                throw ValidationError("--eps takes a decimal or a fraction such as 8/255, or several separated by commas "
                                      + "(2/255,4/255,8/255); got '\(text)'")
            }
            guard value.value >= 0 && value.value <= 1 else { throw ValidationError("--eps must be in [0, 1], got \(item)") }
            guard !out.contains(where: { $0.value == value.value }) else { throw ValidationError("--eps lists \(item) twice") }
            out.append(value)
        }
        return out
    }

    /// The first budget (the one of a single evaluation).
    var epsilon: Fraction { ((try? epsilons()) ?? []).first ?? Fraction(0.1) }

    /// Without --eps the evaluation runs at 0.1, the Fashion-MNIST budget. A model whose run (its
    /// record beside it, else its metadata) trained at another eps is then most likely evaluated
    /// at the wrong budget: the warning names both (nil when --eps or a protocol sets it, or when
    /// the training eps is unknown or the same).
    func defaultBudgetWarning(checkpoint: URL) -> EvaluationWarning? {
        guard epsilonText == nil, evaluationProtocol == nil, let trained = RunSettings(checkpoint: checkpoint).epsilon,
              abs(trained - epsilon.value) > 1e-6 else { return nil }
        let shown = budgetText(Double(trained))
        return EvaluationWarning(.evaluation, "no --eps given: evaluating at the default eps \(epsilon.value), but the model "
                                 + "was trained at eps \(shown); give --eps \(shown) (or the budget you mean)")
    }

    /// `path` for the evaluation at `epsilon`: as given for one budget; with several,
    /// `NAME-eps<value>.EXT` beside `NAME.EXT`, the value as typed with `/` written `_`
    /// (`aa.jsonl` at 8/255: `aa-eps8_255.jsonl`).
    func path(_ path: String?, at epsilon: Fraction) -> String? {
        guard let path, ((try? epsilons()) ?? []).count > 1 else { return path }
        let url = URL(fileURLWithPath: path)
        let ext = url.pathExtension
        let stem = url.deletingPathExtension().lastPathComponent + "-eps" + epsilon.text.replacingOccurrences(of: "/", with: "_")
        let name = ext.isEmpty ? stem : stem + "." + ext
        // Keep the path relative when it was given so (messages name it as the user wrote it).
        let folder = (path as NSString).deletingLastPathComponent
        return folder.isEmpty ? name : (folder as NSString).appendingPathComponent(name)
    }

    /// The checks of the modes' flags (part of `validate`).
    func validateModes() throws {
        _ = try epsilons()
        if let evaluationProtocol {
            let name = "--protocol \(evaluationProtocol.rawValue)"
            guard let datasetName, !datasetName.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("\(name) needs --dataset-name NAME: the dataset's name as the leaderboard spells it "
                                      + "(e.g. cifar10); it is written into the JSON as given")
            }
            guard datasetName.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw ValidationError("--dataset-name takes letters, digits, '-', '_' and '.', got '\(messageText(datasetName, limit: 60))'")
            }
            if attacks != nil || pgdSteps != nil { throw ValidationError("\(name) runs AutoAttack standard: drop --attacks and --pgd-steps") }
            if epsilonText != nil {
                throw ValidationError("\(name) sets eps from --threat-model (Linf 8/255, L2 0.5): drop --eps")
            }
            if independent || balanced { throw ValidationError("\(name) runs AutoAttack's sequence on the first test points: drop "
                                                               + "--independent and --balanced") }
            if source != nil { throw ValidationError("\(name) evaluates white-box attacks: drop --source") }
            if threatModel == .l2 && !AttackCatalog.standard.knownNames.contains(threatModel.attacks) {
                throw ValidationError("--threat-model L2 needs the L2 AutoAttack (aa-l2), which this build does not have; "
                                      + "use --threat-model Linf")
            }
        } else {
            if datasetName != nil { throw ValidationError("--dataset-name names the dataset of --protocol robustbench's JSON: add the protocol or drop it") }
            if threatModel != .linf { throw ValidationError("--threat-model applies to --protocol robustbench: add the protocol or drop it") }
        }
        if let source, source == checkpoint {
            throw ValidationError("--source is the model the attacks run on, CHECKPOINT the one they are evaluated on: give two different files")
        }
    }

    /// The source model of a transfer evaluation, checked against the data.
    func loadSource(fitting test: ImageDataset) throws -> (model: ImageClassifier, sha256: String)? {
        guard let source else { return nil }
        let url = URL(fileURLWithPath: source)
        guard FileManager.default.fileExists(atPath: url.path) else { throw CheckpointError("--source \(source): no such file") }
        try CheckpointFit.check(url, fits: test)
        var rng = RNG(seed: output.seed)
        var (model, metadata) = try Checkpoint.loadModel(url, architecture: nil, numClasses: test.classes,
                                                         inputShape: (test.height, test.width, test.channels), rng: &rng)
        // A source trained with `part train --normalize` carries it, as the target does.
        if let normalize = NormalizeOption.effective(nil, metadata: metadata, warn: false) {
            model = try Normalized(model, text: normalize)
        }
        return (model, try EvaluationHeader.hash(of: url))
    }

    /// The stages on the target of a transfer evaluation: natural, then the source's worst cases.
    func transferStages(_ stages: [AttackCatalog.Stage], examples: Tensor, splitIndices: [Int]?,
                        sourceSHA256: String) -> [AttackCatalog.Stage] {
        let attacks = stages.dropFirst().map(\.description).joined(separator: "+")
        let stage = AttackCatalog.Stage(name: "transfer", description: "transfer:source=\(sourceSHA256.prefix(16)):attacks=\(attacks)",
                                        attack: TransferredExamples(examples: examples, splitIndices: splitIndices), cost: 1)
        return [stages[0], stage]
    }

    /// The RobustBench model-info JSON of a finished protocol run.
    func modelInfo(_ summary: EvaluationSummary, architecture: String, sha256: String, warnings: [EvaluationWarning]) -> ModelInfo {
        ModelInfo(dataset: datasetName ?? "", eps: threatModel.epsilon.text, threatModel: threatModel.rawValue,
                  architecture: architecture, cleanAccuracy: summary.cleanAccuracy, robustAccuracy: summary.robustAccuracy,
                  points: summary.count, checkpointSHA256: sha256, attacks: summary.stages.dropFirst().map(\.description),
                  seed: output.seed, precision: engine.precision.rawValue,
                  unreliable: warnings.contains { $0.kind == .gradientMasking })
    }
}
