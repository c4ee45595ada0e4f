import CDNNL
import Foundation

/// Thin ownership layer over oneDNN's C API (version 2.6 as shipped by Debian 12).
///
/// oneDNN 2.6 builds an operation descriptor first (`dnnl_*_desc_init`) and then a
/// primitive descriptor from it; backward primitive descriptors take their forward one as a
/// hint. Every C handle here is owned by a final class that frees it in `deinit`.
/// Primitives are built once per shape by the ops' plan caches and executed many times, with
/// data pointers bound just before each execution.
enum DNNL {
    /// The CPU engine and the in-order stream every primitive runs on (nil if oneDNN could not
    /// create them; every op then fails with an `EngineError`).
    private static let handles: Result<Handles, EngineError> = {
        var e: dnnl_engine_t?
        var status = dnnl_engine_create(&e, dnnl_cpu, 0)
        guard status == dnnl_success, let engine = e else {
            return .failure(EngineError("oneDNN failed to create the CPU engine: \(name(status))"))
        }
        var s: dnnl_stream_t?
        status = dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue)
        guard status == dnnl_success, let stream = s else {
            return .failure(EngineError("oneDNN failed to create a stream: \(name(status))"))
        }
        return .success(Handles(engine: engine, stream: stream))
    }()

    /// The two C handles, made once and never freed or replaced.
    // Safe: oneDNN lets any thread build primitives on a CPU engine, and every execution on the
    // stream holds `executionLock`; the handles themselves never change.
    private struct Handles: @unchecked Sendable {
        let engine: dnnl_engine_t
        let stream: dnnl_stream_t
    }

    static func engine() throws -> dnnl_engine_t { try handles.get().engine }
    static func stream() throws -> dnnl_stream_t { try handles.get().stream }

    /// Serialises executions: oneDNN already spreads each primitive over every core, and a
    /// primitive's cached memory objects are re-bound per call.
    static let executionLock = NSLock()

    /// Turns a oneDNN failure (an unsupported shape, memory exhausted) into an error that names
    /// the operation.
    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) throws {
        if status != dnnl_success {
            throw EngineError("oneDNN failed to \(what()): \(name(status))")
        }
    }

    static func name(_ status: dnnl_status_t) -> String {
        switch status {
        case dnnl_out_of_memory: return "out of memory"
        case dnnl_invalid_arguments: return "invalid arguments"
        case dnnl_unimplemented: return "no implementation for this shape or data type on this CPU"
        case dnnl_iterator_ends: return "iterator ends"
        case dnnl_runtime_error: return "runtime error"
        case dnnl_not_required: return "not required"
        default: return "status \(status.rawValue)"
        }
    }

    /// A plain memory descriptor with logical dims `dims` and physical layout `tag`.
    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t, _ type: dnnl_data_type_t = dnnl_f32) throws
        -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }
        try check(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, type, tag), "describe memory \(dims)")
        return md
    }

    static func bytes(_ md: dnnl_memory_desc_t) -> Int {
        var m = md
        return dnnl_memory_desc_get_size(&m)
    }

    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var x = a, y = b
        return dnnl_memory_desc_equal(&x, &y) != 0
    }
}

/// A primitive descriptor and the primitive built from it.
final class DNNLPrimitive {
    let pd: dnnl_primitive_desc_t
    let primitive: dnnl_primitive_t

    /// Builds from an operation descriptor (any of oneDNN's `*_desc_t`), with an optional
    /// forward hint for backward primitives.
    /// What the primitive computes, for error messages ("convolution forward [128, 28, 28, 1]").
    let what: String
    /// The kind of kernel, for `Profile`'s per-kind times ("convolution forward").
    let kind: String

