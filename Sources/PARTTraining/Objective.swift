import PARTAttacks
import PARTEngine
import PARTNN

/// Where generation starts.
public enum GenerationStart: Sendable, Equatable {
    /// x + map ⊙ U(-1, 1), projected (PGD's random start; AT).
    case uniform
    /// x + sigma N(0, 1), not projected before the first step (TRADES and MART).
    case gaussian(sigma: Float)
}

/// What PGD generation ascends and where it starts.
public struct GenerationRecipe {
    public let loss: AttackLoss
    public let start: GenerationStart
    /// Whether the loss compares against the clean logits (`AttackBatch.reference`).
    public let needsReference: Bool
}

/// The outcome of one training step.
public struct ObjectiveStep {
    /// The batch loss.
    public let loss: Float
    /// How many adversarial examples the model (in training mode) classified correctly.
    public let correct: Int
}

/// A training objective: the generation loss and start of its adversarial examples, and the
/// training loss on them (docs/architecture.md#training-is-objective-x-budget-x-generation).
public protocol Objective {
    var name: String { get }
    var generation: GenerationRecipe { get }
    /// Runs the training-mode forward and backward passes, adding dL/dθ into the parameters'
    /// gradients; `clean` and `adversarial` are [N, H, W, C] (f32). `precision` is the type of
    /// the passes inside the model (`TrainingPass`); the loss and the gradients are f32 either way.
    func accumulateGradients(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32],
                             precision: DType) throws -> ObjectiveStep
}

extension Objective {
    /// The step with f32 passes.
    public func accumulateGradients(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32]) throws
        -> ObjectiveStep {
        try accumulateGradients(model, clean: clean, adversarial: adversarial, labels: labels, precision: .f32)
    }
}

/// How training steps run the model: training mode, parameter gradients, in f32 or in bf16
/// (`--train-precision`), with f32 images, logits and loss at the boundary.
///
/// In bf16 the semantics are PyTorch's `torch.autocast("cpu", dtype=torch.bfloat16)`:
/// convolutions and linear layers read their input and their weights rounded to bf16 (each
/// weight is converted once per optimiser step, into the kernel's layout) and write bf16;
/// batch norm, ReLU, pooling and residual sums run in the bf16 type of their input (batch norm
/// computing in f32 with f32 parameters and f32 running statistics); the logits are widened to
/// f32 and the loss runs in f32. The weight gradients come out of oneDNN's backward-weights
/// kernels in f32 and are added to the f32 master weights' gradients; the optimiser never sees
/// bf16. (TRADES' and MART's softmaxes therefore run in f32, where autocast on the CPU would
/// leave them in bf16.)
public enum TrainingPass {
    /// Logits [N, K] (f32) of `images` in training mode, recorded on `tape`, whose backward then
    /// takes the f32 gradient of the logits.
    public static func logits(_ model: ImageClassifier, _ images: Tensor, tape: Tape, precision: DType) throws -> Tensor {
        let output = try model.forward(try images.converted(to: precision), mode: .train, tape: tape)
        let type = output.dtype
        if type != .f32 { tape.record { try $0.converted(to: type) } }
        return try output.converted(to: .f32)
    }
}

extension ObjectiveKind {
    /// The objective, with `beta` weighting the KL term of TRADES and MART.
    public func make(beta: Float) -> Objective {
        switch self {
        case .at: return AdversarialTraining()
        case .trades: return TRADES(beta: beta)
        case .mart: return MART(beta: beta)
        }
    }
}

/// The start noise of TRADES and MART generation (docs/method.md#4-attacks).
let startNoiseSigma: Float = 0.001

private func correctCount(_ logits: Tensor, _ labels: [Int32]) -> Int {
    zip(logits.argmaxRows(), labels).filter { $0 == $1 }.count
}

/// Madry et al.'s adversarial training: CE(f(x'), y), x' ascending CE from a uniform start.
public struct AdversarialTraining: Objective {
    public init() {}
    public var name: String { "at" }
    public var generation: GenerationRecipe {
        GenerationRecipe(loss: CrossEntropyLoss(), start: .uniform, needsReference: false)
    }

    public func accumulateGradients(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32],
                                    precision: DType) throws -> ObjectiveStep {
        let tape = Tape(parameterGradients: true, inputGradient: false)
        let logits = try TrainingPass.logits(model, adversarial, tape: tape, precision: precision)
        let (loss, gradient) = CrossEntropy.forwardBackward(logits: logits, labels: labels)
        try tape.backward(gradient)
        return ObjectiveStep(loss: loss, correct: correctCount(logits, labels))
    }
}

/// Runs clean and adversarial training-mode forwards (clean first, as the reference code),
/// evaluates a loss of both logits and back-propagates each gradient through its own tape.
private func pairedStep(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32], precision: DType,
                        loss: (Tensor, Tensor) -> PairedLoss) throws -> ObjectiveStep {
    let cleanTape = Tape(parameterGradients: true, inputGradient: false)
    let cleanLogits = try TrainingPass.logits(model, clean, tape: cleanTape, precision: precision)
    let adversarialTape = Tape(parameterGradients: true, inputGradient: false)
    let adversarialLogits = try TrainingPass.logits(model, adversarial, tape: adversarialTape, precision: precision)
    let result = loss(cleanLogits, adversarialLogits)
    try adversarialTape.backward(result.adversarialGradient)
    try cleanTape.backward(result.cleanGradient)
    return ObjectiveStep(loss: result.loss, correct: correctCount(adversarialLogits, labels))
}

/// TRADES (Zhang et al. 2019): CE(f(x), y) + beta KL(f(x) || f(x')) (`TRADESLoss`), x' ascending
/// the KL divergence from x + 0.001 N(0, 1).
///
/// The clean batch goes through the model once in training mode (the reference code runs it
/// twice, with identical outputs; only batch-norm running statistics see it once more there).
public struct TRADES: Objective {
    public let beta: Float
    public init(beta: Float) { self.beta = beta }
    public var name: String { "trades" }
    public var generation: GenerationRecipe {
        GenerationRecipe(loss: KLDivergenceLoss(), start: .gaussian(sigma: startNoiseSigma), needsReference: true)
    }

    public func accumulateGradients(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32],
                                    precision: DType) throws -> ObjectiveStep {
        try pairedStep(model, clean: clean, adversarial: adversarial, labels: labels, precision: precision) {
            TRADESLoss.forwardBackward(clean: $0, adversarial: $1, labels: labels, beta: beta)
        }
    }
}

/// MART (Wang et al. 2020): boosted CE of f(x') + beta KL(f(x) || f(x')) (1 - p_y) (`MARTLoss`),
/// x' ascending CE from x + 0.001 N(0, 1).
public struct MART: Objective {
    public let beta: Float
    public init(beta: Float) { self.beta = beta }
    public var name: String { "mart" }
    public var generation: GenerationRecipe {
        GenerationRecipe(loss: CrossEntropyLoss(), start: .gaussian(sigma: startNoiseSigma), needsReference: false)
    }

    public func accumulateGradients(_ model: ImageClassifier, clean: Tensor, adversarial: Tensor, labels: [Int32],
                                    precision: DType) throws -> ObjectiveStep {
        try pairedStep(model, clean: clean, adversarial: adversarial, labels: labels, precision: precision) {
            MARTLoss.forwardBackward(clean: $0, adversarial: $1, labels: labels, beta: beta)
        }
    }
}
