import CDNNL

/// Fully connected layer on oneDNN's inner-product kernels: x [N, in] → y [N, out] with
/// weights [out, in] and bias [out] (PyTorch's `nn.Linear` layouts), optionally followed by a
/// ReLU fused into the kernel (a post-op).
///
///     y[n, o] = b[o] + sum_i x[n, i] * w[o, i]
///
/// Primitives are built once per batch size; weights are reordered into the layout the kernel
/// chose once per weight version.
public final class InnerProduct {
    public let inFeatures, outFeatures: Int

    public init(inFeatures: Int, outFeatures: Int) {
        precondition(inFeatures > 0 && outFeatures > 0)
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
    }

    /// `biasType`: f32, or bf16 in training passes in bf16 (rounded as autocast does).
    private struct Key: Hashable { let n: Int; let relu: Bool; var dtype = DType.f32; var biasType = DType.f32 }

    private typealias Plan = LayerPlan

    private let plans = Locked([Key: Plan]())

    /// 2 * N * in * out: the work of one pass.
    public func flops(n: Int) -> Double { 2 * Double(n) * Double(inFeatures) * Double(outFeatures) }

    private func describe(_ n: Int) -> String { "inner product \(inFeatures)->\(outFeatures) on [\(n), \(inFeatures)]" }

    private func descs(_ n: Int, _ dtype: DType, bias: DType = .f32) throws
        -> (src: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, bias: dnnl_memory_desc_t, dst: dnnl_memory_desc_t) {
        let t = DNNL.type(dtype)
        return (try DNNL.desc([n, inFeatures], dnnl_nc, t), try DNNL.desc([outFeatures, inFeatures], dnnl_format_tag_any, t),
                try DNNL.desc([outFeatures], dnnl_x, DNNL.type(bias)), try DNNL.desc([n, outFeatures], dnnl_nc, t))
    }

