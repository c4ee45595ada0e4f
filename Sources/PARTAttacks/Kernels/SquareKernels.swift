import PARTEngine

/// The element-wise steps of the L-inf Square attack (Andriushchenko et al., ECCV 2020) under an
/// epsilon map: images NHWC [N, H, W, C]; a perturbation entry is +-map (docs/conventions.md#3-epsilon-maps-in-attacks),
/// clamped to [0, 1]; entries whose budget is 0 stay at the original bit for bit.
public enum SquareKernels {
    /// The start: x + s ⊙ map with one sign s = +-1 per (channel, column) of each row, the same
    /// down the whole column (vertical stripes, as in the paper), clamped to [0, 1]. Row b draws
    /// its C * W signs from `streams[b]` (channel-major), which is advanced.
    public static func stripeStart(_ x: Tensor, map: Tensor, streams: inout [KeyedStream]) -> Tensor {
        precondition(x.shape.count == 4 && x.shape == map.shape, "Square start of \(x.shape) with a map \(map.shape)")
        let n = x.shape[0], h = x.shape[1], w = x.shape[2], c = x.shape[3]
        precondition(streams.count == n, "\(streams.count) streams for \(n) rows")
        var out = Tensor.uninitialized(shape: x.shape)
        let s = x.readPointer, e = map.readPointer, d = out.uniquePointer()
        streams.withUnsafeMutableBufferPointer { st in
            let sp = st.baseAddress!
            Parallel.forEachIndex(n, cost: h * w * c) { b in
                var signs = [Float](repeating: 0, count: w * c)
                for k in 0..<c {
                    for col in 0..<w { signs[col * c + k] = sp[b].next() >> 63 == 0 ? -1 : 1 }
                }
                let row = b * h * w * c
                for r in 0..<h {
                    for j in 0..<(w * c) {
                        let i = row + r * w * c + j
                        d[i] = e[i] == 0 ? s[i] : Swift.min(Swift.max(s[i] + signs[j] * e[i], 0), 1)
                    }
                }
            }
        }
        return out
    }

    /// Paints one square per row into `candidate`: rows tops[b] ..< tops[b] + side and columns
    /// lefts[b] ..< lefts[b] + side of image b become origin + signs[b * C + k] * map in channel k,
    /// clamped to [0, 1]. (The reference adds +-2 map to the best point and projects onto the
    /// map's box, which lands on the same values.)
    public static func paint(_ candidate: inout Tensor, origin: Tensor, map: Tensor, tops: [Int], lefts: [Int],
                             signs: [Float], side: Int) {
        precondition(candidate.shape.count == 4 && candidate.shape == origin.shape && candidate.shape == map.shape,
                     "Square patch of mismatched shapes")
        let n = candidate.shape[0], h = candidate.shape[1], w = candidate.shape[2], c = candidate.shape[3]
        precondition(tops.count == n && lefts.count == n && signs.count == n * c, "one square per row")
        precondition(side >= 1 && side <= h && side <= w, "a square of side \(side) in \(h)x\(w) images")
        let o = origin.readPointer, e = map.readPointer, d = candidate.uniquePointer()
        Parallel.forEachIndex(n, cost: side * side * c) { b in
            precondition(tops[b] >= 0 && tops[b] + side <= h && lefts[b] >= 0 && lefts[b] + side <= w,
                         "square at (\(tops[b]), \(lefts[b])) outside \(h)x\(w)")
            for r in tops[b]..<(tops[b] + side) {
                let start = ((b * h + r) * w + lefts[b]) * c
                for j in 0..<(side * c) {
                    let i = start + j
                    let sign = signs[b * c + j % c]
                    d[i] = e[i] == 0 ? o[i] : Swift.min(Swift.max(o[i] + sign * e[i], 0), 1)
                }
            }
        }
    }

    /// After a query: for rows where `accepted[b]`, the square of the candidate becomes part of
    /// the best point; elsewhere the candidate's square is restored from the best point. Either
    /// way candidate and best agree again, touching only the squares.
    public static func settle(candidate: inout Tensor, best: inout Tensor, tops: [Int], lefts: [Int], side: Int,
                              accepted: [Bool]) {
        Windows.settle(candidate: &candidate, best: &best, tops: tops, lefts: lefts, height: side, width: side,
                       accepted: accepted)
    }
}
