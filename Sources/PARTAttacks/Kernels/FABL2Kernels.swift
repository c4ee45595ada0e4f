import PARTEngine

extension FABKernels {
    /// FAB's two projections in the L2 norm: for each row, the smallest steps (in ||.||_2) from
    /// the current point x1 and from the origin x0 onto the linearised decision boundary
    /// {x' : f + g · (x' - x1) = 0}, with x' kept in [0, 1]; the reference's `projection_l2`.
    ///
    /// - Returns: the steps d1 (from x1) and d2 (from x0) and their L2 norms. Where the hyperplane
    ///   cannot be reached inside [0, 1], every entry goes as far as the box allows in the
    ///   helpful direction.
    public static func projectionsL2(current x1: Tensor, origin x0: Tensor, gradient g: Tensor, values f: [Float])
        -> (fromCurrent: Tensor, fromOrigin: Tensor, sizeCurrent: [Float], sizeOrigin: [Float]) {
        precondition(x1.shape == x0.shape && x1.shape == g.shape, "FAB projection of mismatched shapes \(x1.shape), \(g.shape)")
        let n = x1.shape.first ?? 0, size = x1.rowSize
        precondition(f.count == n, "\(f.count) values for \(n) rows")
        var d1 = Tensor.uninitialized(shape: x1.shape), d2 = Tensor.uninitialized(shape: x1.shape)
        var s1 = [Float](repeating: 0, count: n), s2 = [Float](repeating: 0, count: n)
        let p1 = x1.readPointer, p0 = x0.readPointer, w = g.readPointer
        let o1 = d1.uniquePointer(), o2 = d2.uniquePointer()
        s1.withUnsafeMutableBufferPointer { s1p in
            s2.withUnsafeMutableBufferPointer { s2p in
                let a = s1p.baseAddress!, c = s2p.baseAddress!
                Parallel.forEachIndex(n, cost: size * 24) { b in
                    let row = b * size
                    let scratch = UnsafeMutablePointer<SIMD2<Float>>.allocate(capacity: Swift.max(size, 1))
                    defer { scratch.deallocate() }
                    let value = Double(f[b])
                    var moved = 0.0
                    for i in row..<(row + size) where w[i].isFinite {
                        moved += Double(w[i]) * (Double(p1[i]) - Double(p0[i]))
                    }
                    a[b] = projectRowL2(point: p1 + row, normal: w + row, count: size, rhs: -value, into: o1 + row,
                                        scratch: scratch)
                    c[b] = projectRowL2(point: p0 + row, normal: w + row, count: size, rhs: moved - value,
                                        into: o2 + row, scratch: scratch)
                }
            }
        }
        return (d1, d2, s1, s2)
    }

    /// Minimises ||d||_2 subject to Σ w_i d_i = rhs and 0 <= p_i + d_i <= 1; writes d and returns
    /// ||d||_2. The solution is d_i = clip(λ w_i) towards the hyperplane: entry i moves by
    /// λ |w_i| until it meets the edge of [0, 1] after room_i, so the reachable change
    /// h(λ) = Σ w_i² min(λ, room_i / |w_i|) is piecewise linear and λ is where h(λ) = |rhs|, found
    /// with the breakpoints sorted. Entries with |w_i| <= 1e-8 do not move (as in the reference).
    @inline(__always)
    static func projectRowL2(point p: UnsafeMutablePointer<Float>, normal w: UnsafeMutablePointer<Float>, count: Int,
                             rhs: Double, into d: UnsafeMutablePointer<Float>,
                             scratch: UnsafeMutablePointer<SIMD2<Float>>) -> Float {
        let target = Swift.abs(rhs)
        guard target > 0 && target.isFinite else {
            d.update(repeating: 0, count: count)
            return 0
        }
        let sign: Float = rhs > 0 ? 1 : -1
        var movable = 0
        var total = 0.0, weights = 0.0
        for i in 0..<count {
            let wi = w[i]
            guard Swift.abs(wi) > 1e-8, wi.isFinite else { continue }
            let room = sign * wi > 0 ? 1 - p[i] : p[i]
            guard room > 0 else { continue }
            let breakpoint = room / Swift.abs(wi), weight = wi * wi
            scratch[movable] = SIMD2(breakpoint, weight)
            movable += 1
            total += Double(room) * Double(Swift.abs(wi))
            weights += Double(weight)
        }
        var lambda = Float.infinity
        if total > target {
            var pairs = UnsafeMutableBufferPointer(start: scratch, count: movable)
            pairs.sort { $0.x < $1.x }
            // Between breakpoints: h(λ) = below + λ * above, below = Σ_{j<k} w_j² breakpoint_j.
            var below = 0.0, above = weights
            for pair in pairs {
                let breakpoint = Double(pair.x), weight = Double(pair.y)
                if below + breakpoint * above >= target {
                    lambda = Float(Swift.max(0, (target - below) / above))
                    break
                }
                below += breakpoint * weight
                above -= weight
            }
        }
        var squares = 0.0
        for i in 0..<count {
            let wi = w[i]
            guard Swift.abs(wi) > 1e-8, wi.isFinite else {
                d[i] = 0
                continue
            }
            let direction: Float = sign * wi > 0 ? 1 : -1
            let room = Swift.max(direction > 0 ? 1 - p[i] : p[i], 0)
            let v = direction * Swift.min(lambda * Swift.abs(wi), room)
            d[i] = v
            squares += Double(v) * Double(v)
        }
        return Float(squares.squareRoot())
    }

    /// Per row, the dual of the map-weighted L-inf norm: Σ_i |g_i| map_i (untargeted FAB's
    /// distance to a linearised boundary is |f| over it).
    public static func weightedDualNorms(_ g: Tensor, map: Tensor) -> [Float] {
        precondition(g.shape == map.shape, "dual norm of \(g.shape) with a map \(map.shape)")
        let m = map.readPointer, base = g.readPointer
        return g.rowReduce { p, n in
            let row = p - base
            var s = 0.0
            for j in 0..<n { s += Double(Swift.abs(p[j])) * Double(m[row + j]) }
            return Float(s)
        }
    }
}