    init<Desc>(_ opDesc: inout Desc, hint: DNNLPrimitive? = nil, attributes: dnnl_primitive_attr_t? = nil,
               what: String, kind: String) throws {
        self.what = what
        self.kind = kind
        var pd: dnnl_primitive_desc_t?
        let engine = try DNNL.engine()
        let status = withUnsafePointer(to: &opDesc) {
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), attributes, engine, hint?.pd)
        }
        try DNNL.check(status, "create the primitive descriptor for \(what)")
        guard let made = pd else { throw EngineError("oneDNN returned no primitive descriptor for \(what)") }
        self.pd = made
        primitive = try Self.primitive(of: made, "the primitive for \(what)")
    }

    /// A reorder between two layouts of the same logical tensor.
    init(reorderFrom src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, what: String) throws {
        self.what = "reorder for \(what)"
        self.kind = "reorder"
        var pd: dnnl_primitive_desc_t?
        var s = src, d = dst
        let engine = try DNNL.engine()
        try DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &s, engine, &d, engine, nil),
                       "create a reorder for \(what)")
        guard let made = pd else { throw EngineError("oneDNN returned no reorder for \(what)") }
        self.pd = made
        primitive = try Self.primitive(of: made, "a reorder for \(what)")
    }

    /// The primitive of the descriptor `made`; on failure `made` is freed (the caller's
    /// `deinit` will not run) and the error names `what`.
    private static func primitive(of made: dnnl_primitive_desc_t, _ what: String) throws -> dnnl_primitive_t {
        var p: dnnl_primitive_t?
        let created = dnnl_primitive_create(&p, made)
        guard created == dnnl_success, let primitive = p else {
            dnnl_primitive_desc_destroy(made)
            throw EngineError("oneDNN failed to create \(what): \(DNNL.name(created))")
        }
        return primitive
    }

    /// The memory descriptor the primitive chose for `query` (e.g. `dnnl_query_weights_md`).
    func md(_ query: dnnl_query_t, _ index: Int32 = 0) throws -> dnnl_memory_desc_t {
        guard let p = dnnl_primitive_desc_query_md(pd, query, index) else {
            throw EngineError("oneDNN primitive for \(what) has no memory descriptor for query \(query.rawValue)")
        }
        return p.pointee
    }

    /// Runs the primitive with `(argument, pointer)` pairs, binding each pointer to a memory
    /// object cached per argument, and waits for completion.
    func execute(_ bindings: [(Int32, UnsafeMutableRawPointer)]) throws {
        DNNL.executionLock.lock()
        defer { DNNL.executionLock.unlock() }
        var args = [dnnl_exec_arg_t]()
        args.reserveCapacity(bindings.count)
        for (arg, pointer) in bindings {
            let memory = try memoryObject(arg)
            try DNNL.check(dnnl_memory_set_data_handle(memory, pointer), "bind memory for \(what)")
            args.append(dnnl_exec_arg_t(arg: arg, memory: memory))
        }
        let stream = try DNNL.stream()
        try Profile.measure(kind) {
            try DNNL.check(dnnl_primitive_execute(primitive, stream, Int32(args.count), args), "execute \(what)")
            try DNNL.check(dnnl_stream_wait(stream), "wait for \(what)")
        }
    }

    /// Guarded by `DNNL.executionLock`.
    private var memories: [Int32: dnnl_memory_t] = [:]

    private func memoryObject(_ arg: Int32) throws -> dnnl_memory_t {
        if let m = memories[arg] { return m }
        guard let mdp = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg), mdp.pointee.ndims > 0 else {
            throw EngineError("oneDNN primitive for \(what) takes no argument \(arg)")
        }
        var m: dnnl_memory_t?
        try DNNL.check(dnnl_memory_create(&m, mdp, try DNNL.engine(), nil), "create a memory object for \(what)")
        guard let memory = m else { throw EngineError("oneDNN returned no memory object for \(what)") }
        memories[arg] = memory
        return memory
    }

    /// Bytes of the workspace this primitive needs (max-pool training), 0 if none.
    var workspaceBytes: Int {
        guard let p = dnnl_primitive_desc_query_md(pd, dnnl_query_workspace_md, 0) else { return 0 }
        return DNNL.bytes(p.pointee)
    }

    deinit {
        for m in memories.values { dnnl_memory_destroy(m) }
        dnnl_primitive_destroy(primitive)
        dnnl_primitive_desc_destroy(pd)
    }
}

