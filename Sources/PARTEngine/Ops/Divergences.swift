import Foundation

// Backward passes of softmax and log-softmax, and the Kullback-Leibler divergence between the
// softmax distributions of two rows of logits, with both gradients. Rows are independent and
// spread over the workers; inside a row the arithmetic is double precision.

extension Softmax {
    /// dL/dz from dL/dp for p = softmax(z), row by row: dz_k = p_k (g_k - sum_j g_j p_j).
    /// - Parameters: `probabilities` p [N, K] (the forward's output), `gradient` dL/dp [N, K].
    public static func backward(probabilities p: Tensor, gradient g: Tensor) -> Tensor {
        rowBackward(p, g, "softmax", term: { g, p in g * p }, element: { g, p, dot in p * (g - dot) })
    }

    /// dL/dz from dL/d(log p) for log p = log_softmax(z), row by row: dz_k = g_k - p_k sum_j g_j.
    /// - Parameters: `probabilities` p = softmax(z) [N, K], `gradient` dL/d(log p) [N, K].
    public static func logBackward(probabilities p: Tensor, gradient g: Tensor) -> Tensor {
        rowBackward(p, g, "log-softmax", term: { g, _ in g }, element: { g, p, total in g - p * total })
    }

    /// Per row: s = sum_j term(g_j, p_j), then dz_k = element(g_k, p_k, s), in double precision.
    private static func rowBackward(_ p: Tensor, _ g: Tensor, _ name: String, term: (Double, Double) -> Double,
                                    element: (Double, Double, Double) -> Double) -> Tensor {
        precondition(p.shape.count == 2 && p.shape == g.shape, "\(name) backward of \(p.shape) with \(g.shape)")
        let k = p.shape[1]
        var out = Tensor.uninitialized(shape: p.shape)
        let pp = p.readPointer, gp = g.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(p.shape[0], cost: k * 4) { b in
            let row = b * k
            var sum = 0.0
            for j in 0..<k { sum += term(Double(gp[row + j]), Double(pp[row + j])) }
            for j in 0..<k { d[row + j] = Float(element(Double(gp[row + j]), Double(pp[row + j]), sum)) }
        }
        return out
    }
}

/// KL(softmax(reference) || softmax(logits)) per row: TRADES' robust term and its generation
/// loss (as PyTorch's `KLDivLoss(log_softmax(logits), softmax(reference))`, summed over classes).
public enum KLDivergence {
    /// Per-row divergences KL_i = sum_j p_ij (log p_ij - log q_ij), p = softmax(reference),
    /// q = softmax(logits), and both gradients of KL_i:
    ///
    ///     d KL_i / d logits_i    = q_i - p_i
    ///     d KL_i / d reference_i = p_ik (log p_ik - log q_ik - KL_i)
    ///
    /// A class with p = 0 contributes 0 (the convention 0 log 0 = 0, as PyTorch).
    public static func perExample(reference: Tensor, logits: Tensor)
        -> (values: [Float], logitsGradient: Tensor, referenceGradient: Tensor) {
        precondition(reference.shape.count == 2 && reference.shape == logits.shape,
                     "KL divergence of logits \(logits.shape) against a reference \(reference.shape)")
        let n = logits.shape[0], k = logits.shape[1]
        var values = [Float](repeating: 0, count: n)
        var dLogits = Tensor.uninitialized(shape: logits.shape)
        var dReference = Tensor.uninitialized(shape: logits.shape)
        let zr = reference.readPointer, za = logits.readPointer
        let gl = dLogits.uniquePointer(), gr = dReference.uniquePointer()
        values.withUnsafeMutableBufferPointer { vp in
            let v = vp.baseAddress!
            Parallel.forEachIndex(n, cost: k * 16) { b in
                let row = b * k
                let lseP = Softmax.logSumExp(zr + row, k), lseQ = Softmax.logSumExp(za + row, k)
                var kl = 0.0
                for j in 0..<k {
                    let logP = Double(zr[row + j]) - lseP, logQ = Double(za[row + j]) - lseQ
                    let p = Foundation.exp(logP)
                    if p > 0 { kl += p * (logP - logQ) }
                }
                for j in 0..<k {
                    let logP = Double(zr[row + j]) - lseP, logQ = Double(za[row + j]) - lseQ
                    let p = Foundation.exp(logP), q = Foundation.exp(logQ)
                    gl[row + j] = Float(q - p)
                    gr[row + j] = p > 0 ? Float(p * (logP - logQ - kl)) : 0
                }
                v[b] = Float(kl)
            }
        }
        return (values, dLogits, dReference)
    }
}
