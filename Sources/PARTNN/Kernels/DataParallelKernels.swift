import PARTEngine

// Element-wise work of data-parallel training: per-channel moments of synchronised batch norm
// and its input gradient, and the packing of many gradients into the one buffer a step
// all-reduces.

extension Channels {
    /// Rows of one partial sum: fixed, so the sums do not depend on the thread count.
    private static let momentRows = 256

    /// Per-channel sums over every position of every image, in Double:
    /// (sum of a, sum of a ⊙ b), with b = a when nil. `a`, `b`: [..., C] f32 of one shape.
    ///
    /// Partial sums over fixed blocks of rows are added in block order, so the result is the
    /// same for every thread count.
    public static func moments(_ a: Tensor, _ b: Tensor? = nil) -> (sum: [Double], productSum: [Double]) {
        let c = a.shape.last ?? 0
        if let b { precondition(a.shape == b.shape, "channel moments of \(a.shape) and \(b.shape)") }
        guard c > 0, a.count > 0 else { return ([Double](repeating: 0, count: c), [Double](repeating: 0, count: c)) }
        let rows = a.count / c
        let blocks = (rows + momentRows - 1) / momentRows
        var partial = [Double](repeating: 0, count: blocks * 2 * c)
        let x = a.readPointer, y = (b ?? a).readPointer
        partial.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            Parallel.forEachIndex(blocks, cost: momentRows * c) { block in
                let s = base + block * 2 * c, p = s + c
                for row in block * momentRows ..< Swift.min(rows, (block + 1) * momentRows) {
                    let px = x + row * c, py = y + row * c
                    for k in 0..<c {
                        let v = Double(px[k])
                        s[k] += v
                        p[k] += v * Double(py[k])
                    }
                }
            }
        }
        var sum = [Double](repeating: 0, count: c), productSum = [Double](repeating: 0, count: c)
        for block in 0..<blocks {
            for k in 0..<c {
                sum[k] += partial[block * 2 * c + k]
                productSum[k] += partial[block * 2 * c + c + k]
            }
        }
        return (sum, productSum)
    }

    /// a[k] * dy + b[k] * x + c[k] per channel k: the input gradient of synchronised batch norm,
    /// whose statistics (and so the coefficients) come from every rank. `dy`, `x`: [..., C].
    public static func affineCombination(_ dy: Tensor, _ x: Tensor, a: [Float], b: [Float], c: [Float]) -> Tensor {
        let channels = a.count
        precondition(dy.shape == x.shape && x.shape.last == channels && b.count == channels && c.count == channels,
                     "affine combination of \(dy.shape) and \(x.shape) with \(channels) coefficients")
        var out = Tensor.uninitialized(shape: x.shape)
        let g = dy.readPointer, s = x.readPointer, d = out.uniquePointer()
        a.withUnsafeBufferPointer { ap in
            b.withUnsafeBufferPointer { bp in
                c.withUnsafeBufferPointer { cp in
                    let pa = ap.baseAddress!, pb = bp.baseAddress!, pc = cp.baseAddress!
                    Parallel.forEachIndex(x.count / Swift.max(channels, 1), cost: channels) { row in
                        let o = row * channels
                        for k in 0..<channels { d[o + k] = pa[k] * g[o + k] + pb[k] * s[o + k] + pc[k] }
                    }
                }
            }
        }
        return out
    }
}

/// Many tensors laid end to end in one Float buffer, so that a training step sends one
/// collective instead of one per tensor (the "fused buffer" of Horovod and PyTorch DDP).
public enum FusedBuffer {
    /// The tensors' elements in order, each multiplied by `scale`, followed by `extra`.
    public static func pack(_ tensors: [Tensor], scale: Float, extra: [Float] = []) -> [Float] {
        let total = tensors.reduce(0) { $0 + $1.count }
        var buffer = [Float](repeating: 0, count: total + extra.count)
        buffer.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for t in tensors {
                let s = t.readPointer, d = out.baseAddress! + offset
                Parallel.forEach(t.count) { r in for i in r { d[i] = scale * s[i] } }
                offset += t.count
            }
            for (i, v) in extra.enumerated() { out[offset + i] = v }
        }
        return buffer
    }

    /// Copies consecutive slices of `buffer` back into `tensors` (their shapes unchanged) and
    /// returns what follows them.
    public static func unpack(_ buffer: [Float], into tensors: inout [Tensor]) -> [Float] {
        var offset = 0
        buffer.withUnsafeBufferPointer { src in
            for i in tensors.indices {
                let n = tensors[i].count
                precondition(offset + n <= buffer.count, "fused buffer of \(buffer.count) values is too short")
                let s = src.baseAddress! + offset, d = tensors[i].uniquePointer()
                Parallel.forEach(n) { r in for j in r { d[j] = s[j] } }
                offset += n
            }
        }
        return Array(buffer[offset...])
    }
}
