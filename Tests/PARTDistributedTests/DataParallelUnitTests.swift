import PARTTestSupport
import PARTData
import PARTDistributed
import PARTEngine
import PARTNN
import XCTest

/// Random values in [-1, 1) from a seeded generator.
func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var rng = RNG(seed: seed)
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, values: (0..<n).map { _ in Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 })
}

func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
    XCTAssertEqual(a.count, b.count)
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

final class ShardTests: XCTestCase {
    func testSharesAreContiguousCoverEveryExampleOnceAndDifferByAtMostOne() {
        for ranks in 1...5 {
            for n in 0...13 {
                let ranges = (0..<ranks).map { Shard(rank: $0, count: ranks).range(of: n) }
                XCTAssertEqual(ranges.first?.lowerBound, 0)
                XCTAssertEqual(ranges.last?.upperBound, n)
                for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                let sizes = ranges.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "n \(n), \(ranks) ranks: \(sizes)")
                // Larger shares first: rank 0 has an example whenever the batch has one.
                XCTAssertEqual(sizes, sizes.sorted(by: >))
                if n > 0 { XCTAssertGreaterThan(sizes[0], 0) }
            }
        }
    }

    func testShardedBatchesJoinBackIntoTheOneProcessSequence() {
        var rng = RNG(seed: 7)
        let global = Array(BatchSampler(count: 23, batchSize: 5, shuffle: true, rng: &rng))
        let locals = (0..<3).map { ShardedBatches(global, shard: Shard(rank: $0, count: 3)).local }
        for b in global.indices {
            XCTAssertEqual(locals.flatMap { $0[b] }, global[b])
        }
        XCTAssertEqual(ShardedBatches(global, shard: .whole).local, global)
        // The last global batch has 3 examples: one per rank.
        XCTAssertEqual(locals.map { $0.last!.count }, [1, 1, 1])
        XCTAssertEqual(ShardedBatches(global, shard: .whole).globalSizes, [5, 5, 5, 5, 3])
    }
}

final class CommunicatorTests: XCTestCase {
    func testTheSingleProcessCollectivesReturnTheirInput() throws {
        let c = SingleProcess()
        XCTAssertEqual(c.rank, 0)
        XCTAssertEqual(c.size, 1)
        XCTAssertTrue(c.isRoot)
        XCTAssertEqual(try c.allreduceSum([1.5, -2] as [Float]), [1.5, -2])
        XCTAssertEqual(try c.allreduceSum([3.25] as [Double]), [3.25])
        XCTAssertEqual(try c.allgather([1, 2, 3]), [[1, 2, 3]])
        var values: [Float] = [4, 5]
        try values.withUnsafeMutableBufferPointer { try c.broadcast($0, root: 0) }
        XCTAssertEqual(values, [4, 5])
        XCTAssertThrowsError(try values.withUnsafeMutableBufferPointer { try c.broadcast($0, root: 1) })
        try c.checkAgreement("configuration", "anything")
    }

    func testWithoutALauncherTheProcessRunsAlone() throws {
        guard !Distributed.launchedByMPI else { throw XCTSkip("running under an MPI launcher") }
        XCTAssertEqual(try Distributed.communicator().size, 1)
    }
}

final class DataParallelOpsTests: XCTestCase {
    func testChannelMomentsMatchDoubleSums() {
        let x = randomTensor([3, 5, 7, 4], seed: 1), y = randomTensor([3, 5, 7, 4], seed: 2)
        let (s, p) = Channels.moments(x, y)
        let (s2, q) = Channels.moments(x)
        let xs = x.scalars, ys = y.scalars
        for k in 0..<4 {
            var es = 0.0, ep = 0.0, eq = 0.0
            for i in stride(from: k, to: xs.count, by: 4) {
                es += Double(xs[i])
                ep += Double(xs[i]) * Double(ys[i])
                eq += Double(xs[i]) * Double(xs[i])
            }
            XCTAssertEqual(s[k], es, accuracy: 1e-12)
            XCTAssertEqual(s2[k], es, accuracy: 1e-12)
            XCTAssertEqual(p[k], ep, accuracy: 1e-12)
            XCTAssertEqual(q[k], eq, accuracy: 1e-12)
        }
    }

    func testAffineCombinationIsPerChannel() {
        let dy = randomTensor([2, 3, 3, 2], seed: 3), x = randomTensor([2, 3, 3, 2], seed: 4)
        let out = Channels.affineCombination(dy, x, a: [2, -1], b: [0.5, 3], c: [1, -4]).scalars
        for (i, (g, v)) in zip(dy.scalars, x.scalars).enumerated() {
            let expected = i % 2 == 0 ? 2 * g + 0.5 * v + 1 : -g + 3 * v - 4
            XCTAssertEqual(out[i], expected, accuracy: 1e-6)
        }
    }

