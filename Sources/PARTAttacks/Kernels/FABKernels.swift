import PARTEngine

/// The element-wise steps of FAB (Croce & Hein, ICML 2020, "Minimally distorted adversarial
/// examples with a fast adaptive boundary attack") in the L-inf norm weighted by an epsilon map.
///
/// FAB minimises the size of a perturbation. Under an epsilon map the size of d is
/// ||d||_m = max_i |d_i| / m_i (delta/eps coordinates, docs/conventions.md#3-epsilon-maps-in-attacks): its unit ball is
/// the map's box, so "adversarial within the budget" means ||x' - x||_m <= 1, and entries whose
/// budget is 0 never move. With a constant map eps this is the plain L-inf norm divided by eps,
/// and every step below is the reference algorithm's.
public enum FABKernels {
    /// For each row, the smallest steps from the current point x1 and from the origin x0 onto the
    /// linearised decision boundary {x' : f + g · (x' - x1) = 0}, with x' kept in [0, 1]: FAB's two
    /// projections, in ||.||_m under `map`, or in ||.||_2 without one (the reference's
    /// `projection_l2`, `projectionsL2`).
    ///
    /// - Parameters: `gradient` g = ∇f at x1; `values` f at x1 per row.
    /// - Returns: the steps d1 (from x1) and d2 (from x0) and their sizes. Where the hyperplane
    ///   cannot be reached inside [0, 1], the step goes as far as the box allows in the helpful
    ///   direction (the reference's behaviour).
    public static func projections(current x1: Tensor, origin x0: Tensor, gradient g: Tensor, values f: [Float],
                                   map: Tensor?) -> (fromCurrent: Tensor, fromOrigin: Tensor, sizeCurrent: [Float],
                                                     sizeOrigin: [Float]) {
        precondition(x1.shape == x0.shape && x1.shape == g.shape && (map.map { x1.shape == $0.shape } ?? true),
                     "FAB projection of mismatched shapes \(x1.shape), \(g.shape), \(map?.shape ?? [])")
        let n = x1.shape.first ?? 0, size = x1.rowSize
        precondition(f.count == n, "\(f.count) values for \(n) rows")
        var d1 = Tensor.uninitialized(shape: x1.shape), d2 = Tensor.uninitialized(shape: x1.shape)
        var s1 = [Float](repeating: 0, count: n), s2 = [Float](repeating: 0, count: n)
        let p1 = x1.readPointer, p0 = x0.readPointer, w = g.readPointer, m = map?.readPointer
        let o1 = d1.uniquePointer(), o2 = d2.uniquePointer()
        s1.withUnsafeMutableBufferPointer { s1p in
            s2.withUnsafeMutableBufferPointer { s2p in
                let a = s1p.baseAddress!, c = s2p.baseAddress!
                Parallel.forEachIndex(n, cost: size * 24) { b in
                    let row = b * size
                    let scratch = UnsafeMutablePointer<SIMD2<Float>>.allocate(capacity: Swift.max(size, 1))
                    defer { scratch.deallocate() }
                    let value = Double(f[b])
                    // From x1: g · d = -f.  From x0: g · (x0 + d - x1) = -f, so g · d = g · (x1 - x0) - f.
                    var moved = 0.0
                    for i in row..<(row + size) where w[i].isFinite {
                        moved += Double(w[i]) * (Double(p1[i]) - Double(p0[i]))
                    }
                    a[b] = projectRow(point: p1 + row, normal: w + row, map: m.map { $0 + row }, count: size,
                                      rhs: -value, into: o1 + row, scratch: scratch)
                    c[b] = projectRow(point: p0 + row, normal: w + row, map: m.map { $0 + row }, count: size,
                                      rhs: moved - value, into: o2 + row, scratch: scratch)
                }
            }
        }
        return (d1, d2, s1, s2)
    }

