import PARTEngine

/// The update rules of optimisers, element by element.
public enum OptimizerKernels {
    /// One step of SGD with momentum and weight decay, PyTorch's semantics (dampening 0, no
    /// Nesterov), in place:
    ///
    ///     d = grad + weightDecay * w
    ///     buf = d  (first step, or momentum 0);  buf = momentum * buf + d  (later steps)
    ///     w = w - lr * buf
    public static func sgd(weights: inout Tensor, gradient: Tensor, momentumBuffer: inout Tensor, learningRate: Float,
                           momentum: Float, weightDecay: Float, firstStep: Bool) {
        precondition(weights.shape == gradient.shape && weights.count == momentumBuffer.count,
                     "SGD step of \(weights.shape) with a gradient \(gradient.shape)")
        let g = gradient.readPointer, w = weights.uniquePointer(), buf = momentumBuffer.uniquePointer()
        let fresh = momentum == 0 || firstStep
        Parallel.forEach(weights.count) { r in
            for i in r {
                let d = g[i] + weightDecay * w[i]
                let b = fresh ? d : momentum * buf[i] + d
                buf[i] = b
                w[i] -= learningRate * b
            }
        }
    }
}
