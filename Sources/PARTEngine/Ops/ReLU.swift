import CDNNL

/// Rectified linear unit, y = max(x, 0), on oneDNN's eltwise kernels (vectorised and threaded:
/// activations of the first layers are tens of megabytes, so this is memory-bound work worth
/// both cores). The backward pass reads the forward's output: dx = dy where y > 0, else 0.
public enum ReLU {
    private final class Plan {
        let forward: DNNLPrimitive
        let backward: DNNLPrimitive

        init(count: Int) throws {
            var md = try DNNL.desc([count], dnnl_x)
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

    /// Plans by element count (the op is layout-agnostic).
    private static let plans = Locked([Int: Plan]())

    private static func plan(_ count: Int) throws -> Plan {
        try plans.withLock { plans in
            if let p = plans[count] { return p }
            let p = try Plan(count: count)
            plans[count] = p
            return p
        }
    }

    public static func forward(_ x: Tensor) throws -> Tensor {
        var y = Tensor.uninitialized(shape: x.shape)
        guard x.count > 0 else { return y }
        let p = try plan(x.count)
        try y.withUnsafeMutableBufferPointer { yp in
            try p.forward.execute([(DNNL_ARG_SRC, UnsafeMutableRawPointer(x.readPointer)),
                                   (DNNL_ARG_DST, UnsafeMutableRawPointer(yp.baseAddress!))])
        }
        return y
    }

    /// dL/dx from dL/dy and the forward's output `y`. Reuses `dy`'s storage when it is not shared.
    public static func backward(_ dy: Tensor, output y: Tensor) throws -> Tensor {
        precondition(dy.shape == y.shape, "ReLU gradient \(dy.shape) does not match its output \(y.shape)")
        var dx = dy
        guard dx.count > 0 else { return dx }
        let p = try plan(y.count)
        try dx.withUnsafeMutableBufferPointer { d in
            let ptr = UnsafeMutableRawPointer(d.baseAddress!)
            try p.backward.execute([(DNNL_ARG_DST, UnsafeMutableRawPointer(y.readPointer)),
                                    (DNNL_ARG_DIFF_DST, ptr), (DNNL_ARG_DIFF_SRC, ptr)])
        }
        return dx
    }
}
