import Foundation

// Element-wise and layout ops: the one place where loops over tensor elements live, so that
// vectorising, threading and a later port touch one layer. Loops are simple enough for the
// compiler to vectorise; `Parallel` spreads them over the engine's workers between oneDNN calls.

extension Tensor {
    /// A mutable base address after making the storage unique (copy on write): the entry point
    /// of the element-wise kernels that algorithms keep beside themselves (attacks, CAM methods,
    /// losses, optimisers). Valid until the tensor is next copied or resized.
    public mutating func uniquePointer() -> UnsafeMutablePointer<Float> {
        withUnsafeMutableBufferPointer { $0.baseAddress! }
    }

    /// self += other (same shape).
    public mutating func add(_ other: Tensor) {
        precondition(shape == other.shape, "cannot add \(other.shape) to \(shape)")
        let src = other.readPointer, dst = uniquePointer()
        Parallel.forEach(count) { r in for i in r { dst[i] += src[i] } }
    }

    /// self += alpha * other (same shape): axpy.
    public mutating func add(_ other: Tensor, scaledBy alpha: Float) {
        precondition(shape == other.shape, "cannot add \(other.shape) to \(shape)")
        let src = other.readPointer, dst = uniquePointer()
        Parallel.forEach(count) { r in for i in r { dst[i] += alpha * src[i] } }
    }

    /// self *= factor.
    public mutating func scale(by factor: Float) {
        let dst = uniquePointer()
        Parallel.forEach(count) { r in for i in r { dst[i] *= factor } }
    }

    /// self *= other, element by element (same shape).
    public mutating func multiply(by other: Tensor) {
        precondition(shape == other.shape, "cannot multiply \(shape) by \(other.shape)")
        let src = other.readPointer, dst = uniquePointer()
        Parallel.forEach(count) { r in for i in r { dst[i] *= src[i] } }
    }

    /// self = a - b (same shapes), as a new tensor.
    public static func difference(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "cannot subtract \(b.shape) from \(a.shape)")
        var out = Tensor.uninitialized(shape: a.shape)
        let x = a.readPointer, y = b.readPointer, d = out.uniquePointer()
        Parallel.forEach(a.count) { r in for i in r { d[i] = x[i] - y[i] } }
        return out
    }

    /// Every element squared, as a new tensor.
    public func squared() -> Tensor {
        var out = Tensor.uninitialized(shape: shape)
        let s = readPointer, d = out.uniquePointer()
        Parallel.forEach(count) { r in for i in r { d[i] = s[i] * s[i] } }
        return out
    }

    /// Clamps every element to `lower...upper`.
    public mutating func clamp(_ lower: Float, _ upper: Float) {
        let d = uniquePointer()
        Parallel.forEach(count) { r in for i in r { d[i] = Swift.min(Swift.max(d[i], lower), upper) } }
    }

    /// A new tensor with `transform` applied to every element (single-threaded; for tests and
    /// rare paths: hot loops get a named op).
    public func map(_ transform: (Float) -> Float) -> Tensor {
        var out = Tensor.uninitialized(shape: shape)
        let src = readPointer, dst = out.uniquePointer()
        for i in 0..<count { dst[i] = transform(src[i]) }
        return out
    }

    /// Sets every element to `value`.
    public mutating func fill(_ value: Float) {
        let d = uniquePointer()
        Parallel.forEach(count) { r in (d + r.lowerBound).update(repeating: value, count: r.count) }
    }

    /// Largest absolute element (0 for an empty tensor).
    public func maxAbs() -> Float {
        let p = readPointer
        var chunkMax = [Float](repeating: 0, count: (count + 32_767) / 32_768)
        chunkMax.withUnsafeMutableBufferPointer { out in
            let o = out.baseAddress!
            Parallel.forEach(out.count, grain: 1) { chunks in
                for c in chunks {
                    var m: Float = 0
                    for i in (c * 32_768)..<Swift.min(count, (c + 1) * 32_768) { m = Swift.max(m, Swift.abs(p[i])) }
                    o[c] = m
                }
            }
        }
        return chunkMax.max() ?? 0
    }

    /// Sum of all elements, accumulated in double precision (deterministic for any thread count).
    public func sum() -> Double {
        let p = readPointer
        return Parallel.sum(count) { r in
            var s = 0.0
            for i in r { s += Double(p[i]) }
            return s
        }
    }

    /// The flat index of the first NaN or infinite element, nil when all are finite.
    public func firstNonFinite() -> Int? {
        let p = readPointer
        for i in 0..<count where !p[i].isFinite { return i }
        return nil
    }

    /// Copies `other`'s elements into this tensor's storage (same element count), keeping this
    /// tensor's shape: reuses a buffer instead of allocating.
    public mutating func copy(from other: Tensor) {
        precondition(count == other.count, "cannot copy \(other.shape) into \(shape)")
        let s = other.readPointer, d = uniquePointer()
        Parallel.forEach(count) { r in (d + r.lowerBound).update(from: s + r.lowerBound, count: r.count) }
    }
}

/// Global average pooling [N, H, W, C] → [N, C] (as `adaptive_avg_pool2d(x, 1).flatten(1)`).
public enum GlobalAveragePool {
    public static func forward(_ x: Tensor) -> Tensor {
        precondition(x.shape.count == 4, "global average pool expects [N, H, W, C], got \(x.shape)")
        var y = Channels.sums(x)
        y.scale(by: 1 / Float(x.shape[1] * x.shape[2]))
        return y
    }

    /// dL/dx for an input of shape `inputShape`: each position gets dy / (H * W).
    public static func backward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3]
        precondition(dy.shape == [n, c])
        var dx = Tensor.uninitialized(shape: inputShape)
        let g = dy.readPointer, dst = dx.uniquePointer()
        let inv = 1 / Float(hw)
        Parallel.forEachIndex(n * hw, cost: c) { p in
            let b = p / hw
            for k in 0..<c { dst[p * c + k] = g[b * c + k] * inv }
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
        transpose(x.readPointer, y.uniquePointer(), n: n, rows: hw, columns: c)
        return y
    }

    public static func backward(_ dy: Tensor, inputShape: [Int]) -> Tensor {
        let n = inputShape[0], hw = inputShape[1] * inputShape[2], c = inputShape[3]
        precondition(dy.shape == [n, c * hw])
        var dx = Tensor.uninitialized(shape: inputShape)
        transpose(dy.readPointer, dx.uniquePointer(), n: n, rows: c, columns: hw)
        return dx
    }

    /// `n` independent [rows, columns] → [columns, rows] transposes.
    static func transpose(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, n: Int, rows: Int,
                          columns: Int) {
        let size = rows * columns
        Parallel.forEachIndex(n, cost: size) { b in
            let s = src + b * size, d = dst + b * size
            for r in 0..<rows {
                for k in 0..<columns { d[k * rows + r] = s[r * columns + k] }
            }
        }
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
