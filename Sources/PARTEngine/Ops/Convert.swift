import CDNNL

extension DNNL {
    static func type(_ dtype: DType) -> dnnl_data_type_t { dtype == .f32 ? dnnl_f32 : dnnl_bf16 }
}

extension Tensor {
    /// a + b for tensors of one shape and type (f32 in Swift, bf16 on oneDNN).
    /// `a` is consumed, so an f32 sum reuses its storage when nothing else holds it.
    public static func sum(_ a: consuming Tensor, _ b: Tensor) throws -> Tensor {
        if a.dtype == .f32 && b.dtype == .f32 {
            var out = consume a
            out.add(b)
            return out
        }
        return try Binary.sum(a, b)
    }

    /// The same values in another element type (f32 → bf16 rounds to nearest even; bf16 → f32
    /// is exact); `self` when the type is already `dtype`.
    public func converted(to dtype: DType) throws -> Tensor {
        if dtype == self.dtype || count == 0 { return dtype == self.dtype ? self : Tensor.uninitialized(shape: shape, dtype: dtype) }
        var out = Tensor.uninitialized(shape: shape, dtype: dtype)
        let p = try Conversion.plan(count: count, from: self.dtype, to: dtype)
        try p.execute([(DNNL_ARG_FROM, rawPointer), (DNNL_ARG_TO, out.mutableRawPointer())])
        return out
    }
}

/// Reorders between element types, cached by size.
enum Conversion {
    private struct Key: Hashable { let count: Int; let from, to: DType }
    private static let plans = Locked([Key: DNNLPrimitive]())

    static func plan(count: Int, from: DType, to: DType) throws -> DNNLPrimitive {
        try plans.withLock { plans in
            let key = Key(count: count, from: from, to: to)
            if let p = plans[key] { return p }
            let p = try DNNLPrimitive(reorderFrom: try DNNL.desc([count], dnnl_x, DNNL.type(from)),
                                      to: try DNNL.desc([count], dnnl_x, DNNL.type(to)),
                                      what: "conversion of \(count) elements from \(from) to \(to)")
            plans[key] = p
            return p
        }
    }
}

/// Element-wise binary ops on oneDNN for tensors of any element type: a + b of equal shapes,
/// and x * factors per channel (the last dimension) of [..., C].
public enum Binary {
    private struct Key: Hashable { let rows, columns: Int; let broadcast: Bool; let dtype: DType; let multiply: Bool }
    private static let plans = Locked([Key: DNNLPrimitive]())

    private static func plan(_ key: Key) throws -> DNNLPrimitive {
        try plans.withLock { plans in
            if let p = plans[key] { return p }
            let t = DNNL.type(key.dtype)
            var a = try DNNL.desc([key.rows, key.columns], dnnl_ab, t)
            var b = try DNNL.desc([key.broadcast ? 1 : key.rows, key.columns], dnnl_ab, key.broadcast ? dnnl_f32 : t)
            var c = a
            var desc = dnnl_binary_desc_t()
            let what = "\(key.multiply ? "per-channel product" : "sum") of [\(key.rows), \(key.columns)] \(key.dtype)"
            try DNNL.check(dnnl_binary_desc_init(&desc, key.multiply ? dnnl_binary_mul : dnnl_binary_add, &a, &b, &c),
                           "describe a \(what)")
            let p = try DNNLPrimitive(&desc, what: what, kind: "binary")
            plans[key] = p
            return p
        }
    }

    /// a + b (same shape and type).
    public static func sum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        precondition(a.shape == b.shape && a.dtype == b.dtype, "sum of \(a.shape) \(a.dtype) and \(b.shape) \(b.dtype)")
        var out = Tensor.uninitialized(shape: a.shape, dtype: a.dtype)
        guard a.count > 0 else { return out }
        let p = try plan(Key(rows: 1, columns: a.count, broadcast: false, dtype: a.dtype, multiply: false))
        try p.execute([(DNNL_ARG_SRC_0, a.rawPointer), (DNNL_ARG_SRC_1, b.rawPointer), (DNNL_ARG_DST, out.mutableRawPointer())])
        return out
    }

    /// x[..., k] * factors[k] (factors f32).
    public static func scaleChannels(_ x: Tensor, by factors: Tensor) throws -> Tensor {
        let c = factors.count
        precondition(x.shape.last == c, "per-channel scale of \(x.shape) by \(c) factors")
        var out = Tensor.uninitialized(shape: x.shape, dtype: x.dtype)
        guard x.count > 0 else { return out }
        let p = try plan(Key(rows: x.count / c, columns: c, broadcast: true, dtype: x.dtype, multiply: true))
        try p.execute([(DNNL_ARG_SRC_0, x.rawPointer), (DNNL_ARG_SRC_1, factors.rawPointer),
                       (DNNL_ARG_DST, out.mutableRawPointer())])
        return out
    }
}
