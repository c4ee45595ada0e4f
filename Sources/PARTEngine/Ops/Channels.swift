/// Ops over the channels of NHWC tensors [N, H, W, C] (positions P = H * W): the per-channel
/// reductions and weightings that pooling, batch norm and class activation maps share.
public enum Channels {
    /// sum over positions: [N, H, W, C] → [N, C].
    public static func sums(_ x: Tensor) -> Tensor {
        productSums(x, nil)
    }

    /// sum over positions of a ⊙ b: [N, H, W, C] x2 → [N, C] (b nil: of a alone).
    public static func productSums(_ a: Tensor, _ b: Tensor?) -> Tensor {
        precondition(a.shape.count == 4, "channel sums need [N, H, W, C], got \(a.shape)")
        if let b { precondition(a.shape == b.shape, "channel product sums of \(a.shape) and \(b.shape)") }
        let n = a.shape[0], hw = a.shape[1] * a.shape[2], c = a.shape[3]
        var out = Tensor(shape: [n, c])
        let x = a.readPointer, y = b?.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(n, cost: hw * c) { i in
            let row = d + i * c
            for p in 0..<hw {
                let px = x + (i * hw + p) * c
                if let y {
                    let py = y + (i * hw + p) * c
                    for k in 0..<c { row[k] += px[k] * py[k] }
                } else {
                    for k in 0..<c { row[k] += px[k] }
                }
            }
        }
        return out
    }

    /// sum over channels of weights[n, k] * x[n, p, k]: [N, H, W, C] with [N, C] → [N, H, W].
    public static func weightedSum(_ x: Tensor, weights: Tensor) -> Tensor {
        precondition(x.shape.count == 4 && weights.shape == [x.shape[0], x.shape[3]],
                     "weighted channel sum of \(x.shape) with weights \(weights.shape)")
        let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
        var out = Tensor.uninitialized(shape: [n, x.shape[1], x.shape[2]])
        let s = x.readPointer, w = weights.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(n * hw, cost: c) { q in
            let px = s + q * c, wr = w + (q / hw) * c
            var acc: Float = 0
            for k in 0..<c { acc += wr[k] * px[k] }
            d[q] = acc
        }
        return out
    }

    /// x[..., k] * factors[k] for every position: a per-channel scale of [..., C].
    public static func scaled(_ x: Tensor, by factors: [Float]) -> Tensor {
        combined(x, factors, "per-channel scale") { $0 * $1 }
    }

    /// f(x[..., k], values[k]) for every position of [..., C], positions spread over the workers.
    public static func combined(_ x: Tensor, _ values: [Float], _ what: String, _ f: (Float, Float) -> Float) -> Tensor {
        let c = values.count
        precondition(x.shape.last == c, "\(what) of \(x.shape) with \(c) channels")
        var out = Tensor.uninitialized(shape: x.shape)
        let s = x.readPointer, d = out.uniquePointer()
        values.withUnsafeBufferPointer { v in
            let vp = v.baseAddress!
            Parallel.forEachIndex(x.count / Swift.max(c, 1), cost: c) { p in
                for k in 0..<c { d[p * c + k] = f(s[p * c + k], vp[k]) }
            }
        }
        return out
    }
}

extension Tensor {
    /// self = (1 - weight) * self + weight * factor * other: the running-average update of
    /// batch-norm statistics.
    public mutating func blend(toward other: Tensor, weight: Float, factor: Float = 1) {
        precondition(shape == other.shape, "cannot blend \(shape) toward \(other.shape)")
        let s = other.readPointer, d = uniquePointer()
        Parallel.forEach(count) { r in
            for i in r { d[i] = (1 - weight) * d[i] + weight * factor * s[i] }
        }
    }
}
