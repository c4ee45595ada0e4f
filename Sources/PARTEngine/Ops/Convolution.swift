import CDNNL

/// 2-D convolution on oneDNN: NHWC activations, OIHW weights (PyTorch's layout), optional bias.
///
///     y[n, oh, ow, o] = b[o] + sum_{i, kh, kw} x[n, oh*s - p + kh, ow*s - p + kw, i] * w[o, i, kh, kw]
///
/// Primitives (forward, backward-data, backward-weights) are built once per input shape and
/// cached; each lets oneDNN choose its weight layout (`any`), and the weights are reordered into
/// it once per weight version.
///
/// `padding` pads the top and left edges, `paddingEnd` the bottom and right ones (the same by
/// default). TensorFlow's "SAME" padding of a strided 3x3 convolution, which the DeepMind
/// WideResNets reproduce with `F.pad(x, (0, 1, 0, 1))`, is padding 0 and paddingEnd 1.
///
/// `groups` splits the channels into groups convolved apart (PyTorch's `groups`; a depthwise
/// convolution has one group per channel): the weight is [out, in / groups, k, k], which is
/// oneDNN's grouped layout [groups, out / groups, in / groups, k, k] in the same memory.
/// `dilation` spaces the kernel's taps (PyTorch's `dilation`; 1 is a plain convolution).
public final class Convolution {
    public let inChannels, outChannels, kernel, stride, padding, paddingEnd, groups, dilation: Int
    public let hasBias: Bool

    public init(inChannels: Int, outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0, paddingEnd: Int? = nil,
                groups: Int = 1, dilation: Int = 1, bias: Bool) {
        precondition(inChannels > 0 && outChannels > 0 && kernel > 0 && stride > 0 && padding >= 0
                     && (paddingEnd ?? 0) >= 0 && groups > 0 && inChannels % groups == 0 && outChannels % groups == 0
                     && dilation > 0)
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
        self.paddingEnd = paddingEnd ?? padding
        self.groups = groups
        self.dilation = dilation
        self.hasBias = bias
    }

    /// Whether both edges of each axis are padded alike and the convolution is plain (one
    /// group, no dilation): the Winograd and narrow-input paths assume it.
    var symmetric: Bool { padding == paddingEnd && groups == 1 && dilation == 1 }

    /// The side of the input window one output reads: the kernel with its dilation.
    public var extent: Int { (kernel - 1) * dilation + 1 }

    /// Multiply-adds x 2 of one pass (forward, backward-data or backward-weights) on an input
    /// [n, h, w, inChannels].
    public func flops(n: Int, h: Int, w: Int) -> Double {
        2 * Double(n) * Double(outputSide(h) * outputSide(w)) * Double(outChannels * inChannels / groups * kernel * kernel)
    }

    /// Input channel counts up to which backward-data runs as a matrix product and col2im.
    static let narrowInput = 4

    /// Output spatial size for an input side of `side`.
    public func outputSide(_ side: Int) -> Int { (side + padding + paddingEnd - extent) / stride + 1 }

    private struct Key: Hashable {
        let n, h, w: Int
        var dtype = DType.f32
        var relu = false, sum = false
        /// The bias's type (f32, or bf16 in training passes in bf16, which round it as autocast does).
        var biasType = DType.f32
    }

    /// Everything built for one input shape.
    private final class Plan: LayerPlan {
        /// Winograd kernels for this shape (3x3 stride 1, fp32, channels divisible by 16), when
        /// oneDNN has them for the CPU.
        var winograd: WinogradConvolution?
        let outShape: [Int]

        init(forward: DNNLPrimitive, forwardWeights: ReorderedWeights, outShape: [Int]) {
            self.outShape = outShape
            super.init(forward: forward, forwardWeights: forwardWeights)
        }
    }

    private let plans = Locked([Key: Plan]())

    private var weightDims: [Int] { [outChannels, inChannels / groups, kernel, kernel] }

    /// The weights as oneDNN sees them: grouped ones 5-D.
    private var groupedDims: [Int] {
        groups == 1 ? weightDims : [groups, outChannels / groups, inChannels / groups, kernel, kernel]
    }

    /// The memory of a PyTorch weight: OIHW, or GOIHW for grouped convolutions.
    private func plainWeights() throws -> dnnl_memory_desc_t {
        try DNNL.desc(groupedDims, groups == 1 ? dnnl_oihw : dnnl_goihw)
    }

