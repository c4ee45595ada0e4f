import ArgumentParser
import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTTraining

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Look at a dataset as part reads it, and measure the data path.",
        subcommands: [Inspect.self, Bench.self])
}

extension DataCommand {
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Per split: image count, image shape, class histogram, per-channel mean and std.",
            discussion: """
            Reads the dataset exactly as `part train` and `part eval` do, so every problem with its \
            files shows here as a one-line error naming the file. Means and standard deviations are \
            of the pixel values in [0, 1] (population std over all images and pixels of a channel).
            """)

        @OptionGroup var data: DataOptions

        @Option(help: "Only this split: train or test (default: both).")
        var split: DatasetSplit?

        @Option(parsing: .unconditional, help: "Only the first N images of each split (0: all).")
        var limit: Int = 0

        @Flag(help: "Print one JSON object.")
        var json = false

        func validate() throws {
            try Validation.count(limit, "--limit", atLeast: 0)
        }

        struct Report: Encodable {
            let dataset: String
            let data: String
            let classes: Int
            let classNames: [String]
            let augmentation: String
            let splits: [SplitStatistics]
        }

        func run() throws {
            try requireOneProcess("data inspect")
            do {
                var stats: [SplitStatistics] = []
                var first: ImageDataset?
                for s in split.map({ [$0] }) ?? DatasetSplit.allCases {
                    var d = try data.load(s)
                    if limit > 0 { d = d.prefix(limit) }
                    if first == nil { first = d }
                    stats.append(SplitStatistics(d, split: s))
                }
                guard let first else { return }
                let report = Report(dataset: data.dataset.rawValue,
                                    data: data.request.location?.path ?? data.dataset.defaultLocation?.path ?? "",
                                    classes: first.classes, classNames: first.classNames,
                                    augmentation: first.augmentation.description, splits: stats)
                if json {
                    try printJSON(report)
                    return
                }
                print("\(first.name) (\(report.data)): \(first.classes) classes, training augmentation \(report.augmentation)")
                for s in stats {
                    func list(_ values: [Double]) -> String { values.map { String(format: "%.4f", $0) }.joined(separator: " ") }
                    print("\(s.split): \(s.count) images of \(s.shape[0])x\(s.shape[1])x\(s.shape[2]) \(s.pixelType)")
                    print("  mean \(list(s.mean))  std \(list(s.std))")
                    let classes = zip(first.classNames, s.histogram).map { "\($0) \($1)" }
                    print("  classes: " + classes.joined(separator: ", "))
                }
            } catch {
                throw fail(error)
            }
        }
    }
}

extension DatasetSplit: ExpressibleByArgument {}

