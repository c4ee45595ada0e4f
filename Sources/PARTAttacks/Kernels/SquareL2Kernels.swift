import PARTEngine

/// The steps of the L2 Square attack (Andriushchenko et al., ECCV 2020, Section 3.2) as AutoAttack
/// runs it: images NHWC [N, H, W, C], perturbations on the sphere of the radius, clamped to [0, 1].
///
/// Its unit of change is a square window of side s holding the pattern η: s/2 rows of nested
/// rectangles, positive, above s - s/2 rows of the same, negative, each rectangle weighted
/// 1 / (k + 1)² for the k-th ring from the centre, the whole normalised to L2 norm 1 and, with
/// probability 1/2, transposed.
public enum SquareL2Kernels {
    /// The reference's rectangles of `rows` x `cols`: ring k (k = 0 at the centre
    /// (rows / 2, cols / 2)) adds 1 / (k + 1)² to the rows and columns it covers, then the block
    /// is normalised to L2 norm 1 (row-major; empty when `rows` is 0).
    static func rectangles(_ rows: Int, _ cols: Int) -> [Double] {
        var out = [Double](repeating: 0, count: rows * cols)
        guard rows > 0 && cols > 0 else { return out }
        let centreRow = rows / 2, centreCol = cols / 2
        var top = centreRow, left = centreCol
        for k in 0..<Swift.max(centreRow + 1, centreCol + 1) {
            let weight = 1 / Double((k + 1) * (k + 1))
            for r in Swift.max(top, 0)..<Swift.min(top + 2 * k + 1, rows) {
                for c in Swift.max(left, 0)..<Swift.min(left + 2 * k + 1, cols) { out[r * cols + c] += weight }
            }
            top -= 1
            left -= 1
        }
        let norm = out.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? out.map { $0 / norm } : out
    }

    /// η for side `side` (row-major, L2 norm 1), untransposed.
    public static func pattern(side s: Int) -> [Float] {
        precondition(s >= 1, "a pattern of side \(s)")
        let upper = rectangles(s / 2, s), lower = rectangles(s - s / 2, s).map { -$0 }
        let all = upper + lower
        let norm = all.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return all.map { Float(norm > 0 ? $0 / norm : 0) }
    }

    /// The side of the windows at iteration `iteration`: round(sqrt(p · H · W)) (halves to even),
    /// at least 3, odd (one more when even), at most the image's shorter side.
    public static func side(iteration: Int, pInit: Float, height: Int, width: Int) -> Int {
        let p = Double(Square.fraction(iteration: iteration, pInit: pInit))
        var s = Swift.max(Int((p * Double(height * width)).squareRoot().rounded(.toNearestOrEven)), 3)
        if s % 2 == 0 { s += 1 }
        return Swift.min(s, height, width)
    }

    /// The start: a grid of windows of side s = H / 5 (at least 1) from offset (H - 5 s) / 2,
    /// each holding η (transposed when its draw says so) times a sign per channel, the whole
    /// scaled to L2 norm `radius`, added to x and clamped to [0, 1]. Row b draws, window by window
    /// in row-major order, a transpose bit and then C signs from `streams[b]`, which is advanced.
    public static func start(_ x: Tensor, radius: Float, streams: inout [KeyedStream]) -> Tensor {
        precondition(x.shape.count == 4, "Square start of \(x.shape)")
        let n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
        precondition(streams.count == n, "\(streams.count) streams for \(n) rows")
        let s = Swift.max(Swift.min(h, w) / 5, 1)
        let eta = pattern(side: s)
        let offsetRow = Swift.max((h - 5 * s) / 2, 0), offsetCol = Swift.max((w - 5 * s) / 2, 0)
        var out = Tensor.uninitialized(shape: x.shape)
        let src = x.readPointer, d = out.uniquePointer()
        let size = h * w * c
        streams.withUnsafeMutableBufferPointer { st in
            let sp = st.baseAddress!
            Parallel.forEachIndex(n, cost: size * 4) { b in
                var delta = [Float](repeating: 0, count: size)
                var signs = [Float](repeating: 0, count: c)
                for i in 0..<(h / s) {
                    for j in 0..<(w / s) {
                        let top = offsetRow + i * s, left = offsetCol + j * s
                        let transposed = sp[b].next() >> 63 == 1
                        for k in 0..<c { signs[k] = sp[b].next() >> 63 == 0 ? -1 : 1 }
                        guard top + s <= h && left + s <= w else { continue }
                        for r in 0..<s {
                            for q in 0..<s {
                                let value = transposed ? eta[q * s + r] : eta[r * s + q]
                                for k in 0..<c { delta[((top + r) * w + left + q) * c + k] += value * signs[k] }
                            }
                        }
                    }
                }
                var squares = 0.0
                for v in delta { squares += Double(v) * Double(v) }
                let factor = Float(Double(radius) / (squares.squareRoot() + 1e-12))
                let row = b * size
                for i in 0..<size { d[row + i] = Swift.min(Swift.max(src[row + i] + delta[i] * factor, 0), 1) }
            }
        }
        return out
    }

