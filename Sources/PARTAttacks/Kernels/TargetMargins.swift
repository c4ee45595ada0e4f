import PARTEngine

/// Targeted margins of logits [N, K] and the choice of targets: the losses of targeted attacks
/// such as MMA (Gao et al. 2022), per example with their gradients d loss_i / d logits_i.
public enum TargetMargins {
    /// For each row, the `count` classes other than the label with the largest logits, the
    /// largest first (lower class index on ties). `count` must be < K.
    public static func topOthers(logits: Tensor, labels: [Int32], count: Int) -> [[Int32]] {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                     "logits \(logits.shape) do not match \(labels.count) labels")
        let k = logits.shape[1]
        precondition(count >= 0 && count < k, "\(count) targets among \(k) classes")
        var out = [[Int32]](repeating: [], count: labels.count)
        let z = logits.readPointer
        out.withUnsafeMutableBufferPointer { o in
            let base = o.baseAddress!
            Parallel.forEachIndex(labels.count, cost: k * 8) { b in
                let row = z + b * k, y = Int(labels[b])
                var order = (0..<k).filter { $0 != y }
                order.sort { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
                base[b] = order.prefix(count).map { Int32($0) }
            }
        }
        return out
    }

    /// (rows, classes) of logits [N, K], checked against one label and one target class per row.
    static func shape(_ logits: Tensor, labels: [Int32], targets: [Int32]) -> (n: Int, k: Int) {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count && targets.count == labels.count,
                     "logits \(logits.shape) do not match \(labels.count) labels and \(targets.count) targets")
        let k = logits.shape[1]
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < k } && targets.allSatisfy { $0 >= 0 && Int($0) < k },
                     "labels and targets must lie in 0..<\(k)")
        return (logits.shape[0], k)
    }

    /// z_t - z_y per row: positive when the target beats the true class.
    public static func targetMargin(logits: Tensor, labels: [Int32], targets: [Int32]) -> [Float] {
        hinge(logits: logits, labels: labels, targets: targets, confidence: 0).margins
    }

    /// The hinge loss -max(z_y - z_t + confidence, 0) per row (MMA's attack loss: ascending it
    /// raises the target until it leads by `confidence`), its gradient, and z_t - z_y.
    public static func hinge(logits: Tensor, labels: [Int32], targets: [Int32], confidence: Float)
        -> (values: [Float], gradient: Tensor, margins: [Float]) {
        let (n, k) = TargetMargins.shape(logits, labels: labels, targets: targets)
        var gradient = Tensor(shape: logits.shape)
        var values = [Float](repeating: 0, count: n), margins = [Float](repeating: 0, count: n)
        let z = logits.readPointer, g = gradient.uniquePointer()
        values.withUnsafeMutableBufferPointer { vp in
            margins.withUnsafeMutableBufferPointer { mp in
                let v = vp.baseAddress!, m = mp.baseAddress!
                Parallel.forEachIndex(n, cost: 8) { b in
                    let y = Int(labels[b]), t = Int(targets[b])
                    let row = z + b * k
                    m[b] = row[t] - row[y]
                    let inner = row[y] - row[t] + confidence
                    if inner > 0 && y != t {
                        v[b] = -inner
                        g[b * k + y] = -1
                        g[b * k + t] = 1
                    }
                }
            }
        }
        return (values, gradient, margins)
    }
}
