import PARTEngine

/// The element-wise steps of L2 attacks: a random start inside the ball, normalised gradient
/// steps and the projection back onto {x' : ||x' - x||_2 <= radius} ∩ [0, 1], row by row.
public enum L2Ball {
    /// x + r * radius * n / ||n|| per row, with n ~ N(0, I) and r ~ U(0, 1) drawn from row b's
    /// stream keyed by (seed, purpose, indices[b], step): a point inside the ball whose draw does
    /// not depend on the batch. Not clamped to [0, 1]: call `project` after.
    public static func randomStart(_ x: Tensor, radius: Float, seed: UInt64, indices: [Int], step: Int = 0,
                                   purpose: RandomPurpose = .randomStart) -> Tensor {
        precondition(indices.count == (x.shape.first ?? 0), "\(indices.count) indices for \(x.shape.first ?? 0) rows")
        let size = x.rowSize
        var out = Tensor.uninitialized(shape: x.shape)
        let s = x.readPointer, d = out.uniquePointer()
        indices.withUnsafeBufferPointer { idx in
            let ip = idx.baseAddress!
            Parallel.forEachIndex(idx.count, cost: size * 8) { b in
                var stream = KeyedStream(seed: seed, purpose: purpose, index: ip[b], step: step)
                let r = stream.uniform()
                var norm = 0.0
                for i in (b * size)..<((b + 1) * size) {
                    let v = stream.normal()
                    d[i] = v
                    norm += Double(v) * Double(v)
                }
                let scale = norm > 0 ? Float(Double(r * radius) / norm.squareRoot()) : 0
                for i in (b * size)..<((b + 1) * size) { d[i] = s[i] + scale * d[i] }
            }
        }
        return out
    }

    /// x += alpha * g / (||g||_2 + 1e-10) per row (torchattacks' L2 step).
    public static func normalizedStep(_ x: inout Tensor, gradient: Tensor, alpha: Float) {
        precondition(x.shape == gradient.shape, "L2 step of \(x.shape) with a gradient \(gradient.shape)")
        let norms = gradient.rowNorms()
        var g = gradient
        g.scaleRows(by: norms.map { alpha / ($0 + 1e-10) })
        x.add(g)
    }

    /// Projects x onto the L2 ball of `radius` around `origin` (per row), then clamps to [0, 1].
    /// A zero radius returns the origin bit for bit.
    public static func project(_ x: inout Tensor, around origin: Tensor, radius: Float) {
        precondition(x.shape == origin.shape, "L2 projection of \(x.shape) around \(origin.shape)")
        if radius == 0 {
            x = origin
            return
        }
        var delta = Tensor.difference(x, origin)
        let norms = delta.rowNorms()
        delta.scaleRows(by: norms.map { $0 > radius ? radius / $0 : 1 })
        var out = origin
        out.add(delta)
        out.clamp(0, 1)
        x = out
    }

    /// Per row: whether ||x - origin||_2 <= radius (with a relative slack of `tolerance`) and
    /// every entry lies in [0, 1]: the re-verification of L2 attacks.
    public static func rowsInside(_ x: Tensor, origin: Tensor, radius: Float, tolerance: Float = 1e-5) -> [Bool] {
        precondition(x.shape == origin.shape)
        let norms = Tensor.difference(x, origin).rowNorms()
        let boxed = Perturbation.rowsInside(x, origin: x, map: Tensor(shape: x.shape))
        return zip(norms, boxed).map { $0 <= radius * (1 + tolerance) + 1e-7 && $1 }
    }
}