extension DataCommand {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Speed of the data path (read, augment, convert) and of training with and without prefetching.",
            discussion: """
            Prints the time to load the training split (read and decode, or map a cache), the images/s of \
            the data path (shuffled batches gathered, augmented and converted to Float, on one thread as \
            the prefetching thread does it, and spread over the cores as without prefetching), and, with \
            --train-batches N, the images/s of N batches of adversarial training (AT, PGD-10, eps 8/255, \
            alpha 2/255) with prefetching off and on, alternated --rounds times after a warm-up batch, and \
            the time the training loop waited for its data (after the first batch of each epoch, which \
            nothing can build ahead).
            """)

        @OptionGroup var data: DataOptions
        @OptionGroup var augmentation: AugmentOptions

        @Option(parsing: .unconditional, help: "Mini-batch size.")
        var batchSize: Int = 128

        @Option(parsing: .unconditional, help: "Epochs of data-path timing.")
        var epochs: Int = 1

        @Option(parsing: .unconditional, help: "Training batches per measurement (0: no training measurement).")
        var trainBatches: Int = 0

        @Option(parsing: .unconditional, help: "Off/on measurement pairs of the training loop.")
        var rounds: Int = 2

        @Option(help: ArchitectureName.help("Architecture of the training measurement.", default: ModelZoo.benchmarkArchitecture),
                transform: ArchitectureName.parse)
        var arch: ArchitectureName = .benchmark

        @Option(parsing: .unconditional, help: "PGD steps of the training measurement.")
        var steps: Int = 10

        @Option(parsing: .unconditional, help: "Seed of shuffling, augmentation and initialisation.", transform: parseSeed)
        var seed: UInt64 = 0

        @Flag(help: "Print one JSON object.")
        var json = false

        func validate() throws {
            try Validation.batchSize(batchSize)
            try Validation.count(epochs, "--epochs", atLeast: 1)
            try Validation.count(trainBatches, "--train-batches", atLeast: 0)
            try Validation.count(rounds, "--rounds", atLeast: 1)
            try Validation.count(steps, "--steps", atLeast: 0)
        }

        struct TrainingFigures: Encodable {
            let prefetch: Bool
            let imagesPerSecond: [Double]
            let waitMillisecondsPerBatch: [Double]
        }

        struct Report: Encodable {
            let dataset: String
            let images: Int
            let shape: [Int]
            let augmentation: String
            let threads: Int
            let loadSeconds: Double
            let loadImagesPerSecond: Double
            let dataPathImagesPerSecondOneThread: Double
            let dataPathImagesPerSecondAllThreads: Double
            let training: [TrainingFigures]
        }

        /// Images/s of `epochs` epochs of batches built on one thread or on all.
        func dataPath(_ train: ImageDataset, threaded: Bool) -> Double {
            var rng = RNG(seed: seed)
            var images = 0
            let start = DispatchTime.now().uptimeNanoseconds
            for epoch in 1...epochs {
                let sampler = BatchSampler(count: train.count, batchSize: batchSize, shuffle: true, rng: &rng)
                for indices in sampler {
                    let transforms = train.augmentation.isIdentity ? nil
                        : indices.map { train.augmentation.transform(seed: seed, index: $0, epoch: epoch) }
                    let batch = train.gather(indices, transforms: transforms, threaded: threaded)
                    images += batch.shape[0]
                }
            }
            return Double(images) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }

        /// One epoch of AT over `train`, returning (images/s, wait seconds per batch).
        func trainOnce(_ train: ImageDataset, heldOut: ImageDataset, prefetch: Bool) throws -> (Double, Double) {
            var config = TrainingConfig()
            config.apply(.at)
            config.epochs = 1
            config.burnIn = 0
            config.batchSize = batchSize
            config.epsilon = 8 / 255
            config.epsilonLow = 7 / 255
            config.stepSize = 2 / 255
            config.steps = steps
            config.evalSteps = 0
            config.seed = seed
            var rng = RNG(seed: seed)
            var initRng = rng.split()
            let model = try ModelZoo.make(arch.name, numClasses: train.classes, inChannels: train.channels,
                                          imageSize: train.height, rng: &initRng)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("part-data-bench-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: directory) }
            Batcher.waitStatistics.value = (0, 0)
            var speed = 0.0
            try Batcher.$prefetchByDefault.withValue(prefetch) {
                try Trainer(config: config, model: model, rng: rng).train(on: train, heldOut: heldOut, runDirectory: directory) {
                    speed = $0.imagesPerSecond
                }
            }
            let wait = Batcher.waitStatistics.value
            return (speed, wait.seconds / Double(Swift.max(wait.batches, 1)))
        }

        func run() throws {
            try requireOneProcess("data bench")
            do {
                let started = DispatchTime.now().uptimeNanoseconds
                let train = try data.load(.train, augmentation: augmentation.policy)
                let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                let oneThread = dataPath(train, threaded: false)
                let allThreads = dataPath(train, threaded: true)
                var figures: [TrainingFigures] = []
                if trainBatches > 0 {
                    let subset = train.prefix(trainBatches * batchSize)
                    let heldOut = subset.prefix(1)
                    FileHandle.standardError.write(Data("warm-up batch...\n".utf8))
                    _ = try trainOnce(train.prefix(batchSize), heldOut: heldOut, prefetch: false)
                    var speeds: [Bool: [Double]] = [:], waits: [Bool: [Double]] = [:]
                    for round in 1...rounds {
                        for prefetch in [false, true] {
                            let (speed, wait) = try trainOnce(subset, heldOut: heldOut, prefetch: prefetch)
                            speeds[prefetch, default: []].append(speed)
                            waits[prefetch, default: []].append(wait * 1000)
                            FileHandle.standardError.write(Data(String(format: "round %d, prefetch %@: %.2f images/s, waited %.3f ms per batch\n",
                                                                       round, prefetch ? "on" : "off", speed, wait * 1000).utf8))
                        }
                    }
                    figures = [false, true].map { TrainingFigures(prefetch: $0, imagesPerSecond: speeds[$0] ?? [],
                                                                 waitMillisecondsPerBatch: waits[$0] ?? []) }
                }
                let report = Report(dataset: train.name, images: train.count, shape: train.shape,
                                    augmentation: train.augmentation.description, threads: Engine.threads,
                                    loadSeconds: loadSeconds, loadImagesPerSecond: Double(train.count) / loadSeconds,
                                    dataPathImagesPerSecondOneThread: oneThread,
                                    dataPathImagesPerSecondAllThreads: allThreads, training: figures)
                if json {
                    try printJSON(report)
                    return
                }
                print("\(train.name): \(train.count) training images of \(train.shape.map(String.init).joined(separator: "x")), augmentation \(report.augmentation), \(report.threads) threads")
                print(String(format: "load (read and decode, or map a cache): %.2f s, %.0f images/s", loadSeconds, report.loadImagesPerSecond))
                print(String(format: "data path (gather, augment, convert), batch %d: %.0f images/s on one thread, %.0f on %d",
                             batchSize, oneThread, allThreads, report.threads))
                for f in figures {
                    let mean = f.imagesPerSecond.reduce(0, +) / Double(f.imagesPerSecond.count)
                    let wait = f.waitMillisecondsPerBatch.reduce(0, +) / Double(f.waitMillisecondsPerBatch.count)
                    print(String(format: "training (%@ AT, PGD-%d), prefetch %@: %.2f images/s (%@), waited %.3f ms per batch for data after the first",
                                 arch.name, steps, f.prefetch ? "on " : "off", mean,
                                 f.imagesPerSecond.map { String(format: "%.2f", $0) }.joined(separator: ", "), wait))
                }
                if let on = figures.last, !on.imagesPerSecond.isEmpty {
                    let training = on.imagesPerSecond.reduce(0, +) / Double(on.imagesPerSecond.count)
                    print(String(format: "data path / training: %.0fx (one thread)", oneThread / training))
                }
            } catch {
                throw fail(error)
            }
        }
    }
}
