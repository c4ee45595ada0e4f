import Foundation
import PARTEngine
import PARTNN

/// The Gauss error function, element by element (ONNX's Erf: GELU as exporters before opset 20
/// write it, `0.5 x (1 + erf(x / sqrt 2))`, which then runs node by node). d erf(x)/dx =
/// 2 / sqrt(pi) exp(-x^2). Computed in f32 (the output has the input's type).
final class ErfLayer: Layer {
    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let v = try x.converted(to: .f32).scalars
        tape?.record { dy in
            let g = try dy.converted(to: .f32).scalars
            let scale = 2 / Float.pi.squareRoot()
            return try Tensor(shape: dy.shape, values: g.indices.map { g[$0] * scale * exp(-v[$0] * v[$0]) })
                .converted(to: dy.dtype)
        }
        return try Tensor(shape: x.shape, values: v.map { erf($0) }).converted(to: x.dtype)
    }
}

/// Softmax or log-softmax over the features of [N, K] (ONNX's Softmax and LogSoftmax on the
/// last axis): a graph that ends in probabilities rather than logits. It runs so that it can be
/// evaluated, and `part eval`'s checks say that attacks on probabilities are weak.
final class SoftmaxLayer: Layer {
    let logarithm: Bool

    init(logarithm: Bool) { self.logarithm = logarithm }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let k = x.shape[x.shape.count - 1], v = try x.converted(to: .f32).scalars
        var p = [Float](repeating: 0, count: v.count), y = p
        for row in stride(from: 0, to: v.count, by: max(k, 1)) {
            let r = row..<(row + k)
            let top = v[r].max() ?? 0
            for i in r { p[i] = exp(v[i] - top) }
            let sum = p[r].reduce(0, +), logSum = log(sum)
            for i in r {
                p[i] /= sum
                y[i] = logarithm ? v[i] - top - logSum : p[i]
            }
        }
        tape?.record { [logarithm] dy in
            let g = try dy.converted(to: .f32).scalars
            var dx = g
            for row in stride(from: 0, to: g.count, by: max(k, 1)) {
                let r = row..<(row + k)
                // softmax: p (g - <g, p>); log-softmax: g - p sum(g).
                let s = logarithm ? g[r].reduce(0, +) : r.reduce(0) { $0 + g[$1] * p[$1] }
                for i in r { dx[i] = logarithm ? g[i] - p[i] * s : p[i] * (g[i] - s) }
            }
            return try Tensor(shape: dy.shape, values: dx).converted(to: dy.dtype)
        }
        return try Tensor(shape: x.shape, values: y).converted(to: x.dtype)
    }
}
