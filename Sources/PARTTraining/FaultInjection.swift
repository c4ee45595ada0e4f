import Foundation
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// Named points of a training run where a test can make the process fail, so that the
/// recovery paths are exercised by real processes rather than imagined.
///
/// The environment variable `PART_FAULT` holds `ACTION@POINT` or `ACTION@POINT#N` (the N-th
/// time the point is reached in this process; default the first):
/// - `kill`: the process sends itself SIGKILL (nothing is flushed, nothing cleaned up);
/// - `fail`: the write in progress fails as a full disk would (`ENOSPC`);
/// - `pause`: prints `fault: paused at POINT` on standard error and waits (up to 60 s) for a
///   signal, so a test can send SIGINT or SIGTERM at a known moment.
///
/// Points: `mid-batch` (after the gradients of a batch, before its step), `batch` (after a
/// batch's step), `checkpoint-model` (half of the model file written), `checkpoint-manifest`
/// (the manifest committed, the files not yet in place), `epoch-end` (after an epoch's
/// checkpoint). Without the variable every call is a comparison against nil.
public enum FaultInjection {
    public enum Action: String, Sendable { case kill, fail, pause }

    struct Plan: Sendable {
        let action: Action
        let point: String
        let occurrence: Int
    }

    static let plan: Plan? = {
        guard let text = ProcessInfo.processInfo.environment["PART_FAULT"], !text.isEmpty else { return nil }
        let parts = text.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, let action = Action(rawValue: parts[0]) else { return nil }
        let target = parts[1].split(separator: "#", maxSplits: 1).map(String.init)
        let occurrence = target.count == 2 ? Int(target[1]) ?? 1 : 1
        return Plan(action: action, point: target[0], occurrence: max(occurrence, 1))
    }()

    private static let counts = Locked([String: Int]())

    /// The planned action if this is the planned occurrence of `point`, after performing it
    /// (`kill` does not return; `pause` returns once a signal arrived or 60 s passed).
    @discardableResult
    public static func reach(_ point: String) -> Action? {
        guard let plan, plan.point == point else { return nil }
        let n = counts.withLock { c -> Int in
            c[point, default: 0] += 1
            return c[point]!
        }
        guard n == plan.occurrence else { return nil }
        switch plan.action {
        case .kill:
            kill(getpid(), SIGKILL)
            // SIGKILL cannot be caught; this line is never reached.
            return .kill
        case .fail:
            return .fail
        case .pause:
            FileHandle.standardError.write(Data("fault: paused at \(point)\n".utf8))
            let deadline = Date().addingTimeInterval(60)
            while !Interrupt.requested && Date() < deadline { usleep(10_000) }
            return .pause
        }
    }
}
