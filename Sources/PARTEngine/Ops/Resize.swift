import Foundation

/// Bicubic resampling of maps [N, h, w] to [N, H, W], matching PIL's `Image.resize(...,
/// BICUBIC)` on float images: Keys kernel with a = -0.5, pixel-centre alignment, taps that fall
/// outside the image dropped and the remaining weights renormalised; separable, horizontal pass
/// first, in double precision. Images are spread over the engine's workers.
public enum Bicubic {
    static func kernel(_ t: Double) -> Double {
        let a = -0.5, x = abs(t)
        if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
        if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0
    }

    /// Taps of one axis: for each output index, the first input index and the normalised weights.
    struct Taps {
        let start: [Int]
        let weights: [[Double]]
    }

    private struct Key: Hashable { let inSize, outSize: Int }
    private static let cache = Locked([Key: Taps]())

    static func taps(inSize: Int, outSize: Int) -> Taps {
        let key = Key(inSize: inSize, outSize: outSize)
        if let t = cache.value[key] { return t }
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1)
        let support = 2 * filterScale
        var starts = [Int](), weights = [[Double]]()
        for o in 0..<outSize {
            let center = (Double(o) + 0.5) * scale
            let lo = max(Int(center - support + 0.5), 0)
            let hi = min(Int(center + support + 0.5), inSize)
            var w = (lo..<hi).map { kernel((Double($0) - center + 0.5) / filterScale) }
            let total = w.reduce(0, +)
            if total != 0 { w = w.map { $0 / total } }
            starts.append(lo)
            weights.append(w)
        }
        let t = Taps(start: starts, weights: weights)
        cache.withLock { $0[key] = t }
        return t
    }

    public static func resize(_ maps: Tensor, height: Int, width: Int) -> Tensor {
        precondition(maps.shape.count == 3, "bicubic resize takes maps [N, h, w], got \(maps.shape)")
        let (n, h, w) = (maps.shape[0], maps.shape[1], maps.shape[2])
        let cx = taps(inSize: w, outSize: width), cy = taps(inSize: h, outSize: height)
        var out = Tensor.uninitialized(shape: [n, height, width])
        let src = maps.readPointer, dst = out.uniquePointer()
        Parallel.forEachIndex(n, cost: height * width * 8) { b in
            let img = src + b * h * w
            var rows = [Double](repeating: 0, count: h * width)
            for y in 0..<h {
                for x in 0..<width {
                    let start = cx.start[x]
                    var s = 0.0
                    for (j, wt) in cx.weights[x].enumerated() { s += wt * Double(img[y * w + start + j]) }
                    rows[y * width + x] = s
                }
            }
            for y in 0..<height {
                let start = cy.start[y], weights = cy.weights[y]
                for x in 0..<width {
                    var s = 0.0
                    for (j, wt) in weights.enumerated() { s += wt * rows[(start + j) * width + x] }
                    dst[(b * height + y) * width + x] = Float(s)
                }
            }
        }
        return out
    }
}
