import PARTAttacks
import PARTEngine
import PARTNN

/// A training objective: how adversarial examples are generated and what loss trains on them
/// (AT now; TRADES and MART pair other generation and training losses behind the same protocol).
public protocol Objective {
    var name: String { get }
    /// Training examples for a batch under its budget (model in evaluation mode); random draws
    /// are keyed by (seed, each row's dataset index).
    func adversarialExamples(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor
    /// Runs the training-mode forward and backward, adding dL/dθ into the parameters' gradients;
    /// returns the batch loss and how many adversarial examples the model got right.
    func accumulateGradients(_ model: ImageClassifier, images: Tensor, adversarial: Tensor, labels: [Int32]) throws
        -> (loss: Float, correct: Int)
}

/// Madry et al.'s adversarial training: CE(f(x'), y) with x' from PGD on CE.
public struct AdversarialTraining: Objective {
    public let attack: Attack
    public init(attack: Attack) { self.attack = attack }
    public var name: String { "at" }

    public func adversarialExamples(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
        try attack.perturb(model, batch, seed: seed)
    }

    public func accumulateGradients(_ model: ImageClassifier, images: Tensor, adversarial: Tensor, labels: [Int32]) throws
        -> (loss: Float, correct: Int) {
        let tape = Tape(parameterGradients: true, inputGradient: false)
        let logits = try model.forward(adversarial, mode: .train, tape: tape)
        let (loss, gradient) = CrossEntropy.forwardBackward(logits: logits, labels: labels)
        try tape.backward(gradient)
        return (loss, zip(logits.argmaxRows(), labels).filter { $0 == $1 }.count)
    }
}
