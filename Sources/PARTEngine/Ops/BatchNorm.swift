import CDNNL

/// Batch normalisation over the channels of NHWC activations, on oneDNN.
///
///     y = scale * (x - mean) / sqrt(var + eps) + shift
///
/// Training mode normalises with the batch's statistics (biased variance) and returns them so
/// the caller can update its running statistics; evaluation mode uses the running statistics
/// given (`dnnl_use_global_stats`). Both modes have a backward pass: evaluation-mode backward
/// is what an attack on a model in eval mode needs.
public final class BatchNorm {
    public let channels: Int
    public let epsilon: Float

    public init(channels: Int, epsilon: Float = 1e-5) {
        self.channels = channels
        self.epsilon = epsilon
    }

    private struct Key: Hashable { let n, h, w: Int; let training: Bool; var dtype = DType.f32 }

    private final class Plan {
        let forward: DNNLPrimitive
        var backward: DNNLPrimitive?
        init(forward: DNNLPrimitive) { self.forward = forward }
    }

    private let plans = Locked([Key: Plan]())

    private func flags(training: Bool) -> UInt32 {
        (dnnl_use_scale.rawValue | dnnl_use_shift.rawValue) | (training ? 0 : dnnl_use_global_stats.rawValue)
    }

    private func dataDesc(_ key: Key) throws -> dnnl_memory_desc_t {
        try DNNL.desc([key.n, channels, key.h, key.w], dnnl_nhwc, DNNL.type(key.dtype))
    }

    private func describe(_ key: Key) -> String {
        "batch normalisation (\(key.training ? "train" : "eval")) of [\(key.n), \(key.h), \(key.w), \(channels)] \(key.dtype)"
    }

    private func plan(_ key: Key) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            var md = try dataDesc(key)
            var desc = dnnl_batch_normalization_desc_t()
            try DNNL.check(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training, &md, epsilon,
                                                                      flags(training: key.training)),
                           "describe a \(describe(key))")
            let p = Plan(forward: try DNNLPrimitive(&desc, what: "\(describe(key)) forward", kind: "batch norm forward"))
            plans[key] = p
            return p
        }
    }

    /// Saved by the forward pass for the backward one.
    public struct Record {
        public let training: Bool
        /// Per-channel mean and biased variance used to normalise (batch or running).
        public let mean: Tensor
        public let variance: Tensor
    }

    /// Forward. `x`: [N, H, W, C], f32 or bf16 (the output has its type; scale, shift and the
    /// statistics are f32 either way, and oneDNN computes in f32 and rounds the output, as
    /// PyTorch's batch norm does on a bf16 input with f32 parameters). In training mode
    /// `mean`/`variance` are ignored and the batch statistics are returned in the record; in
    /// evaluation mode they are the running statistics.
    public func forward(_ x: Tensor, scale: Tensor, shift: Tensor, training: Bool,
                        runningMean: Tensor, runningVariance: Tensor) throws -> (Tensor, Record) {
        precondition(x.shape.count == 4 && x.shape[3] == channels,
                     "batch norm expects [N, H, W, \(channels)], got \(x.shape)")
        let key = Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], training: training, dtype: x.dtype)
        let p = try plan(key)
        var y = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
        var mean = training ? Tensor.uninitialized(shape: [channels]) : runningMean
        var variance = training ? Tensor.uninitialized(shape: [channels]) : runningVariance
        // Evaluation mode only reads the running statistics: no copy of them.
        let meanPointer = training ? mean.mutableRawPointer() : mean.rawPointer
        let variancePointer = training ? variance.mutableRawPointer() : variance.rawPointer
        try p.forward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer()),
                               (DNNL_ARG_SCALE, UnsafeMutableRawPointer(scale.readPointer)),
                               (DNNL_ARG_SHIFT, UnsafeMutableRawPointer(shift.readPointer)),
                               (DNNL_ARG_MEAN, meanPointer), (DNNL_ARG_VARIANCE, variancePointer)])
        return (y, Record(training: training, mean: mean, variance: variance))
    }

    /// Backward for the forward call on `x` that produced `record`.
    /// - Returns: dL/dx, and dL/dscale, dL/dshift when `needParameterGradients`.
    /// Parameter gradients are computed in training mode only (evaluation-mode passes serve
    /// attacks and CAMs, which need dL/dx alone).
    public func backward(_ dy: Tensor, x: Tensor, scale: Tensor, shift: Tensor, record: Record,
                         needParameterGradients: Bool) throws -> (input: Tensor, scale: Tensor?, shift: Tensor?) {
        precondition(record.training || !needParameterGradients,
                     "batch-norm parameter gradients in evaluation mode are not supported")
        precondition(dy.shape == x.shape && dy.dtype == x.dtype,
                     "batch norm output gradient must be \(x.shape) \(x.dtype), got \(dy.shape) \(dy.dtype)")
        if !record.training { return (try evaluationBackward(dy, scale: scale, record: record), nil, nil) }
        let key = Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], training: true, dtype: x.dtype)
        let p = try plan(key)
        let backward: DNNLPrimitive = try plans.withLock { _ in
            if let b = p.backward { return b }
            var md = try dataDesc(key)
            var desc = dnnl_batch_normalization_desc_t()
            try DNNL.check(dnnl_batch_normalization_backward_desc_init(&desc, dnnl_backward, &md, &md, epsilon,
                                                                       flags(training: record.training)),
                           "describe a \(describe(key)) backward")
            let b = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(key)) backward",
                                      kind: "batch norm backward")
            p.backward = b
            return b
        }
        var dx = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
        var dScale = Tensor.uninitialized(shape: [channels])
        var dShift = Tensor.uninitialized(shape: [channels])
        let dxPointer = dx.mutableRawPointer()
        try dScale.withUnsafeMutableBufferPointer { sp in
            try dShift.withUnsafeMutableBufferPointer { tp in
                try backward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DIFF_DST, dy.rawPointer),
                                      (DNNL_ARG_MEAN, UnsafeMutableRawPointer(record.mean.readPointer)),
                                      (DNNL_ARG_VARIANCE, UnsafeMutableRawPointer(record.variance.readPointer)),
                                      (DNNL_ARG_SCALE, UnsafeMutableRawPointer(scale.readPointer)),
                                      // oneDNN 2.6 counts the shift among the inputs (unused).
                                      (DNNL_ARG_SHIFT, UnsafeMutableRawPointer(shift.readPointer)),
                                      (DNNL_ARG_DIFF_SRC, dxPointer),
                                      (DNNL_ARG_DIFF_SCALE, UnsafeMutableRawPointer(sp.baseAddress!)),
                                      (DNNL_ARG_DIFF_SHIFT, UnsafeMutableRawPointer(tp.baseAddress!))])
            }
        }
        return (dx, needParameterGradients ? dScale : nil, needParameterGradients ? dShift : nil)
    }

    /// With fixed statistics the op is a per-channel affine map, so dL/dx = dy * scale / sqrt(var + eps).
    /// (oneDNN 2.6 has no backward-data kernel for global statistics with scale and shift.)
    private func evaluationBackward(_ dy: Tensor, scale: Tensor, record: Record) throws -> Tensor {
        let factors = (0..<channels).map { scale[flat: $0] / (record.variance[flat: $0] + epsilon).squareRoot() }
        if dy.dtype == .f32 { return Channels.scaled(dy, by: factors) }
        return try Binary.scaleChannels(dy, by: Tensor(shape: [channels], values: factors))
    }
}
