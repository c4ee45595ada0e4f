import Foundation

/// Mean and standard deviation of one figure over seeds.
public struct MeanStd: Sendable, Codable, Equatable {
    public let mean: Double
    /// Sample standard deviation (n - 1 in the denominator); 0 for a single seed.
    public let std: Double
    public let count: Int

    public init(_ values: [Double]) {
        count = values.count
        mean = values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
        if values.count > 1 {
            let m = mean
            std = (values.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(values.count - 1)).squareRoot()
        } else {
            std = 0
        }
    }
}

/// The final check of one seed's run.
public struct SeedResult: Sendable, Codable {
    public let seed: UInt64
    public let directory: String
    public let cleanAccuracy: Double
    public let robustAccuracy: Double
    public let evalCount: Int
    /// The best epoch's figures when a validation split picked one.
    public let bestEpoch: Int?
}

/// `RUN/summary.json` of `part train --seeds`: the same recipe per seed, and the spread of its
/// final clean and PGD accuracy, so that one method is never preferred over another on one seed.
public struct SeedSummary: Sendable, Codable {
    public let method: String
    public let dataset: String
    public let architecture: String
    /// What the figures were measured on ("test" or "validation") and with which attack.
    public let heldOut: String
    public let evalCount: Int
    public let attack: String
    public let epsilon: Float
    public let seeds: [SeedResult]
    public let clean: MeanStd
    public let robust: MeanStd

    public init(config: TrainingConfig, results: [SeedResult], heldOut: String) {
        method = config.method
        dataset = config.dataset
        architecture = config.architecture
        self.heldOut = heldOut
        evalCount = results.first?.evalCount ?? 0
        attack = "pgd-\(config.evalSteps)"
        epsilon = config.epsilon
        seeds = results
        clean = MeanStd(results.map(\.cleanAccuracy))
        robust = MeanStd(results.map(\.robustAccuracy))
    }

    /// "clean 79.20% ± 0.45, pgd-20 70.00% ± 0.30 (3 seeds, 1000 test images)".
    public var line: String {
        String(format: "clean %.2f%% ± %.2f, %@ %.2f%% ± %.2f (%d seed%@, %d %@ images)", 100 * clean.mean,
               100 * clean.std, attack, 100 * robust.mean, 100 * robust.std, seeds.count, seeds.count == 1 ? "" : "s",
               evalCount, heldOut)
    }

    /// Writes `summary.json` into `directory` (atomically).
    public func write(to directory: URL) throws {
        let encoder = JSONOutput.encoder()
        encoder.outputFormatting.insert(.prettyPrinted)
        try (try encoder.encode(self) + Data("\n".utf8)).write(to: directory.appendingPathComponent("summary.json"),
                                                                options: .atomic)
    }
}

extension SeedResult {
    public init(seed: UInt64, directory: URL, outcome: TrainingOutcome) {
        self.seed = seed
        self.directory = directory.path
        cleanAccuracy = outcome.last.cleanAccuracy
        robustAccuracy = outcome.last.robustAccuracy
        evalCount = outcome.last.evalCount
        bestEpoch = outcome.best?.epoch
    }
}
