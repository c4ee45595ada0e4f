import ArgumentParser
import Foundation
import PARTData
import PARTEngine

/// Checks of inputs that commands share, made before any work starts. Each throws one sentence
/// naming the data and what to change (a `DatasetError`: exit code 1, docs/conventions.md#1-flags).
/// Flag ranges are checked where the flags are resolved (`TrainingConfig.problem()`), the run
/// directory by `RunDirectory.claim`, the agreement of splits by `DatasetRegistry.checkSplitsAgree`.
enum Validation {
    /// A split with no image is an error, not a run that "succeeds" on nothing.
    static func nonEmpty(_ data: ImageDataset, _ what: String) throws {
        guard data.count > 0 else {
            throw DatasetError("the \(what) of \(data.name) has no images; check --data (and the limit flags)")
        }
    }
}

extension Validation {
    /// A count flag's lower bound: "--limit must be >= 0", "--reps must be at least 1" (a
    /// `ValidationError`: exit code 64).
    static func count(_ value: Int, _ flag: String, atLeast minimum: Int) throws {
        guard value < minimum else { return }
        throw ValidationError(minimum == 0 ? "\(flag) must be >= 0" : "\(flag) must be at least \(minimum)")
    }

    /// `--batch-size`: at least 1 and within the engine's limits.
    static func batchSize(_ value: Int) throws {
        try count(value, "--batch-size", atLeast: 1)
        if let problem = Limits.batchSizeProblem(value) { throw ValidationError(problem) }
    }
}
