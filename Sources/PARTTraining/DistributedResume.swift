import Foundation
import PARTDistributed
import PARTEngine
import PARTNN

extension Trainer {
    /// `resume(from:)` for a rank of a data-parallel job, where the run directory may exist only
    /// on rank 0's machine: rank 0 recovers and reads it (and refuses it, for every rank, when it
    /// cannot be resumed); then one broadcast gives every rank rank 0's weights, batch-norm
    /// buffers and momentum buffers, and a message the run RNG, the position and the epoch's
    /// running sums. Every rank then holds exactly the state the uninterrupted job had at that
    /// checkpoint: the weights and buffers of all ranks are equal at every step boundary (the
    /// gradients are summed, and rank 0's running statistics are broadcast or, with synchronised
    /// batch norm, computed from the same global statistics), so the job goes on as if it had not
    /// stopped.
    public func resume(from directory: URL, job: DataParallel) throws -> ResumeInfo {
        let communicator = job.communicator
        guard communicator.size > 1 else { return try resume(from: directory) }
        var rootInfo: ResumeInfo?
        let message = try communicator.rootDecides { () -> ResumeMessage in
            let info = try resume(from: directory)
            rootInfo = info
            let position = resumeState?.position ?? TrainingPosition()
            return ResumeMessage(position: info.position, finished: info.finished, epochsDone: position.epochsDone,
                                 batchesDone: position.batchesDone, sums: position.sums.bitPatterns, rng: rng.state,
                                 momentum: optimizer.momentumBuffers.keys.sorted())
        }
        guard message.rng.count == 4, message.sums.count == EpochSums.fieldCount else {
            throw DistributedError("rank 0 sent a resume message this rank cannot read")
        }
        // Weights and buffers in the model's state order, then the momentum buffers (none before
        // the first step), in one broadcast of float32 values: exact.
        let state = model.state
        let shapes = Dictionary(uniqueKeysWithValues: optimizer.parameterShapes)
        var tensors = state.map(\.1.tensor)
        for name in message.momentum {
            guard let shape = shapes[name] else { throw DistributedError("rank 0 sent a momentum buffer of no parameter '\(name)'") }
            tensors.append(optimizer.momentumBuffers[name] ?? Tensor(shape: shape))
        }
        var buffer = FusedBuffer.pack(tensors, scale: 1)
        try buffer.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) }
        guard !communicator.isRoot else { return rootInfo ?? ResumeInfo(position: nil, finished: false, warnings: []) }
        _ = FusedBuffer.unpack(buffer, into: &tensors)
        for ((_, entry), tensor) in zip(state, tensors) {
            switch entry {
            case .parameter(let p): p.assign(tensor)
            case .buffer(let b): b.value = tensor
            }
        }
        optimizer.momentumBuffers = Dictionary(uniqueKeysWithValues: zip(message.momentum, tensors.dropFirst(state.count)))
        rng = RNG(state: message.rng)
        resumeState = ResumeState(store: CheckpointStore(directory: directory),
                                  position: TrainingPosition(epochsDone: message.epochsDone, batchesDone: message.batchesDone,
                                                             sums: EpochSums(bitPatterns: message.sums)),
                                  reports: [])
        return ResumeInfo(position: message.position, finished: message.finished, warnings: [])
    }
}

/// What rank 0 tells the other ranks of a resumed run besides the tensors.
struct ResumeMessage: Codable {
    var position: String?
    var finished: Bool
    var epochsDone: Int
    var batchesDone: Int
    /// The epoch's running sums as bit patterns (exact).
    var sums: [UInt64]
    var rng: [UInt64]
    /// The parameters with a momentum buffer, in the order of the broadcast.
    var momentum: [String]
}

extension EpochSums {
    static let fieldCount = 7

    var bitPatterns: [UInt64] {
        [lossSum.bitPattern, UInt64(correct), UInt64(seen), fullEntries.bitPattern, entries.bitPattern,
         seconds.bitPattern, (cpuSeconds ?? .nan).bitPattern]
    }

    init(bitPatterns b: [UInt64]) {
        self.init(lossSum: Double(bitPattern: b[0]), correct: Int(b[1]), seen: Int(b[2]),
                  fullEntries: Double(bitPattern: b[3]), entries: Double(bitPattern: b[4]), seconds: Double(bitPattern: b[5]),
                  cpuSeconds: Optional(Double(bitPattern: b[6])).flatMap { $0.isNaN ? nil : $0 })
    }
}
