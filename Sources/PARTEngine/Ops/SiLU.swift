import CDNNL

/// Sigmoid-weighted linear unit (SiLU, "swish"), y = x * sigmoid(x), on oneDNN's eltwise swish
/// kernels (alpha = 1): the activation of the DeepMind WideResNets (RobustBench's
/// `DMWideResNet`). Unlike ReLU its derivative needs the input, not the output:
///
///     dy/dx = s (1 + x (1 - s)),   s = sigmoid(x)
public enum SiLU {
    private final class Plan {
        let forward: DNNLPrimitive
        let backward: DNNLPrimitive

        init(count: Int, dtype: DType) throws {
            var md = try DNNL.desc([count], dnnl_x, DNNL.type(dtype))
            var desc = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training, dnnl_eltwise_swish, &md, 1, 0),
                           "describe a SiLU of \(count) elements")
            forward = try DNNLPrimitive(&desc, what: "SiLU forward of \(count) elements", kind: "silu forward")
            var back = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_backward_desc_init(&back, dnnl_eltwise_swish, &md, &md, 1, 0),
                           "describe a SiLU backward of \(count) elements")
            backward = try DNNLPrimitive(&back, hint: forward, what: "SiLU backward of \(count) elements",
                                         kind: "silu backward")
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

    /// dL/dx from dL/dy and the forward's input `x`, into a new tensor.
    public static func backward(_ dy: Tensor, input x: Tensor) throws -> Tensor {
        precondition(dy.shape == x.shape && dy.dtype == x.dtype,
                     "SiLU gradient \(dy.shape) \(dy.dtype) does not match its input \(x.shape) \(x.dtype)")
        var dx = Tensor.uninitialized(shape: dy.shape, dtype: dy.dtype)
        guard dx.count > 0 else { return dx }
        let p = try plan(x.count, x.dtype)
        try p.backward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DIFF_DST, dy.rawPointer),
                                (DNNL_ARG_DIFF_SRC, dx.mutableRawPointer())])
        return dx
    }
}
