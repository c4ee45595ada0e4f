import PARTEngine

/// Carlini-Wagner margin max_{j != y} z_j - z_y (docs/method.md#4-attacks's "CW-inf" loss); ascending it
/// pushes the best wrong class above the true one.
public struct CWMarginLoss: AttackLoss {
    public init() {}
    public var name: String { "cw" }

    public func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
        Margins.cw(logits: logits, labels: batch.labels)
    }
}

/// Difference of Logits Ratio (Croce & Hein 2020): untargeted without targets (3 classes or
/// more), targeted with them (4 classes or more). Attacks substitute CE below those counts
/// (docs/conventions.md#3-epsilon-maps-in-attacks); this loss refuses them with a clear error.
public struct DLRLoss: AttackLoss {
    public init() {}
    public var name: String { "dlr" }

    public func evaluate(logits: Tensor, batch: AttackBatch, targets: [Int32]?) throws -> (values: [Float], gradient: Tensor) {
        let k = logits.shape[1]
        if let targets {
            guard k >= 4 else { throw AttackError("targeted DLR needs at least 4 classes, the model has \(k)") }
            return Margins.targetedDLR(logits: logits, labels: batch.labels, targets: targets)
        }
        guard k >= 3 else { throw AttackError("DLR needs at least 3 classes, the model has \(k)") }
        return Margins.dlr(logits: logits, labels: batch.labels)
    }
}
