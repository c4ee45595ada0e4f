import PARTEngine

/// The per-channel weights and maps of class activation map methods (docs/method.md#3-from-cam-to-epsilon-map), from the
/// activations A and gradients G = d logit_c / dA of a layer, both NHWC [N, h, w, K]. Each image
/// is one task on the engine's workers; sums over positions accumulate in double precision.
public enum CAMKernels {
    /// XGrad-CAM weights w_k = sum_ij(A_kij G_kij) / (sum_ij A_kij + 1e-7), [N, K].
    public static func xgradWeights(activations a: Tensor, gradients g: Tensor) -> Tensor {
        perImageWeights(a, g) { ap, gp, hw, c, out in
            var num = [Double](repeating: 0, count: c), den = [Double](repeating: 0, count: c)
            for p in 0..<hw {
                for k in 0..<c {
                    num[k] += Double(ap[p * c + k]) * Double(gp[p * c + k])
                    den[k] += Double(ap[p * c + k])
                }
            }
            for k in 0..<c { out[k] = Float(num[k] / (den[k] + 1e-7)) }
        }
    }

    /// Grad-CAM++ weights (Chattopadhyay et al. 2018, eq. 19 with the exponential score, whose
    /// second and third derivatives are G^2 and G^3):
    ///
    ///     alpha_kij = G_kij^2 / (2 G_kij^2 + (sum_ab A_kab) G_kij^3)   (0 where the denominator is 0)
    ///     w_k       = sum_ij alpha_kij ReLU(G_kij)
    ///
    /// This is the paper's (and pytorch-grad-cam's) alpha, with the activations summed over
    /// positions; torchcam 0.5 sums A * G^3 instead and, by dividing a masked copy, leaves alpha
    /// at G^2, so its maps differ.
    public static func gradCAMPlusPlusWeights(activations a: Tensor, gradients g: Tensor) -> Tensor {
        perImageWeights(a, g) { ap, gp, hw, c, out in
            var total = [Double](repeating: 0, count: c)
            for p in 0..<hw { for k in 0..<c { total[k] += Double(ap[p * c + k]) } }
            var w = [Double](repeating: 0, count: c)
            for p in 0..<hw {
                for k in 0..<c {
                    let gv = Double(gp[p * c + k])
                    guard gv > 0 else { continue }   // ReLU(G) = 0: no contribution
                    let g2 = gv * gv
                    let denominator = 2 * g2 + total[k] * g2 * gv
                    if denominator != 0 { w[k] += g2 / denominator * gv }
                }
            }
            for k in 0..<c { out[k] = Float(w[k]) }
        }
    }

    /// The Layer-CAM map before its ReLU: sum_k ReLU(G_kij) A_kij, [N, h, w].
    public static func layerCAM(activations a: Tensor, gradients g: Tensor) -> Tensor {
        precondition(a.shape.count == 4 && a.shape == g.shape, "Layer-CAM of activations \(a.shape), gradients \(g.shape)")
        let n = a.shape[0], hw = a.shape[1] * a.shape[2], c = a.shape[3]
        var out = Tensor.uninitialized(shape: [n, a.shape[1], a.shape[2]])
        let ap = a.readPointer, gp = g.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(n * hw, cost: c) { q in
            var s = 0.0
            for k in 0..<c {
                let gv = gp[q * c + k]
                if gv > 0 { s += Double(gv) * Double(ap[q * c + k]) }
            }
            d[q] = Float(s)
        }
        return out
    }

    /// Runs `body(A_n, G_n, positions, channels, weightsRow)` per image; returns weights [N, K].
    private static func perImageWeights(
        _ a: Tensor, _ g: Tensor,
        _ body: (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, Int, Int, UnsafeMutablePointer<Float>) -> Void
    ) -> Tensor {
        precondition(a.shape.count == 4 && a.shape == g.shape, "CAM weights of activations \(a.shape), gradients \(g.shape)")
        let n = a.shape[0], hw = a.shape[1] * a.shape[2], c = a.shape[3]
        var out = Tensor.uninitialized(shape: [n, c])
        let ap = a.readPointer, gp = g.readPointer, d = out.uniquePointer()
        Parallel.forEachIndex(n, cost: hw * c * 2) { b in
            body(ap + b * hw * c, gp + b * hw * c, hw, c, d + b * c)
        }
        return out
    }
}
