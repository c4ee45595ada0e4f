import Foundation
import PARTEngine

/// A training loss of clean logits z and adversarial logits z' with both gradients.
public struct PairedLoss {
    /// The batch loss.
    public let loss: Float
    /// Its two parts (TRADES: natural CE and the KL term before beta; MART: the boosted CE and
    /// the weighted KL term before beta).
    public let parts: (Float, Float)
    /// dL/dz [N, K] and dL/dz' [N, K].
    public let cleanGradient: Tensor
    public let adversarialGradient: Tensor
}

/// TRADES (Zhang et al. 2019), as the official PART code computes it (docs/method.md#5-objectives):
///
///     L = (1/B) sum_i CE(z_i, y_i) + beta * (1/B) sum_i KL(softmax z_i || softmax z'_i)
///
/// Gradients flow into both the clean and the adversarial logits (PyTorch's KLDivLoss
/// differentiates its target too):
///
///     dL/dz'_i = beta/B (q_i - p_i)
///     dL/dz_i  = (p_i - onehot(y_i))/B + beta/B p_ik (log p_ik - log q_ik - KL_i)
public enum TRADESLoss {
    public static func forwardBackward(clean: Tensor, adversarial: Tensor, labels: [Int32], beta: Float) -> PairedLoss {
        precondition(clean.shape.count == 2 && clean.shape == adversarial.shape && clean.shape[0] == labels.count,
                     "TRADES of clean logits \(clean.shape), adversarial \(adversarial.shape), \(labels.count) labels")
        let n = labels.count
        let (ce, ceGradient) = CrossEntropy.perExample(logits: clean, labels: labels)
        var (kl, dAdversarial, dClean) = KLDivergence.perExample(reference: clean, logits: adversarial)
        let scale = 1 / Float(n), weight = beta / Float(n)
        dClean.scale(by: weight)
        dClean.add(ceGradient, scaledBy: scale)
        dAdversarial.scale(by: weight)
        let natural = ce.reduce(0.0) { $0 + Double($1) } / Double(n)
        let robust = kl.reduce(0.0) { $0 + Double($1) } / Double(n)
        return PairedLoss(loss: Float(natural + Double(beta) * robust), parts: (Float(natural), Float(robust)),
                          cleanGradient: dClean, adversarialGradient: dAdversarial)
    }
}

/// MART (Wang et al. 2020), as the official PART code computes it (docs/method.md#5-objectives), with
/// p = softmax z, q = softmax z', y2_i = the most probable class under q_i other than y_i:
///
///     L = (1/B) sum_i [CE(z'_i, y_i) - log(1.0001 - q_i[y2_i] + 1e-12)]
///       + beta * (1/B) sum_i KL_i * (1.0000001 - p_i[y_i]),
///     KL_i = sum_j p_ij (log p_ij - log(q_ij + 1e-12))
///
/// The constants are the float32 values PyTorch uses (1.0001 and 1.0000001 rounded to float).
/// Both gradients are exact derivatives of this L (the weight 1.0000001 - p_y is differentiated
/// too, as in PyTorch where it is not detached).
public enum MARTLoss {
    static let boost = Double(Float(1.0001)) + 1e-12
    static let weightOne = Double(Float(1.0000001))
    static let logOffset = 1e-12

    public static func forwardBackward(clean: Tensor, adversarial: Tensor, labels: [Int32], beta: Float) -> PairedLoss {
        precondition(clean.shape.count == 2 && clean.shape == adversarial.shape && clean.shape[0] == labels.count,
                     "MART of clean logits \(clean.shape), adversarial \(adversarial.shape), \(labels.count) labels")
        let n = labels.count, k = clean.shape[1]
        precondition(k >= 2, "MART needs at least 2 classes")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < k }, "labels must lie in 0..<\(k)")
        var dClean = Tensor.uninitialized(shape: clean.shape)
        var dAdversarial = Tensor.uninitialized(shape: clean.shape)
        var boosted = [Double](repeating: 0, count: n), weighted = [Double](repeating: 0, count: n)
        let z = clean.readPointer, za = adversarial.readPointer
        let gc = dClean.uniquePointer(), ga = dAdversarial.uniquePointer()
        let invB = 1 / Double(n), betaB = Double(beta) / Double(n)
        boosted.withUnsafeMutableBufferPointer { bp in
            weighted.withUnsafeMutableBufferPointer { wp in
                let outBoosted = bp.baseAddress!, outWeighted = wp.baseAddress!
                labels.withUnsafeBufferPointer { lp in
                    let yp = lp.baseAddress!
                    Parallel.forEachIndex(n, cost: k * 32) { b in
                        let row = b * k, y = Int(yp[b])
                        let lseP = Softmax.logSumExp(z + row, k), lseQ = Softmax.logSumExp(za + row, k)
                        var p = [Double](repeating: 0, count: k), q = [Double](repeating: 0, count: k)
                        var logP = [Double](repeating: 0, count: k)
                        for j in 0..<k {
                            logP[j] = Double(z[row + j]) - lseP
                            p[j] = Foundation.exp(logP[j])
                            q[j] = Foundation.exp(Double(za[row + j]) - lseQ)
                        }
                        // y2: the most probable class other than y under q (lowest index on ties),
                        // chosen on the float probabilities as PyTorch's argsort sees them.
                        var y2 = y == 0 ? 1 : 0
                        for j in 0..<k where j != y && Float(q[j]) > Float(q[y2]) { y2 = j }
                        let ce = lseQ - Double(za[row + y])
                        let margin = boost - q[y2]
                        outBoosted[b] = ce - Foundation.log(margin)

                        var kl = 0.0
                        for j in 0..<k where p[j] > 0 { kl += p[j] * (logP[j] - Foundation.log(q[j] + logOffset)) }
                        let w = weightOne - p[y]
                        outWeighted[b] = kl * w

                        // dL/dz': CE, the boost term (through q_y2) and the KL term (through log(q + 1e-12)).
                        var s = 0.0
                        for j in 0..<k { s += p[j] * q[j] / (q[j] + logOffset) }
                        for j in 0..<k {
                            let dCE = q[j] - (j == y ? 1 : 0)
                            let dBoost = q[y2] * ((j == y2 ? 1 : 0) - q[j]) / margin
                            let dKL = -p[j] * q[j] / (q[j] + logOffset) + q[j] * s
                            ga[row + j] = Float(invB * (dCE + dBoost) + betaB * w * dKL)
                        }
                        // dL/dz: h_j = dT/dp_j = w (log p_j + 1 - log(q_j + 1e-12)) - KL [j = y],
                        // then the softmax backward p_k (h_k - sum_j p_j h_j).
                        var h = [Double](repeating: 0, count: k)
                        var dot = 0.0
                        for j in 0..<k {
                            h[j] = p[j] > 0 ? w * (logP[j] + 1 - Foundation.log(q[j] + logOffset)) : 0
                            if j == y { h[j] -= kl }
                            dot += p[j] * h[j]
                        }
                        for j in 0..<k { gc[row + j] = Float(betaB * p[j] * (h[j] - dot)) }
                    }
                }
            }
        }
        let adv = boosted.reduce(0, +) * invB, robust = weighted.reduce(0, +) * invB
        return PairedLoss(loss: Float(adv + Double(beta) * robust), parts: (Float(adv), Float(robust)),
                          cleanGradient: dClean, adversarialGradient: dAdversarial)
    }
}
