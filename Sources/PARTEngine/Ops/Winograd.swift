import CDNNL

/// oneDNN's Winograd F(4x4, 3x3) convolution kernels for one input shape of a `Convolution`:
/// forward and backward-data, with the activations reordered between the engine's NHWC layout
/// and the blocked nChw16c layout these kernels require.
///
/// Why: on AVX-512 CPUs the Winograd kernels compute a 3x3 stride-1 convolution with 2.25 times
/// fewer multiplications than the direct ones, and oneDNN's run 1.7-2.7x faster in the forward and
/// 1.2-2x in backward-data on the layer shapes of SmallCNN and ResNet-18 (measured with the
/// direct kernels at 220-230 GFLOP/s on a 2-core AVX-512 machine), while the reorders to and from
/// the blocked layout cost a few per cent of that. The outputs differ from the direct kernels'
/// by rounding only (about 1e-6 relative on those shapes): the same order as a change of
/// summation order. Only fp32 and channel counts divisible by 16 (the blocked layout then has the
/// plain layout's size); oneDNN decides whether it has a kernel for the CPU and shape, and
/// `Convolution` uses its direct kernels when it has none. Backward-weights stays direct.
///
/// Winograd's input and output transforms scale values up by small factors, so on weights and
/// activations within a few powers of ten of Float's range (a diverged model's last checkpoint)
/// they can overflow where the direct kernels stay finite: every result is checked (a scan at
/// memory speed) and a non-finite one is computed again by the direct kernels.
final class WinogradConvolution {
    private let forward: DNNLPrimitive
    let forwardWeights: ReorderedWeights
    private let sourceIn, outputOut: DNNLPrimitive
    /// NHWC accumulated tensor into the blocked output, for the `sum` post-op.
    private let accumulateIn: DNNLPrimitive?
    private let plain: (src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t)
    private let blocked: (src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t)
    private let weightsAny, weightsPlain: dnnl_memory_desc_t
    private let window: (strides: [dnnl_dim_t], pads: [dnnl_dim_t])
    private let what: String
    private let sourceCount, outputCount: Int
    private struct Backward {
        let primitive: DNNLPrimitive
        let weights: ReorderedWeights
        let gradientIn, gradientOut: DNNLPrimitive
    }

    /// nil until first asked; then the backward-data kernel, or nil inside when oneDNN has none.
    private let backward = Locked<Backward??>(nil)

    /// Whether a convolution of this geometry may use Winograd kernels at all (whether a pass
    /// uses them is decided per call, with `Optimizations` read then).
    static func applies(kernel: Int, stride: Int, inChannels: Int, outChannels: Int, dtype: DType) -> Bool {
        kernel == 3 && stride == 1 && dtype == .f32 && inChannels % 16 == 0 && outChannels % 16 == 0
    }