/// Owned, 64-byte aligned raw bytes (blocked weight copies, workspaces).
final class RawBuffer {
    let pointer: UnsafeMutableRawPointer
    let bytes: Int

    init(bytes: Int) {
        self.bytes = (Swift.max(bytes, 64) + 63) / 64 * 64
        pointer = BufferPool.shared.take(bytes: self.bytes, shape: [self.bytes])
    }

    deinit { BufferPool.shared.give(pointer, bytes: bytes) }
}

/// A reorder between a plain layout and the layout a primitive chose, with a buffer for the
/// chosen-layout copy; both are nil when the layouts agree (nothing to do).
class LayoutBridge {
    let reorder: DNNLPrimitive?
    let buffer: RawBuffer?

    init(from src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t, what: String) throws {
        if DNNL.equal(src, dst) {
            reorder = nil
            buffer = nil
        } else {
            reorder = try DNNLPrimitive(reorderFrom: src, to: dst, what: what)
            buffer = RawBuffer(bytes: DNNL.bytes(chosen))
        }
    }
}

/// A copy of a weight tensor in the layout a primitive chose, refreshed only when the
/// weights' version changes (once per optimiser step, not once per call).
final class ReorderedWeights: LayoutBridge {
    private let version = Locked(-1)

    init(from plain: dnnl_memory_desc_t, to chosen: dnnl_memory_desc_t, what: String) throws {
        try super.init(from: plain, to: chosen, chosen: chosen, what: what)
    }

    /// A pointer to the weights in the chosen layout.
    func pointer(for weights: Tensor, version: Int) throws -> UnsafeMutableRawPointer {
        guard let reorder, let buffer else { return UnsafeMutableRawPointer(weights.readPointer) }
        try self.version.withLock { current in
            if version != current || version < 0 {
                try reorder.execute([(DNNL_ARG_FROM, UnsafeMutableRawPointer(weights.readPointer)),
                                     (DNNL_ARG_TO, buffer.pointer)])
                current = version
            }
        }
        return buffer.pointer
    }
}

/// What a layer with weights (convolution, inner product) builds for one input shape: the
/// forward primitive with its weights' reorder, and the backward ones, built on first use.
class LayerPlan {
    let forward: DNNLPrimitive
    let forwardWeights: ReorderedWeights
    var backwardData: DNNLPrimitive?
    var backwardDataWeights: ReorderedWeights?
    var backwardWeights: DNNLPrimitive?
    var weightGradient: GradientReorder?

    init(forward: DNNLPrimitive, forwardWeights: ReorderedWeights) {
        self.forward = forward
        self.forwardWeights = forwardWeights
    }
}

/// Brings a gradient produced in a primitive's chosen layout back to the plain layout.
final class GradientReorder: LayoutBridge {
    init(from chosen: dnnl_memory_desc_t, to plain: dnnl_memory_desc_t, what: String) throws {
        try super.init(from: chosen, to: plain, chosen: chosen, what: what)
    }

    /// Where the primitive should write: the plain output itself when layouts agree.
    func target(_ plain: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer { buffer?.pointer ?? plain }

    /// Completes the transfer into `plain` (a no-op when layouts agree).
    func finish(into plain: UnsafeMutableRawPointer) throws {
        guard let reorder, let buffer else { return }
        try reorder.execute([(DNNL_ARG_FROM, buffer.pointer), (DNNL_ARG_TO, plain)])
    }
}

/// A failure inside the engine (oneDNN could not build or run an operation), naming the
/// operation and its shape.
public struct EngineError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
