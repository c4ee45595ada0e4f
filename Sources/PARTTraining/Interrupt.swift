import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Ctrl-C (SIGINT) and SIGTERM during training: the handler only records the signal; the
/// trainer finishes the batch in progress, writes a checkpoint and stops with
/// `TrainingInterrupted`. The handler is one-shot (`SA_RESETHAND`): a second Ctrl-C ends the
/// process at once, which the atomic checkpoints also survive.
public enum Interrupt {
    /// The signal received (0: none). Allocated once, before any handler can run, so the
    /// handler does nothing but one store.
    private static let slot: SignalSlot = {
        let p = UnsafeMutablePointer<sig_atomic_t>.allocate(capacity: 1)
        p.initialize(to: 0)
        return SignalSlot(pointer: p)
    }()

    private static var received: UnsafeMutablePointer<sig_atomic_t> { slot.pointer }

    /// The one `sig_atomic_t` the handler writes.
    // Safe: C makes storing a `sig_atomic_t` in a signal handler and reading it elsewhere
    // well defined; the memory is allocated once and never freed or moved.
    private struct SignalSlot: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<sig_atomic_t>
    }

    /// Installs the handlers for SIGINT and SIGTERM (again after an earlier signal).
    public static func install() {
        _ = slot
        received.pointee = 0
        for signal in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signal in Interrupt.received.pointee = signal }
            action.sa_flags = Int32(truncatingIfNeeded: SA_RESETHAND)
            sigemptyset(&action.sa_mask)
            sigaction(signal, &action, nil)
        }
    }

    /// Whether SIGINT or SIGTERM arrived since `install`.
    public static var requested: Bool { received.pointee != 0 }

    /// The signal that arrived, 0 when none.
    public static var signal: Int32 { Int32(received.pointee) }

    /// "SIGINT", "SIGTERM".
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(signal)"
        }
    }
}

/// A run stopped by SIGINT or SIGTERM after writing a checkpoint.
public struct TrainingInterrupted: Error, CustomStringConvertible {
    public let signal: Int32
    /// The checkpoint's position ("in epoch 2 after batch 5 of 16").
    public let position: String
    public let directory: URL

    public var description: String {
        "interrupted by \(Interrupt.name(signal)); checkpoint written \(position): resume with "
            + "part train --resume \(directory.path)"
    }

    /// 128 + the signal number, as shells report a process ended by it (130 for SIGINT).
    public var exitCode: Int32 { 128 + signal }
}
