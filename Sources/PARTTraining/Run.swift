import Foundation
import PARTData
import PARTEngine
import PARTNN

/// Starting runs: a model initialised from the seed, its trainer, and sweeps over seeds.
public enum TrainingRun {
    /// A trainer with a freshly initialised model (PyTorch's default initialisation) for
    /// `config` and `data`. The seed's RNG first splits off the initialisation stream; shuffling
    /// continues from it.
    public static func trainer(_ config: TrainingConfig, data: ImageDataset) throws -> Trainer {
        guard data.height == data.width else {
            throw TrainingError("\(data.name) has \(data.height)x\(data.width) images; the models take square images")
        }
        var rng = RNG(seed: config.seed)
        var initRng = rng.split()
        let model = try ModelZoo.make(config.architecture, numClasses: data.classes, inChannels: data.channels,
                                      imageSize: data.height, rng: &initRng)
        return try Trainer(config: config, model: model, rng: rng)
    }

    /// The directory of seed `seed`'s sub-run.
    public static func seedDirectory(_ directory: URL, seed: UInt64) -> URL {
        directory.appendingPathComponent("seed-\(seed)")
    }

    /// Trains `config` once per seed into `directory/seed-K` and writes `directory/summary.json`
    /// with each seed's final check and their mean and standard deviation.
    public static func sweep(_ config: TrainingConfig, seeds: [UInt64], data: ImageDataset, heldOut: ImageDataset,
                             directory: URL, progress: (UInt64, Int, Int, Int) -> Void = { _, _, _, _ in },
                             report: (UInt64, EpochReport) throws -> Void) throws -> SeedSummary {
        guard !seeds.isEmpty else { throw TrainingError("--seeds needs at least one seed") }
        guard Set(seeds).count == seeds.count else { throw TrainingError("--seeds lists a seed twice") }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var results = [SeedResult]()
        var heldOutKind = "test"
        for seed in seeds {
            var c = config
            c.seed = seed
            let sub = seedDirectory(directory, seed: seed)
            let outcome = try trainer(c, data: data).train(on: data, heldOut: heldOut, runDirectory: sub,
                                                           progress: { progress(seed, $0, $1, $2) },
                                                           report: { try report(seed, $0) })
            heldOutKind = outcome.last.heldOut
            results.append(SeedResult(seed: seed, directory: sub, outcome: outcome))
            // Written after every seed, so an interrupted sweep keeps what it finished.
            try SeedSummary(config: config, results: results, heldOut: heldOutKind).write(to: directory)
        }
        return SeedSummary(config: config, results: results, heldOut: heldOutKind)
    }
}
