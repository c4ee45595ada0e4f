import Foundation
import PARTCAM
import PARTEngine
import PARTNN

/// Everything that defines a training run: what to train on, the recipe (objective x budget x
/// generation), the optimiser and its schedule, the budgets and the checks. The defaults are
/// the project's quick Fashion-MNIST PART recipe (docs/method.md#7-datasets-and-per-dataset-defaults), the `part train` defaults.
public struct TrainingConfig: Sendable, Codable, Equatable {
    /// The preset the configuration started from, if any (for the record).
    public var preset: String?
    /// The dataset's registry name and the model's zoo name.
    public var dataset = "fashion-mnist"
    public var architecture = ModelZoo.defaultArchitecture
    /// The ONNX model trained instead of a zoo architecture (`part train --model`, an absolute
    /// path; `architecture` is then "onnx") and the MD5 of its bytes when the run started: a
    /// resume refuses a changed file (docs/commands.md#training-an-onnx-model).
    public var model: String?
    public var modelMD5: String?
    /// The per-channel normalisation the model applies to its inputs, "MEAN/STD" in canonical
    /// form (`--normalize`; nil: none). Recorded in the checkpoints' metadata, so that
    /// `part eval` and `part cam` apply it too.
    public var normalize: String?

    public var objective: ObjectiveKind = .at
    public var budget: BudgetKind = .cam
    public var generation: GenerationAttack = .pgd
    /// Weight of the KL term of TRADES and MART.
    public var beta: Float = 6
    /// CAM method, layer (nil: the model's default; checked against the model's `camLayers`
    /// when the trainer is made) and map rule of the CAM budget.
    public var cam: CAMMethodName = .gradcam
    public var camLayer: String?
    public var mapRule: MapRuleName = .zscore
    /// Epochs of constant budget before the CAM budget starts (0 for a constant budget).
    public var burnIn = 2
    /// The lowered regions of a region budget (`--regions`, e.g. "top-left=6/255,centre=4/255"),
    /// as given; nil for the other budgets.
    public var regions: String?

    public var epochs = 5
    public var batchSize = 128
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var weightDecay: Float = 2e-4
    public var schedule: ScheduleKind = .piecewise
    /// Epochs (1-based) after which a piecewise schedule multiplies the rate by `gamma`.
    public var milestones: [Int] = []
    public var gamma: Float = 0.1
    public var warmupEpochs = 0

    public var epsilon: Float = 0.1
    public var epsilonLow: Float = 0.0875
    public var stepSize: Float = 0.025
    /// Attack steps when generating training examples.
    public var steps = 10
    /// PGD steps of the per-epoch robustness check (alpha = stepSize, eps = epsilon).
    public var evalSteps = 20
    /// Training images held out for the per-epoch check and `best.safetensors` (0: the check
    /// uses test images and no best checkpoint is kept).
    public var validationSplit = 0
    public var seed: UInt64 = 0
    /// A checkpoint whose weights (and batch-norm statistics) replace the seed's initialisation
    /// (`part train --init`: fine-tuning a trained model); nil for PyTorch's initialisation.
    /// The seed still drives shuffling and attack starts.
    public var initialWeights: String?
    /// The element type of the training step's own forward and backward passes (`TrainingPass`);
    /// attack and CAM passes follow `Engine.attackPrecision` instead. Configurations written
    /// before this setting existed read as fp32.
    @DefaultFP32 public var trainPrecision: PassPrecision = .fp32

    /// Precision of the attack and CAM passes (`--precision`); nil: fp32, or what the command
    /// says. Presets set it; recorded so that a resumed run keeps it.
    public var precision: PassPrecision?
    /// The per-epoch check takes the first ceil(N/K) test images of each of the K classes
    /// instead of the first N (`--balanced`; nil: false). Image folders are sorted by class, so
    /// their first N test images are one class.
    public var balancedCheck: Bool?

    public init() {}

    /// The family's shorthand of this recipe ("part-t"), with "-mma" for MMA generation.
    public var method: String {
        TrainingMethod(objective: objective, budget: budget).rawValue + (budget == .regions ? "-regions" : "")
            + (generation == .pgd ? "" : "-\(generation.rawValue)")
    }

    /// The step of the per-epoch PGD check: `stepSize`, except under single-step generation
    /// (FGSM), whose `stepSize` is the single step's size (1.25 eps by default), where the check
    /// keeps PGD's usual eps / 4.
    public var checkStepSize: Float { generation.singleStep ? epsilon / 4 : stepSize }

    /// Sets objective, budget and generation from a shorthand.
    public mutating func apply(_ method: TrainingMethod) {
        objective = method.objective
        budget = method.budget
        generation = .pgd
    }

