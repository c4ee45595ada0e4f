import PARTEngine

/// KL(softmax f(x) || softmax f(x')) of each row against the batch's clean logits
/// (`AttackBatch.reference`): the loss TRADES generation ascends (docs/method.md#4-attacks). Its gradient
/// with respect to the adversarial logits is softmax f(x') - softmax f(x).
///
/// At x' = x the divergence and its gradient are zero, which is why TRADES starts from
/// x + 0.001 N(0, 1) rather than from x.
public struct KLDivergenceLoss: AttackLoss {
    public init() {}
    public var name: String { "kl" }

    public func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
        guard let reference = batch.reference else {
            throw AttackError("the KL loss compares against clean logits: the batch carries no reference logits")
        }
        guard reference.shape == logits.shape else {
            throw AttackError("reference logits have shape \(reference.shape), the model gives \(logits.shape)")
        }
        let r = KLDivergence.perExample(reference: reference, logits: logits)
        return (r.values, r.logitsGradient)
    }
}
