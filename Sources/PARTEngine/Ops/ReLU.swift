import CDNNL

/// Rectified linear unit, y = max(x, 0), on oneDNN's eltwise kernels (vectorised and threaded:
/// activations of the first layers are tens of megabytes, so this is memory-bound work worth
/// both cores). The backward pass reads the forward's output: dx = dy where y > 0, else 0.
public enum ReLU {
    private final class Plan {
        let forward: DNNLPrimitive
        let backward: DNNLPrimitive

        init(count: Int, dtype: DType) throws {
            var md = try DNNL.desc([count], dnnl_x, DNNL.type(dtype))
            var desc = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training,
                                                          dnnl_eltwise_relu_use_dst_for_bwd, &md, 0, 0),
                           "describe a ReLU of \(count) elements")
            forward = try DNNLPrimitive(&desc, what: "ReLU forward of \(count) elements", kind: "relu forward")
            var back = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_backward_desc_init(&back, dnnl_eltwise_relu_use_dst_for_bwd, &md, &md, 0, 0),
                           "describe a ReLU backward of \(count) elements")
            backward = try DNNLPrimitive(&back, hint: forward, what: "ReLU backward of \(count) elements",
                                     kind: "relu backward")
        }
    }

    private struct Key: Hashable { let count: Int; let dtype: DType }

    /// Plans by element count and type (the op is layout-agnostic).
    private static let plans = Locked([Key: Plan]())

    private static func plan(_ count: Int, _ dtype: DType) throws -> Plan {
        try plans.withLock { plans in
            let key = Key(count: count, dtype: dtype)
            if let p = plans[key] { return p }
            let p = try Plan(count: count, dtype: dtype)
            plans[key] = p
            return p
        }
    }

    public static func forward(_ x: Tensor) throws -> Tensor {
        var y = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
        guard x.count > 0 else { return y }
        let p = try plan(x.count, x.dtype)
        try p.forward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer())])
        return y
    }

    /// dL/dx from dL/dy and the forward's output `y`, into a new tensor: `dy` is usually still
    /// held by the caller, so working in place would first copy it.
    public static func backward(_ dy: Tensor, output y: Tensor) throws -> Tensor {
        precondition(dy.shape == y.shape && dy.dtype == y.dtype,
                     "ReLU gradient \(dy.shape) \(dy.dtype) does not match its output \(y.shape) \(y.dtype)")
        var dx = Tensor.uninitialized(shape: dy.shape, dtype: dy.dtype)
        guard dx.count > 0 else { return dx }
        let p = try plan(y.count, y.dtype)
        try p.backward.execute([(DNNL_ARG_DST, y.rawPointer), (DNNL_ARG_DIFF_DST, dy.rawPointer),
                                (DNNL_ARG_DIFF_SRC, dx.mutableRawPointer())])
        return dx
    }
}
