import ArgumentParser
import Foundation
import PARTDistributed
import PARTEngine
import PARTNN
import PARTTraining

/// Data-parallel options of `part train` and `part eval`: a command started by `mpirun -np R`
/// joins the job of R ranks by itself; `--distributed` insists on it.
struct DistributedOptions: ParsableArguments {
    @Flag(help: "Require an MPI job (started by mpirun); without the flag, a command joins one when mpirun started it.")
    var distributed = false

    @Flag(name: .customLong("sync-bn"),
          help: "Distributed runs: batch norm with the statistics of the global batch (default: each rank's own, with rank 0's running statistics broadcast every step, as PyTorch DDP).")
    var syncBatchNorm = false

    func validate() throws {
        if distributed && !Distributed.launchedByMPI {
            throw ValidationError("--distributed needs a job started by mpirun (mpirun -np R part ...); drop it to run one process")
        }
    }

    /// The job's communicator, or nil for a one-process run.
    func start() throws -> Communicator? {
        try startCommunicator(required: distributed)
    }
}

/// The job's communicator when mpirun started the command (or `required`), nil for a
/// one-process run (`EngineOptions.settings` shares the cores between the ranks).
func startCommunicator(required: Bool) throws -> Communicator? {
    guard required || Distributed.launchedByMPI else { return nil }
    return try Distributed.communicator(required: true)
}

/// Commands that run in one process (`part cam`, `part report`, `part bench`, `part data`): started
/// by mpirun as several ranks, each rank would do all the work and write the same files. They stop
/// before any work with exit code 64 (a usage error), rank 0 saying why. One rank is one process.
func requireOneProcess(_ command: String) throws {
    guard let ranks = Distributed.launchedRanks, ranks > 1 else { return }
    if (Distributed.launchedRank ?? 0) == 0 {
        FileHandle.standardError.write(Data(
            "part: error: part \(command) runs in one process, and mpirun started \(ranks) ranks: start it without mpirun\n".utf8))
    }
    throw ExitCode(64)
}

/// Stops a rank after `error`. An error every rank met at the same point (ranks that disagree)
/// ends each rank on its own, rank 0 saying why; any other error is printed with the rank and
/// aborts the whole job, so that no rank waits forever for one that has stopped.
func failRank(_ error: Error, _ communicator: Communicator) -> ExitCode {
    if let e = error as? DistributedError, e.collective {
        Distributed.silenceStopMessage()
        if communicator.isRoot { FileHandle.standardError.write(Data("part: error: \(e)\n".utf8)) }
        communicator.finalize()
        return ExitCode(1)
    }
    let prefix = communicator.size > 1 ? "rank \(communicator.rank) of \(communicator.size): " : ""
    FileHandle.standardError.write(Data("part: error: \(prefix)\(error)\n".utf8))
    if communicator.size > 1 { communicator.abort(code: 1) }
    return ExitCode(1)
}

/// `part mpi`: checks a job's collectives and times the gradient all-reduce of a model.
struct MPICheck: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mpi",
        abstract: "Check an MPI job (mpirun -np R part mpi): ranks, hosts, and the time of one gradient all-reduce.",
        discussion: """
        Every rank checks the results of an all-reduce, a broadcast and an all-gather, then times \
        --repeats all-reduces of one buffer with the parameter count of --arch (what one distributed \
        training step sends). Rank 0 prints the result.
        """)

    @Option(help: ArchitectureName.help("Architecture whose parameter count sets the buffer size.",
                                         default: ModelZoo.benchmarkArchitecture),
            transform: ArchitectureName.parse)
    var arch: ArchitectureName = .benchmark

    @Option(parsing: .unconditional, help: "Image side and channels of that architecture's input.")
    var imageSize: Int = 32

    @Option(parsing: .unconditional, help: "Timed all-reduces.")
    var repeats: Int = 20

    @Flag(help: "Print the result as JSON.")
    var json = false

    struct Result: Encodable {
        let transport: String
        let ranks: Int
        let hosts: [String]
        let floats: Int
        let bytes: Int
        let medianSeconds: Double
        let algorithmBandwidthGBs: Double
    }

    func validate() throws {
        try Validation.count(repeats, "--repeats", atLeast: 1)
        try Validation.count(imageSize, "--image-size", atLeast: 16)
    }

    func run() throws {
        let communicator: Communicator
        do { communicator = try Distributed.communicator() } catch { throw fail(error) }
        do {
            var rng = RNG(seed: 0)
            let model = try ModelZoo.make(arch.name, numClasses: 10, inChannels: 3, imageSize: imageSize, rng: &rng)
            let floats = model.parameters.reduce(0) { $0 + $1.1.value.count }
            let (rank, size) = (communicator.rank, communicator.size)
            // Rank r contributes r + 1 at every position: the sum is size (size + 1) / 2.
            var values = [Float](repeating: Float(rank + 1), count: floats)
            try values.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
            let expected = Float(size * (size + 1) / 2)
            guard values.allSatisfy({ $0 == expected }) else {
                throw DistributedError("all-reduce gave a wrong sum on rank \(rank)")
            }
            var root: [Float] = [Float(rank == 0 ? 42 : -1)]
            try root.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) }
            guard root == [42] else { throw DistributedError("broadcast gave a wrong value on rank \(rank)") }
            var host = [CChar](repeating: 0, count: 256)
            gethostname(&host, 255)
            let name = Array(host.prefix { $0 != 0 }.map { UInt8(truncatingIfNeeded: $0) }.prefix(64))
            let hosts = try communicator.allgather(name + [UInt8](repeating: 0, count: 64 - name.count)).map {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            try communicator.barrier()
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = Date()
                try values.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
                times.append(Date().timeIntervalSince(start))
            }
            times.sort()
            let median = times[times.count / 2]
            let result = Result(transport: communicator.name, ranks: size, hosts: hosts, floats: floats, bytes: 4 * floats,
                                medianSeconds: median, algorithmBandwidthGBs: Double(4 * floats) / max(median, 1e-9) / 1e9)
            if communicator.isRoot {
                if json {
                    try printJSON(result)
                } else {
                    print("\(result.transport): \(size) rank\(size == 1 ? "" : "s") on \(Set(hosts).sorted().joined(separator: ", ")); "
                          + "all-reduce, broadcast and all-gather checked")
                    if size == 1 {
                        print("one process: no all-reduce to time (start it with mpirun -np R part mpi)")
                    } else {
                        print(String(format: "all-reduce of %d floats (%.1f MB, %@ gradients): median %.2f ms over %d, "
                                     + "%.2f GB/s", floats, Double(4 * floats) / 1e6, arch.name as NSString, 1000 * median,
                                     repeats, result.algorithmBandwidthGBs))
                    }
                }
            }
            communicator.finalize()
        } catch {
            throw failRank(error, communicator)
        }
    }
}
