import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Open MPI, loaded at run time with `dlopen`, so that `part` builds and runs without MPI and
/// joins a job when started by `mpirun` (Debian: `openmpi-bin`, `libopenmpi3`).
///
/// Open MPI's handles are pointers: `MPI_COMM_WORLD` is the address of the library's global
/// `ompi_mpi_comm_world`, `MPI_FLOAT` of `ompi_mpi_float`, `MPI_SUM` of `ompi_mpi_op_sum` and
/// `MPI_ERRORS_RETURN` of `ompi_mpi_errors_return` (the `OMPI_PREDEFINED_GLOBAL` macros of its
/// `mpi.h`), and `MPI_IN_PLACE` is `(void *) 1`; so `dlsym` of those names yields the handles.
/// This matches Open MPI's ABI (libmpi.so.40, versions 3 to 5); MPICH's integer handles differ
/// and are not supported.
///
/// Only the thread that created it calls MPI (`MPI_THREAD_FUNNELED`); the engine's worker
/// threads and the data prefetcher never do.
public final class OpenMPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localSize: Int
    public let name: String

    private typealias Handle = UnsafeMutableRawPointer
    private typealias InitThreadFn = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutableRawPointer?, Int32,
                                                     UnsafeMutablePointer<Int32>) -> Int32
    private typealias FlagFn = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
    private typealias VoidFn = @convention(c) () -> Int32
    private typealias CommIntFn = @convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32
    private typealias AllreduceFn = @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle,
                                                    Handle) -> Int32
    private typealias BcastFn = @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32
    private typealias AllgatherFn = @convention(c) (UnsafeRawPointer?, Int32, Handle, UnsafeMutableRawPointer?, Int32,
                                                    Handle, Handle) -> Int32
    private typealias CommFn = @convention(c) (Handle) -> Int32
    private typealias AbortFn = @convention(c) (Handle, Int32) -> Int32
    private typealias SetErrhandlerFn = @convention(c) (Handle, Handle) -> Int32
    private typealias ErrorStringFn = @convention(c) (Int32, UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>)
        -> Int32
    private typealias VersionFn = @convention(c) (UnsafeMutablePointer<CChar>, UnsafeMutablePointer<Int32>) -> Int32

    private let world, float, double, byte, sum: Handle
    private let allreduceFn: AllreduceFn
    private let bcastFn: BcastFn
    private let allgatherFn: AllgatherFn
    private let barrierFn: CommFn
    private let abortFn: AbortFn
    private let finalizeFn: VoidFn
    private let finalizedFn: FlagFn
    private let errorStringFn: ErrorStringFn
    private var finalized = false

    /// The shared library names tried, in order, or the one file `PART_MPI_LIBRARY` names.
    public static var libraryCandidates: [String] {
        ProcessInfo.processInfo.environment["PART_MPI_LIBRARY"].map { [$0] } ?? ["libmpi.so.40", "libmpi.so"]
    }

    /// Loads Open MPI and initialises it (once per process).
    public init() throws {
        var library: UnsafeMutableRawPointer?
        var reasons: [String] = []
        for candidate in OpenMPICommunicator.libraryCandidates {
            // RTLD_GLOBAL: Open MPI's own plugins resolve libmpi's symbols from the global scope.
            library = dlopen(candidate, RTLD_NOW | RTLD_GLOBAL)
            if library != nil { break }
            reasons.append(String(cString: dlerror()))
        }
        guard let library else {
            throw DistributedError("could not load Open MPI (\(reasons.first ?? "not found")): install openmpi-bin and "
                                   + "libopenmpi3 (scripts/setup.sh does), or set PART_MPI_LIBRARY to libmpi.so.40")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let s = dlsym(library, name) else {
                throw DistributedError("the loaded MPI library has no \(name): it is not Open MPI; install openmpi-bin "
                                       + "and libopenmpi3")
            }
            return s
        }
        func function<F>(_ name: String, _ type: F.Type) throws -> F { unsafeBitCast(try symbol(name), to: type) }

        world = try symbol("ompi_mpi_comm_world")
        float = try symbol("ompi_mpi_float")
        double = try symbol("ompi_mpi_double")
        byte = try symbol("ompi_mpi_byte")
        sum = try symbol("ompi_mpi_op_sum")
        let errorsReturn = try symbol("ompi_mpi_errors_return")
        allreduceFn = try function("MPI_Allreduce", AllreduceFn.self)
        bcastFn = try function("MPI_Bcast", BcastFn.self)
        allgatherFn = try function("MPI_Allgather", AllgatherFn.self)
        barrierFn = try function("MPI_Barrier", CommFn.self)
        abortFn = try function("MPI_Abort", AbortFn.self)
        finalizeFn = try function("MPI_Finalize", VoidFn.self)
        finalizedFn = try function("MPI_Finalized", FlagFn.self)
        errorStringFn = try function("MPI_Error_string", ErrorStringFn.self)
        let initialized = try function("MPI_Initialized", FlagFn.self)
        let initThread = try function("MPI_Init_thread", InitThreadFn.self)
        let commRank = try function("MPI_Comm_rank", CommIntFn.self)
        let commSize = try function("MPI_Comm_size", CommIntFn.self)
        let setErrhandler = try function("MPI_Comm_set_errhandler", SetErrhandlerFn.self)

        var flag: Int32 = 0
        _ = initialized(&flag)
        if flag == 0 {
            var provided: Int32 = 0
            let funneled: Int32 = 1  // MPI_THREAD_FUNNELED (SINGLE, FUNNELED, SERIALIZED, MULTIPLE)
            let code = initThread(nil, nil, funneled, &provided)
            guard code == 0 else { throw DistributedError("MPI_Init_thread failed with code \(code)") }
        }
        // Failures come back as codes, turned into errors, instead of aborting inside MPI.
        _ = setErrhandler(world, errorsReturn)
        var r: Int32 = 0, s: Int32 = 0
        _ = commRank(world, &r)
        _ = commSize(world, &s)
        rank = Int(r)
        size = Int(s)
        let environment = ProcessInfo.processInfo.environment
        localSize = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
        var version = [CChar](repeating: 0, count: 256)
        var length: Int32 = 0
        if let getVersion = try? function("MPI_Get_library_version", VersionFn.self), getVersion(&version, &length) == 0 {
            // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
            let text = String(cString: version)
            name = text.split(separator: ",").first.map(String.init) ?? text
        } else {
            name = "Open MPI"
        }
    }

    private func check(_ code: Int32, _ what: String) throws {
        guard code != 0 else { return }
        var text = [CChar](repeating: 0, count: 512)
        var length: Int32 = 0
        _ = errorStringFn(code, &text, &length)
        throw DistributedError("MPI \(what) failed on rank \(rank): \(String(cString: text))")
    }

    /// MPI counts are Int32: larger buffers go in chunks.
    private static let chunk = 1 << 30

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = values.baseAddress else { return try allreduceEmpty(float) }
        var start = 0
        repeat {
            let n = Swift.min(OpenMPICommunicator.chunk, values.count - start)
            try check(allreduceFn(UnsafeRawPointer(bitPattern: 1), base + start, Int32(n), float, sum, world), "allreduce")
            start += n
        } while start < values.count
    }

    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {
        guard let base = values.baseAddress else { return try allreduceEmpty(double) }
        var start = 0
        repeat {
            let n = Swift.min(OpenMPICommunicator.chunk, values.count - start)
            try check(allreduceFn(UnsafeRawPointer(bitPattern: 1), base + start, Int32(n), double, sum, world),
                      "allreduce")
            start += n
        } while start < values.count
    }

    /// An empty buffer still takes part in the collective (the other ranks wait for it).
    private func allreduceEmpty(_ type: Handle) throws {
        var nothing: Double = 0
        try check(allreduceFn(UnsafeRawPointer(bitPattern: 1), &nothing, 0, type, sum, world), "allreduce")
    }

    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard let base = values.baseAddress else {
            var nothing: Float = 0
            return try check(bcastFn(&nothing, 0, float, Int32(root), world), "broadcast")
        }
        var start = 0
        repeat {
            let n = Swift.min(OpenMPICommunicator.chunk, values.count - start)
            try check(bcastFn(base + start, Int32(n), float, Int32(root), world), "broadcast")
            start += n
        } while start < values.count
    }

    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var out = [UInt8](repeating: 0, count: bytes.count * size)
        try bytes.withUnsafeBytes { send in
            try out.withUnsafeMutableBytes { receive in
                try check(allgatherFn(send.baseAddress, Int32(bytes.count), byte, receive.baseAddress, Int32(bytes.count),
                                      byte, world), "allgather")
            }
        }
        return (0..<size).map { Array(out[$0 * bytes.count ..< ($0 + 1) * bytes.count]) }
    }

    public func barrier() throws { try check(barrierFn(world), "barrier") }

    public func abort(code: Int32) -> Never {
        _ = abortFn(world, code)
        _exit(code)
    }

    /// True once `finalize()` has run: the process left the job in step with the other ranks.
    public var hasFinalized: Bool { finalized }

    public func finalize() {
        guard !finalized else { return }
        finalized = true
        var flag: Int32 = 0
        _ = finalizedFn(&flag)
        if flag == 0 { _ = finalizeFn() }
    }
}
