import Foundation
import PARTAttacks
import PARTData
import PARTDistributed
import PARTEngine

/// The evaluation loop, written once for any number of ranks; one process is the one-rank case
/// (`run()` runs it on `SingleProcess`).
///
/// Every batch is a fixed range of dataset indices; rank r of R takes a contiguous share of it
/// (`Shard`: the first n mod R ranks one point more, a share may be empty; with one rank, the
/// whole batch) and runs the clean pass and every stage on its share alone. Since every draw of an
/// attack is keyed by the point's dataset index and the stage's seed, a point's outcome does not
/// depend on which rank evaluated it or with which neighbours. After the clean pass and after
/// every stage, the ranks' outcomes, re-verification refusals, log lines and newly confirmed
/// adversarial examples are gathered on rank 0, which alone logs, reports progress, writes the
/// results file, its progress file and the .npy; so a run killed under mpirun resumes from the
/// same files (rank 0 reads them and tells the other ranks where to continue), and a one-process
/// run can resume a distributed one and the reverse.
extension EvaluationRunner {
    /// Runs the evaluation in one process.
    public func run() throws -> EvaluationSummary {
        guard let summary = try run(communicator: SingleProcess()) else {
            throw EvaluationError("a one-process evaluation ended without its summary")
        }
        return summary
    }

