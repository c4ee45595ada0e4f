import PARTEngine

/// Ops that turn importance maps [N, H, W] into per-entry budgets [N, H, W, C] (docs/method.md#3-from-cam-to-epsilon-map).
public enum BudgetMaps {
    /// z = (u - mean(u)) / std(u) over each image's pixels (population std); eps where z > 1,
    /// else epsLow, the same for every channel. An image with std 0 gets epsLow everywhere.
    public static func zscore(_ upsampled: Tensor, channels: Int, epsilon: Float, epsilonLow: Float) -> Tensor {
        precondition(upsampled.shape.count == 3, "the z-score rule takes maps [N, H, W], got \(upsampled.shape)")
        let (n, h, w) = (upsampled.shape[0], upsampled.shape[1], upsampled.shape[2])
        let hw = h * w
        let stats = upsampled.rowMeanStd()
        var out = Tensor.uninitialized(shape: [n, h, w, channels])
        let u = upsampled.readPointer, d = out.uniquePointer()
        stats.withUnsafeBufferPointer { sp in
            let s = sp.baseAddress!
            Parallel.forEachIndex(n * hw, cost: channels) { q in
                let (mean, std) = s[q / hw]
                let important = std > 0 && (Double(u[q]) - mean) / std > 1
                (d + q * channels).update(repeating: important ? epsilon : epsilonLow, count: channels)
            }
        }
        return out
    }
}
