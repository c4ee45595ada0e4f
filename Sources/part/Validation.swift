import ArgumentParser
import Foundation
import PARTData

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
