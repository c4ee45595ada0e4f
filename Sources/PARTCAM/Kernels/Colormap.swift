import Foundation
import PARTEngine

/// matplotlib's `jet` colormap as the 256-entry lookup table that `matplotlib.colormaps["jet"]`
/// builds from its segment data (`LinearSegmentedColormap`, N = 256, gamma 1), in double
/// precision, and the lookup of float values the way a `Colormap` call does it.
public enum JetColormap {
    public static let size = 256

    /// (x, y0, y1) anchors per channel, matplotlib's `_jet_data`.
    static let segments: [[(Double, Double, Double)]] = [
        [(0, 0, 0), (0.35, 0, 0), (0.66, 1, 1), (0.89, 1, 1), (1, 0.5, 0.5)],
        [(0, 0, 0), (0.125, 0, 0), (0.375, 1, 1), (0.64, 1, 1), (0.91, 0, 0), (1, 0, 0)],
        [(0, 0.5, 0.5), (0.11, 1, 1), (0.34, 1, 1), (0.65, 0, 0), (1, 0, 0)],
    ]

    /// RGB of the 256 entries, row-major [256 * 3].
    public static let table: [Double] = {
        let n = size
        var lut = [Double](repeating: 0, count: n * 3)
        for (c, anchors) in segments.enumerated() {
            // matplotlib's `_create_lookup_table`: anchors scaled to 0...N-1, entry i at
            // (N - 1) * linspace(0, 1, N)[i], linear between the anchors around it (the right
            // anchor's y0, the left one's y1), the ends taken from the first y1 and last y0.
            let xs = anchors.map { $0.0 * Double(n - 1) }
            lut[c] = anchors[0].2
            lut[(n - 1) * 3 + c] = anchors[anchors.count - 1].1
            for i in 1..<(n - 1) {
                let x = Double(n - 1) * (Double(i) * (1.0 / Double(n - 1)))
                var hi = 0
                while hi < xs.count && xs[hi] < x { hi += 1 }   // searchsorted, side "left"
                let lo = hi - 1
                let distance = (x - xs[lo]) / (xs[hi] - xs[lo])
                let v = distance * (anchors[hi].1 - anchors[lo].2) + anchors[lo].2
                lut[i * 3 + c] = Swift.min(Swift.max(v, 0), 1)
            }
        }
        return lut
    }()

    /// The entry a float value selects: v * N truncated (v * N == N counts as N - 1); values
    /// below 0 take the "under" colour and values above 1 the "over" colour, which for `jet`
    /// are the first and last entries. nil for NaN (matplotlib's transparent "bad" colour).
    @inline(__always) public static func index(_ v: Float) -> Int? {
        guard !v.isNaN else { return nil }
        var x = v * Float(size)
        if x == Float(size) { x = Float(size - 1) }
        if x < 0 { return 0 }
        if x >= Float(size) { return size - 1 }
        return Int(x)
    }
}

extension BudgetMaps {
    /// The official PART code's rule (docs/method.md#3-from-cam-to-epsilon-map), for 3-channel images: colour each
    /// upsampled map u [N, H, W] through `jet`, keep R, G and B, standardise the H x W x 3 values
    /// of each image (population std, double precision), and give each (pixel, channel) eps where
    /// its z-score, rounded to float as the reference does before comparing, exceeds 1, else
    /// epsLow. An image whose colours are all equal (std 0) gets epsLow everywhere.
    /// Returns budgets [N, H, W, 3].
    public static func official(_ upsampled: Tensor, epsilon: Float, epsilonLow: Float) -> Tensor {
        precondition(upsampled.shape.count == 3, "the official rule takes maps [N, H, W], got \(upsampled.shape)")
        let (n, h, w) = (upsampled.shape[0], upsampled.shape[1], upsampled.shape[2])
        let hw = h * w
        var out = Tensor.uninitialized(shape: [n, h, w, 3])
        let u = upsampled.readPointer, d = out.uniquePointer()
        // The reference scales the colours to 0...255 and back in double precision before
        // standardising; the same round trip here keeps its values bit for bit.
        let lut = JetColormap.table.map { 255 * $0 / 255 }
        lut.withUnsafeBufferPointer { lp in
            let colours = lp.baseAddress!
            Parallel.forEachIndex(n, cost: hw * 12) { b in
                let src = u + b * hw, dst = d + b * hw * 3
                var entries = [Int](repeating: -1, count: hw)
                var sum = 0.0
                for p in 0..<hw {
                    guard let e = JetColormap.index(src[p]) else { continue }
                    entries[p] = e
                    sum += colours[e * 3] + colours[e * 3 + 1] + colours[e * 3 + 2]
                }
                let count = Double(hw * 3)
                let mean = sum / count
                var squares = 0.0
                for p in 0..<hw {
                    for c in 0..<3 {
                        let v = entries[p] < 0 ? 0 : colours[entries[p] * 3 + c]
                        squares += (v - mean) * (v - mean)
                    }
                }
                let std = (squares / count).squareRoot()
                for p in 0..<hw {
                    for c in 0..<3 {
                        let v = entries[p] < 0 ? 0 : colours[entries[p] * 3 + c]
                        let important = std > 0 && Float((v - mean) / std) > 1
                        dst[p * 3 + c] = important ? epsilon : epsilonLow
                    }
                }
            }
        }
        return out
    }
}
