import CDNNL
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The engine's threads, the precision of attack and CAM passes, and what the CPU offers.
///
/// oneDNN threads with OpenMP (Debian's build links libgomp); the element-wise ops of this
/// engine split their loops over the same number of workers, on the same OpenMP threads
/// (`OpenMPTeam`). The two never run at the same time: every op waits for its oneDNN primitive
/// before returning, and element-wise loops run between primitives. The settings are bound for
/// a scope, not set for the process (`EngineSettings`).
public enum Engine {
    /// The thread count bound by `withThreads` (nil outside every such scope).
    @TaskLocal static var boundThreads: Int?

    /// Worker threads of every op in this scope; the machine's active cores unless
    /// `withThreads` binds another count.
    public static var threads: Int { boundThreads ?? availableCores }

    /// Runs `body` with `n` worker threads for oneDNN and for the element-wise ops, then
    /// restores the count outside. Results are identical for a given count; reductions are also
    /// identical across counts, because their partial sums follow fixed chunks.
    ///
    /// OpenMP keeps its thread count per thread (`omp_set_num_threads` sets the calling
    /// thread's), so binding it here changes the parallel regions this thread starts and no
    /// other thread's.
    public static func withThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
        let count = Swift.max(1, n)
        let outer = OpenMPTeam.maxThreads()
        OpenMPTeam.setThreads(count)
        defer { if let outer { OpenMPTeam.setThreads(outer) } }
        return try $boundThreads.withValue(count, operation: body)
    }

    /// Cores the process may run on.
    public static var availableCores: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// Element type of the passes that attacks and class activation maps run (`--precision`):
    /// f32, or bf16 where the CPU has bfloat16 instructions, bound for a scope with
    /// `Engine.$attackPrecision.withValue(.bf16) { ... }`. Training's own forward and backward
    /// passes have their own setting (`TrainingConfig.trainPrecision`).
    @TaskLocal public static var attackPrecision: DType = .f32

    /// Whether oneDNN runs bfloat16 kernels natively on this CPU (AVX-512 BF16 or AMX).
    public static var supportsBF16: Bool {
        let bf16 = UInt32(dnnl_cpu_isa_avx512_core_bf16.rawValue)
        return UInt32(dnnl_get_effective_cpu_isa().rawValue) & bf16 == bf16
    }

    /// The CPU instruction set oneDNN dispatches to ("avx512_core_bf16", ...).
    public static var instructionSet: String {
        switch dnnl_get_effective_cpu_isa() {
        case dnnl_cpu_isa_sse41: return "sse41"
        case dnnl_cpu_isa_avx: return "avx"
        case dnnl_cpu_isa_avx2: return "avx2"
        case dnnl_cpu_isa_avx512_mic: return "avx512_mic"
        case dnnl_cpu_isa_avx512_core: return "avx512_core"
        case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni"
        case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16"
        case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx"
        default: return "isa \(dnnl_get_effective_cpu_isa().rawValue)"
        }
    }
}

/// A value behind a lock, for the few process-wide counters and caches of the engine.
// Safe: `stored` is read and written only while `lock` is held, and `withLock` hands it out
// only for the duration of its body.
public final class Locked<Value>: @unchecked Sendable {
    private var stored: Value
    private let lock = NSLock()

    public init(_ value: Value) { stored = value }

    public var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); stored = newValue; lock.unlock() }
    }

    /// Runs `body` with exclusive access to the value.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&stored)
    }
}

/// Splits loops over the engine's workers.
///
/// Work is cut into chunks of a fixed `grain` (never depending on the thread count), so a
/// reduction that sums its chunks' partial results in chunk order gives the same bits whatever
/// the number of threads.
public enum Parallel {
    /// Calls `body` on consecutive sub-ranges of `0..<count` of at most `grain` elements, on
    /// all workers when there is more than one chunk. The worker count is read here, on the
    /// calling thread (`Engine.threads`): the workers do not see the caller's task-local settings.
    public static func forEach(_ count: Int, grain: Int = 32_768, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let g = Swift.max(1, grain)
        let chunks = (count + g - 1) / g
        let workers = Swift.min(Engine.threads, chunks)
        if workers <= 1 {
            body(0..<count)
            return
        }
        // Each worker takes a contiguous run of chunks: fewer wake-ups than one task per chunk.
        let perWorker = (chunks + workers - 1) / workers
        withoutActuallyEscaping(body) { body in
            let share: (Int) -> Void = { w in
                let lo = w * perWorker * g
                let hi = Swift.min(count, (w + 1) * perWorker * g)
                if lo < hi { body(lo..<hi) }
            }
            if let team = OpenMPTeam.shared {
                team.run(workers, share)
            } else {
                let shared = LoopBody(call: share)
                DispatchQueue.concurrentPerform(iterations: workers) { shared.call($0) }
            }
        }
    }

    /// A loop body handed to Dispatch's workers, as the OpenMP path hands it to OpenMP's.
    // Safe: `concurrentPerform` returns only after every call has finished, and each call gets
    // its own share of the range; a body that writes shared memory writes each index once,
    // which is `forEach`'s contract with its callers on either path.
    private struct LoopBody: @unchecked Sendable {
        let call: (Int) -> Void
    }

    /// Calls `body(i)` for every `i` in `0..<count` (rows, images), spread over the workers
    /// when `count * cost` (an estimate of elements touched) is worth it.
    public static func forEachIndex(_ count: Int, cost: Int = 1, _ body: (Int) -> Void) {
        let grain = Swift.max(1, 32_768 / Swift.max(cost, 1))
        forEach(count, grain: grain) { range in
            for i in range { body(i) }
        }
    }

