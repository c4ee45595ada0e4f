/// The heat-map colours of the CAM grid.
public enum HeatMapColors {
    /// matplotlib's "jet" sampled at 256 points, as RGB triples in [0, 1] (row-major [256, 3]).
    ///
    /// Each channel is matplotlib's piecewise-linear segment data for jet, (x, y) anchors below,
    /// evaluated at x = i / 255 as `LinearSegmentedColormap(N=256)` does: dark blue at 0, cyan,
    /// yellow, dark red at 1.
    public static let jet: [Double] = {
        let red: [(Double, Double)] = [(0, 0), (0.35, 0), (0.66, 1), (0.89, 1), (1, 0.5)]
        let green: [(Double, Double)] = [(0, 0), (0.125, 0), (0.375, 1), (0.64, 1), (0.91, 0), (1, 0)]
        let blue: [(Double, Double)] = [(0, 0.5), (0.11, 1), (0.34, 1), (0.65, 0), (1, 0)]
        func value(_ anchors: [(Double, Double)], _ x: Double) -> Double {
            for k in 1..<anchors.count where x <= anchors[k].0 {
                let (x0, y0) = anchors[k - 1], (x1, y1) = anchors[k]
                return y0 + (x - x0) / (x1 - x0) * (y1 - y0)
            }
            return anchors[anchors.count - 1].1
        }
        return (0..<256).flatMap { i -> [Double] in
            let x = Double(i) / 255
            return [value(red, x), value(green, x), value(blue, x)]
        }
    }()
}