    /// One proposal per row from its best point (δ = best - origin, N = ||δ||):
    ///
    ///     W      = ||δ on the union of windows 1 and 2||, all channels
    ///     new_k  = η_b sign_bk + δ_k[window 1] / (||δ_k[window 1]|| + 1e-12)   (channel k)
    ///     new_k *= sqrt(max(radius² - N², 0) / C + W²) / (||new_k|| + 1e-12)
    ///     δ[window 2] = 0,  δ[window 1] = new,  candidate = clamp(origin + radius δ / (||δ|| + 1e-12), 0, 1)
    ///
    /// Window 1 of row b is at (tops[b], lefts[b]), window 2 at (tops2[b], lefts2[b]), both of
    /// side `side`; η_b is `pattern`, transposed when `transposed[b]`; signs are [N * C].
    public static func propose(best: Tensor, origin: Tensor, radius: Float, side s: Int, pattern eta: [Float],
                               tops: [Int], lefts: [Int], tops2: [Int], lefts2: [Int], signs: [Float],
                               transposed: [Bool]) -> Tensor {
        precondition(best.shape.count == 4 && best.shape == origin.shape, "Square proposal of mismatched shapes")
        let n = best.shape[0], h = best.shape[1], w = best.shape[2], c = best.shape[3]
        precondition(eta.count == s * s && s >= 1 && s <= h && s <= w, "a pattern of side \(s) in \(h)x\(w) images")
        precondition(tops.count == n && lefts.count == n && tops2.count == n && lefts2.count == n
                     && transposed.count == n && signs.count == n * c, "one pair of windows per row")
        var out = Tensor.uninitialized(shape: best.shape)
        let bp = best.readPointer, op = origin.readPointer, d = out.uniquePointer()
        let size = h * w * c
        Parallel.forEachIndex(n, cost: size * 4) { b in
            precondition(tops[b] >= 0 && tops[b] + s <= h && lefts[b] >= 0 && lefts[b] + s <= w
                         && tops2[b] >= 0 && tops2[b] + s <= h && lefts2[b] >= 0 && lefts2[b] + s <= w,
                         "windows outside \(h)x\(w)")
            let row = b * size
            var delta = [Float](repeating: 0, count: size)
            var total = 0.0
            for i in 0..<size {
                delta[i] = bp[row + i] - op[row + i]
                total += Double(delta[i]) * Double(delta[i])
            }
            func inside(_ r: Int, _ q: Int, _ top: Int, _ left: Int) -> Bool {
                r >= top && r < top + s && q >= left && q < left + s
            }
            var windows = 0.0
            var first = [Double](repeating: 0, count: c)
            for r in Swift.min(tops[b], tops2[b])..<(Swift.max(tops[b], tops2[b]) + s) {
                for q in Swift.min(lefts[b], lefts2[b])..<(Swift.max(lefts[b], lefts2[b]) + s) {
                    let one = inside(r, q, tops[b], lefts[b])
                    guard one || inside(r, q, tops2[b], lefts2[b]) else { continue }
                    for k in 0..<c {
                        let v = Double(delta[(r * w + q) * c + k])
                        windows += v * v
                        if one { first[k] += v * v }
                    }
                }
            }
            let target = (Swift.max(Double(radius) * Double(radius) - total, 0) / Double(c) + windows).squareRoot()
            var fresh = [Float](repeating: 0, count: s * s * c)
            for k in 0..<c {
                let sign = signs[b * c + k], scale = 1 / (first[k].squareRoot() + 1e-12)
                var squares = 0.0
                for r in 0..<s {
                    for q in 0..<s {
                        let e = transposed[b] ? eta[q * s + r] : eta[r * s + q]
                        let old = Double(delta[((tops[b] + r) * w + lefts[b] + q) * c + k]) * scale
                        let v = Double(e * sign) + old
                        fresh[(r * s + q) * c + k] = Float(v)
                        squares += v * v
                    }
                }
                let factor = target / (squares.squareRoot() + 1e-12)
                for j in 0..<(s * s) { fresh[j * c + k] = Float(Double(fresh[j * c + k]) * factor) }
            }
            for r in 0..<s {
                for q in 0..<s {
                    for k in 0..<c { delta[((tops2[b] + r) * w + lefts2[b] + q) * c + k] = 0 }
                }
            }
            for r in 0..<s {
                for q in 0..<s {
                    for k in 0..<c { delta[((tops[b] + r) * w + lefts[b] + q) * c + k] = fresh[(r * s + q) * c + k] }
                }
            }
            var squares = 0.0
            for v in delta { squares += Double(v) * Double(v) }
            let factor = Float(Double(radius) / (squares.squareRoot() + 1e-12))
            for i in 0..<size { d[row + i] = Swift.min(Swift.max(op[row + i] + delta[i] * factor, 0), 1) }
        }
        return out
    }
}
