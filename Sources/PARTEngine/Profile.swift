import Foundation

/// Counts the floating-point work the engine's kernels execute and, when enabled, the time
/// spent per kind of kernel, so `part bench` can report achieved GFLOP/s and where time goes.
///
/// FLOPs are counted for convolutions (forward, backward-data and backward-weights each
/// 2 * N * OH * OW * O * I * K * K), which includes linear layers (they run as 1x1
/// convolutions); element-wise work is memory-bound and not counted.
public enum Profile {
    private static let state = Locked(State())

    struct State {
        var flops: Double = 0
        var timing = false
        var tracing = false
        var convolutions: [(Convolution, [Int], DType)] = []
        var seconds: [String: Double] = [:]
        var calls: [String: Int] = [:]
    }

    /// Floating-point operations executed since the last `reset`.
    public static var flops: Double { state.value.flops }

    /// Per-kind kernel seconds since the last `reset` (only while `timing` is on).
    public static var seconds: [String: Double] { state.value.seconds }
    public static var calls: [String: Int] { state.value.calls }

    /// Whether kernels are timed (adds a clock read around each oneDNN call).
    public static var timing: Bool {
        get { state.value.timing }
        set { state.withLock { $0.timing = newValue } }
    }

    /// Whether convolution forwards record their op and input shape (`traced`), for timing each
    /// layer of a model alone.
    public static var tracing: Bool {
        get { state.value.tracing }
        set { state.withLock { $0.tracing = newValue } }
    }

    /// The convolutions run while tracing, with their input shapes [N, H, W, C] and types, in order.
    public static var traced: [(Convolution, [Int], DType)] { state.value.convolutions }

    static func trace(_ op: Convolution, _ shape: [Int], _ dtype: DType) {
        state.withLock { s in if s.tracing { s.convolutions.append((op, shape, dtype)) } }
    }

    public static func reset() {
        state.withLock { s in
            s.flops = 0
            s.seconds = [:]
            s.calls = [:]
            s.convolutions = []
        }
    }

    static func addFlops(_ n: Double) {
        state.withLock { $0.flops += n }
    }

    /// Runs `body`, charging its time to `kind` when timing is on.
    @inline(__always) static func measure<R>(_ kind: String, _ body: () throws -> R) rethrows -> R {
        guard state.value.timing else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let t = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
            state.withLock { s in
                s.seconds[kind, default: 0] += t
                s.calls[kind, default: 0] += 1
            }
        }
        return try body()
    }
}

/// CPU seconds this process has used so far, on all its threads (user and system). Unlike the
/// wall clock, it does not advance while the process is stopped or waiting for a core, so a run
/// that shared its machine or was paused still reports the work it did.
public func processCPUSeconds() -> Double {
    var t = timespec()
    guard clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) == 0 else { return 0 }
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