    /// Runs the evaluation as one rank of `communicator`'s job; the summary on rank 0, nil on the
    /// other ranks.
    public func run(communicator: Communicator) throws -> EvaluationSummary? {
        let n = dataset.count, stageCount = stages.count
        let root = communicator.isRoot
        let shard = Shard(rank: communicator.rank, count: communicator.size)
        let saving = options.adversarialFile != nil

        // Rank 0 alone opens the files; the others learn where to continue.
        var results: ResultsFile?
        var outcomes = [ExampleOutcome]()
        var adversarial: NPYFile?
        func open() throws -> StartPoint {
            let point = try openResults()
            results = point.file
            outcomes = point.outcomes
            adversarial = try openAdversarial(resuming: !point.outcomes.isEmpty || point.pending != nil)
            return StartPoint(resumed: point.outcomes.count, seconds: point.seconds, pending: point.pending)
        }
        // One process keeps the file's own error (and its exit status); ranks share rank 0's.
        let start = try communicator.size == 1 ? open() : communicator.rootDecides(open)
        var seconds = start.seconds
        var pending = start.pending
        let resumed = start.resumed
        if resumed > 0 || pending != nil {
            log?("resuming: \(resumed) of \(n) points done" + (pending.map { ", \($0.stagesDone) of \(stageCount) stages of the next batch" } ?? ""))
        }

        var sanity = Sanity()
        var refusals = [Refusal: String]()
        let userLog = log
        defer { log = userLog }
        var lines = [String]()   // this rank's log lines since the last exchange
        log = { lines.append($0) }
        defer { lines.forEach { userLog?($0) } }   // those of a stage that threw

        func saveProgress(_ batch: BatchProgress?) throws {
            if let file = results { try file.writeProgress(EvaluationProgressState(header: file.headerLine, seconds: seconds, batch: batch)) }
        }
        let batches = (n + options.batchSize - 1) / options.batchSize
        let totalCost = stages.reduce(0) { $0 + $1.cost }
        var begin = resumed
        while begin < n {
            let end = Swift.min(begin + options.batchSize, n)
            let batchNumber = begin / options.batchSize + 1
            let indices = Array(begin..<end)
            let share = shard.range(of: indices.count)
            let mineIndices = Array(indices[share])
            // This rank's points; rank 0 also keeps the whole batch's outcomes and worst cases.
            var shareBatch: AttackBatch?
            var shareBest: Tensor?
            if !mineIndices.isEmpty {
                let (x, y) = dataset.batch(mineIndices)
                shareBatch = AttackBatch(images: x, labels: y, indices: dataset.splitIndex(of: mineIndices), budget: try budget(x))
                shareBest = saving ? x : nil
            }
            var wholeBest: Tensor? = adversarial == nil ? nil
                : share.count == indices.count ? shareBatch?.images : dataset.batch(indices).images
            var mine = [ExampleOutcome]()
            var current = [ExampleOutcome]()
            var stagesDone = 1
            let finishedRobust = outcomes.filter(\.robustAtTheEnd).count

            /// Gathers every rank's share after stage `s` on rank 0: outcomes in rank (so index)
            /// order, refusals, log lines, and the newly confirmed examples, written to the .npy.
            func exchange(after s: Int, newly: [Int]) throws {
                let images = newly.isEmpty ? nil : shareBest?.gatherRows(newly)
                let report = ShareReport(outcomes: mine, refusals: refusals.filter { mineIndices.contains($0.key.index) }
                                            .map { [String($0.key.index), String($0.key.stage), $0.value] },
                                         lines: lines, newly: images == nil ? [] : newly.map { mineIndices[$0] })
                lines = []
                let all = try communicator.allgatherVariable(try report.encoded(images: images))
                guard root else { return }
                current = []
                for bytes in all {
                    let (other, rows) = try ShareReport.decoded(bytes, rowShape: [dataset.height, dataset.width, dataset.channels])
                    current += other.outcomes
                    for r in other.refusals where r.count == 3 {
                        if let index = Int(r[0]), let stage = Int(r[1]) { refusals[Refusal(index: index, stage: stage)] = r[2] }
                    }
                    other.lines.forEach { userLog?($0) }
                    if let rows, let file = adversarial, !other.newly.isEmpty {
                        try file.write(rows, at: other.newly)
                        try file.synchronize()
                        wholeBest?.scatterRows(rows, to: other.newly.map { $0 - begin })
                    }
                }
                guard current.map(\.index) == indices else {
                    throw DistributedError("the ranks' outcomes of points \(begin)..<\(end) do not make up the batch")
                }
            }
            /// Reports stage `s` finished on this batch, or with `within`, that fraction of stage
            /// s + 1 done (rank 0's share, as its attack reports it).
            func report(_ s: Int, within: Double = 0) {
                guard root else { return }
                var doneCost = stages.prefix(s + 1).reduce(0) { $0 + $1.cost }
                if s + 1 < stageCount { doneCost += stages[s + 1].cost * within }
                let batchRobust = current.filter { $0.robust.prefix(s + 1).allSatisfy { $0 } }.count
                progress?(EvaluationProgress(done: Double(begin) + Double(end - begin) * doneCost / totalCost, total: Double(n),
                                             batch: batchNumber, batches: batches, stage: stages[Swift.min(s + 1, stageCount - 1)].name,
                                             finished: begin, robust: finishedRobust, batchPoints: end - begin,
                                             batchRobust: batchRobust, after: stages[s].name))
            }

            if let p = pending {
                current = p.outcomes
                mine = Array(p.outcomes[share])
                stagesDone = p.stagesDone
                pending = nil
                let broken = current.indices.filter { current[$0].brokenBy != nil }
                if let file = adversarial, !broken.isEmpty {
                    wholeBest?.scatterRows(try file.read(broken.map { indices[$0] }), to: broken)
                }
            } else {
                let t0 = Date()
                if let batch = shareBatch {
                    let logits = try AttackPass.logits(model, batch.images)
                    guard logits.firstNonFinite() == nil else {
                        throw EvaluationError("the model's logits for points \(begin)..<\(end) are not finite: the checkpoint is "
                                              + "corrupt or its training diverged")
                    }
                    let predictions = logits.argmaxRows()
                    mine = mineIndices.indices.map { r in
                        var robust = [Bool](repeating: false, count: stageCount)
                        robust[0] = predictions[r] == batch.labels[r]
                        return ExampleOutcome(index: mineIndices[r], label: batch.labels[r], prediction: predictions[r],
                                              robust: robust, brokenBy: nil, adversarialPrediction: nil, unverified: [])
                    }
                }
                try exchange(after: 0, newly: [])
                seconds[0] += Date().timeIntervalSince(t0)
                if root { try saveProgress(BatchProgress(start: begin, end: end, stagesDone: 1, outcomes: current)) }
            }
            report(stagesDone - 1)
            for s in stagesDone..<stageCount {
                let t0 = Date()
                var newly = [Int]()
                if var batch = shareBatch {
                    if root && progress != nil { batch.progress = AttackProgress { report(s - 1, within: $0) } }
                    let successes = try attack(stage: s, batch: batch, outcomes: &mine, best: &shareBest, sanity: &sanity,
                                               refusals: &refusals)
                    newly = successes.filter { mine[$0].brokenBy == s }
                }
                try exchange(after: s, newly: newly)
                seconds[s] += Date().timeIntervalSince(t0)
                if root { try saveProgress(BatchProgress(start: begin, end: end, stagesDone: s + 1, outcomes: current)) }
                report(s)
            }
            if root {
                if let file = adversarial, let wholeBest {
                    try file.write(wholeBest, at: indices)
                    try file.synchronize()
                }
                try results?.append(current)
                try saveProgress(nil)
                outcomes += current
                userLog?(batchLine(batchNumber, of: batches, points: begin..<end, outcomes: current))
            }
            begin = end
        }

        // The sanity figures of every rank's confirmed examples, on rank 0.
        let figures = try communicator.allgatherVariable(Array(try JSONEncoder().encode(
            [sanity.largest, sanity.minimum, sanity.maximum, Float(sanity.nonFinite)].map { String($0) })))
        guard root else { return nil }
        var total = Sanity()
        for bytes in figures {
            let values = (try? JSONDecoder().decode([String].self, from: Data(bytes)))?.compactMap(Float.init) ?? []
            guard values.count == 4 else { throw DistributedError("a rank sent unreadable sanity figures") }
            total.largest = Swift.max(total.largest, values[0])
            total.minimum = Swift.min(total.minimum, values[1])
            total.maximum = Swift.max(total.maximum, values[2])
            total.nonFinite += Int(values[3])
        }
        return summary(outcomes: outcomes, seconds: seconds, refusals: refusals, sanity: total, resumed: resumed)
    }
}

