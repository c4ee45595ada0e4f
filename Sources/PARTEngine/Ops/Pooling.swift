import CDNNL

/// Max or average pooling over NHWC activations on oneDNN: a square window of `kernel`, moved by
/// `stride` (the kernel by default, as `F.max_pool2d(x, k)`), on an input padded by `padding` at
/// the top and left and `paddingEnd` at the bottom and right (as much by default). Max pooling
/// ignores the padding; average pooling divides by the whole window (`count_include_pad`, the
/// padding counted as zeros) or by its part inside the image. The forward pass of max pooling
/// keeps oneDNN's workspace (the arg-max positions) for the backward pass, which routes each
/// gradient to the position that won; average pooling spreads it over the window.
public final class Pooling {
    public enum Kind: Hashable, Sendable {
        case max
        case average(includingPadding: Bool)
    }

    public let kernel, channels, stride, padding, paddingEnd: Int
    public let kind: Kind

    public init(kernel: Int, channels: Int, stride: Int? = nil, padding: Int = 0, paddingEnd: Int? = nil,
                kind: Kind = .max) {
        precondition(kernel > 0 && channels > 0 && (stride ?? kernel) > 0 && padding >= 0 && (paddingEnd ?? padding) >= 0)
        self.kernel = kernel
        self.channels = channels
        self.stride = stride ?? kernel
        self.padding = padding
        self.paddingEnd = paddingEnd ?? padding
        self.kind = kind
    }

    /// Output spatial size for an input side of `side` (floor).
    public func outputSide(_ side: Int) -> Int { (side + padding + paddingEnd - kernel) / stride + 1 }

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

    /// What the backward pass needs: the arg-max workspace of the forward call (empty for
    /// average pooling).
    public struct Record {
        let workspace: RawBuffer
        let inputShape: [Int]
        let dtype: DType
    }

    private var algorithm: dnnl_alg_kind_t {
        switch kind {
        case .max: return dnnl_pooling_max
        case .average(let including): return including ? dnnl_pooling_avg_include_padding : dnnl_pooling_avg_exclude_padding
        }
    }

    private func mds(_ key: Key) throws -> (src: dnnl_memory_desc_t, dst: dnnl_memory_desc_t, outShape: [Int]) {
        let oh = outputSide(key.h), ow = outputSide(key.w)
        guard key.h + padding + paddingEnd >= kernel, key.w + padding + paddingEnd >= kernel, oh > 0, ow > 0 else {
            throw EngineError("pooling input \(key.h)x\(key.w) is smaller than its \(kernel)x\(kernel) window")
        }
        let t = DNNL.type(key.dtype)
        return (try DNNL.desc([key.n, channels, key.h, key.w], dnnl_nhwc, t),
                try DNNL.desc([key.n, channels, oh, ow], dnnl_nhwc, t), [key.n, oh, ow, channels])
    }

    private func describe(_ key: Key) -> String {
        "\(kind == .max ? "max" : "average")-pool \(kernel)x\(kernel) stride \(stride) pad \(padding),\(paddingEnd) "
            + "of [\(key.n), \(key.h), \(key.w), \(channels)] \(key.dtype)"
    }

    private var window: (strides: [dnnl_dim_t], kernel: [dnnl_dim_t], dilation: [dnnl_dim_t], padding: [dnnl_dim_t],
                         paddingEnd: [dnnl_dim_t]) {
        ([dnnl_dim_t(stride), dnnl_dim_t(stride)], [dnnl_dim_t(kernel), dnnl_dim_t(kernel)], [0, 0],
         [dnnl_dim_t(padding), dnnl_dim_t(padding)], [dnnl_dim_t(paddingEnd), dnnl_dim_t(paddingEnd)])
    }

    private var kindName: String { kind == .max ? "max-pool" : "average-pool" }

    private func plan(_ key: Key) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            var d = try mds(key)
            let w = window
            var desc = dnnl_pooling_v2_desc_t()
            try DNNL.check(dnnl_pooling_v2_forward_desc_init(&desc, key.inference ? dnnl_forward_inference : dnnl_forward_training,
                                                             algorithm, &d.src,
                                                             &d.dst, w.strides, w.kernel, w.dilation, w.padding,
                                                             w.paddingEnd),
                           "describe a \(describe(key))")
            let p = Plan(forward: try DNNLPrimitive(&desc, what: "\(describe(key)) forward", kind: "\(kindName) forward"),
                         outShape: d.outShape)
            plans[key] = p
            return p
        }
    }

    /// Forward. `x`: [N, H, W, C] → [N, outputSide(H), outputSide(W), C]. With `backward` false
    /// the pass keeps no arg-max workspace and the record cannot be back-propagated.
    public func forward(_ x: Tensor, backward: Bool = true) throws -> (Tensor, Record) {
        precondition(x.shape.count == 4 && x.shape[3] == channels, "pooling expects [N, H, W, \(channels)], got \(x.shape)")
        let inference = !backward && Optimizations.isEnabled(.inference)
        let p = try plan(Key(n: x.shape[0], h: x.shape[1], w: x.shape[2], dtype: x.dtype, inference: inference))
        var y = Tensor.uninitialized(shape: p.outShape, dtype: x.dtype)
        let workspace = RawBuffer(bytes: p.forward.workspaceBytes)
        var args = [(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer())]
        if !inference && kind == .max { args.append((DNNL_ARG_WORKSPACE, workspace.pointer)) }
        try p.forward.execute(args)
        return (y, Record(workspace: workspace, inputShape: x.shape, dtype: x.dtype))
    }

    /// Backward: dL/dx from dL/dy.
    public func backward(_ dy: Tensor, record: Record) throws -> Tensor {
        let s = record.inputShape
        let key = Key(n: s[0], h: s[1], w: s[2], dtype: record.dtype)
        let p = try plan(key)
        precondition(dy.shape == p.outShape && dy.dtype == record.dtype,
                     "pooling output gradient must be \(p.outShape) \(record.dtype), got \(dy.shape) \(dy.dtype)")
        let backward: DNNLPrimitive = try plans.withLock { _ in
            if let b = p.backward { return b }
            var d = try mds(key)
            let w = window
            var desc = dnnl_pooling_v2_desc_t()
            try DNNL.check(dnnl_pooling_v2_backward_desc_init(&desc, algorithm, &d.src, &d.dst,
                                                              w.strides, w.kernel, w.dilation, w.padding, w.paddingEnd),
                           "describe a \(describe(key)) backward")
            let b = try DNNLPrimitive(&desc, hint: p.forward, what: "\(describe(key)) backward",
                                      kind: "\(kindName) backward")
            p.backward = b
            return b
        }
        var dx = Tensor.uninitialized(shape: s, dtype: record.dtype)
        var args = [(DNNL_ARG_DIFF_DST, dy.rawPointer), (DNNL_ARG_DIFF_SRC, dx.mutableRawPointer())]
        if kind == .max { args.append((DNNL_ARG_WORKSPACE, record.workspace.pointer)) }
        try backward.execute(args)
        return dx
    }
}

/// Max pooling, kernel = stride by default (`Pooling` of the max kind).
public typealias MaxPool = Pooling