    private func plan(_ key: Key) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            var d = try descs(key.n, key.dtype, bias: key.biasType)
            var desc = dnnl_inner_product_desc_t()
            try DNNL.check(dnnl_inner_product_forward_desc_init(&desc, dnnl_forward_training, &d.src, &d.weights, &d.bias,
                                                                &d.dst), "describe an \(describe(key.n))")
            let attributes = try PostOps(relu: key.relu)
            let fwd = try DNNLPrimitive(&desc, attributes: attributes.handle, what: "\(describe(key.n)) forward",
                                        kind: "inner product forward")
            let weights = try ReorderedWeights(from: try DNNL.desc([outFeatures, inFeatures], dnnl_oi),
                                               to: try fwd.md(dnnl_query_weights_md), what: describe(key.n))
            let p = Plan(forward: fwd, forwardWeights: weights)
            plans[key] = p
            return p
        }
    }

    /// y = x w^T + b, then ReLU when `relu`. `x`: [N, in], f32 or bf16 (the output has its type);
    /// `weight`: [out, in], f32 (converted once per version for a bf16 `x`); `bias`: [out], f32
    /// (or bf16 with a bf16 `x`).
    public func forward(_ x: Tensor, weight: Tensor, bias: Tensor, weightVersion: Int, relu: Bool = false) throws -> Tensor {
        precondition(x.shape.count == 2 && x.shape[1] == inFeatures, "inner product expects [N, \(inFeatures)], got \(x.shape)")
        precondition(weight.count == outFeatures * inFeatures && bias.count == outFeatures, "inner product parameters")
        let n = x.shape[0]
        let p = try plan(Key(n: n, relu: relu, dtype: x.dtype, biasType: bias.dtype))
        var y = Tensor.uninitialized(shape: [n, outFeatures], dtype: x.dtype)
        let w = try p.forwardWeights.pointer(for: weight, version: weightVersion)
        try p.forward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_WEIGHTS, w),
                               (DNNL_ARG_BIAS, bias.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer())])
        Profile.addFlops(flops(n: n))
        return y
    }

    /// dL/dx (when `needInputGradient`) and dL/dw, dL/db (when `needParameterGradients`) for the
    /// forward call on `x`; `dy` is dL/dy of the linear output (before any fused ReLU: the caller
    /// applies the ReLU backward first).
    public func backward(_ dy: Tensor, x: Tensor, weight: Tensor, weightVersion: Int, needInputGradient: Bool,
                         needParameterGradients: Bool) throws -> (input: Tensor?, weight: Tensor?, bias: Tensor?) {
        let n = x.shape[0]
        precondition(dy.shape == [n, outFeatures], "inner product output gradient must be [\(n), \(outFeatures)], got \(dy.shape)")
        precondition(dy.dtype == x.dtype, "inner product gradient of type \(dy.dtype) for a \(x.dtype) input")
        let p = try plan(Key(n: n, relu: false, dtype: x.dtype))
        var dx: Tensor?
        if needInputGradient {
            let (prim, weights) = try plans.withLock { _ -> (DNNLPrimitive, ReorderedWeights) in
                if let prim = p.backwardData, let w = p.backwardDataWeights { return (prim, w) }
                var d = try descs(n, x.dtype)
                var desc = dnnl_inner_product_desc_t()
                try DNNL.check(dnnl_inner_product_backward_data_desc_init(&desc, &d.src, &d.weights, &d.dst),
                               "describe an \(describe(n)) backward-data")
                let prim = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(n)) backward-data",
                                             kind: "inner product backward-data")
                let w = try ReorderedWeights(from: try DNNL.desc([outFeatures, inFeatures], dnnl_oi),
                                             to: try prim.md(dnnl_query_weights_md), what: describe(n))
                p.backwardData = prim
                p.backwardDataWeights = w
                return (prim, w)
            }
            var g = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
            let w = try weights.pointer(for: weight, version: weightVersion)
            try prim.execute([(DNNL_ARG_DIFF_DST, dy.rawPointer), (DNNL_ARG_WEIGHTS, w),
                              (DNNL_ARG_DIFF_SRC, g.mutableRawPointer())])
            Profile.addFlops(flops(n: n))
            dx = g
        }
        var dw: Tensor?, db: Tensor?
        if needParameterGradients {
            // f32 or bf16 activations; the weight and bias gradients are f32 either way (as in
            // `Convolution.backward`).
            let (prim, reorder) = try plans.withLock { _ -> (DNNLPrimitive, GradientReorder) in
                if let prim = p.backwardWeights, let r = p.weightGradient { return (prim, r) }
                var d = try descs(n, x.dtype)
                var diffWeights = try DNNL.desc([outFeatures, inFeatures], dnnl_format_tag_any)
                var desc = dnnl_inner_product_desc_t()
                try DNNL.check(dnnl_inner_product_backward_weights_desc_init(&desc, &d.src, &diffWeights, &d.bias,
                                                                             &d.dst),
                               "describe an \(describe(n)) backward-weights")
                let prim = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(n)) backward-weights",
                                             kind: "inner product backward-weights")
                let r = try GradientReorder(from: try prim.md(dnnl_query_diff_weights_md),
                                            to: try DNNL.desc([outFeatures, inFeatures], dnnl_oi), what: describe(n))
                p.backwardWeights = prim
                p.weightGradient = r
                return (prim, r)
            }
            var w = Tensor.uninitialized(shape: [outFeatures, inFeatures])
            var b = Tensor.uninitialized(shape: [outFeatures])
            try w.withUnsafeMutableBufferPointer { dwp in
                try b.withUnsafeMutableBufferPointer { dbp in
                    let plain = UnsafeMutableRawPointer(dwp.baseAddress!)
                    try prim.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DIFF_DST, dy.rawPointer),
                                      (DNNL_ARG_DIFF_WEIGHTS, reorder.target(plain)),
                                      (DNNL_ARG_DIFF_BIAS, UnsafeMutableRawPointer(dbp.baseAddress!))])
                    try reorder.finish(into: plain)
                }
            }
            Profile.addFlops(flops(n: n))
            dw = w
            db = b
        }
        return (dx, dw, db)
    }
}

/// Primitive attributes carrying fused post-ops: an accumulation into the destination
/// (`sum`, for a residual addition) and/or a ReLU, in that order.
final class PostOps {
    let handle: dnnl_primitive_attr_t?

    init(relu: Bool, sum: Bool = false) throws {
        guard relu || sum else {
            handle = nil
            return
        }
        var attr: dnnl_primitive_attr_t?
        try DNNL.check(dnnl_primitive_attr_create(&attr), "create primitive attributes")
        var ops: dnnl_post_ops_t?
        try DNNL.check(dnnl_post_ops_create(&ops), "create post-ops")
        defer { dnnl_post_ops_destroy(ops) }
        if sum { try DNNL.check(dnnl_post_ops_append_sum(ops, 1), "append a sum post-op") }
        if relu { try DNNL.check(dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0), "append a ReLU post-op") }
        try DNNL.check(dnnl_primitive_attr_set_post_ops(attr, ops), "set post-ops")
        handle = attr
    }

    deinit { if let handle { dnnl_primitive_attr_destroy(handle) } }
}