/// Where a distributed evaluation starts, as rank 0 read it from the results file.
struct StartPoint: Codable {
    var resumed: Int
    var seconds: [Double]
    var pending: BatchProgress?
}

/// One rank's part of a batch after a stage: its points' outcomes, its re-verification refusals
/// ([index, stage, reason]), its log lines, and, when adversarial examples are saved, the dataset
/// indices of the points newly broken by the stage, whose examples follow the JSON as raw
/// float32 rows.
struct ShareReport: Codable {
    var outcomes: [ExampleOutcome]
    var refusals: [[String]]
    var lines: [String]
    var newly: [Int]

    /// [8-byte little-endian length of the JSON][JSON][float32 rows].
    func encoded(images: Tensor?) throws -> [UInt8] {
        let json = try JSONEncoder().encode(self)
        var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json
        if let images { images.withUnsafeBufferPointer { bytes += UnsafeRawBufferPointer($0) } }
        return bytes
    }

    static func decoded(_ bytes: [UInt8], rowShape: [Int]) throws -> (ShareReport, Tensor?) {
        guard bytes.count >= 8 else { throw DistributedError("a rank sent a truncated report") }
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        guard length <= bytes.count - 8 else { throw DistributedError("a rank sent a truncated report") }
        let report = try JSONDecoder().decode(ShareReport.self, from: Data(bytes[8..<8 + length]))
        let rowFloats = rowShape.reduce(1, *)
        let floats = (bytes.count - 8 - length) / 4
        guard floats == report.newly.count * rowFloats, (bytes.count - 8 - length) % 4 == 0 else {
            throw DistributedError("a rank sent \(floats) floats for \(report.newly.count) examples")
        }
        guard !report.newly.isEmpty else { return (report, nil) }
        var values = [Float](repeating: 0, count: floats)
        values.withUnsafeMutableBytes { $0.copyBytes(from: bytes[(8 + length)...]) }
        return (report, Tensor(shape: [report.newly.count] + rowShape, values: values))
    }
}