    /// Minimises the size of d subject to Σ w_i d_i = rhs and 0 <= p_i + d_i <= 1; writes d and
    /// returns its size. With a map the size is ||d||_m and d_i = 0 where m_i = 0 or w_i = 0;
    /// without one it is ||d||_2, and entries with |w_i| <= 1e-8 do not move (as in the reference).
    ///
    /// Either way entry i moves at a speed v_i (m_i, or |w_i| in L2) in the direction that helps
    /// (sign(w_i) sign(rhs)): by min(λ v_i, room_i), its room to the edge of [0, 1]. (In ||.||_m,
    /// with u = d / m and c = w ⊙ m, that is min ||u||_inf s.t. c · u = rhs; in L2 it is
    /// d = clip(λ w).) The reachable change h(λ) = Σ |w_i| v_i min(λ, room_i / v_i) is piecewise
    /// linear and λ is where h(λ) = |rhs|, found with the breakpoints room_i / v_i sorted
    /// (`breakpoint`). When even h(∞) < |rhs| every entry goes to its edge. `scratch` holds
    /// `count` pairs.
    @inline(__always)
    static func projectRow(point p: UnsafeMutablePointer<Float>, normal w: UnsafeMutablePointer<Float>,
                           map m: UnsafeMutablePointer<Float>?, count: Int, rhs: Double,
                           into d: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<SIMD2<Float>>) -> Float {
        let target = Swift.abs(rhs)
        guard target > 0 && target.isFinite else {
            d.update(repeating: 0, count: count)
            return 0
        }
        let sign: Float = rhs > 0 ? 1 : -1
        /// v_i, 0 for an entry that does not move.
        func speed(_ i: Int) -> Float {
            let wi = w[i]
            guard wi.isFinite else { return 0 }
            if let m { return m[i] > 0 && wi != 0 ? m[i] : 0 }
            return Swift.abs(wi) > 1e-8 ? Swift.abs(wi) : 0
        }
        // (breakpoint, |w| v) of the entries that can move.
        var movable = 0
        var total = 0.0, weights = 0.0
        var largestCap: Float = 0
        for i in 0..<count {
            let v = speed(i), wi = w[i]
            guard v > 0 else { continue }
            let room = sign * wi > 0 ? 1 - p[i] : p[i]
            guard room > 0 else { continue }
            let cap = room / v, weight = Swift.abs(wi) * v
            scratch[movable] = SIMD2(cap, weight)
            movable += 1
            total += m == nil ? Double(room) * Double(Swift.abs(wi)) : Double(cap) * Double(weight)
            weights += Double(weight)
            largestCap = Swift.max(largestCap, cap)
        }
        var lambda = Float.infinity
        if total > target {
            lambda = breakpoint(UnsafeMutableBufferPointer(start: scratch, count: movable), weights: weights, target: target)
                ?? (m == nil ? .infinity : largestCap)
        }
        var squares = 0.0
        for i in 0..<count {
            let v = speed(i)
            guard v > 0 else {
                d[i] = 0
                continue
            }
            let direction: Float = sign * w[i] > 0 ? 1 : -1
            let room = Swift.max(direction > 0 ? 1 - p[i] : p[i], 0)
            d[i] = direction * Swift.min(lambda * v, room)
            squares += Double(d[i]) * Double(d[i])
        }
        return m == nil ? Float(squares.squareRoot()) : Swift.min(lambda, largestCap)
    }

    /// The λ where h(λ) = Σ_j weight_j min(λ, breakpoint_j) reaches `target`, for the pairs
    /// (breakpoint, weight) (sorted here) whose weights sum to `weights`; nil when it never does.
    @inline(__always)
    static func breakpoint(_ pairs: UnsafeMutableBufferPointer<SIMD2<Float>>, weights: Double, target: Double) -> Float? {
        var pairs = pairs
        pairs.sort { $0.x < $1.x }
        // In [breakpoint_{k-1}, breakpoint_k]: h(λ) = below + λ * above, below = Σ_{j<k} weight_j breakpoint_j.
        var below = 0.0, above = weights
        for pair in pairs {
            let breakpoint = Double(pair.x), weight = Double(pair.y)
            if below + breakpoint * above >= target { return Float(Swift.max(0, (target - below) / above)) }
            below += breakpoint * weight
            above -= weight
        }
        return nil
    }

