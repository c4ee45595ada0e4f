import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTEvaluation

/// The files `part eval` reads back: a `--save-results` file (with its `.progress.json`) when
/// an interrupted evaluation resumes, and `.npy` arrays of adversarial examples.
///
/// The results file is read the way a resume reads it: through `EvaluationRunner.run` with a
/// fixed evaluation (the fuzz model, 4 points of 8x8x1, natural then FGSM, batches of 2),
/// whose header the seed files carry, so the fuzzer starts from files this evaluation would
/// resume. Checks: a refusal is an `EvaluationError`; an accepted file ends in a complete
/// evaluation whose outcomes are the 4 points in order.
enum EvaluationFuzz {
    /// Files live in a private folder of the process, in memory where the machine has /dev/shm
    /// (the runner flushes every batch to disk).
    /// Removed when the process exits.
    static let folder: URL = {
        let shm = URL(fileURLWithPath: "/dev/shm")
        let base = FileManager.default.fileExists(atPath: shm.path) ? shm : FileManager.default.temporaryDirectory
        let url = base.appendingPathComponent("part-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: EvaluationFuzz.folder) }
        return url
    }()

    static let points = 4

    /// The evaluation every results input is resumed into.
    static func header(columns: [String]) -> EvaluationHeader {
        EvaluationHeader(checkpoint: "fuzz.safetensors", checkpointSHA256: String(repeating: "0", count: 64),
                         architecture: "fuzz-tiny", normalize: nil, dataset: "fuzz", split: "test", count: points,
                         attacks: ["natural", "fgsm"], columns: columns, independent: false, epsilon: 0.1, alpha: 0.025,
                         seed: 0, precision: "fp32", batchSize: 2)
    }

    static let dataset: ImageDataset? = try? ImageDataset(
        name: "fuzz", images: (0..<(points * 64)).map { UInt8(truncatingIfNeeded: $0 &* 37) },
        labels: (0..<points).map { Int32($0 % 2) }, height: 8, width: 8, channels: 1, classes: 2)

    /// One runner for every input (building the model's kernels anew each time would dominate):
    /// running an evaluation changes neither the model nor the runner.
    // Safe: the fuzz driver and the tests hand this target one input at a time, from one thread.
    nonisolated(unsafe) static let runner: EvaluationRunner? = {
        guard let dataset,
              let stages = try? AttackCatalog.standard.stages("natural,fgsm", defaults: .init(epsilon: 0.1, alpha: 0.025))
        else { return nil }
        let options = EvaluationOptions(batchSize: 2, seed: 0, resultsFile: folder.appendingPathComponent("results.jsonl"))
        return try? EvaluationRunner(model: TinyClassifier(classes: 2, channels: 1, imageSize: 8, seed: 3), dataset: dataset,
                                     stages: stages, header: header(columns: stages.map(\.name)), options: options) {
            try EpsilonMap.constant(0.1, shape: $0.shape)
        }
    }()

    /// The input is a progress file and a results file: the first two bytes (little-endian)
    /// give the progress file's length (0: no progress file), then come its bytes, then the
    /// results file's.
    static func runResults(_ input: [UInt8]) throws {
        guard input.count >= 2 else { return }
        let progressLength = min(Int(input[0]) | Int(input[1]) << 8, input.count - 2)
        let progress = input[2..<(2 + progressLength)], results = input[(2 + progressLength)...]
        let resultsURL = folder.appendingPathComponent("results.jsonl")
        let progressURL = URL(fileURLWithPath: resultsURL.path + ".progress.json")
        // An empty results file means the same as none (a new evaluation); it is left absent
        // because Foundation leaks 4 KiB on every read of an empty file (swift-foundation in
        // Swift 6.3.1, reproduced without this project), which would drown real leaks.
        if results.isEmpty {
            try? FileManager.default.removeItem(at: resultsURL)
        } else {
            try Data(results).write(to: resultsURL)
        }
        if progressLength > 0 {
            try Data(progress).write(to: progressURL)
        } else {
            try? FileManager.default.removeItem(at: progressURL)
        }

        guard let runner = runner else { throw FuzzFinding("the fixed evaluation could not be set up") }
        let stages = runner.stages
        let summary: EvaluationSummary
        do {
            summary = try runner.run()
        } catch {
            try requireRefusal(error, [EvaluationError.self], "EvaluationRunner.run resuming a results file")
            return
        }
        guard summary.count == points, summary.outcomes.map(\.index) == Array(0..<points),
              summary.outcomes.allSatisfy({ $0.robust.count == stages.count }), summary.resumed <= points else {
            throw FuzzFinding("a resumed evaluation ended with outcomes \(summary.outcomes.map(\.index)), resumed \(summary.resumed)")
        }
    }

    /// `NPYFile.read`: a float32 C-order array whose size matches its header, or a refusal.
    static func runNPY(_ input: [UInt8]) throws {
        let url = folder.appendingPathComponent("array.npy")
        try Data(input).write(to: url)
        let tensor: Tensor
        do {
            tensor = try NPYFile.read(url)
        } catch {
            try requireRefusal(error, [EvaluationError.self], "NPYFile.read")
            return
        }
        let headerLength = Int(input[8]) | Int(input[9]) << 8
        guard 10 + headerLength + 4 * tensor.count == input.count else {
            throw FuzzFinding("NPYFile.read returned \(tensor.shape) from a file of \(input.count) bytes")
        }
    }
}
