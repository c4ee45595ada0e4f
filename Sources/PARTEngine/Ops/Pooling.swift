import CDNNL

/// Max pooling over NHWC activations on oneDNN (kernel = stride, no padding, as
/// `F.max_pool2d(x, k)`). The forward pass keeps oneDNN's workspace (the arg-max positions)
/// for the backward pass, which routes each gradient to the position that won.
public final class MaxPool {
    public let kernel: Int
    public let channels: Int

    public init(kernel: Int, channels: Int) {
        precondition(kernel > 0 && channels > 0)
        self.kernel = kernel
        self.channels = channels
    }

    private struct Key: Hashable {
        let n, h, w: Int
        var dtype = DType.f32
        /// Forward for inference: no arg-max workspace, no backward.
        var inference = false
    }

    private final class Plan {
        let forward: DNNLPrimitive
        var backward: DNNLPrimitive?
        let outShape: [Int]
        init(forward: DNNLPrimitive, outShape: [Int]) {
            self.forward = forward
            self.outShape = outShape
        }
    }

    private let plans = Locked([Key: Plan]())

    /// What the backward pass needs: the arg-max workspace of the forward call.
    public struct Record {
        let workspace: RawBuffer
        let inputShape: [Int]
        let dtype: DType
    }

    private func mds(_ key: Key) throws -> (src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, outShape: [Int]) {
        let oh = key.h / kernel, ow = key.w / kernel
        guard oh > 0 && ow > 0 else {
            throw EngineError("max-pool input \(key.h)x\(key.w) is smaller than its \(kernel)x\(kernel) window")
        }
        let t = DNNL.type(key.dtype)
        return (try DNNL.desc([key.n, channels, key.h, key.w], dnnl_nhwc, t),
                try DNNL.desc([key.n, channels, oh, ow], dnnl_nhwc, t), [key.n, oh, ow, channels])
    }

    private func describe(_ key: Key) -> String {
        "max-pool \(kernel)x\(kernel) of [\(key.n), \(key.h), \(key.w), \(channels)] \(key.dtype)"
    }

    private var window: (strides: [dnnl_dim_t], kernel: [dnnl_dim_t], dilation: [dnnl_dim_t], padding: [dnnl_dim_t]) {
        ([dnnl_dim_t(kernel), dnnl_dim_t(kernel)], [dnnl_dim_t(kernel), dnnl_dim_t(kernel)], [0, 0], [0, 0])
    }

    private func plan(_ key: Key) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            var d = try mds(key)
            let w = window
            var desc = dnnl_pooling_v2_desc_t()
            try DNNL.check(dnnl_pooling_v2_forward_desc_init(&desc, key.inference ? dnnl_forward_inference : dnnl_forward_training,
                                                             dnnl_pooling_max, &d.src,
                                                             &d.dst, w.strides, w.kernel, w.dilation, w.padding,
                                                             w.padding),
                           "describe a \(describe(key))")
            let p = Plan(forward: try DNNLPrimitive(&desc, what: "\(describe(key)) forward", kind: "max-pool forward"), outShape: d.outShape)
            plans[key] = p
            return p
        }
    }

    /// Forward. `x`: [N, H, W, C] → [N, H/k, W/k, C] (floor). With `backward` false the pass
    /// keeps no arg-max workspace and the record cannot be back-propagated.
    public func forward(_ x: Tensor, backward: Bool = true) throws -> (Tensor, Record) {
        precondition(x.shape.count == 4 && x.shape[3] == channels, "max-pool expects [N, H, W, \(channels)], got \(x.shape)")
        let inference = !backward && Optimizations.isEnabled(.inference)
        let p = try plan(Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], dtype: x.dtype, inference: inference))
        var y = Tensor.uninitialized(shape: p.outShape, dtype: x.dtype)
        let workspace = RawBuffer(bytes: p.forward.workspaceBytes)
        var args = [(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer())]
        if !inference { args.append((DNNL_ARG_WORKSPACE, workspace.pointer)) }
        try p.forward.execute(args)
        return (y, Record(workspace: workspace, inputShape: x.shape, dtype: x.dtype))
    }

    /// Backward: dL/dx from dL/dy.
    public func backward(_ dy: Tensor, record: Record) throws -> Tensor {
        let s = record.inputShape
        let key = Key(n: s[0], h: s[1], w: s[2], dtype: record.dtype)
        let p = try plan(key)
        precondition(dy.shape == p.outShape && dy.dtype == record.dtype,
                     "max-pool output gradient must be \(p.outShape) \(record.dtype), got \(dy.shape) \(dy.dtype)")
        let backward: DNNLPrimitive = try plans.withLock { _ in
            if let b = p.backward { return b }
            var d = try mds(key)
            let w = window
            var desc = dnnl_pooling_v2_desc_t()
            try DNNL.check(dnnl_pooling_v2_backward_desc_init(&desc, dnnl_pooling_max, &d.src, &d.dst,
                                                              w.strides, w.kernel, w.dilation, w.padding, w.padding),
                           "describe a \(describe(key)) backward")
            let b = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(key)) backward",
                                      kind: "max-pool backward")
            p.backward = b
            return b
        }
        var dx = Tensor.uninitialized(shape: s, dtype: record.dtype)
        try backward.execute([(DNNL_ARG_DIFF_DST, dy.rawPointer), (DNNL_ARG_WORKSPACE, record.workspace.pointer),
                              (DNNL_ARG_DIFF_SRC, dx.mutableRawPointer())])
        return dx
    }
}
