import Foundation
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// Mini-batches over a dataset in an order shuffled by the run's RNG (or sequential).
///
/// The order is drawn once, at initialisation; iterating yields `[Int]` index batches of
/// `batchSize`, the last one partial unless `dropLast`. Make one sampler per epoch.
public struct BatchSampler: Sequence, Sendable {
    /// The order of the examples for this epoch.
    public let order: [Int]
    public let batchSize: Int
    public let dropLast: Bool

    public init(count: Int, batchSize: Int, shuffle: Bool, rng: inout RNG, dropLast: Bool = false) {
        precondition(count >= 0, "BatchSampler: negative count \(count)")
        precondition(batchSize > 0, "BatchSampler: batch size must be positive, got \(batchSize)")
        self.order = shuffle ? rng.permutation(count) : Array(0..<count)
        self.batchSize = batchSize
        self.dropLast = dropLast
    }

    /// Number of batches this sampler yields.
    public var batchCount: Int {
        dropLast ? order.count / batchSize : (order.count + batchSize - 1) / batchSize
    }

    public var underestimatedCount: Int { batchCount }

    public struct Iterator: IteratorProtocol, Sendable {
        let order: [Int]
        let batchSize: Int
        let dropLast: Bool
        var position = 0

        public mutating func next() -> [Int]? {
            let remaining = order.count - position
            guard remaining > 0, !(dropLast && remaining < batchSize) else { return nil }
            let end = position + Swift.min(batchSize, remaining)
            defer { position = end }
            return Array(order[position..<end])
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(order: order, batchSize: batchSize, dropLast: dropLast)
    }
}

/// One mini-batch as the trainer consumes it.
public struct Batch: Sendable {
    /// `[n, H, W, C]` Floats in [0, 1], augmented when the batcher augments.
    public let images: Tensor
    public let labels: [Int32]
    /// The examples' indices in their split (`ImageDataset.splitIndex(of:)`): the keys of every
    /// per-example random draw.
    public let indices: [Int]
}

/// Assembles an epoch's batches (gather, augment, convert to Float) in the order of `batches`,
/// by default one batch ahead on a background thread while the caller trains on the current one.
///
/// The background thread only copies and converts pixels with single-threaded loops: it calls
/// no oneDNN primitive and no `Parallel` loop, so it never competes with the engine's workers
/// for more than its own share of a core. Prefetching changes no result: every draw is keyed by
/// (seed, dataset index, epoch), and the same code builds a batch on either thread.
public final class Batcher: Sequence, IteratorProtocol {
    /// Whether batchers prefetch unless told otherwise, bound for a scope (`part data bench` turns
    /// it off to measure the difference).
    @TaskLocal public static var prefetchByDefault = true

    /// The nice value of the producer thread (0: the same priority as training).
    public static var producerNice: Int32 { 10 }

    /// Time the consumers of all batchers spent waiting for (or, without prefetching,
    /// building) batches, and how many batches they took; the first batch of each batcher,
    /// which nothing can build ahead, is left out.
    public static let waitStatistics = Locked((batches: 0, seconds: 0.0))

    private let dataset: ImageDataset
    private let batches: [[Int]]
    private let seed: UInt64
    private let epoch: Int
    private let augment: Bool
    public let prefetches: Bool
    private var position = 0
    private let pipe: Pipe?

    /// Hands one finished batch from the producer thread to the consumer.
    // Safe: `ready` and `cancelled` are read and written only while `condition` is locked.
    private final class Pipe: @unchecked Sendable {
        let condition = NSCondition()
        var ready: Batch?
        var cancelled = false
    }

    /// - Parameters:
    ///   - batches: dataset indices of each batch, in order (a `BatchSampler`'s batches).
    ///   - seed: the run's seed; augmentation draws are keyed by (seed, index, epoch).
    ///   - augment: apply `dataset.augmentation` (false: plain images).
    ///   - prefetch: build the next batch on a background thread (default: `prefetchByDefault`).
    public init(_ dataset: ImageDataset, batches: [[Int]], seed: UInt64, epoch: Int, augment: Bool = true,
                prefetch: Bool? = nil) {
        self.dataset = dataset
        self.batches = batches
        self.seed = seed
        self.epoch = epoch
        self.augment = augment && !dataset.augmentation.isIdentity
        self.prefetches = (prefetch ?? Batcher.prefetchByDefault) && batches.count > 1
        if prefetches {
            let pipe = Pipe()
            self.pipe = pipe
            let make = self.maker(threaded: false)
            let count = batches.count
            // The engine settings of this scope (an allocation reads `Optimizations`), which a
            // thread of its own does not inherit.
            let settings = EngineSettings.current
            let thread = Thread {
                // A lower scheduling priority for this thread only (Linux keeps nice values per
                // thread): when the cores are busy training, the engine's workers go first and
                // this thread fills their idle moments; it has a whole training step to finish.
                #if os(Linux)
                _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Batcher.producerNice)
                #endif
                settings.bind {
                    for k in 0..<count {
                        let built = make(k)
                        pipe.condition.lock()
                        while pipe.ready != nil && !pipe.cancelled { pipe.condition.wait() }
                        if pipe.cancelled {
                            pipe.condition.unlock()
                            return
                        }
                        pipe.ready = built
                        pipe.condition.broadcast()
                        pipe.condition.unlock()
                    }
                }
            }
            thread.name = "part-prefetch"
            thread.start()
        } else {
            pipe = nil
        }
    }

    deinit {
        guard let pipe else { return }
        pipe.condition.lock()
        pipe.cancelled = true
        pipe.condition.broadcast()
        pipe.condition.unlock()
    }

    /// A function building batch k; it captures only values, so the producer thread can own it.
    private func maker(threaded: Bool) -> @Sendable (Int) -> Batch {
        let dataset = self.dataset, batches = self.batches, seed = self.seed, epoch = self.epoch
        let policy: Augmentation? = augment ? dataset.augmentation : nil
        return { k in
            let indices = batches[k], keys = dataset.splitIndex(of: indices)
            let transforms = policy.map { p in keys.map { p.transform(seed: seed, index: $0, epoch: epoch) } }
            let images = dataset.gather(indices, transforms: transforms, threaded: threaded)
            return Batch(images: images, labels: indices.map { dataset.labels[$0] }, indices: keys)
        }
    }

    /// Number of batches in the epoch.
    public var underestimatedCount: Int { batches.count - position }

    public func next() -> Batch? {
        guard position < batches.count else { return nil }
        let start = DispatchTime.now().uptimeNanoseconds
        let batch: Batch
        if let pipe {
            pipe.condition.lock()
            while pipe.ready == nil { pipe.condition.wait() }
            batch = pipe.ready!
            pipe.ready = nil
            pipe.condition.broadcast()
            pipe.condition.unlock()
        } else {
            batch = maker(threaded: true)(position)
        }
        position += 1
        if position > 1 {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            Batcher.waitStatistics.withLock { $0.batches += 1; $0.seconds += seconds }
        }
        return batch
    }
}