    func testFusedBufferRoundTrip() {
        let a = randomTensor([2, 3], seed: 5), b = randomTensor([4], seed: 6)
        let buffer = FusedBuffer.pack([a, b], scale: 0.5, extra: [7, 8])
        XCTAssertEqual(buffer.count, 12)
        XCTAssertEqual(Array(buffer[6..<10]), b.scalars.map { 0.5 * $0 })
        var targets = [Tensor(shape: [2, 3]), Tensor(shape: [4])]
        let rest = FusedBuffer.unpack(buffer, into: &targets)
        XCTAssertEqual(rest, [7, 8])
        XCTAssertEqual(targets[0].shape, [2, 3])
        XCTAssertEqual(targets[0].scalars, a.scalars.map { 0.5 * $0 })
    }
}

/// A stand-in job of `copies` ranks that all hold this rank's data: sums are `copies` times the
/// local values. Synchronised batch norm on x must then behave as plain batch norm on `copies`
/// stacked copies of x.
final class MirroredRanks: BatchStatisticsReducer {
    let copies: Double
    init(copies: Int) { self.copies = Double(copies) }
    func sum(_ values: [Double]) throws -> [Double] { values.map { $0 * copies } }
    var gradientWeight: Double { 1 / copies }
}

final class SyncBatchNormTests: XCTestCase {
    /// Forward, input gradient, parameter gradients and running statistics of synchronised batch
    /// norm on x over two mirrored ranks equal plain batch norm on [x; x] with the global loss.
    func testSynchronisedBatchNormEqualsBatchNormOfTheGlobalBatch() throws {
        let channels = 3
        let x = randomTensor([2, 4, 4, channels], seed: 11)
        let upstream = randomTensor([2, 4, 4, channels], seed: 12)
        func stacked(_ t: Tensor) -> Tensor {
            Tensor(shape: [4, 4, 4, channels], values: t.scalars + t.scalars)
        }
        func layer() -> BatchNorm2d {
            let bn = BatchNorm2d(channels)
            bn.weight.assign(Tensor(shape: [channels], values: [0.5, 1.5, -2]))
            bn.bias.assign(Tensor(shape: [channels], values: [0.1, -0.2, 0.3]))
            return bn
        }
        // One process, the global batch [x; x]; upstream gradient of the global mean loss.
        let plain = layer()
        let tape = Tape(parameterGradients: true)
        let y = try plain.forward(stacked(x), mode: .train, tape: tape)
        let dx = try tape.backward(stacked(upstream))

        // One of two ranks holding x: its loss is the mean over its own half, so its upstream
        // gradient is twice the global one; its gradients come out divided by w = 1/2.
        let synced = layer()
        let rankTape = Tape(parameterGradients: true)
        let yRank = try BatchNorm2d.$synchronization.withValue(SynchronizedStatistics(MirroredRanks(copies: 2))) {
            try synced.forward(x, mode: .train, tape: rankTape)
        }
        var doubled = upstream
        doubled.scale(by: 2)
        // The backward pass uses the reducer its forward pass recorded.
        let dxRank = try rankTape.backward(doubled)

        XCTAssertLessThan(maxDifference(yRank.scalars, Array(y.scalars.prefix(x.count))), 1e-5)
        XCTAssertLessThan(maxDifference(dxRank.scalars.map { $0 / 2 }, Array(dx.scalars.prefix(x.count))), 1e-5)
        // Rank gradients times w, summed over the two ranks = the global batch's gradients.
        XCTAssertLessThan(maxDifference(synced.weight.gradient.scalars, plain.weight.gradient.scalars), 1e-4)
        XCTAssertLessThan(maxDifference(synced.bias.gradient.scalars, plain.bias.gradient.scalars), 1e-4)
        XCTAssertLessThan(maxDifference(synced.runningMean.value.scalars, plain.runningMean.value.scalars), 1e-6)
        XCTAssertLessThan(maxDifference(synced.runningVar.value.scalars, plain.runningVar.value.scalars), 1e-6)
        XCTAssertEqual(synced.numBatchesTracked.value[flat: 0], 1)
    }
}

/// `--distributed` where Open MPI cannot be loaded: one line saying what to install, exit code 1,
/// whether or not MPI is installed here (the library is named by PART_MPI_LIBRARY).
final class MissingMPITests: XCTestCase {
    func testDistributedWithoutOpenMPIFailsWithOneLine() throws {
        let process = Process()
        process.executableURL = partBinary
        process.arguments = ["train", "--distributed", "--epochs", "1", "--burn-in", "0"]
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("OMPI_") && !$0.key.hasPrefix("PMIX_") }
        environment["PART_MPI_LIBRARY"] = "/nonexistent/libmpi.so.40"
        // As a launcher would start it (--distributed outside one is a bad argument, exit 64):
        // the library the launcher's ranks load is missing.
        environment["OMPI_COMM_WORLD_SIZE"] = "1"
        environment["OMPI_COMM_WORLD_RANK"] = "0"
        process.environment = environment
        let err = Pipe()
        process.standardError = err
        process.standardOutput = Pipe()
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, text)
        XCTAssertTrue(text.hasPrefix("part: error: could not load Open MPI"), text)
        XCTAssertTrue(text.contains("install openmpi-bin"), text)
        XCTAssertEqual(text.split(separator: "\n").count, 1, text)
    }
}
