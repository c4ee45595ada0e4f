import PARTEngine

/// The element-wise steps of APGD (Croce & Hein 2020, Algorithm 1) under an epsilon map, and
/// the row bookkeeping attacks that keep a best point per example need.
///
/// Every step works in delta/eps coordinates (docs/conventions.md#3-epsilon-maps-in-attacks): a step of "eta" moves an
/// entry by eta * map, and projection is onto [x - map, x + map] ∩ [0, 1] around the original
/// input. Entries whose budget is 0 come back to the original bit for bit.
public enum APGDKernels {
    /// The random start of APGD and FAB: x + scale * map ⊙ t / max|t| with t ~ U(-1, 1) per entry
    /// and the maximum taken over the row, clamped to [0, 1] (the normalisation puts at least one
    /// entry on the edge of its budget, as the reference implementations do). Row b draws from the
    /// keyed stream (seed, purpose, indices[b], step), so its start does not depend on the batch.
    public static func normalizedUniformStart(_ x: Tensor, map: Tensor, scale: Float, seed: UInt64, indices: [Int],
                                              step: Int, purpose: RandomPurpose) -> Tensor {
        precondition(x.shape == map.shape, "random start of \(x.shape) with a map \(map.shape)")
        let s = x.readPointer, e = map.readPointer
        return Perturbation.keyedRows(x, seed: seed, indices: indices, step: step, purpose: purpose, cost: 4) { stream, row, d in
            var largest: Float = 0
            for i in row {
                let t = stream.symmetricUniform()
                d[i] = t
                largest = Swift.max(largest, Swift.abs(t))
            }
            let factor = largest > 0 ? scale / largest : 0
            for i in row { d[i] = e[i] == 0 ? s[i] : Swift.min(Swift.max(s[i] + e[i] * (d[i] * factor), 0), 1) }
        }
    }

    /// One APGD update with momentum, per entry of row b (eta_b = stepSizes[b], m = map):
    ///
    ///     z      = P(x + eta_b * m * sign(g))
    ///     x'     = P(x + a (z - x) + (1 - a)(x - x_prev))
    ///     x_prev = x,  x = x'
    ///
    /// with P the projection onto [origin - m, origin + m] ∩ [0, 1] and a the momentum weight
    /// (1 on the first iteration, 0.75 after). sign(0) = 0, and a non-finite gradient entry does
    /// not move its entry.
    public static func momentumStep(_ x: inout Tensor, previous: inout Tensor, gradient: Tensor, origin: Tensor,
                                    map: Tensor, stepSizes: [Float], momentum a: Float) {
        precondition(x.shape == previous.shape && x.shape == gradient.shape && x.shape == origin.shape
                     && x.shape == map.shape, "APGD step on mismatched shapes \(x.shape), \(gradient.shape), \(map.shape)")
        precondition(stepSizes.count == (x.shape.first ?? 0), "\(stepSizes.count) step sizes for \(x.shape.first ?? 0) rows")
        let size = x.rowSize
        let g = gradient.readPointer, o = origin.readPointer, e = map.readPointer
        let xp = x.uniquePointer(), pp = previous.uniquePointer()
        stepSizes.withUnsafeBufferPointer { etas in
            let ep = etas.baseAddress!
            Parallel.forEachIndex(etas.count, cost: size * 2) { b in
                let eta = ep[b]
                for i in (b * size)..<((b + 1) * size) {
                    let m = e[i]
                    if m == 0 {
                        pp[i] = xp[i]
                        xp[i] = o[i]
                        continue
                    }
                    let lo = Swift.max(o[i] - m, 0), hi = Swift.min(o[i] + m, 1)
                    let current = xp[i]
                    let direction: Float = g[i] > 0 ? 1 : (g[i] < 0 ? -1 : 0)
                    let z = Swift.min(Swift.max(current + eta * m * direction, lo), hi)
                    let moved = current + a * (z - current) + (1 - a) * (current - pp[i])
                    pp[i] = current
                    xp[i] = Swift.min(Swift.max(moved, lo), hi)
                }
            }
        }
    }
}

extension Tensor {
    /// Copies rows `rows` of `source` (same shape) into the same rows of this tensor: an attack
    /// keeping its best point per example copies only the rows that improved.
    public mutating func copyRows(_ rows: [Int], from source: Tensor) {
        precondition(shape == source.shape, "cannot copy rows of \(source.shape) into \(shape)")
        guard !rows.isEmpty else { return }
        let size = rowSize, count = shape.first ?? 0
        let s = source.readPointer, d = uniquePointer()
        rows.withUnsafeBufferPointer { r in
            Parallel.forEachIndex(r.count, cost: size) { j in
                let row = r[j]
                precondition(row >= 0 && row < count, "row \(row) outside 0..<\(count)")
                (d + row * size).update(from: s + row * size, count: size)
            }
        }
    }
}
