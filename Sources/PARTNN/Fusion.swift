import PARTEngine

// Fused layer sequences. A convolution followed by a ReLU runs as one oneDNN kernel with a
// ReLU post-op in every mode; in evaluation mode (attack and CAM passes) a convolution
// followed by batch normalisation runs as one convolution with folded weights and bias,
//
//     s = gamma / sqrt(running_var + eps),  w' = w * s (per output channel),
//     b' = (b - running_mean) * s + beta,
//
// which is exact algebra (up to rounding) and removes the batch-norm passes, forward and
// backward, from the ten PGD steps of every training batch. Training-mode batch norm
// normalises with batch statistics and cannot be folded; it runs unfused.

/// A convolution with batch norm folded in, valid for one set of versions of the weights,
/// the batch-norm parameters and its running statistics.
final class FoldedConvolution {
    let op: Convolution
    let versions: [Int]
    let weight: Tensor
    let bias: Tensor
    /// Identifies the folded values for the kernel's weight-layout cache.
    let version: Int

    init(op: Convolution, versions: [Int], weight: Tensor, bias: Tensor) {
        self.op = op
        self.versions = versions
        self.weight = weight
        self.bias = bias
        self.version = Versions.next()
    }
}

extension Conv2d {
    /// The convolution with `batchNorm` folded in, rebuilt when any folded value changed.
    func folded(with batchNorm: BatchNorm2d) -> FoldedConvolution {
        let versions = [weight.version, bias?.version ?? 0, batchNorm.weight.version, batchNorm.bias.version,
                        batchNorm.runningMean.version, batchNorm.runningVar.version]
        return folding.withLock { cache in
            if let f = cache, f.versions == versions { return f }
            let c = op.outChannels
            let gamma = batchNorm.weight.value.scalars, beta = batchNorm.bias.value.scalars
            let mean = batchNorm.runningMean.value.scalars, variance = batchNorm.runningVar.value.scalars
            let b0 = bias?.value.scalars ?? [Float](repeating: 0, count: c)
            var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
            for k in 0..<c {
                scale[k] = gamma[k] / (variance[k] + batchNorm.op.epsilon).squareRoot()
                shift[k] = (b0[k] - mean[k]) * scale[k] + beta[k]
            }
            var w = weight.value
            w.scaleRows(by: scale)
            let op = cache?.op ?? Convolution(inChannels: op.inChannels, outChannels: c, kernel: op.kernel,
                                              stride: op.stride, padding: op.padding,
                                              paddingEnd: op.paddingEnd, groups: op.groups, dilation: op.dilation,
                                              bias: true)
            let f = FoldedConvolution(op: op, versions: versions, weight: w, bias: Tensor(shape: [c], values: shift))
            cache = f
            return f
        }
    }

    /// Evaluation mode: relu?(bn(conv(x)) + accumulate?) as one kernel. The tape records the
    /// input gradient only (folded passes serve attacks and CAMs); `residualGradient`, when
    /// given, receives dL/d(accumulate) during the backward pass.
    func forwardFolded(_ x: Tensor, batchNorm: BatchNorm2d, relu: Bool, accumulate: Tensor? = nil, tape: Tape?,
                       residualGradient: ((Tensor) throws -> Void)? = nil) throws -> Tensor {
        let f = folded(with: batchNorm)
        let y = try f.op.forward(x, weight: f.weight, bias: f.bias, weightVersion: f.version, relu: relu,
                                 accumulate: accumulate, winograd: true)
        if let tape {
            precondition(!tape.parameterGradients, "folded batch norm serves evaluation-mode passes only")
            let needInput = tape.needsInputGradient
            tape.record { dy in
                let dz = relu ? try ReLU.backward(dy, output: y) : dy
                try residualGradient?(dz)
                guard needInput else { return Tensor(shape: [0]) }
                return try f.op.backward(dz, x: x, weight: f.weight, weightVersion: f.version, needInputGradient: true,
                                         needParameterGradients: false, winograd: true).input ?? Tensor(shape: [0])
            }
        }
        return y
    }
}

extension Sequential {
    /// Runs the layers, fusing conv + ReLU, linear + ReLU and (in evaluation mode without
    /// parameter gradients) conv + batch norm [+ ReLU].
    func fusedForward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        var h = x
        var i = 0
        let foldable = mode == .eval && !(tape?.parameterGradients ?? false) && Optimizations.isEnabled(.fold)
        let fuse = Optimizations.isEnabled(.fuse)
        while i < layers.count {
            let layer = layers[i]
            let next = i + 1 < layers.count ? layers[i + 1] : nil
            if let conv = layer as? Conv2d, foldable, let bn = next as? BatchNorm2d {
                let relu = fuse && i + 2 < layers.count && layers[i + 2] is ReLULayer
                h = try conv.forwardFolded(h, batchNorm: bn, relu: relu, tape: tape)
                i += relu ? 3 : 2
            } else if let conv = layer as? Conv2d, fuse, next is ReLULayer {
                h = try conv.forward(h, relu: true, tape: tape)
                i += 2
            } else if let linear = layer as? Linear, fuse, next is ReLULayer {
                h = try linear.forward(h, relu: true, tape: tape)
                i += 2
            } else {
                h = try layer.forward(h, mode: mode, tape: tape)
                i += 1
            }
        }
        return h
    }
}
