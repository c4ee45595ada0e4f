import Foundation
import PARTAttacks
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN

/// A trainer's part in a data-parallel job: which examples this rank trains on, the one gradient
/// sum per step, batch-norm buffers, the agreement check and the sharded held-out check.
///
/// Per step (the scheme of PyTorch's DistributedDataParallel and Horovod):
/// - every rank takes its contiguous share of the global batch (`Shard`) and computes its own
///   epsilon maps and adversarial examples; per-example draws are keyed by dataset index, so a
///   split changes no example;
/// - its loss is the mean over its n_r examples; multiplied by w_r = n_r / N (N the global
///   batch), the gradients become its examples' share of the global mean's gradient, and one
///   `MPI_Allreduce` of all of them in one fused buffer (4 bytes per parameter) sums the shares;
/// - batch norm keeps per-rank batch statistics and rank 0's running buffers are broadcast after
///   every step (DDP's default, one more fused collective of 4 bytes per buffer entry), or, with
///   `synchronizedBatchNorm`, normalises with the global batch's statistics (two small
///   all-reduces per batch-norm layer forward and backward; see `BatchNorm2d.synchronizedForward`).
public final class DataParallel: BatchStatisticsReducer {
    public let communicator: Communicator
    public let synchronizedBatchNorm: Bool
    public private(set) var gradientWeight: Double = 1
    /// Seconds spent in the step's gradient all-reduce and buffer broadcast, and how many steps.
    public private(set) var communication = (seconds: 0.0, steps: 0)

    public init(communicator: Communicator, synchronizedBatchNorm: Bool) {
        self.communicator = communicator
        self.synchronizedBatchNorm = synchronizedBatchNorm
    }

    public var shard: Shard { Shard(rank: communicator.rank, count: communicator.size) }
    /// The rank that writes checkpoints, logs and reports.
    public var isRoot: Bool { communicator.isRoot }

    public func sum(_ values: [Double]) throws -> [Double] { try communicator.allreduceSum(values) }

    /// This rank's share of each global batch. Synchronised batch norm needs examples on every
    /// rank (each joins every layer's statistics), so it refuses a batch smaller than the job.
    public func localBatches(_ global: [[Int]]) throws -> [[Int]] {
        if synchronizedBatchNorm, let small = global.first(where: { $0.count < communicator.size }) {
            throw DistributedError("a global batch of \(small.count) examples cannot give each of the "
                                   + "\(communicator.size) ranks one for --sync-bn: choose --batch-size and "
                                   + "--train-limit so that the last batch has at least \(communicator.size)",
                                   collective: true)
        }
        return ShardedBatches(global, shard: shard).local
    }

    /// Sets this rank's weight n_local / n_global for the step about to run.
    public func beginStep(localCount: Int, globalCount: Int) {
        gradientWeight = globalCount > 0 ? Double(localCount) / Double(globalCount) : 0
    }

    /// Sums the weighted gradients of `model` over the ranks in one collective: afterwards every
    /// rank holds the gradient of the global batch's mean loss. A rank without examples this step
    /// contributes zeros.
    public func reduceGradients(_ model: ImageClassifier) throws {
        let started = Date()
        let parameters = model.parameters.map(\.1)
        var gradients = parameters.map(\.gradient)
        var buffer = FusedBuffer.pack(gradients, scale: Float(gradientWeight))
        try buffer.withUnsafeMutableBufferPointer { try communicator.allreduceSum($0) }
        _ = FusedBuffer.unpack(buffer, into: &gradients)
        for (p, g) in zip(parameters, gradients) { p.gradient = g }
        if !synchronizedBatchNorm { try broadcastBuffers(model) }
        communication.seconds += Date().timeIntervalSince(started)
        communication.steps += 1
    }