    public var learningRateSchedule: LearningRateSchedule {
        LearningRateSchedule(base: learningRate, kind: schedule, milestones: milestones, gamma: gamma,
                             warmupEpochs: warmupEpochs, epochs: epochs)
    }

    /// The learning rate of epoch `epoch` (1-based) after any warm-up.
    public func learningRate(epoch: Int) -> Float { learningRateSchedule.rate(epoch: epoch) }

    /// The configuration as it runs: only a CAM budget has a burn-in.
    public var resolved: TrainingConfig {
        var c = self
        if c.budget != .cam { c.burnIn = 0 }
        return c
    }

    /// A sentence naming the first invalid setting and what to change, nil when all are valid.
    public func problem() -> String? {
        func finite(_ v: Float) -> Bool { v.isFinite }
        if let problem = model == nil ? ModelZoo.problem(architecture) : ONNXTraining.problem(self) { return problem }
        if let normalize, Normalized.parse(normalize) == nil {
            return "--normalize takes \(Normalized.syntax); got '\(messageText(normalize, limit: 80))'"
        }
        // Before the budget's own settings: --regions without --budget regions is the likelier slip.
        if budget != .regions && regions != nil {
            return "--regions lowers eps on regions of a region budget: add --budget regions, or drop --regions"
        }
        if epochs < 1 { return "--epochs must be at least 1" }
        if burnIn < 0 { return "--burn-in must be >= 0" }
        if budget == .cam && burnIn >= epochs {
            return "--burn-in (\(burnIn)) must be smaller than --epochs (\(epochs)) for a CAM budget"
        }
        if batchSize < 1 { return "--batch-size must be at least 1" }
        if let problem = Limits.batchSizeProblem(batchSize) { return problem }
        if !(finite(learningRate) && learningRate > 0) { return "--lr must be a finite number > 0, got \(learningRate)" }
        if !(finite(momentum) && momentum >= 0 && momentum < 1) { return "--momentum must be in [0, 1), got \(momentum)" }
        if !(finite(weightDecay) && weightDecay >= 0) { return "--weight-decay must be a finite number >= 0, got \(weightDecay)" }
        if schedule != .piecewise && !milestones.isEmpty {
            return "--lr-milestones apply to --schedule piecewise; drop them or use --lr-milestones none with \(schedule.rawValue)"
        }
        if schedule == .onecycle && warmupEpochs > 0 {
            return "--schedule onecycle has its own warm-up (up to --lr at 2/5 of the steps); drop --warmup-epochs"
        }
        if let bad = milestones.first(where: { $0 < 1 || $0 >= epochs }) {
            return "--lr-milestones must lie in 1...\(max(epochs - 1, 1)) (a milestone E lowers the rate from epoch E+1), got \(bad)"
        }
        if zip(milestones, milestones.dropFirst()).contains(where: { $0 >= $1 }) {
            return "--lr-milestones must be increasing and unique, got \(milestones.map(String.init).joined(separator: ","))"
        }
        if !(finite(gamma) && gamma > 0 && gamma <= 1) { return "--lr-gamma must be in (0, 1], got \(gamma)" }
        if warmupEpochs < 0 || warmupEpochs >= epochs {
            return "--warmup-epochs must be in 0..<\(epochs) (--epochs), got \(warmupEpochs)"
        }
        if !(finite(epsilon) && epsilon >= 0 && epsilon <= 1) { return "--eps must be in [0, 1], got \(epsilon)" }
        if budget == .cam && !(finite(epsilonLow) && epsilonLow >= 0 && epsilonLow <= epsilon) {
            return "--eps-low must be in [0, eps] (eps = \(epsilon)), got \(epsilonLow)"
        }
        if budget == .regions {
            do {
                _ = try RegionBudget(spec: regions ?? "", epsilon: epsilon)
            } catch {
                return "\(error)"
            }
        }
        if !(finite(stepSize) && stepSize >= 0) { return "--alpha must be a finite number >= 0, got \(stepSize)" }
        if steps < 0 { return "--steps must be >= 0" }
        if evalSteps < 0 { return "--eval-steps must be >= 0" }
        if !(finite(beta) && beta >= 0) { return "--beta must be a finite number >= 0, got \(beta)" }
        if validationSplit < 0 { return "--val-split must be >= 0" }
        if let problem = trainPrecision.problemOnThisCPU(flag: "--train-precision") { return problem }
        return nil
    }
}

/// Precision of a kind of pass, as the command line and `config.json` name it: float32, or
/// bfloat16 through oneDNN on CPUs that have it. Training's own passes (`--train-precision`) and
/// the attack and CAM passes (`--precision`) each have one.
public enum PassPrecision: String, CaseIterable, Codable, Sendable {
    case fp32, bf16

    public var dtype: DType { self == .fp32 ? .f32 : .bf16 }