    /// Nil when oneDNN has no Winograd kernel for this CPU, shape and post-ops.
    init?(dims: (n: Int, c: Int, h: Int, w: Int, o: Int, oh: Int, ow: Int), weights: [Int], bias: dnnl_memory_desc_t,
          strides: [dnnl_dim_t], pads: [dnnl_dim_t], postOps: PostOps, sum: Bool, what: String) {
        do {
            let src = [dims.n, dims.c, dims.h, dims.w], dst = [dims.n, dims.o, dims.oh, dims.ow]
            plain = (try DNNL.desc(src, dnnl_nhwc), try DNNL.desc(dst, dnnl_nhwc))
            blocked = (try DNNL.desc(src, dnnl_nChw16c), try DNNL.desc(dst, dnnl_nChw16c))
            weightsAny = try DNNL.desc(weights, dnnl_format_tag_any)
            weightsPlain = try DNNL.desc(weights, dnnl_oihw)
            window = (strides, pads)
            self.what = what
            sourceCount = src.reduce(1, *)
            outputCount = dst.reduce(1, *)
            var d = (src: blocked.src, dst: blocked.dst, weights: weightsAny, bias: bias)
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training, dnnl_convolution_winograd,
                                                              &d.src, &d.weights, &d.bias, &d.dst,
                                                              strides, pads, pads), "describe a Winograd \(what)")
            forward = try DNNLPrimitive(&desc, attributes: postOps.handle, what: "\(what) Winograd forward",
                                        kind: "convolution forward")
            forwardWeights = try ReorderedWeights(from: weightsPlain, to: try forward.md(dnnl_query_weights_md),
                                                  what: what)
            sourceIn = try DNNLPrimitive(reorderFrom: plain.src, to: blocked.src, what: what)
            outputOut = try DNNLPrimitive(reorderFrom: blocked.dst, to: plain.dst, what: what)
            accumulateIn = sum ? try DNNLPrimitive(reorderFrom: plain.dst, to: blocked.dst, what: what) : nil
        } catch {
            return nil
        }
    }

    /// y = post-ops(conv(x) + b [+ accumulate]) with NHWC `x`, writing NHWC `y` (which holds the
    /// accumulated tensor on entry when the plan has the `sum` post-op). False, with `y`
    /// untouched, when the result is not finite (the caller then runs the direct kernels).
    func run(_ x: Tensor, weight: Tensor, bias: Tensor?, weightVersion: Int, into y: inout Tensor) throws -> Bool {
        var blockedSource = Tensor.uninitialized(shape: [sourceCount])
        var blockedOutput = Tensor.uninitialized(shape: [outputCount])
        try sourceIn.execute([(DNNL_ARG_FROM, x.rawPointer), (DNNL_ARG_TO, blockedSource.mutableRawPointer())])
        if let accumulateIn {
            try accumulateIn.execute([(DNNL_ARG_FROM, y.rawPointer), (DNNL_ARG_TO, blockedOutput.mutableRawPointer())])
        }
        let w = try forwardWeights.pointer(for: weight, version: weightVersion)
        var args: [(Int32, UnsafeMutableRawPointer)] = [(DNNL_ARG_SRC, blockedSource.rawPointer), (DNNL_ARG_WEIGHTS, w),
                                                        (DNNL_ARG_DST, blockedOutput.mutableRawPointer())]
        if let bias { args.append((DNNL_ARG_BIAS, UnsafeMutableRawPointer(bias.readPointer))) }
        try forward.execute(args)
        guard blockedOutput.allFinite else { return false }
        try outputOut.execute([(DNNL_ARG_FROM, blockedOutput.rawPointer), (DNNL_ARG_TO, y.mutableRawPointer())])
        return true
    }

    /// dL/dx (NHWC, of shape `inputShape`) from dL/dy (NHWC); nil when oneDNN has no Winograd
    /// backward-data kernel here or the result is not finite (the caller then runs the direct one).
    func inputGradient(_ dy: Tensor, weight: Tensor, weightVersion: Int, inputShape: [Int]) throws -> Tensor? {
        let made: Backward? = backward.withLock { state in
            if let known = state { return known }
            let built = makeBackward()
            state = .some(built)
            return built
        }
        guard let made else { return nil }
        var blockedGradient = Tensor.uninitialized(shape: [outputCount])
        var blockedResult = Tensor.uninitialized(shape: [sourceCount])
        try made.gradientIn.execute([(DNNL_ARG_FROM, dy.rawPointer), (DNNL_ARG_TO, blockedGradient.mutableRawPointer())])
        let w = try made.weights.pointer(for: weight, version: weightVersion)
        try made.primitive.execute([(DNNL_ARG_DIFF_DST, blockedGradient.rawPointer), (DNNL_ARG_WEIGHTS, w),
                                    (DNNL_ARG_DIFF_SRC, blockedResult.mutableRawPointer())])
        guard blockedResult.allFinite else { return nil }
        var dx = Tensor.uninitialized(shape: inputShape)
        try made.gradientOut.execute([(DNNL_ARG_FROM, blockedResult.rawPointer), (DNNL_ARG_TO, dx.mutableRawPointer())])
        return dx
    }

    private func makeBackward() -> Backward? {
        do {
            var d = (src: blocked.src, dst: blocked.dst, weights: weightsAny)
            var desc = dnnl_convolution_desc_t()
            try DNNL.check(dnnl_convolution_backward_data_desc_init(&desc, dnnl_convolution_winograd, &d.src,
                                                                    &d.weights, &d.dst, window.strides,
                                                                    window.pads, window.pads),
                           "describe a Winograd \(what) backward-data")
            let prim = try DNNLPrimitive(&desc, hint: forward, what: "\(what) Winograd backward-data",
                                         kind: "convolution backward-data")
            return Backward(primitive: prim,
                            weights: try ReorderedWeights(from: weightsPlain, to: try prim.md(dnnl_query_weights_md),
                                                          what: what),
                            gradientIn: try DNNLPrimitive(reorderFrom: plain.dst, to: blocked.dst, what: what),
                            gradientOut: try DNNLPrimitive(reorderFrom: blocked.src, to: plain.src, what: what))
        } catch {
            return nil
        }
    }
}
