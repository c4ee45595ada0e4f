import PARTEngine

extension FABKernels {
    /// FAB's two projections in the L2 norm (`projections` without a map): for each row, the
    /// smallest steps (in ||.||_2) from x1 and from x0 onto the linearised decision boundary,
    /// inside [0, 1], and their L2 norms; the reference's `projection_l2`.
    public static func projectionsL2(current x1: Tensor, origin x0: Tensor, gradient g: Tensor, values f: [Float])
        -> (fromCurrent: Tensor, fromOrigin: Tensor, sizeCurrent: [Float], sizeOrigin: [Float]) {
        projections(current: x1, origin: x0, gradient: g, values: f, map: nil)
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