    /// Why this CPU cannot run passes in this precision, nil when it can; `flag` names the
    /// setting in the sentence.
    public func problemOnThisCPU(flag: String) -> String? {
        guard self == .bf16 && !Engine.supportsBF16 else { return nil }
        return "\(flag) bf16 needs a CPU with AVX-512 BF16 or AMX; this one runs \(Engine.instructionSet): use \(flag) fp32"
    }
}

/// A `PassPrecision` setting that decodes as fp32 when its key is absent (see the
/// `KeyedDecodingContainer` overload below), so that `config.json` and state files of runs
/// made before the setting existed still load, as the fp32 runs they were.
@propertyWrapper
public struct DefaultFP32: Sendable, Codable, Equatable {
    public var wrappedValue: PassPrecision

    public init(wrappedValue: PassPrecision) { self.wrappedValue = wrappedValue }

    public init(from decoder: Decoder) throws {
        wrappedValue = try decoder.singleValueContainer().decode(PassPrecision.self)
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(wrappedValue)
    }
}

extension KeyedDecodingContainer {
    /// Chosen over the generic `decode` by the synthesised `TrainingConfig.init(from:)`: a missing
    /// key is fp32 (a present key must still hold a valid value).
    public func decode(_ type: DefaultFP32.Type, forKey key: Key) throws -> DefaultFP32 {
        try decodeIfPresent(type, forKey: key) ?? DefaultFP32(wrappedValue: .fp32)
    }
}

extension TrainingConfig {
    /// The resolved configuration in a few human-readable lines (printed at the start of a run).
    public func summaryLines(camLayer: String?) -> [String] {
        let c = resolved
        var recipe = "\(c.method): objective \(c.objective.rawValue)"
        if c.objective != .at { recipe += " (beta \(c.beta))" }
        switch c.budget {
        case .constant: recipe += ", constant budget eps \(c.epsilon)"
        case .regions: recipe += ", region budget eps \(c.epsilon) lowered to \(c.regions ?? "")"
        case .cam:
            recipe += ", budget \(c.cam.rawValue) at \(camLayer ?? c.camLayer ?? "the default layer") with the "
                + "\(c.mapRule.rawValue) rule (eps \(c.epsilon), eps-low \(c.epsilonLow)) after \(c.burnIn) burn-in "
                + "epoch\(c.burnIn == 1 ? "" : "s")"
        }
        recipe += c.generation.singleStep ? ", generation \(c.generation) with a random start (alpha \(c.stepSize))"
            : ", generation \(c.generation.rawValue)-\(c.steps) (alpha \(c.stepSize))"
        var optimiser = "SGD lr \(c.learningRate), momentum \(c.momentum), weight decay \(c.weightDecay), batch \(c.batchSize); "
        switch c.schedule {
        case .piecewise:
            optimiser += c.milestones.isEmpty ? "constant rate"
                : "x\(c.gamma) after epoch\(c.milestones.count == 1 ? "" : "s") \(c.milestones.map(String.init).joined(separator: ", "))"
        case .cosine: optimiser += "cosine schedule"
        case .onecycle: optimiser += "one-cycle schedule (peak at 2/5 of the steps)"
        }
        if c.warmupEpochs > 0 { optimiser += ", \(c.warmupEpochs) warm-up epoch\(c.warmupEpochs == 1 ? "" : "s")" }
        optimiser += "; \(c.epochs) epoch\(c.epochs == 1 ? "" : "s"); check pgd-\(c.evalSteps) (alpha \(c.checkStepSize))"
        if c.balancedCheck == true { optimiser += " on class-balanced test images" }
        optimiser += "; training passes in \(c.trainPrecision.rawValue)"
        if let weights = c.initialWeights { optimiser += "; starting from the weights of \(weights)" }
        return [recipe, optimiser]
    }
}

extension TrainingConfig {
    /// `object` (a configuration as JSON) with every field it lacks set to its default, so that
    /// a configuration written before a field was added still decodes (the run it describes ran
    /// with that default). nil when nothing is missing.
    static func fillingDefaults(_ object: [String: Any]) -> [String: Any]? {
        guard let encoded = try? JSONOutput.encoder().encode(TrainingConfig()),
              let defaults = try? JSONSerialization.jsonObject(with: encoded) as? [String: Any],
              defaults.keys.contains(where: { object[$0] == nil }) else { return nil }
        return defaults.merging(object) { _, given in given }
    }

    /// Decodes a configuration of any version of the project (see `fillingDefaults`).
    public static func decodeFillingDefaults(_ data: Data) throws -> TrainingConfig {
        if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           let filled = fillingDefaults(object) {
            return try JSONDecoder().decode(TrainingConfig.self, from: JSONSerialization.data(withJSONObject: filled))
        }
        return try JSONDecoder().decode(TrainingConfig.self, from: data)
    }
}
