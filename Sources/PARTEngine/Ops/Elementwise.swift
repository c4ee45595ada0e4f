import Foundation

// Element-wise and layout ops in plain Swift: memory-bound loops the compiler vectorises.
// They run between oneDNN calls, never concurrently with them (oneDNN owns the cores).

extension Tensor {
    /// self += other (same shape).
    public mutating func add(_ other: Tensor) {
        precondition(shape == other.shape, "cannot add \(other.shape) to \(shape)")
        let src = other.readPointer
        withUnsafeMutableBufferPointer { dst in
            for i in 0..<dst.count { dst[i] += src[i] }
        }
    }

    /// self += alpha * other (same shape).
    public mutating func add(_ other: Tensor, scaledBy alpha: Float) {
        precondition(shape == other.shape, "cannot add \(other.shape) to \(shape)")
        let src = other.readPointer
        withUnsafeMutableBufferPointer { dst in
            for i in 0..<dst.count { dst[i] += alpha * src[i] }
        }
    }

    /// A new tensor with `transform` applied to every element.
    public func map(_ transform: (Float) -> Float) -> Tensor {
        var out = Tensor.uninitialized(shape: shape)
        let src = readPointer
        out.withUnsafeMutableBufferPointer { dst in
            for i in 0..<dst.count { dst[i] = transform(src[i]) }
        }
        return out
    }

    /// Sets every element to `value`.
    public mutating func fill(_ value: Float) {
        withUnsafeMutableBufferPointer { $0.update(repeating: value) }
    }

    /// Largest absolute element (0 for an empty tensor).
    public func maxAbs() -> Float {
        withUnsafeBufferPointer { b in b.reduce(Float(0)) { Swift.max($0, Swift.abs($1)) } }
    }
}

/// Global average pooling [N, H, W, C] → [N, C] (as `adaptive_avg_pool2d(x, 1).flatten(1)`).
public enum GlobalAveragePool {
    public static func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4, "global average pool expects [N, H, W, C], got \(x.shape)")
        let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
        var y = Tensor(shape: [n, c])
        let src = x.readPointer
        let inv = 1 / Float(hw)
        y.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                let row = dst.baseAddress! + b * c
                for p in 0..<hw {
                    let pix = src + (b * hw + p) * c
                    for k in 0..<c { row[k] += pix[k] }
                }
                for k in 0..<c { row[k] *= inv }
            }
        }
        return y
    }

    /// dL/dx for an input of shape `inputShape`: each position gets dy / (H * W).
    public static func backward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3]
        precondition(dy.shape == [n, c])
        var dx = Tensor.uninitialized(shape: inputShape)
        let g = dy.readPointer
        let inv = 1 / Float(hw)
        dx.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                for p in 0..<hw {
                    let pix = dst.baseAddress! + (b * hw + p) * c
                    for k in 0..<c { pix[k] = g[b * c + k] * inv }
                }
            }
        }
        return dx
    }
}

/// Flatten [N, H, W, C] → [N, C*H*W] in PyTorch's C, H, W order, so that linear layers keep
/// PyTorch's weight layout (`x.flatten(1)` on an NCHW tensor).
public enum FlattenCHW {
    public static func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4)
        let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
        var y = Tensor.uninitialized(shape: [n, c * hw])
        let src = x.readPointer
        y.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                for p in 0..<hw {
                    for k in 0..<c { dst[b * c * hw + k * hw + p] = src[(b * hw + p) * c + k] }
                }
            }
        }
        return y
    }

    public static func backward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3]
        precondition(dy.shape == [n, c * hw])
        var dx = Tensor.uninitialized(shape: inputShape)
        let g = dy.readPointer
        dx.withUnsafeMutableBufferPointer { dst in
            for b in 0..<n {
                for p in 0..<hw {
                    for k in 0..<c { dst[(b * hw + p) * c + k] = g[b * c * hw + k * hw + p] }
                }
            }
        }
        return dx
    }
}

/// Layout conversions between PyTorch's NCHW and the engine's NHWC.
public enum Layout {
    /// [N, C, H, W] → [N, H, W, C].
    public static func nchwToNHWC(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4)
        let n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3]
        return FlattenCHW.backward(x.reshaped([n, c * h * w]), inputShape: [n, h, w, c])
    }

    /// [N, H, W, C] → [N, C, H, W].
    public static func nhwcToNCHW(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4)
        return FlattenCHW.forward(x).reshaped([x.shape[0], x.shape[3], x.shape[1], x.shape[2]])
    }
}

/// Softmax cross-entropy averaged over the batch (`F.cross_entropy`, reduction "mean").
public enum CrossEntropy {
    /// Loss and dL/dlogits for logits [N, K] and integer labels.
    public static func forwardBackward(logits: Tensor, labels: [Int32]) -> (loss: Float, gradient: Tensor) {
        let (losses, grad) = perExample(logits: logits, labels: labels)
        let n = labels.count
        let scaled = grad.map { $0 / Float(n) }
        return (Float(losses.reduce(0.0) { $0 + Double($1) } / Double(n)), scaled)
    }

    /// Per-example losses and, per example, d loss_i / d logits_i (not divided by N).
    public static func perExample(logits: Tensor, labels: [Int32]) -> (losses: [Float], gradient: Tensor) {
        precondition(logits.shape.count == 2 && logits.shape[0] == labels.count,
                     "logits \(logits.shape) do not match \(labels.count) labels")
        let n = logits.shape[0], k = logits.shape[1]
        var grad = Tensor.uninitialized(shape: logits.shape)
        var losses = [Float](repeating: 0, count: n)
        let z = logits.readPointer
        grad.withUnsafeMutableBufferPointer { g in
            for b in 0..<n {
                let row = z + b * k
                let y = Int(labels[b])
                precondition(y >= 0 && y < k, "label \(y) outside 0..<\(k)")
                var m = row[0]
                for j in 1..<k { m = Swift.max(m, row[j]) }
                var s = 0.0
                for j in 0..<k { s += Foundation.exp(Double(row[j] - m)) }
                let logSum = Double(m) + Foundation.log(s)
                losses[b] = Float(logSum - Double(row[y]))
                for j in 0..<k {
                    g[b * k + j] = Float(Foundation.exp(Double(row[j]) - logSum)) - (j == y ? 1 : 0)
                }
            }
        }
        return (losses, grad)
    }
}

extension Tensor {
    /// Per-row arg-max of a [N, K] tensor.
    public func argmaxRows() -> [Int32] {
        precondition(shape.count == 2)
        let n = shape[0], k = shape[1]
        let p = readPointer
        return (0..<n).map { b in
            var best = 0
            for j in 1..<k where p[b * k + j] > p[b * k + best] { best = j }
            return Int32(best)
        }
    }
}