    /// Rank 0's batch-norm running statistics on every rank (one fused broadcast).
    public func broadcastBuffers(_ model: ImageClassifier) throws {
        let buffers = model.buffers.map(\.1)
        guard !buffers.isEmpty else { return }
        var values = buffers.map(\.value)
        var buffer = FusedBuffer.pack(values, scale: 1)
        try buffer.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) }
        _ = FusedBuffer.unpack(buffer, into: &values)
        for (b, v) in zip(buffers, values) { b.value = v }
    }

    /// "gradient all-reduce 12.3 ms per step (...)", or nil before the first step.
    public func communicationSummary(_ model: ImageClassifier) -> String? {
        guard communication.steps > 0 else { return nil }
        let floats = model.parameters.reduce(0) { $0 + $1.1.value.count }
        let what = synchronizedBatchNorm || model.buffers.isEmpty ? "gradient all-reduce"
            : "gradient all-reduce and buffer broadcast"
        let perStep = String(format: "%.1f ms per step (%d steps of %.1f MB", 1000 * communication.seconds
                             / Double(communication.steps), communication.steps, Double(4 * floats) / 1e6)
        return "\(what) \(perStep), \(communicator.size) ranks, \(communicator.name))"
    }

    /// Epoch totals (loss sum, counts) summed over the ranks.
    public func totals(_ values: [Double]) throws -> [Double] { try communicator.allreduceSum(values) }

    /// Checks that every rank runs the same configuration on the same data from the same weights
    /// (a fresh initialisation from the seed, or the same checkpoint); every rank throws the same
    /// error naming the first difference otherwise.
    public func checkAgreement(configuration: String, data: ImageDataset, model: ImageClassifier) throws {
        try communicator.checkAgreement("configuration (command-line options)", configuration)
        try communicator.checkAgreement("training data", DataParallel.fingerprint(data))
        try communicator.checkAgreement("model weights (initialisation or checkpoint)", DataParallel.fingerprint(model))
    }

    /// Name, size, labels and the pixels of three images: enough to tell different files apart
    /// without reading the whole set.
    public static func fingerprint(_ data: ImageDataset) -> String {
        let probe = data.count == 0 ? [] : [0, data.count / 2, data.count - 1]
        let labels = data.labels.enumerated().reduce(0) { $0 &+ UInt64($1.offset + 1) &* UInt64(bitPattern: Int64($1.element)) }
        let pixels = probe.isEmpty ? 0 : data.batch(probe).images.sum()
        return "\(data.name) \(data.count)x\(data.height)x\(data.width)x\(data.channels) \(data.classes) classes "
            + "labels \(labels) pixels \(pixels)"
    }

    /// The sum of every state tensor, by name (exact Double sums: a different checkpoint shows).
    static func fingerprint(_ model: ImageClassifier) -> String {
        model.state.map { "\($0.0)=\($0.1.tensor.sum())" }.joined(separator: ";")
    }

    /// Clean and robust accuracy of `dataset`, each rank checking a contiguous share and the
    /// counts summed: the same numbers as `Evaluation.run` in one process, since random starts
    /// are keyed by dataset index.
    public func evaluate(_ model: ImageClassifier, on dataset: ImageDataset, attack: Attack?, epsilon: Float,
                         batchSize: Int, seed: UInt64) throws -> EvaluationResult {
        let mine = shard.range(of: dataset.count)
        var clean = 0, robust = 0, nonFinite = 0
        var start = mine.lowerBound
        while start < mine.upperBound {
            let indices = Array(start..<min(start + batchSize, mine.upperBound))
            let (x, y) = dataset.batch(indices)
            let logits = try model.forward(x, mode: .eval)
            nonFinite += logits.nonFiniteRows()
            clean += zip(logits.argmaxRows(), y).filter { $0 == $1 }.count
            if let attack {
                let batch = AttackBatch(images: x, labels: y, indices: dataset.splitIndex(of: indices),
                                        budget: try EpsilonMap.constant(epsilon, shape: x.shape))
                let adversarial = try attack.perturb(model, batch, seed: seed)
                robust += zip(try model.forward(adversarial, mode: .eval).argmaxRows(), y).filter { $0 == $1 }.count
            }
            start += indices.count
        }
        let sums = try communicator.allreduceSum([Double(clean), Double(robust), Double(nonFinite)])
        return EvaluationResult(count: dataset.count, cleanCorrect: Int(sums[0]),
                                robustCorrect: attack == nil ? nil : Int(sums[1]), nonFinite: Int(sums[2]))
    }
}
