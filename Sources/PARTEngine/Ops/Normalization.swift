/// Per-channel input normalisation (x - mean[c]) / std[c] of NHWC images, as torchvision's
/// `Normalize`, with its backward: the first layer of a model trained on normalised inputs.
public enum ChannelNormalization {
    /// (x[..., c] - mean[c]) / std[c].
    public static func forward(_ x: Tensor, mean: [Float], std: [Float]) -> Tensor {
        let c = mean.count
        precondition(std.count == c && x.shape.last == c, "normalisation of \(x.shape) with \(c) channels")
        var out = Tensor.uninitialized(shape: x.shape)
        let s = x.readPointer, d = out.uniquePointer()
        mean.withUnsafeBufferPointer { m in
            std.withUnsafeBufferPointer { v in
                let mp = m.baseAddress!, vp = v.baseAddress!
                Parallel.forEachIndex(x.count / Swift.max(c, 1), cost: c) { p in
                    for k in 0..<c { d[p * c + k] = (s[p * c + k] - mp[k]) / vp[k] }
                }
            }
        }
        return out
    }

    /// dL/dx = dL/dy / std[c].
    public static func backward(_ dy: Tensor, std: [Float]) -> Tensor {
        Channels.combined(dy, std, "normalisation backward") { $0 / $1 }
    }
}
