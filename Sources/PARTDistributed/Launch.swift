import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How this process was started, and its one communicator.
public enum Distributed {
    /// True when an MPI launcher started this process (`mpirun` / `mpiexec` of Open MPI set
    /// `OMPI_COMM_WORLD_SIZE`; Slurm's `srun --mpi=pmix` sets `PMIX_RANK`).
    public static var launchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// The number of ranks the launcher started (nil when no launcher says): Open MPI's
    /// `OMPI_COMM_WORLD_SIZE`, or Slurm's `SLURM_STEP_NUM_TASKS`. Read without starting MPI.
    public static var launchedRanks: Int? {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_SIZE"] ?? environment["SLURM_STEP_NUM_TASKS"]).flatMap { Int($0) }
    }

    /// This process's rank as the launcher numbered it (`OMPI_COMM_WORLD_RANK` or `PMIX_RANK`),
    /// read without starting MPI.
    public static var launchedRank: Int? {
        let environment = ProcessInfo.processInfo.environment
        return (environment["OMPI_COMM_WORLD_RANK"] ?? environment["PMIX_RANK"]).flatMap { Int($0) }
    }

    private static let lock = NSLock()
    // Safe: read and written only while `lock` is held (every use below takes it).
    nonisolated(unsafe) private static var shared: Communicator?

    /// The process's communicator: Open MPI when launched by `mpirun` (or when `required`, as
    /// `--distributed` asks), one process otherwise. Created once; later calls return it.
    ///
    /// Under MPI this also makes the process say why it stops when the launcher terminates it
    /// (another rank failed), and finalises MPI at exit.
    public static func communicator(required: Bool = false) throws -> Communicator {
        lock.lock()
        defer { lock.unlock() }
        if let shared { return shared }
        let made: Communicator
        if required || launchedByMPI {
            let mpi = try OpenMPICommunicator()
            installStopMessage(rank: mpi.rank)
            atexit { Distributed.exitHandler() }
            made = mpi
        } else {
            made = SingleProcess()
        }
        shared = made
        return made
    }

    /// At exit: a rank that leaves a job of several ranks without having finalised (an error that
    /// ended the process elsewhere than in the command's own error handling) aborts the job, so
    /// that the other ranks stop instead of waiting for it in their next collective.
    private static func exitHandler() {
        lock.lock()
        let c = shared
        lock.unlock()
        guard let mpi = c as? OpenMPICommunicator else { return }
        if mpi.size > 1 && !mpi.hasFinalized {
            let text = "part: error: rank \(mpi.rank) exits before the job has ended: stopping the other ranks\n"
            _ = text.withCString { write(2, $0, strlen($0)) }
            mpi.abort(code: 1)
        }
        mpi.finalize()
    }

    /// The communicator made by `communicator(required:)`, if any (nil: none was asked for yet).
    public static var current: Communicator? {
        lock.lock()
        defer { lock.unlock() }
        return shared
    }

    /// Finalises the communicator, if one was made (idempotent).
    public static func finalize() {
        lock.lock()
        let c = shared
        lock.unlock()
        c?.finalize()
    }

    /// The message a rank prints when the launcher stops it with SIGTERM (what `mpirun` sends
    /// to the surviving ranks when one rank dies), built before any signal arrives so that the
    /// handler only calls async-signal-safe `write` and `_exit`.
    // Safe: written once before the signal handlers are installed; the handler only reads it.
    nonisolated(unsafe) private static var stopMessage: UnsafeMutablePointer<CChar>?
    // Safe: a word-sized store the signal handler reads (a lock is not async-signal-safe); it
    // only ever goes from the message's length to 0, and either value gives a whole message or none.
    nonisolated(unsafe) private static var stopMessageLength = 0

    /// After a rank has said why the job stops (ranks that disagree), a SIGTERM from the launcher
    /// ends it without a second message: a rank whose sibling exits first is stopped by `mpirun`.
    public static func silenceStopMessage() {
        stopMessageLength = 0
    }

    private static func installStopMessage(rank: Int) {
        let text = "part: error: rank \(rank) stopped by the MPI launcher (another rank failed or the job was "
            + "cancelled); what it had not saved yet is lost\n"
        stopMessage = strdup(text)
        stopMessageLength = text.utf8.count
        for sig in [SIGTERM, SIGINT] {
            signal(sig) { _ in
                if let message = Distributed.stopMessage, Distributed.stopMessageLength > 0 {
                    _ = write(2, message, Distributed.stopMessageLength)
                }
                _exit(1)
            }
        }
    }
}