    /// Strides, dilations (oneDNN counts the gaps: 0 for none) and paddings (top-left,
    /// bottom-right) in oneDNN's form.
    private var window: (strides: [dnnl_dim_t], dilates: [dnnl_dim_t], pads: [dnnl_dim_t], padsEnd: [dnnl_dim_t]) {
        ([dnnl_dim_t(stride), dnnl_dim_t(stride)], [dnnl_dim_t(dilation - 1), dnnl_dim_t(dilation - 1)],
         [dnnl_dim_t(padding), dnnl_dim_t(padding)], [dnnl_dim_t(paddingEnd), dnnl_dim_t(paddingEnd)])
    }

    private func descs(_ key: Key) throws -> (src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, weightsAny: dnnl_memory_desc_t,
                                       bias: dnnl_memory_desc_t, outShape: [Int]) {
        let oh = outputSide(key.h), ow = outputSide(key.w)
        guard oh > 0 && ow > 0 else {
            throw EngineError("convolution input \(key.h)x\(key.w) is smaller than its \(extent)x\(extent) kernel")
        }
        let t = DNNL.type(key.dtype)
        return (try DNNL.desc([key.n, inChannels, key.h, key.w], dnnl_nhwc, t),
                try DNNL.desc([key.n, outChannels, oh, ow], dnnl_nhwc, t),
                try DNNL.desc(groupedDims, dnnl_format_tag_any, t),
                hasBias ? try DNNL.desc([outChannels], dnnl_x, DNNL.type(key.biasType)) : dnnl_memory_desc_t(),
                [key.n, oh, ow, outChannels])
    }

    /// "convolution 1->32 3x3 stride 1 pad 0 on [128, 28, 28, 1]", for error messages.
    private func describe(_ key: Key) -> String {
        "convolution \(inChannels)->\(outChannels) \(kernel)x\(kernel) stride \(stride) pad \(padding)"
            + (padding == paddingEnd ? " " : ",\(paddingEnd) ") + (groups == 1 ? "" : "groups \(groups) ")
            + (dilation == 1 ? "" : "dilation \(dilation) ")
            + "on [\(key.n), \(key.h), \(key.w), \(inChannels)] \(key.dtype)"
    }

