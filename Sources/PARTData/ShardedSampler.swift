/// One rank's part of every global batch of a data-parallel run.
///
/// Every rank draws the same shuffled order from the same seeded RNG (a `BatchSampler`), so the
/// global batches are exactly those of a one-process run; rank r of R then keeps a contiguous
/// slice of each global batch of n examples: the first n mod R ranks take ceil(n / R) examples,
/// the others floor(n / R), in rank order. A partial last batch is split the same way; when it
/// has fewer examples than there are ranks, the last ranks take none for that step (they still
/// join its gradient sum with zeros), so no example is dropped or repeated.
public struct Shard: Sendable, Equatable {
    public let rank: Int
    public let count: Int

    /// The one-process shard.
    public static let whole = Shard(rank: 0, count: 1)

    public init(rank: Int, count: Int) {
        self.rank = rank
        self.count = count
    }

    /// This rank's positions in a global batch of `n` examples.
    public func range(of n: Int) -> Range<Int> {
        let base = n / count, extra = n % count
        let start = rank * base + Swift.min(rank, extra)
        return start ..< start + base + (rank < extra ? 1 : 0)
    }

    /// This rank's examples of one global batch.
    public func share<T>(_ batch: [T]) -> [T] { Array(batch[range(of: batch.count)]) }
}

/// A `BatchSampler`'s global batches, each cut down to one rank's share.
public struct ShardedBatches: Sendable {
    /// The global batches (dataset positions), as a one-process run sees them.
    public let global: [[Int]]
    public let shard: Shard

    public init(_ global: [[Int]], shard: Shard) {
        self.global = global
        self.shard = shard
    }

    /// This rank's part of each global batch, in order (some may be empty; see `Shard`).
    public var local: [[Int]] { global.map(shard.share) }
    /// The number of examples of each global batch.
    public var globalSizes: [Int] { global.map(\.count) }
}
