import PARTEngine
import PARTNN

/// Stochastic gradient descent with momentum and weight decay, with PyTorch's semantics
/// (`torch.optim.SGD`, dampening 0, no Nesterov):
///
///     d = grad + weightDecay * w
///     buf = d                      (first step)
///     buf = momentum * buf + d     (later steps)
///     w = w - lr * buf
public final class SGD {
    public var learningRate: Float
    public let momentum: Float
    public let weightDecay: Float
    private let parameters: [(String, Parameter)]
    /// Momentum buffers by parameter name; empty until the first step (as in PyTorch).
    public internal(set) var momentumBuffers: [String: Tensor] = [:]

    /// The parameters' names and shapes (checked when momentum is restored from a checkpoint).
    var parameterShapes: [(String, [Int])] { parameters.map { ($0.0, $0.1.value.shape) } }

    public init(parameters: [(String, Parameter)], learningRate: Float, momentum: Float = 0.9, weightDecay: Float = 0) {
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    /// Applies one update from the parameters' accumulated gradients.
    public func step() {
        for (name, p) in parameters {
            let firstStep = momentumBuffers[name] == nil
            var buf = momentumBuffers.removeValue(forKey: name) ?? Tensor.uninitialized(shape: p.value.shape)
            p.update { w in
                OptimizerKernels.sgd(weights: &w, gradient: p.gradient, momentumBuffer: &buf, learningRate: learningRate,
                                     momentum: momentum, weightDecay: weightDecay, firstStep: firstStep)
            }
            momentumBuffers[name] = buf
        }
    }

    public func zeroGradients() {
        for (_, p) in parameters { p.zeroGradient() }
    }
}
