import Foundation

/// Softmax-family ops on logits [N, K], row by row, in double precision inside a row.
public enum Softmax {
    /// log softmax of each row.
    public static func logProbabilities(_ logits: Tensor) -> Tensor {
        eachElement(of: logits, "log-softmax") { z, logSum in Float(z - logSum) }
    }

    /// softmax of each row.
    public static func probabilities(_ logits: Tensor) -> Tensor {
        eachElement(of: logits, "softmax") { z, logSum in Float(Foundation.exp(z - logSum)) }
    }

    /// `value(z, log sum exp of z's row)` for every logit z, rows spread over the workers.
    private static func eachElement(of logits: Tensor, _ name: String, _ value: (Double, Double) -> Float) -> Tensor {
        precondition(logits.shape.count == 2, "\(name) needs [N, K], got \(logits.shape)")
        let k = logits.shape[1]
        var out = Tensor.uninitialized(shape: logits.shape)
        let z = logits.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(logits.shape[0], cost: k * 8) { b in
            let row = z + b * k
            let logSum = logSumExp(row, k)
            for j in 0..<k { d[b * k + j] = value(Double(row[j]), logSum) }
        }
        return out
    }

    /// log(sum_j exp(row[j])), stable.
    @inlinable public static func logSumExp(_ row: UnsafeMutablePointer<Float>, _ k: Int) -> Double {
        var m = row[0]
        for j in 1..<k { m = Swift.max(m, row[j]) }
        var s = 0.0
        for j in 0..<k { s += Foundation.exp(Double(row[j] - m)) }
        return Double(m) + Foundation.log(s)
    }
}

/// Softmax cross-entropy (`F.cross_entropy`).
public enum CrossEntropy {
    /// Loss averaged over the batch (reduction "mean") and dL/dlogits.
    public static func forwardBackward(logits: Tensor, labels: [Int32]) -> (loss: Float, gradient: Tensor) {
        var (losses, grad) = perExample(logits: logits, labels: labels)
        let n = labels.count
        grad.scale(by: 1 / Float(n))
        return (Float(losses.reduce(0.0) { $0 + Double($1) } / Double(n)), grad)
    }

    /// Per-example losses and, per example, d loss_i / d logits_i (not divided by N).
    /// Labels must lie in 0..<K (callers validate them against the model).
    public static func perExample(logits: Tensor, labels: [Int32]) -> (losses: [Float], gradient: Tensor) {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                     "logits \(logits.shape) do not match \(labels.count) labels")
        let n = logits.shape[0], k = logits.shape[1]
        precondition(labels.allSatisfy { $0 >= 0 && Int($0) < k }, "labels must lie in 0..<\(k)")
        var grad = Tensor.uninitialized(shape: logits.shape)
        var losses = [Float](repeating: 0, count: n)
        let z = logits.readPointer, g = grad.uniquePointer()
        losses.withUnsafeMutableBufferPointer { lp in
            let l = lp.baseAddress!
            labels.withUnsafeBufferPointer { yp in
                let y = yp.baseAddress!
                Parallel.forEachIndex(n, cost: k * 8) { b in
                    let row = z + b * k
                    let label = Int(y[b])
                    let logSum = Softmax.logSumExp(row, k)
                    l[b] = Float(logSum - Double(row[label]))
                    for j in 0..<k {
                        g[b * k + j] = Float(Foundation.exp(Double(row[j]) - logSum)) - (j == label ? 1 : 0)
                    }
                }
            }
        }
        return (losses, grad)
    }
}
