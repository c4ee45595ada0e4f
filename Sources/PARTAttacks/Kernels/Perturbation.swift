import PARTEngine

/// The element-wise steps of L-inf attacks under an epsilon map (docs/method.md#1-threat-model-and-epsilon-maps): sign
/// steps, projection onto the map's box intersected with [0, 1], keyed random starts.
public enum Perturbation {
    /// x += alpha * sign(gradient) (a zero gradient entry does not move).
    public static func signStep(_ x: inout Tensor, gradient: Tensor, alpha: Float) {
        precondition(x.shape == gradient.shape, "sign step of \(x.shape) with a gradient \(gradient.shape)")
        let g = gradient.readPointer, d = x.uniquePointer()
        Parallel.forEach(x.count) { r in
            for i in r { d[i] += g[i] > 0 ? alpha : (g[i] < 0 ? -alpha : 0) }
        }
    }

    /// x += rowAlpha[row] * map * sign(gradient): steps measured in units of each entry's
    /// budget (docs/conventions.md#3-epsilon-maps-in-attacks: a step of "2 eps" is 2 * map per entry).
    public static func signStep(_ x: inout Tensor, gradient: Tensor, rowAlpha: [Float], map: Tensor) {
        precondition(x.shape == gradient.shape && x.shape == map.shape,
                     "sign step of \(x.shape) with a gradient \(gradient.shape) and a map \(map.shape)")
        precondition(rowAlpha.count == x.shape[0], "\(rowAlpha.count) step sizes for \(x.shape[0]) rows")
        let size = x.rowSize
        let g = gradient.readPointer, e = map.readPointer, d = x.uniquePointer()
        rowAlpha.withUnsafeBufferPointer { a in
            let ap = a.baseAddress!
            Parallel.forEachIndex(a.count, cost: size) { b in
                let step = ap[b]
                for i in (b * size)..<((b + 1) * size) {
                    d[i] += g[i] > 0 ? step * e[i] : (g[i] < 0 ? -step * e[i] : 0)
                }
            }
        }
    }

    /// Projects x onto {x' : |x' - origin| <= map} ∩ [0, 1], in place: always around the
    /// original input, never the last iterate. Entries whose budget is 0 come back to the
    /// origin bit for bit.
    public static func project(_ x: inout Tensor, around origin: Tensor, map: Tensor) {
        precondition(x.shape == origin.shape && x.shape == map.shape,
                     "projection of \(x.shape) around \(origin.shape) with a map \(map.shape)")
        let o = origin.readPointer, e = map.readPointer, d = x.uniquePointer()
        Parallel.forEach(x.count) { r in
            for i in r {
                let lo = Swift.max(o[i] - e[i], 0), hi = Swift.min(o[i] + e[i], 1)
                // max/min order keeps a zero budget exact: lo = hi = o.
                d[i] = e[i] == 0 ? o[i] : Swift.min(Swift.max(d[i], lo), hi)
            }
        }
    }

    /// x + map ⊙ U(-1, 1), the uniform random start, with row b's draws from the keyed stream
    /// (seed, purpose, indices[b], step): a row's start depends on its dataset index alone, not
    /// on the batch it sits in. Not projected: call `project` after.
    public static func uniformStart(_ x: Tensor, map: Tensor, seed: UInt64, indices: [Int], step: Int = 0,
                                    purpose: RandomPurpose = .randomStart) -> Tensor {
        precondition(x.shape == map.shape, "random start of \(x.shape) with a map \(map.shape)")
        let s = x.readPointer, e = map.readPointer
        return keyedRows(x, seed: seed, indices: indices, step: step, purpose: purpose, cost: 4) { stream, row, d in
            for i in row { d[i] = s[i] + e[i] * stream.symmetricUniform() }
        }
    }

    /// x + sigma * N(0, 1) with row b's draws keyed by (seed, purpose, indices[b], step)
    /// (TRADES and MART start their generation at x + 0.001 N(0, 1)). Not projected.
    public static func gaussianStart(_ x: Tensor, sigma: Float, seed: UInt64, indices: [Int], step: Int = 0,
                                     purpose: RandomPurpose = .startNoise) -> Tensor {
        let s = x.readPointer
        return keyedRows(x, seed: seed, indices: indices, step: step, purpose: purpose, cost: 8) { stream, row, d in
            for i in row { d[i] = s[i] + sigma * stream.normal() }
        }
    }

    /// A tensor of x's shape written row by row in parallel: `fill(&stream, row, out)` writes the
    /// entries `row` of row b of `out`, drawing from the stream keyed by (seed, purpose, indices[b],
    /// step). The frame of every keyed random start (L-inf, L2 and APGD's), so a row's draws
    /// depend on its dataset index alone, not on the batch it sits in. `cost`: work per entry.
    static func keyedRows(_ x: Tensor, seed: UInt64, indices: [Int], step: Int, purpose: RandomPurpose, cost: Int,
                          _ fill: (inout KeyedStream, Range<Int>, UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        precondition(indices.count == (x.shape.first ?? 0), "\(indices.count) indices for \(x.shape.first ?? 0) rows")
        let size = x.rowSize
        var out = Tensor.uninitialized(shape: x.shape)
        let d = out.uniquePointer()
        indices.withUnsafeBufferPointer { idx in
            Parallel.forEachIndex(idx.count, cost: size * cost) { b in
                var stream = KeyedStream(seed: seed, purpose: purpose, index: idx[b], step: step)
                fill(&stream, (b * size)..<((b + 1) * size), d)
            }
        }
        return out
    }

    /// Whether every entry of x lies inside the map around origin (with a relative slack of
    /// `tolerance` for rounding) and inside [0, 1], per row: the re-verification of attacks.
    public static func rowsInside(_ x: Tensor, origin: Tensor, map: Tensor, tolerance: Float = 1e-6) -> [Bool] {
        precondition(x.shape == origin.shape && x.shape == map.shape)
        let size = x.rowSize
        let o = origin.readPointer, e = map.readPointer
        return x.rowReduce { p, n in
            let b = (p - x.readPointer) / Swift.max(size, 1)
            for j in 0..<n {
                let i = b * size + j
                if !(p[j] >= 0 && p[j] <= 1) { return false }
                if Swift.abs(p[j] - o[i]) > e[i] * (1 + tolerance) + tolerance * 1e-3 { return false }
            }
            return true
        }
    }

    /// Fraction of entries whose budget is at least `epsilon` (the "full eps" share).
    public static func fraction(of map: Tensor, atLeast epsilon: Float) -> Double {
        guard map.count > 0 else { return 0 }
        let p = map.readPointer
        let n = Parallel.sum(map.count) { r in
            var c = 0
            for i in r where p[i] >= epsilon { c += 1 }
            return Double(c)
        }
        return n / Double(map.count)
    }
}