    private func plan(_ key: Key) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            var d = try descs(key)
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_forward_desc_init(&desc, dnnl_forward_training,
                                                                      dnnl_convolution_direct, &d.src, &d.weightsAny,
                                                                      &d.bias, &d.dst, window.strides, window.dilates,
                                                                      window.pads, window.padsEnd),
                           "describe a \(describe(key))")
            let attributes = try PostOps(relu: key.relu, sum: key.sum)
            let fwd = try DNNLPrimitive(&desc, attributes: attributes.handle, what: "\(describe(key)) forward",
                                        kind: "convolution forward")
            let weights = try ReorderedWeights(from: try plainWeights(),
                                               to: try fwd.md(dnnl_query_weights_md), what: describe(key))
            let p = Plan(forward: fwd, forwardWeights: weights, outShape: d.outShape)
            if symmetric, WinogradConvolution.applies(kernel: kernel, stride: stride, inChannels: inChannels,
                                           outChannels: outChannels, dtype: key.dtype) {
                p.winograd = WinogradConvolution(
                    dims: (key.n, inChannels, key.h, key.w, outChannels, d.outShape[1], d.outShape[2]),
                    weights: weightDims, bias: d.bias, strides: window.strides, pads: window.pads,
                    postOps: attributes, sum: key.sum, what: describe(key))
            }
            plans[key] = p
            return p
        }
    }

    /// Forward pass. `x`: [N, H, W, inChannels] (f32 or bf16; the output has its type);
    /// `weight`: [out, in, k, k], f32 (converted to bf16 for a bf16 `x`, once per weight version);
    /// `bias`: [out], f32 (or bf16 with a bf16 `x`).
    /// `weightVersion` identifies the weights' values (bump it whenever they change; -1 forces a
    /// fresh reorder). Fused into the kernel: `accumulate` (a tensor of the output's shape)
    /// is added to the convolution's output, then `relu` applies max(0, .):
    ///
    ///     y = relu?(conv(x) + b + accumulate?)
    ///
    /// `winograd`: run oneDNN's Winograd kernels when they apply (`WinogradConvolution`); passes
    /// that serve attacks, CAMs and evaluation ask for them, training's own passes do not (their
    /// results then follow PyTorch's direct convolutions to the last bits the order allows).
    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor?, weightVersion: Int, relu: Bool = false,
                        accumulate: Tensor? = nil, winograd: Bool = false) throws -> Tensor {
        precondition(x.shape.count == 4 && x.shape[3] == inChannels,
                     "convolution expects [N, H, W, \(inChannels)], got \(x.shape)")
        precondition(weight.shape == weightDims, "convolution weight must be \(weightDims), got \(weight.shape)")
        precondition(hasBias == (bias != nil), "convolution bias presence mismatch")
        let p = try plan(Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], dtype: x.dtype, relu: relu,
                             sum: accumulate != nil, biasType: bias?.dtype ?? .f32))
        var y: Tensor
        if let accumulate {
            precondition(accumulate.shape == p.outShape && accumulate.dtype == x.dtype,
                         "accumulated tensor must be \(p.outShape) \(x.dtype), got \(accumulate.shape) \(accumulate.dtype)")
            y = accumulate
        } else {
            y = Tensor.uninitialized(shape: p.outShape, dtype: x.dtype)
        }
        if winograd, Optimizations.isEnabled(.winograd), let kernels = p.winograd,
           try kernels.run(x, weight: weight, bias: bias, weightVersion: weightVersion, into: &y) {
            // done by the Winograd kernels
        } else {
            let w = try p.forwardWeights.pointer(for: weight, version: weightVersion)
            var args: [(Int32, UnsafeMutableRawPointer)] = [(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_WEIGHTS, w),
                                                            (DNNL_ARG_DST, y.mutableRawPointer())]
            if let bias { args.append((DNNL_ARG_BIAS, bias.rawPointer)) }
            try p.forward.execute(args)
        }
        Profile.addFlops(flops(n: x.shape[0], h: x.shape[1], w: x.shape[2]))
        Profile.trace(self, x.shape, x.dtype)
        return y
    }

    /// Backward pass for the forward call on `x`.
    /// - Returns: dL/dx (of x's type) when `needInputGradient`; dL/dw and dL/db (nil without
    ///   bias), always f32, when `needParameterGradients`: a bf16 pass's kernel reads bf16
    ///   activations and gradients and accumulates the weight gradient in f32, written as f32
    ///   (no bf16 rounding of the gradient, no conversion afterwards). `winograd` as in `forward`, for
    ///   the input gradient of passes without parameter gradients.
    public func backward(_ dy: Tensor, x: Tensor, weight: Tensor, weightVersion: Int, needInputGradient: Bool,
                         needParameterGradients: Bool, winograd: Bool = false) throws -> (input: Tensor?,
                                                                                           weight: Tensor?,
                                                                                           bias: Tensor?) {
        let key = Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], dtype: x.dtype)
        let p = try plan(key)
        precondition(dy.shape == p.outShape && dy.dtype == x.dtype,
                     "convolution output gradient must be \(p.outShape) \(x.dtype), got \(dy.shape) \(dy.dtype)")
        var dx: Tensor?
        if needInputGradient && inChannels <= Convolution.narrowInput && symmetric && Optimizations.isEnabled(.narrow) {
            // dx = col2im(dy · W): dy [N*OH*OW, O] is the NHWC gradient as it lies in memory and
            // W [O, I*K*K] the OIHW weight; oneDNN's direct backward-data kernels are slow for
            // the one or three input channels of a first layer.
            let columns = try MatMul.product(dy, rows: dy.count / outChannels, try weight.converted(to: dy.dtype),
                                             columns: inChannels * kernel * kernel)
            dx = try Col2Im.fold(columns, n: key.n, height: key.h, width: key.w, channels: inChannels, kernel: kernel,
                                 stride: stride, padding: padding).converted(to: x.dtype)
        } else if needInputGradient, winograd, !needParameterGradients, Optimizations.isEnabled(.winograd),
                  let kernels = p.winograd,
                  let g = try kernels.inputGradient(dy, weight: weight, weightVersion: weightVersion, inputShape: x.shape) {
            Profile.addFlops(flops(n: key.n, h: key.h, w: key.w))
            dx = g
        } else if needInputGradient {
            let (prim, weights) = try backwardData(p, key)
            var g = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
            let w = try weights.pointer(for: weight, version: weightVersion)
            try prim.execute([(DNNL_ARG_DIFF_DST, dy.rawPointer), (DNNL_ARG_WEIGHTS, w),
                              (DNNL_ARG_DIFF_SRC, g.mutableRawPointer())])
            Profile.addFlops(flops(n: key.n, h: key.h, w: key.w))
            dx = g
        }
        var dw: Tensor?, db: Tensor?
        if needParameterGradients {
            // f32 or bf16 activations; the weight and bias gradients are f32 either way. Shapes on
            // which oneDNN 2.6's bf16 kernel is slow run the f32 kernel on the activations widened
            // to f32 (exact: the same products, summed in f32 by both kernels).
            let widen = key.dtype == .bf16 && slowBF16WeightGradient(h: key.h, w: key.w)
            let x = widen ? try x.converted(to: .f32) : x, dy = widen ? try dy.converted(to: .f32) : dy
            let weightKey = widen ? Key(n: key.n, h: key.h, w: key.w) : key
            let (prim, reorder) = try backwardWeights(widen ? try plan(weightKey) : p, weightKey)
            var w = Tensor.uninitialized(shape: weightDims)
            var b = Tensor.uninitialized(shape: [outChannels])
            try w.withUnsafeMutableBufferPointer { dwp in
                try b.withUnsafeMutableBufferPointer { dbp in
                    let plain = UnsafeMutableRawPointer(dwp.baseAddress!)
                    var args: [(Int32, UnsafeMutableRawPointer)] = [
                        (DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DIFF_DST, dy.rawPointer),
                        (DNNL_ARG_DIFF_WEIGHTS, reorder.target(plain)),
                    ]
                    if hasBias { args.append((DNNL_ARG_DIFF_BIAS, UnsafeMutableRawPointer(dbp.baseAddress!))) }
                    try prim.execute(args)
                    try reorder.finish(into: plain)
                    Profile.addFlops(flops(n: key.n, h: key.h, w: key.w))
                }
            }
            dw = w
            db = hasBias ? b : nil
        }
        return (dx, dw, db)
    }

    /// Whether oneDNN 2.6's bf16 backward-weights kernel (jit_bf16 on AVX-512 BF16) is much
    /// slower than its f32 one for this layer on an h x w input. Measured on preact-resnet18,
    /// batch 128, 2 threads (ms per call, bf16 against f32): the first layer with 3 input
    /// channels 1050 against 19, the strided 3x3 layers 940-1722 against 150-170, 512 channels
    /// at 4x4 1655 against 319; the other 3x3 and the 1x1 layers run about twice as fast in bf16.
    /// A fixed rule (not a timing) keeps results independent of the machine's load.
    func slowBF16WeightGradient(h: Int, w: Int) -> Bool {
        kernel > 1 && (stride > 1 || inChannels < 16 || outputSide(h) * outputSide(w) <= 16)
    }

    /// The backward-data primitive of a plan and its weight copy, built on first use.
    private func backwardData(_ p: Plan, _ key: Key) throws -> (DNNLPrimitive, ReorderedWeights) {
        try plans.withLock { _ in
            if let prim = p.backwardData, let w = p.backwardDataWeights { return (prim, w) }
            var d = try descs(key)
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_data_desc_init(&desc, dnnl_convolution_direct, &d.src,
                                                                            &d.weightsAny, &d.dst, window.strides,
                                                                            window.dilates, window.pads, window.padsEnd),
                           "describe a \(describe(key)) backward-data")
            let prim = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(key)) backward-data",
                                     kind: "convolution backward-data")
            let w = try ReorderedWeights(from: try plainWeights(),
                                         to: try prim.md(dnnl_query_weights_md), what: describe(key))
            p.backwardData = prim
            p.backwardDataWeights = w
            return (prim, w)
        }
    }

    /// The backward-weights primitive of a plan and its gradient reorder, built on first use.
    private func backwardWeights(_ p: Plan, _ key: Key) throws -> (DNNLPrimitive, GradientReorder) {
        try plans.withLock { _ in
            if let prim = p.backwardWeights, let r = p.weightGradient { return (prim, r) }
            var d = try descs(key)
            // The gradients of f32 master weights: f32 whatever the activations' type.
            var diffWeights = try DNNL.desc(groupedDims, dnnl_format_tag_any)
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_dilated_convolution_backward_weights_desc_init(&desc, dnnl_convolution_direct, &d.src,
                                                                               &diffWeights, &d.bias, &d.dst,
                                                                               window.strides, window.dilates,
                                                                               window.pads, window.padsEnd),
                           "describe a \(describe(key)) backward-weights")
            let prim = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(key)) backward-weights",
                                     kind: "convolution backward-weights")
            let r = try GradientReorder(from: try prim.md(dnnl_query_diff_weights_md),
                                        to: try plainWeights(), what: describe(key))
            p.backwardWeights = prim
            p.weightGradient = r
            return (prim, r)
        }
    }
}
