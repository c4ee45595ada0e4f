import Foundation

/// A failed collective, a library that could not be loaded, or ranks that disagree; the
/// description is one sentence a user can act on.
public struct DistributedError: Error, CustomStringConvertible {
    public let description: String
    /// True when every rank raised the same error at the same point (a disagreement found by a
    /// collective check): the ranks can stop on their own, without aborting the job.
    public let collective: Bool

    public init(_ description: String, collective: Bool = false) {
        self.description = description
        self.collective = collective
    }
}

/// The ranks of one data-parallel job and the collectives they run together.
///
/// Every collective must be called by every rank in the same order with the same sizes (MPI's
/// rule); the buffers are contiguous Float, Double or byte arrays. Only one thread of a process
/// calls a communicator.
public protocol Communicator: AnyObject {
    /// This process's rank, 0 ..< size.
    var rank: Int { get }
    /// How many processes take part.
    var size: Int { get }
    /// How many ranks share this machine (for the default thread count).
    var localSize: Int { get }
    /// A short name of the transport ("single process", "Open MPI 4.1.4").
    var name: String { get }

    /// Replaces `values` by their element-wise sum over the ranks.
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws
    /// Replaces `values` by their element-wise sum over the ranks (counts, checks).
    func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws
    /// Replaces `values` on every rank by rank `root`'s.
    func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int) throws
    /// Every rank's `bytes` (the same length on every rank), in rank order.
    func allgather(_ bytes: [UInt8]) throws -> [[UInt8]]
    /// Returns once every rank has called it.
    func barrier() throws
    /// Stops every rank of the job with `code` (after a local failure the other ranks cannot
    /// know of). Does not return.
    func abort(code: Int32) -> Never
    /// Ends the communicator's use by this process (once; later calls do nothing).
    func finalize()
}

extension Communicator {
    /// True on the rank that writes files, logs and reports.
    public var isRoot: Bool { rank == 0 }

    /// `values` summed over the ranks.
    public func allreduceSum(_ values: [Float]) throws -> [Float] {
        var copy = values
        try copy.withUnsafeMutableBufferPointer { try allreduceSum($0) }
        return copy
    }

    /// `values` summed over the ranks.
    public func allreduceSum(_ values: [Double]) throws -> [Double] {
        var copy = values
        try copy.withUnsafeMutableBufferPointer { try allreduceSum($0) }
        return copy
    }

    /// Checks that every rank holds the same `value` of the named item (a configuration, a data
    /// fingerprint, a checkpoint hash); otherwise every rank throws the same collective error
    /// naming the item and the first rank that differs from rank 0.
    public func checkAgreement(_ item: String, _ value: String) throws {
        let digest = Array(value.utf8)
        // Lengths first, so the gathered blocks have one size.
        var lengths = [Double](repeating: 0, count: size)
        lengths[rank] = Double(digest.count)
        lengths = try allreduceSum(lengths)
        let longest = Int(lengths.max() ?? 0)
        let padded = digest + [UInt8](repeating: 0, count: longest - digest.count)
        let all = try allgather(padded)
        if let other = all.indices.first(where: { all[$0] != all[0] || lengths[$0] != lengths[0] }) {
            throw DistributedError("rank \(other) has a different \(item) from rank 0: start every rank with the same "
                                   + "command, files and checkpoint", collective: true)
        }
    }
}

/// The one-process "job": collectives return their input. What `part` runs on without mpirun.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localSize: Int { 1 }
    public var name: String { "single process" }
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Float>) throws {}
    public func allreduceSum(_ values: UnsafeMutableBufferPointer<Double>) throws {}
    public func broadcast(_ values: UnsafeMutableBufferPointer<Float>, root: Int) throws {
        guard root == 0 else { throw DistributedError("broadcast from rank \(root) in a one-process job") }
    }
    public func allgather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
    public func finalize() {}
}

extension Communicator {
    /// Every rank's `bytes`, in rank order, where the lengths may differ between ranks: the
    /// lengths are summed first, then blocks padded to the longest are all-gathered and cut back.
    /// Costs (size x longest) bytes on every rank: meant for small records (outcomes, a few
    /// images), not for weights.
    public func allgatherVariable(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var lengths = [Double](repeating: 0, count: size)
        lengths[rank] = Double(bytes.count)
        lengths = try allreduceSum(lengths)
        let longest = Int(lengths.max() ?? 0)
        let blocks = try allgather(bytes + [UInt8](repeating: 0, count: longest - bytes.count))
        return blocks.indices.map { Array(blocks[$0].prefix(Int(lengths[$0]))) }
    }

    /// Rank 0's `bytes` on every rank (the argument of the other ranks is ignored).
    public func broadcastBytes(_ bytes: [UInt8]) throws -> [UInt8] {
        try allgatherVariable(isRoot ? bytes : [])[0]
    }

    /// Runs `body` on rank 0 alone and hands its value to every rank; when `body` throws, every
    /// rank throws the same collective error with its description (so a file only rank 0 reads
    /// can be refused without the other ranks waiting for it).
    public func rootDecides<T: Codable>(_ body: () throws -> T) throws -> T {
        var message = [UInt8]()
        if isRoot {
            let outcome: Decision<T>
            do { outcome = Decision(value: try body(), error: nil) } catch {
                outcome = Decision(value: nil, error: "\(error)")
            }
            message = try JSONEncoder().encode(outcome).map { $0 }
        }
        let received = try broadcastBytes(message)
        let decision: Decision<T>
        do { decision = try JSONDecoder().decode(Decision<T>.self, from: Data(received)) } catch {
            throw DistributedError("rank \(rank) could not read rank 0's message (\(error))")
        }
        if let error = decision.error { throw DistributedError(error, collective: true) }
        guard let value = decision.value else { throw DistributedError("rank 0 sent neither a value nor an error") }
        return value
    }
}

/// What `rootDecides` sends: rank 0's value, or the description of its error.
private struct Decision<T: Codable>: Codable {
    let value: T?
    let error: String?
}
