import CDNNL

/// Rectified linear unit, y = max(x, 0), on oneDNN's eltwise kernels (vectorised and threaded:
/// activations of the first layers are tens of megabytes, so this is memory-bound work worth
/// both cores). The backward pass reads the forward's output: dx = dy where y > 0, else 0.
public enum ReLU {
    private final class Plan {
        let forward: DNNLPrimitive
        lazy var backward: DNNLPrimitive = {
            var md = DNNL.desc([count], dnnl_x)
            var desc = dnnl_eltwise_desc_t()
            DNNL.check(dnnl_eltwise_backward_desc_init(&desc, dnnl_eltwise_relu_use_dst_for_bwd, &md, &md, 0, 0),
                       "describe a ReLU backward")
            return DNNLPrimitive(&desc, hint: forward, what: "ReLU backward")
        }()
        let count: Int

        init(count: Int) {
            self.count = count
            var md = DNNL.desc([count], dnnl_x)
            var desc = dnnl_eltwise_desc_t()
            DNNL.check(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training, dnnl_eltwise_relu_use_dst_for_bwd,
                                                      &md, 0, 0), "describe a ReLU")
            forward = DNNLPrimitive(&desc, what: "ReLU forward")
        }
    }

    /// Plans by element count (the op is layout-agnostic).
    nonisolated(unsafe) private static var plans: [Int: Plan] = [:]

    private static func plan(_ count: Int) -> Plan {
        if let p = plans[count] { return p }
        let p = Plan(count: count)
        plans[count] = p
        return p
    }

    public static func forward(_ x: Tensor) -> Tensor {
        var y = Tensor.uninitialized(shape: x.shape)
        guard x.count > 0 else { return y }
        y.withUnsafeMutableBufferPointer { yp in
            plan(x.count).forward.execute([(DNNL_ARG_SRC, UnsafeMutableRawPointer(x.readPointer)),
                                           (DNNL_ARG_DST, UnsafeMutableRawPointer(yp.baseAddress!))])
        }
        return y
    }

    /// dL/dx from dL/dy and the forward's output `y`. Reuses `dy`'s storage when it is not shared.
    public static func backward(_ dy: Tensor, output y: Tensor) -> Tensor {
        precondition(dy.shape == y.shape, "ReLU gradient \(dy.shape) does not match its output \(y.shape)")
        var dx = dy
        guard dx.count > 0 else { return dx }
        dx.withUnsafeMutableBufferPointer { d in
            let p = UnsafeMutableRawPointer(d.baseAddress!)
            plan(y.count).backward.execute([(DNNL_ARG_DST, UnsafeMutableRawPointer(y.readPointer)),
                                            (DNNL_ARG_DIFF_DST, p), (DNNL_ARG_DIFF_SRC, p)])
        }
        return dx
    }
}
