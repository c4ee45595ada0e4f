/// Rectangular windows of NHWC tensors, one window per row (image) at the row's own position,
/// all of the same size: copied out, written back, or settled between two tensors. Any element
/// type (the windows of activations in reduced precision are moved as bytes).
///
/// A window of row b covers rows `tops[b] ..< tops[b] + height` and columns
/// `lefts[b] ..< lefts[b] + width` of image b, every channel.
public enum Windows {
    /// Checks the shapes and positions; returns (N, H, W, bytes per pixel).
    private static func geometry(_ x: Tensor, tops: [Int], lefts: [Int], height: Int, width: Int,
                                 _ what: String) -> (n: Int, h: Int, w: Int, pixel: Int) {
        precondition(x.shape.count == 4, "\(what): windows of a [N, H, W, C] tensor, got \(x.shape)")
        let n = x.shape[0], h = x.shape[1], w = x.shape[2]
        precondition(tops.count == n && lefts.count == n, "\(what): one window per row")
        precondition(height >= 1 && height <= h && width >= 1 && width <= w,
                     "\(what): a \(height)x\(width) window in \(h)x\(w) images")
        for b in 0..<n {
            precondition(tops[b] >= 0 && tops[b] + height <= h && lefts[b] >= 0 && lefts[b] + width <= w,
                         "\(what): window at (\(tops[b]), \(lefts[b])) outside \(h)x\(w)")
        }
        return (n, h, w, x.shape[3] * x.dtype.size)
    }

    /// Calls `body(b, r, at)` for line r of every row b's window, where `at` is the byte offset
    /// of the line in the image tensor; rows spread over the cores.
    private static func forEachLine(_ g: (n: Int, h: Int, w: Int, pixel: Int), tops: [Int], lefts: [Int], height: Int,
                                    width: Int, _ body: (_ b: Int, _ r: Int, _ at: Int) -> Void) {
        Parallel.forEachIndex(g.n, cost: height * width * g.pixel / 4) { b in
            for r in 0..<height { body(b, r, ((b * g.h + tops[b] + r) * g.w + lefts[b]) * g.pixel) }
        }
    }

    /// The windows as a tensor [N, height, width, C] of x's type.
    public static func gather(_ x: Tensor, tops: [Int], lefts: [Int], height: Int, width: Int) -> Tensor {
        let g = geometry(x, tops: tops, lefts: lefts, height: height, width: width, "window gather")
        var out = Tensor.uninitialized(shape: [g.n, height, width, x.shape[3]], dtype: x.dtype)
        let s = x.rawPointer, d = out.mutableRawPointer()
        let line = width * g.pixel
        forEachLine(g, tops: tops, lefts: lefts, height: height, width: width) { b, r, at in
            (d + (b * height + r) * line).copyMemory(from: s + at, byteCount: line)
        }
        return out
    }

    /// Writes `patches` [N, height, width, C] into the windows of `x` (same type and channels).
    public static func scatter(_ patches: Tensor, into x: inout Tensor, tops: [Int], lefts: [Int]) {
        precondition(patches.shape.count == 4 && patches.dtype == x.dtype && patches.shape.first == x.shape.first
                     && patches.shape.last == x.shape.last,
                     "window scatter of \(patches.shape) \(patches.dtype) into \(x.shape) \(x.dtype)")
        let height = patches.shape[1], width = patches.shape[2]
        let g = geometry(x, tops: tops, lefts: lefts, height: height, width: width, "window scatter")
        let s = patches.rawPointer, d = x.mutableRawPointer()
        let line = width * g.pixel
        forEachLine(g, tops: tops, lefts: lefts, height: height, width: width) { b, r, at in
            (d + at).copyMemory(from: s + (b * height + r) * line, byteCount: line)
        }
    }

    /// Makes `candidate` and `best` agree again inside each row's window: where `accepted[b]`
    /// the candidate's window is copied into `best`, elsewhere `best`'s into the candidate.
    /// Only the windows are touched.
    public static func settle(candidate: inout Tensor, best: inout Tensor, tops: [Int], lefts: [Int], height: Int,
                              width: Int, accepted: [Bool]) {
        precondition(candidate.shape == best.shape && candidate.dtype == best.dtype,
                     "window settle of \(candidate.shape) \(candidate.dtype) and \(best.shape) \(best.dtype)")
        let g = geometry(candidate, tops: tops, lefts: lefts, height: height, width: width, "window settle")
        precondition(accepted.count == g.n, "window settle: one decision per row")
        let cp = candidate.mutableRawPointer(), bp = best.mutableRawPointer()
        let line = width * g.pixel
        forEachLine(g, tops: tops, lefts: lefts, height: height, width: width) { b, _, at in
            if accepted[b] {
                (bp + at).copyMemory(from: cp + at, byteCount: line)
            } else {
                (cp + at).copyMemory(from: bp + at, byteCount: line)
            }
        }
    }
}
