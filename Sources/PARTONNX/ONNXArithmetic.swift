import Foundation
import PARTEngine
import PARTNN

/// A node of several activations in and one out (a sum, a product, a concatenation): its
/// forward pass returns the output and the function that takes the output's gradient to one
/// gradient per input.
protocol Join {
    func forward(_ xs: [Tensor]) throws -> (Tensor, backward: (Tensor) throws -> [Tensor])
}

/// The element-wise arithmetic of ONNX's Add, Sub, Mul and Div.
enum Arithmetic: String {
    case add = "Add", subtract = "Sub", multiply = "Mul", divide = "Div"

    func apply(_ a: Float, _ b: Float) -> Float {
        switch self {
        case .add: return a + b
        case .subtract: return a - b
        case .multiply: return a * b
        case .divide: return a / b
        }
    }

    /// d(a op b)/da and d(a op b)/db.
    func derivatives(_ a: Float, _ b: Float) -> (Float, Float) {
        switch self {
        case .add: return (1, 1)
        case .subtract: return (1, -1)
        case .multiply: return (b, a)
        case .divide: return (1 / b, -a / (b * b))
        }
    }
}

/// `a op b` of two activations, computed in f32 (the output has a's type): of one shape, or an
/// image [N, H, W, C] with one value per example and channel [N, 1, 1, C] broadcast over its
/// pixels (squeeze-and-excitation's channel weights), in either order. The broadcast operand's
/// gradient is summed over the pixels.
struct ElementwiseJoin: Join {
    let op: Arithmetic

    func forward(_ xs: [Tensor]) throws -> (Tensor, backward: (Tensor) throws -> [Tensor]) {
        let dtype = xs[0].dtype
        if op == .add && xs[0].shape == xs[1].shape {   // the residual sum, on the engine's kernel
            let y = try Tensor.sum(xs[0], try xs[1].converted(to: dtype))
            return (y, { [$0, $0] })
        }
        let a = try xs[0].converted(to: .f32).scalars, b = try xs[1].converted(to: .f32).scalars
        let shape = a.count >= b.count ? xs[0].shape : xs[1].shape
        let total = max(a.count, b.count), channels = shape[shape.count - 1], perExample = total / max(shape[0], 1)
        // The operand's entry for output entry i: i itself, or its example's and channel's.
        func index(_ count: Int) -> (Int) -> Int {
            count == total ? { $0 } : { ($0 / perExample) * channels + $0 % channels }
        }
        let ia = index(a.count), ib = index(b.count)
        let y = Tensor(shape: shape, values: (0..<total).map { op.apply(a[ia($0)], b[ib($0)]) })
        return (try y.converted(to: dtype), { [op] dy in
            let g = try dy.converted(to: .f32).scalars
            var da = [Float](repeating: 0, count: a.count), db = [Float](repeating: 0, count: b.count)
            for i in g.indices {
                let (j, k) = (ia(i), ib(i))
                let (p, q) = op.derivatives(a[j], b[k])
                da[j] += g[i] * p
                db[k] += g[i] * q
            }
            return [try Tensor(shape: xs[0].shape, values: da).converted(to: dy.dtype),
                    try Tensor(shape: xs[1].shape, values: db).converted(to: dy.dtype)]
        })
    }
}

/// Activations of one batch size and image size joined along their channels (ONNX's Concat on
/// axis 1): the last axis of the engine's NHWC, or of [N, K].
struct ChannelConcat: Join {
    func forward(_ xs: [Tensor]) throws -> (Tensor, backward: (Tensor) throws -> [Tensor]) {
        let dtype = xs[0].dtype
        let widths = xs.map { $0.shape.last! }, total = widths.reduce(0, +)
        let rows = xs[0].count / widths[0]
        let parts = try xs.map { try $0.converted(to: .f32).scalars }
        var y = [Float](repeating: 0, count: rows * total)
        var offset = 0
        for (part, width) in zip(parts, widths) {
            for r in 0..<rows {
                y.withUnsafeMutableBufferPointer { out in
                    for j in 0..<width { out[r * total + offset + j] = part[r * width + j] }
                }
            }
            offset += width
        }
        let shape = Array(xs[0].shape.dropLast()) + [total]
        return (try Tensor(shape: shape, values: y).converted(to: dtype), { dy in
            let g = try dy.converted(to: .f32).scalars
            var offset = 0
            return try zip(xs, widths).map { x, width in
                var part = [Float](repeating: 0, count: rows * width)
                for r in 0..<rows {
                    for j in 0..<width { part[r * width + j] = g[r * total + offset + j] }
                }
                offset += width
                return try Tensor(shape: x.shape, values: part).converted(to: dy.dtype)
            }
        })
    }
}

