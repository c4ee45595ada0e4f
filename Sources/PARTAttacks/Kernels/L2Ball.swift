import PARTEngine

/// The element-wise steps of L2 attacks: a random start inside the ball, normalised gradient
/// steps and the projection back onto {x' : ||x' - x||_2 <= radius} ∩ [0, 1], row by row.
public enum L2Ball {
    /// x + r * radius * n / ||n|| per row, with n ~ N(0, I) and r ~ U(0, 1) drawn from row b's
    /// stream keyed by (seed, purpose, indices[b], step): a point inside the ball whose draw does
    /// not depend on the batch. Not clamped to [0, 1]: call `project` after.
    public static func randomStart(_ x: Tensor, radius: Float, seed: UInt64, indices: [Int], step: Int = 0,
                                   purpose: RandomPurpose = .randomStart) -> Tensor {
        let s = x.readPointer
        return Perturbation.keyedRows(x, seed: seed, indices: indices, step: step, purpose: purpose, cost: 8) { stream, row, d in
            let r = stream.uniform()
            let norm = normalDraws(&stream, into: d, row)
            let scale = norm > 0 ? Float(Double(r * radius) / norm.squareRoot()) : 0
            for i in row { d[i] = s[i] + scale * d[i] }
        }
    }

    /// Fills the entries `row` of d with N(0, 1) draws of `stream`; returns their sum of squares.
    static func normalDraws(_ stream: inout KeyedStream, into d: UnsafeMutablePointer<Float>, _ row: Range<Int>) -> Double {
        var norm = 0.0
        for i in row {
            let v = stream.normal()
            d[i] = v
            norm += Double(v) * Double(v)
        }
        return norm
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

    /// AutoAttack's L2 random start (APGD, and FAB's restarts with `scale` 0.5): per row
    /// clamp(x + scale * radius * n / (||n|| + 1e-12), 0, 1) with n ~ N(0, I) drawn from row b's
    /// stream keyed by (seed, purpose, indices[b], step): a point on the sphere of radius
    /// scale * radius before the clamp.
    public static func sphereStart(_ x: Tensor, radius: Float, scale: Float, seed: UInt64, indices: [Int], step: Int,
                                   purpose: RandomPurpose) -> Tensor {
        let s = x.readPointer
        return Perturbation.keyedRows(x, seed: seed, indices: indices, step: step, purpose: purpose, cost: 8) { stream, row, d in
            let norm = normalDraws(&stream, into: d, row)
            let factor = Float(Double(scale * radius) / (norm.squareRoot() + 1e-12))
            for i in row { d[i] = Swift.min(Swift.max(s[i] + factor * d[i], 0), 1) }
        }
    }

    /// One APGD update in the L2 norm (AutoAttack's L2 rule), per row b with step eta_b * radius:
    ///
    ///     z      = P(x + eta_b radius g / (||g|| + 1e-12))
    ///     x'     = P(x + a (z - x) + (1 - a)(x - x_prev))
    ///     x_prev = x,  x = x'
    ///
    /// with P(v) = clamp(o + (v - o) min(radius, ||v - o||) / (||v - o|| + 1e-12), 0, 1) around the
    /// origin o: the projection onto the ball, then the unit box. A row whose gradient is not
    /// finite takes no gradient step.
    public static func momentumStep(_ x: inout Tensor, previous: inout Tensor, gradient: Tensor, origin: Tensor,
                                    radius: Float, stepSizes: [Float], momentum a: Float) {
        precondition(x.shape == previous.shape && x.shape == gradient.shape && x.shape == origin.shape,
                     "L2 APGD step on mismatched shapes \(x.shape), \(gradient.shape), \(origin.shape)")
        precondition(stepSizes.count == (x.shape.first ?? 0), "\(stepSizes.count) step sizes for \(x.shape.first ?? 0) rows")
        let size = x.rowSize
        let g = gradient.readPointer, o = origin.readPointer
        let xp = x.uniquePointer(), pp = previous.uniquePointer()
        stepSizes.withUnsafeBufferPointer { etas in
            let ep = etas.baseAddress!
            Parallel.forEachIndex(etas.count, cost: size * 8) { b in
                let row = b * size
                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: Swift.max(size, 1))
                defer { scratch.deallocate() }
                var gNorm = 0.0
                for i in row..<(row + size) { gNorm += Double(g[i]) * Double(g[i]) }
                let gFactor = gNorm.isFinite ? Float(Double(ep[b] * radius) / (gNorm.squareRoot() + 1e-12)) : 0
                for j in 0..<size {
                    let step = gFactor == 0 ? 0 : gFactor * g[row + j]
                    scratch[j] = xp[row + j] + step
                }
                projectRow(scratch, origin: o + row, count: size, radius: radius)
                for j in 0..<size {
                    let current = xp[row + j]
                    scratch[j] = current + a * (scratch[j] - current) + (1 - a) * (current - pp[row + j])
                }
                projectRow(scratch, origin: o + row, count: size, radius: radius)
                for j in 0..<size {
                    pp[row + j] = xp[row + j]
                    xp[row + j] = scratch[j]
                }
            }
        }
    }

    /// v = clamp(o + (v - o) min(radius, ||v - o||) / (||v - o|| + 1e-12), 0, 1), in place.
    @inline(__always)
    static func projectRow(_ v: UnsafeMutablePointer<Float>, origin o: UnsafePointer<Float>, count: Int, radius: Float) {
        var norm = 0.0
        for j in 0..<count {
            let d = Double(v[j]) - Double(o[j])
            norm += d * d
        }
        norm = norm.squareRoot()
        let factor = Float(Swift.min(Double(radius), norm) / (norm + 1e-12))
        for j in 0..<count { v[j] = Swift.min(Swift.max(o[j] + (v[j] - o[j]) * factor, 0), 1) }
    }
}
