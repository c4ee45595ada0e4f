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
    /// The CPU engine and the in-order stream every primitive runs on.
    static let engine: dnnl_engine_t = {
        var e: dnnl_engine_t?
        check(dnnl_engine_create(&e, dnnl_cpu, 0), "create the CPU engine")
        return e!
    }()

    static let stream: dnnl_stream_t = {
        var s: dnnl_stream_t?
        check(dnnl_stream_create(&s, engine, dnnl_stream_default_flags.rawValue), "create a stream")
        return s!
    }()

    /// oneDNN failures here are programming errors (shapes were validated before), so they stop
    /// the process with the operation that failed.
    static func check(_ status: dnnl_status_t, _ what: @autoclosure () -> String) {
        if status != dnnl_success {
            fatalError("oneDNN failed to \(what()): status \(status.rawValue)")
        }
    }

    /// A plain memory descriptor with logical dims `dims` and physical layout `tag`.
    static func desc(_ dims: [Int], _ tag: dnnl_format_tag_t) -> dnnl_memory_desc_t {
        var md = dnnl_memory_desc_t()
        let d = dims.map { dnnl_dim_t($0) }
        check(dnnl_memory_desc_init_by_tag(&md, Int32(d.count), d, dnnl_f32, tag), "describe memory \(dims)")
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
    init<Desc>(_ opDesc: inout Desc, hint: DNNLPrimitive? = nil, what: String) {
        var pd: dnnl_primitive_desc_t?
        let status = withUnsafePointer(to: &opDesc) {
            dnnl_primitive_desc_create(&pd, UnsafeRawPointer($0), nil, DNNL.engine, hint?.pd)
        }
        DNNL.check(status, "create the primitive descriptor for \(what)")
        self.pd = pd!
        var p: dnnl_primitive_t?
        DNNL.check(dnnl_primitive_create(&p, pd), "create the primitive for \(what)")
        self.primitive = p!
    }

    /// A reorder between two layouts of the same logical tensor.
    init(reorderFrom src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t) {
        var pd: dnnl_primitive_desc_t?
        var s = src, d = dst
        DNNL.check(dnnl_reorder_primitive_desc_create(&pd, &s, DNNL.engine, &d, DNNL.engine, nil), "create a reorder")
        self.pd = pd!
        var p: dnnl_primitive_t?
        DNNL.check(dnnl_primitive_create(&p, pd), "create a reorder primitive")
        self.primitive = p!
    }

    /// The memory descriptor the primitive chose for `query` (e.g. `dnnl_query_weights_md`).
    func md(_ query: dnnl_query_t, _ index: Int32 = 0) -> dnnl_memory_desc_t {
        guard let p = dnnl_primitive_desc_query_md(pd, query, index) else {
            fatalError("oneDNN primitive has no memory descriptor for query \(query.rawValue)")
        }
        return p.pointee
    }

    /// Runs the primitive with `(argument, pointer)` pairs, binding each pointer to a memory
    /// object cached per argument, and waits for completion.
    func execute(_ bindings: [(Int32, UnsafeMutableRawPointer)]) {
        var args = [dnnl_exec_arg_t]()
        args.reserveCapacity(bindings.count)
        for (arg, pointer) in bindings {
            let memory = memoryObject(arg)
            DNNL.check(dnnl_memory_set_data_handle(memory, pointer), "bind memory")
            args.append(dnnl_exec_arg_t(arg: arg, memory: memory))
        }
        DNNL.check(dnnl_primitive_execute(primitive, DNNL.stream, Int32(args.count), args), "execute a primitive")
        DNNL.check(dnnl_stream_wait(DNNL.stream), "wait for the stream")
    }

    private var memories: [Int32: dnnl_memory_t] = [:]

    private func memoryObject(_ arg: Int32) -> dnnl_memory_t {
        if let m = memories[arg] { return m }
        guard let mdp = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg) else {
            fatalError("oneDNN primitive takes no argument \(arg)")
        }
        if mdp.pointee.ndims == 0 { fatalError("oneDNN primitive has an empty descriptor for argument \(arg)") }
        var m: dnnl_memory_t?
        DNNL.check(dnnl_memory_create(&m, mdp, DNNL.engine, nil), "create a memory object")
        memories[arg] = m!
        return m!
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
        self.bytes = bytes
        pointer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes, 64), alignment: 64)
    }

    deinit { pointer.deallocate() }
}

/// A reorder between a plain layout and the layout a primitive chose, with a buffer for the
/// chosen-layout copy; both are nil when the layouts agree (nothing to do).
class LayoutBridge {
    let reorder: DNNLPrimitive?
    let buffer: RawBuffer?

    init(from src: dnnl_memory_desc_t, to dst: dnnl_memory_desc_t, chosen: dnnl_memory_desc_t) {
        if DNNL.equal(src, dst) {
            reorder = nil
            buffer = nil
        } else {
            reorder = DNNLPrimitive(reorderFrom: src, to: dst)
            buffer = RawBuffer(bytes: DNNL.bytes(chosen))
        }
    }
}

/// A copy of a weight tensor in the layout a primitive chose, refreshed only when the
/// weights' version changes (once per optimiser step, not once per call).
final class ReorderedWeights: LayoutBridge {
    private var version = -1

    init(from plain: dnnl_memory_desc_t, to chosen: dnnl_memory_desc_t) {
        super.init(from: plain, to: chosen, chosen: chosen)
    }

    /// A pointer to the weights in the chosen layout.
    func pointer(for weights: Tensor, version: Int) -> UnsafeMutableRawPointer {
        guard let reorder, let buffer else { return UnsafeMutableRawPointer(weights.readPointer) }
        if version != self.version || version < 0 {
            reorder.execute([(DNNL_ARG_FROM, UnsafeMutableRawPointer(weights.readPointer)),
                             (DNNL_ARG_TO, buffer.pointer)])
            self.version = version
        }
        return buffer.pointer
    }
}

/// Brings a gradient produced in a primitive's chosen layout back to the plain layout.
final class GradientReorder: LayoutBridge {
    init(from chosen: dnnl_memory_desc_t, to plain: dnnl_memory_desc_t) {
        super.init(from: chosen, to: plain, chosen: chosen)
    }

    /// Where the primitive should write: the plain output itself when layouts agree.
    func target(_ plain: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer { buffer?.pointer ?? plain }

    /// Completes the transfer into `plain` (a no-op when layouts agree).
    func finish(into plain: UnsafeMutableRawPointer) {
        guard let reorder, let buffer else { return }
        reorder.execute([(DNNL_ARG_FROM, buffer.pointer), (DNNL_ARG_TO, plain)])
    }
}