/// One operand of an element-wise op a constant: `x op c` or `c op x` (Sub and Div with the
/// constant first), or `x ^ c` (Pow). The constant, broadcast to one example's shape, is kept
/// in the engine's order (NHWC for images); the batch is never broadcast.
final class ConstantOperand: Layer {
    enum Op {
        case arithmetic(Arithmetic, constantFirst: Bool)
        case power
    }

    let op: Op
    /// One value per element of an example.
    let constant: [Float]

    init(_ op: Op, constant: [Float]) {
        self.op = op
        self.constant = constant
    }

    private func apply(_ x: Float, _ c: Float) -> Float {
        switch op {
        case .arithmetic(let a, let constantFirst): return constantFirst ? a.apply(c, x) : a.apply(x, c)
        case .power: return c == 2 ? x * x : c == 1 ? x : pow(x, c)
        }
    }

    private func derivative(_ x: Float, _ c: Float) -> Float {
        switch op {
        case .arithmetic(let a, let constantFirst): return constantFirst ? a.derivatives(c, x).1 : a.derivatives(x, c).0
        case .power: return c == 2 ? 2 * x : c == 1 ? 1 : c * pow(x, c - 1)
        }
    }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let v = try x.converted(to: .f32).scalars, n = constant.count
        precondition(v.count % n == 0, "an operand of \(n) values for \(x.shape)")
        let y = Tensor(shape: x.shape, values: v.indices.map { apply(v[$0], constant[$0 % n]) })
        tape?.record { [self] dy in
            let g = try dy.converted(to: .f32).scalars
            let dx = g.indices.map { g[$0] * derivative(v[$0], constant[$0 % n]) }
            return try Tensor(shape: dy.shape, values: dx).converted(to: dy.dtype)
        }
        return try y.converted(to: x.dtype)
    }
}

/// Constant padding of images (ONNX's Pad in mode "constant" on the height and width).
final class ImagePad: Layer {
    let top, left, bottom, right: Int
    let value: Float

    init(top: Int, left: Int, bottom: Int, right: Int, value: Float) {
        self.top = top
        self.left = left
        self.bottom = bottom
        self.right = right
        self.value = value
    }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow) = (h + top + bottom, w + left + right)
        let v = try x.converted(to: .f32).scalars
        var y = [Float](repeating: value, count: n * oh * ow * c)
        for b in 0..<n {
            for i in 0..<h {
                let from = ((b * h + i) * w) * c, to = ((b * oh + i + top) * ow + left) * c
                y.withUnsafeMutableBufferPointer { out in
                    for j in 0..<(w * c) { out[to + j] = v[from + j] }
                }
            }
        }
        tape?.record { dy in
            let g = try dy.converted(to: .f32).scalars
            var dx = [Float](repeating: 0, count: n * h * w * c)
            for b in 0..<n {
                for i in 0..<h {
                    let to = ((b * h + i) * w) * c, from = ((b * oh + i + self.top) * ow + self.left) * c
                    for j in 0..<(w * c) { dx[to + j] = g[from + j] }
                }
            }
            return try Tensor(shape: x.shape, values: dx).converted(to: dy.dtype)
        }
        return try Tensor(shape: [n, oh, ow, c], values: y).converted(to: x.dtype)
    }
}
