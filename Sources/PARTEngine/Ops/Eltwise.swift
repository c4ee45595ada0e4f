import CDNNL

/// One element-wise function on oneDNN's eltwise kernels (vectorised and threaded: activations
/// of the first layers are tens of megabytes, so this is memory-bound work worth both cores),
/// named by oneDNN's algorithm and its two parameters. Its backward pass reads either the
/// forward's output (`usesOutput`: ReLU, logistic, tanh) or its input (the others).
///
/// Plans are cached by function, element count and type (the op is layout-agnostic).
public struct Eltwise: Hashable, Sendable {
    /// oneDNN's `dnnl_alg_kind_t` value.
    let algorithm: UInt32
    public let alpha, beta: Float
    /// "relu", as `Profile` names its kernels ("relu forward").
    public let name: String

    private init(_ name: String, _ algorithm: dnnl_alg_kind_t, alpha: Float = 0, beta: Float = 0) {
        self.name = name
        self.algorithm = algorithm.rawValue
        self.alpha = alpha
        self.beta = beta
    }

    /// max(x, 0); dx = dy where y > 0.
    public static let relu = Eltwise("relu", dnnl_eltwise_relu_use_dst_for_bwd)
    /// x * sigmoid(x) (swish with alpha 1): dy/dx = s (1 + x (1 - s)), s = sigmoid(x).
    public static let silu = Eltwise("silu", dnnl_eltwise_swish, alpha: 1)
    /// 1 / (1 + exp(-x)).
    public static let sigmoid = Eltwise("sigmoid", dnnl_eltwise_logistic_use_dst_for_bwd)
    public static let tanh = Eltwise("tanh", dnnl_eltwise_tanh_use_dst_for_bwd)
    /// log(1 + exp(x)).
    public static let softplus = Eltwise("softplus", dnnl_eltwise_soft_relu)
    /// x for x > 0, slope * x otherwise.
    public static func leakyReLU(slope: Float) -> Eltwise { Eltwise("leaky relu", dnnl_eltwise_relu, alpha: slope) }
    /// x for x > 0, alpha (exp(x) - 1) otherwise.
    public static func elu(alpha: Float) -> Eltwise { Eltwise("elu", dnnl_eltwise_elu, alpha: alpha) }
    /// min(max(x, low), high) (ReLU6 is clip(0, 6)); the gradient passes where low < x < high,
    /// as through PyTorch's hardtanh and ReLU6 (its clamp also passes it at the bounds).
    public static func clip(low: Float, high: Float) -> Eltwise { Eltwise("clip", dnnl_eltwise_clip_v2, alpha: low, beta: high) }
    /// scale * x + shift (with `clip(0, 1)` after it, ONNX's HardSigmoid).
    public static func linear(scale: Float, shift: Float) -> Eltwise { Eltwise("linear", dnnl_eltwise_linear, alpha: scale, beta: shift) }
    /// x * relu6(x + 3) / 6 (MobileNetV3's hard swish, PyTorch's Hardswish).
    public static let hardswish = Eltwise("hardswish", dnnl_eltwise_hardswish)
    /// x * Phi(x), Phi the standard normal distribution function (PyTorch's GELU).
    public static let gelu = Eltwise("gelu", dnnl_eltwise_gelu_erf)
    /// GELU's tanh approximation, 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (`approximate="tanh"`).
    public static let geluTanh = Eltwise("gelu tanh", dnnl_eltwise_gelu_tanh)

    /// Whether the backward pass reads the forward's output rather than its input.
    public var usesOutput: Bool {
        [dnnl_eltwise_relu_use_dst_for_bwd, dnnl_eltwise_logistic_use_dst_for_bwd, dnnl_eltwise_tanh_use_dst_for_bwd]
            .contains { $0.rawValue == algorithm }
    }

    private var what: String { "\(name) (\(alpha), \(beta))" }

    private final class Plan {
        let forward: DNNLPrimitive
        let backward: DNNLPrimitive

        init(_ f: Eltwise, count: Int, dtype: DType) throws {
            let algorithm = dnnl_alg_kind_t(rawValue: f.algorithm)
            let what = "\(f.what) of \(count) elements"
            var md = try DNNL.desc([count], dnnl_x, DNNL.type(dtype))
            var desc = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_forward_desc_init(&desc, dnnl_forward_training, algorithm, &md, f.alpha, f.beta),
                           "describe an \(what)")
            forward = try DNNLPrimitive(&desc, what: "\(what) forward", kind: "\(f.name) forward")
            var back = dnnl_eltwise_desc_t()
            try DNNL.check(dnnl_eltwise_backward_desc_init(&back, algorithm, &md, &md, f.alpha, f.beta),
                           "describe an \(what) backward")
            backward = try DNNLPrimitive(&back, hint: forward, what: "\(what) backward", kind: "\(f.name) backward")
        }
    }

    private struct Key: Hashable { let function: Eltwise; let count: Int; let dtype: DType }

    private static let plans = Locked([Key: Plan]())

    private func plan(_ count: Int, _ dtype: DType) throws -> Plan {
        try Eltwise.plans.withLock { plans in
            let key = Key(function: self, count: count, dtype: dtype)
            if let p = plans[key] { return p }
            let p = try Plan(self, count: count, dtype: dtype)
            plans[key] = p
            return p
        }
    }

    public func forward(_ x: Tensor) throws -> Tensor {
        var y = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
        guard x.count > 0 else { return y }
        let p = try plan(x.count, x.dtype)
        try p.forward.execute([(DNNL_ARG_SRC, x.rawPointer), (DNNL_ARG_DST, y.mutableRawPointer())])
        return y
    }

    /// dL/dx from dL/dy and `saved`, the forward's output when `usesOutput` and its input
    /// otherwise, into a new tensor: `dy` is usually still held by the caller, so working in
    /// place would first copy it.
    public func backward(_ dy: Tensor, saved: Tensor) throws -> Tensor {
        precondition(dy.shape == saved.shape && dy.dtype == saved.dtype,
                     "\(what) gradient \(dy.shape) \(dy.dtype) does not match \(saved.shape) \(saved.dtype)")
        var dx = Tensor.uninitialized(shape: dy.shape, dtype: dy.dtype)
        guard dx.count > 0 else { return dx }
        let p = try plan(saved.count, saved.dtype)
        try p.backward.execute([(usesOutput ? DNNL_ARG_DST : DNNL_ARG_SRC, saved.rawPointer),
                                (DNNL_ARG_DIFF_DST, dy.rawPointer), (DNNL_ARG_DIFF_SRC, dx.mutableRawPointer())])
        return dx
    }
}

/// Rectified linear unit, y = max(x, 0) (`Eltwise.relu`); the backward pass reads the output.
public enum ReLU {
    public static func forward(_ x: Tensor) throws -> Tensor { try Eltwise.relu.forward(x) }

    public static func backward(_ dy: Tensor, output y: Tensor) throws -> Tensor {
        try Eltwise.relu.backward(dy, saved: y)
    }
}

/// Sigmoid-weighted linear unit (SiLU, "swish", `Eltwise.silu`): the activation of the
/// DeepMind WideResNets (RobustBench's `DMWideResNet`). Its backward pass reads the input.
public enum SiLU {
    public static func forward(_ x: Tensor) throws -> Tensor { try Eltwise.silu.forward(x) }

    public static func backward(_ dy: Tensor, input x: Tensor) throws -> Tensor {
        try Eltwise.silu.backward(dy, saved: x)
    }
}
