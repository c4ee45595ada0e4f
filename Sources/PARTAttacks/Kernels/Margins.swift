import PARTEngine

/// Margin losses of logits [N, K] used by attacks, per example with their gradients
/// d loss_i / d logits_i (rows are independent; nothing is averaged).
///
/// Ties are broken towards the lower class index, as an arg-max over a row does.
public enum Margins {
    /// Carlini-Wagner margin max_{j != y} z_j - z_y (positive when misclassified).
    public static func cw(logits: Tensor, labels: [Int32]) -> (values: [Float], gradient: Tensor) {
        perRow(logits, labels, nil) { z, k, y, _, g in
            let m = bestOther(z, k, excluding: y)
            g[m] = 1
            g[y] = -1
            return z[m] - z[y]
        }
    }

    /// Difference of Logits Ratio (Croce & Hein 2020), untargeted:
    ///
    ///     DLR = -(z_y - max_{i != y} z_i) / (z_π1 - z_π3 + 1e-12)
    ///
    /// with z_π1 >= z_π2 >= ... the sorted logits. Needs at least 3 classes.
    public static func dlr(logits: Tensor, labels: [Int32]) -> (values: [Float], gradient: Tensor) {
        precondition(logits.shape.count == 2 && logits.shape[1] >= 3, "DLR needs at least 3 classes")
        return perRow(logits, labels, nil) { z, k, y, _, g in
            let m = bestOther(z, k, excluding: y)
            let order = topIndices(z, k, 3)
            let u = Double(z[y]) - Double(z[m])
            let d = Double(z[order[0]]) - Double(z[order[2]]) + 1e-12
            // L = -u / d;  dL/dz = -(du/dz) / d + u / d^2 * (dd/dz)
            var grad = [Int: Double]()
            grad[y, default: 0] += -1 / d
            grad[m, default: 0] += 1 / d
            grad[order[0], default: 0] += u / (d * d)
            grad[order[2], default: 0] -= u / (d * d)
            for (j, v) in grad { g[j] = Float(v) }
            return Float(-u / d)
        }
    }

    /// Targeted DLR (Croce & Hein 2020), towards class t:
    ///
    ///     DLR_t = -(z_y - z_t) / (z_π1 - (z_π3 + z_π4) / 2 + 1e-12)
    ///
    /// Needs at least 4 classes.
    public static func targetedDLR(logits: Tensor, labels: [Int32], targets: [Int32]) -> (values: [Float], gradient: Tensor) {
        precondition(logits.shape.count == 2 && logits.shape[1] >= 4, "targeted DLR needs at least 4 classes")
        return perRow(logits, labels, targets) { z, k, y, t, g in
            let order = topIndices(z, k, 4)
            let u = Double(z[y]) - Double(z[t])
            let d = Double(z[order[0]]) - 0.5 * (Double(z[order[2]]) + Double(z[order[3]])) + 1e-12
            var grad = [Int: Double]()
            grad[y, default: 0] += -1 / d
            grad[t, default: 0] += 1 / d
            grad[order[0], default: 0] += u / (d * d)
            grad[order[2], default: 0] -= 0.5 * u / (d * d)
            grad[order[3], default: 0] -= 0.5 * u / (d * d)
            for (j, v) in grad { g[j] = Float(v) }
            return Float(-u / d)
        }
    }

    /// The class with the largest logit other than `excluding` (lowest index on ties).
    @inline(__always) static func bestOther(_ z: UnsafeMutablePointer<Float>, _ k: Int, excluding y: Int) -> Int {
        var best = y == 0 ? 1 : 0
        for j in 0..<k where j != y && z[j] > z[best] { best = j }
        return best
    }

    /// The indices of the `count` largest logits, largest first (lowest index on ties).
    static func topIndices(_ z: UnsafeMutablePointer<Float>, _ k: Int, _ count: Int) -> [Int] {
        var order = Array(0..<k)
        order.sort { z[$0] > z[$1] || (z[$0] == z[$1] && $0 < $1) }
        return Array(order.prefix(count))
    }

    /// Runs `row(z, K, label, target, gradientRow)` for every row; the gradient row starts at 0.
    private static func perRow(_ logits: Tensor, _ labels: [Int32], _ targets: [Int32]?,
                               _ row: (UnsafeMutablePointer<Float>, Int, Int, Int, UnsafeMutablePointer<Float>) -> Float)
        -> (values: [Float], gradient: Tensor) {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                     "logits \(logits.shape) do not match \(labels.count) labels")
        let n = logits.shape[0], k = logits.shape[1]
        precondition(k >= 2, "a margin needs at least 2 classes")
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < k }, "labels must lie in 0..<\(k)")
        if let targets {
            precondition(targets.count == n && targets.allSatisfy { $0 >= 0 && Int($0) < k }, "targets must lie in 0..<\(k)")
        }
        var gradient = Tensor(shape: logits.shape)
        var values = [Float](repeating: 0, count: n)
        let z = logits.readPointer, g = gradient.uniquePointer()
        values.withUnsafeMutableBufferPointer { vp in
            let v = vp.baseAddress!
            Parallel.forEachIndex(n, cost: k * 16) { b in
                v[b] = row(z + b * k, k, Int(labels[b]), targets.map { Int($0[b]) } ?? -1, g + b * k)
            }
        }
        return (values, gradient)
    }
}