    /// FAB's step, per entry of row b (alpha_b = alphas[b]):
    ///
    ///     x1 = clamp((x1 + eta d1)(1 - alpha_b) + (x0 + eta d2) alpha_b, 0, 1)
    ///
    /// written around x0 so that entries whose budget is 0 stay at x0 bit for bit.
    public static func step(_ x1: inout Tensor, origin x0: Tensor, fromCurrent d1: Tensor, fromOrigin d2: Tensor,
                            alphas: [Float], eta: Float, map: Tensor) {
        precondition(x1.shape == x0.shape && x1.shape == d1.shape && x1.shape == d2.shape && x1.shape == map.shape,
                     "FAB step of mismatched shapes")
        precondition(alphas.count == (x1.shape.first ?? 0), "\(alphas.count) alphas for \(x1.shape.first ?? 0) rows")
        let size = x1.rowSize
        let o = x0.readPointer, a1 = d1.readPointer, a2 = d2.readPointer, m = map.readPointer, x = x1.uniquePointer()
        alphas.withUnsafeBufferPointer { al in
            let ap = al.baseAddress!
            Parallel.forEachIndex(al.count, cost: size * 2) { b in
                let alpha = ap[b]
                for i in (b * size)..<((b + 1) * size) {
                    if m[i] == 0 {
                        x[i] = o[i]
                        continue
                    }
                    let moved = o[i] + (1 - alpha) * (x[i] - o[i] + eta * a1[i]) + alpha * eta * a2[i]
                    x[i] = Swift.min(Swift.max(moved, 0), 1)
                }
            }
        }
    }

    /// Rows `rows`: x1 = x0 + beta (x1 - x0), FAB's step back towards the origin after it crossed
    /// the boundary (entries whose budget is 0 stay at x0).
    public static func pullBack(_ x1: inout Tensor, origin x0: Tensor, rows: [Int], beta: Float, map: Tensor) {
        precondition(x1.shape == x0.shape && x1.shape == map.shape, "FAB pull-back of mismatched shapes")
        guard !rows.isEmpty else { return }
        let size = x1.rowSize
        let o = x0.readPointer, m = map.readPointer, x = x1.uniquePointer()
        rows.withUnsafeBufferPointer { r in
            Parallel.forEachIndex(r.count, cost: size) { j in
                let b = r[j]
                for i in (b * size)..<((b + 1) * size) {
                    x[i] = m[i] == 0 ? o[i] : o[i] + beta * (x[i] - o[i])
                }
            }
        }
    }

    /// Per row, ||x - origin||_m = max_i |x_i - origin_i| / m_i over the entries with a budget
    /// (an entry without budget that moved makes the distance infinite).
    public static func weightedDistances(_ x: Tensor, origin: Tensor, map: Tensor) -> [Float] {
        precondition(x.shape == origin.shape && x.shape == map.shape, "weighted distance of mismatched shapes")
        let o = origin.readPointer, m = map.readPointer, base = x.readPointer
        return x.rowReduce { p, n in
            let row = p - base
            var largest: Float = 0
            for j in 0..<n {
                let diff = Swift.abs(p[j] - o[row + j])
                if diff == 0 { continue }
                let mi = m[row + j]
                largest = Swift.max(largest, mi > 0 ? diff / mi : .infinity)
            }
            return largest
        }
    }
}

extension Margins {
    /// The targeted margin z_t - z_y per row and its gradient e_t - e_y (FAB-T's f: positive
    /// once the target outscores the label). A row whose target is its label has value 0 and a
    /// zero gradient.
    public static func targeted(logits: Tensor, labels: [Int32], targets: [Int32]) -> (values: [Float], gradient: Tensor) {
        let (n, k) = TargetMargins.shape(logits, labels: labels, targets: targets)
        var gradient = Tensor(shape: logits.shape)
        let z = logits.readPointer, g = gradient.uniquePointer()
        var values = [Float](repeating: 0, count: n)
        for b in 0..<n {
            let y = Int(labels[b]), t = Int(targets[b])
            guard y != t else { continue }
            values[b] = z[b * k + t] - z[b * k + y]
            g[b * k + t] = 1
            g[b * k + y] = -1
        }
        return (values, gradient)
    }
}