    /// Sum over `0..<count` of per-chunk partial sums, added in chunk order (deterministic for
    /// any thread count).
    public static func sum(_ count: Int, grain: Int = 32_768, _ partial: (Range<Int>) -> Double) -> Double {
        guard count > 0 else { return 0 }
        let chunks = (count + grain - 1) / grain
        var partials = [Double](repeating: 0, count: chunks)
        partials.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            forEach(chunks, grain: 1) { range in
                for c in range {
                    base[c] = partial((c * grain)..<Swift.min(count, (c + 1) * grain))
                }
            }
        }
        return partials.reduce(0, +)
    }
}

/// Switches for the engine's optimisations, all on by default, so that each can be measured
/// on its own (`part bench --without NAME`) and checked against the plain path in tests.
public enum Optimizations {
    public enum Name: String, CaseIterable, Sendable {
        /// Batch norm folded into the preceding convolution in evaluation-mode passes.
        case fold
        /// ReLU (and residual additions) fused into convolution and inner-product kernels.
        case fuse
        /// Freed large buffers kept for reuse instead of returned to the system.
        case pool
        /// Backward-data of convolutions with few input channels as a matrix product + col2im.
        case narrow
        /// Passes that need no backward skip what only a backward pass reads (max-pool's arg-max
        /// workspace).
        case inference
        /// 3x3 stride-1 fp32 convolutions with channel counts divisible by 16 run oneDNN's
        /// Winograd kernels in forward and backward-data (`WinogradConvolution`).
        case winograd
        /// Square's queries recompute only the window of a model's spatially local first layers
        /// that the square changes (`LocalPrefix`), not the whole forward pass.
        case windows
    }

    /// The optimisations turned off in this scope (none outside every scope).
    @TaskLocal public static var disabled: Set<Name> = []

    public static func isEnabled(_ name: Name) -> Bool { !disabled.contains(name) }

    /// Runs `body` with `names` turned off, besides those already off in this scope.
    public static func without<R>(_ names: some Sequence<Name>, _ body: () throws -> R) rethrows -> R {
        try $disabled.withValue(disabled.union(names), operation: body)
    }
}

/// The OpenMP runtime that oneDNN threads with, used for the engine's own loops too.
///
/// Between two oneDNN primitives, OpenMP's workers spin for a while before they sleep. A second
/// pool (Dispatch) running the element-wise loops in that gap puts three busy threads on two
/// cores: the loops and the next primitive's barriers then wait for descheduled threads.
/// Running the loops as OpenMP parallel regions of libgomp's `GOMP_parallel` (what a
/// `#pragma omp parallel` compiles to) keeps one team of hot threads for everything.
/// Nil where the symbols are absent (another OpenMP runtime); Dispatch is used then.
// Safe: immutable after `init` (three C function pointers looked up once).
final class OpenMPTeam: @unchecked Sendable {
    typealias Region = @convention(c) (UnsafeMutableRawPointer?) -> Void
    private typealias Parallel = @convention(c) (Region, UnsafeMutableRawPointer?, UInt32, UInt32) -> Void
    private typealias Query = @convention(c) () -> Int32

    private let parallel: Parallel
    private let threadNumber: Query
    private let teamSize: Query

    static let shared: OpenMPTeam? = OpenMPTeam()

    private typealias SetThreads = @convention(c) (Int32) -> Void

    /// `omp_set_num_threads` for the calling thread, where OpenMP is loaded.
    static func setThreads(_ count: Int) {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return }
        unsafeBitCast(symbol, to: SetThreads.self)(Int32(count))
    }

    /// `omp_get_max_threads` of the calling thread (nil without OpenMP).
    static func maxThreads() -> Int? {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_get_max_threads") else { return nil }
        return Int(unsafeBitCast(symbol, to: Query.self)())
    }

    private init?() {
        let all = UnsafeMutableRawPointer(bitPattern: 0)
        guard let p = dlsym(all, "GOMP_parallel"), let n = dlsym(all, "omp_get_thread_num"),
              let t = dlsym(all, "omp_get_num_threads") else { return nil }
        parallel = unsafeBitCast(p, to: Parallel.self)
        threadNumber = unsafeBitCast(n, to: Query.self)
        teamSize = unsafeBitCast(t, to: Query.self)
    }

    /// What one parallel region runs: the shares and the number of the thread it is on.
    private struct Work {
        let shares: Int
        let body: (Int) -> Void
        let threadNumber: Query
        let teamSize: Query
    }

    /// Calls `body(w)` for every `w` in `0..<shares`, on a team of `shares` threads. A team
    /// may come out smaller (a region inside a region runs on one thread): each thread then
    /// takes every team-size-th share, so every share runs exactly once.
    func run(_ shares: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var work = Work(shares: shares, body: body, threadNumber: threadNumber, teamSize: teamSize)
            withUnsafeMutablePointer(to: &work) { pointer in
                let region: Region = { raw in
                    guard let work = raw?.assumingMemoryBound(to: Work.self).pointee else { return }
                    let size = Swift.max(1, Int(work.teamSize()))
                    var w = Int(work.threadNumber())
                    while w < work.shares {
                        work.body(w)
                        w += size
                    }
                }
                parallel(region, UnsafeMutableRawPointer(pointer), UInt32(shares), 0)
            }
        }
    }
}
