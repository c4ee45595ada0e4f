import ArgumentParser
import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTNN
import PARTTraining

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Clean and PGD accuracy of a safetensors checkpoint on the test split.",
        discussion: """
        Any safetensors file with PyTorch names and layouts loads: files written by `part train`, \
        and state_dicts saved from the reference models (a `module.` prefix is stripped). The \
        architecture comes from the file's metadata, else from --arch.
        """)

    @Argument(help: ArgumentHelp("The checkpoint (.safetensors).", valueName: "checkpoint"))
    var checkpoint: String

    @OptionGroup var data: DataOptions
    @OptionGroup var attack: AttackOptions
    @OptionGroup var output: OutputOptions

    @Option(help: ArgumentHelp("Architecture, when the file does not say.", valueName: "name"))
    var arch: String?

    @Option(help: "Evaluate the first N test images (0: all).")
    var limit: Int = 0

    @Option(help: "Images per batch.")
    var batchSize: Int = 256

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be >= 0") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let arch, !ModelZoo.architectures.contains(arch) {
            throw ValidationError("unknown --arch '\(arch)' (known: \(ModelZoo.architectures.joined(separator: ", ")))")
        }
    }

    struct Result: Encodable {
        let checkpoint: String
        let architecture: String
        let dataset: String
        let split = "test"
        let count: Int
        let seed: UInt64
        let cleanAccuracy: Double
        let attack: String
        let epsilon: Float
        let alpha: Float
        let robustAccuracy: Double
        let seconds: Double
    }

    func run() throws {
        do {
            let url = URL(fileURLWithPath: checkpoint)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CheckpointError("\(checkpoint): no such file")
            }
            var test = try data.load(.test)
            if limit > 0 { test = test.prefix(limit) }
            try CheckpointFit.check(url, fits: test)
            var initRng = RNG(seed: output.seed)
            let (model, _) = try Checkpoint.loadModel(url, architecture: arch, numClasses: test.classes,
                                                      inputShape: (test.height, test.width, test.channels), rng: &initRng)
            let pgd = PGD(steps: attack.steps, stepSize: attack.alpha)
            var progress = Progress()
            let started = Date()
            let result = try Evaluation.run(model, on: test, attack: pgd, epsilon: attack.epsilon, batchSize: batchSize,
                                            seed: output.seed) { done, total in progress.update("evaluated \(done)/\(total)") }
            progress.clear()
            let r = Result(checkpoint: checkpoint, architecture: model.architecture, dataset: test.name, count: result.count,
                           seed: output.seed, cleanAccuracy: result.cleanAccuracy, attack: pgd.name,
                           epsilon: attack.epsilon, alpha: attack.alpha, robustAccuracy: result.robustAccuracy ?? 0,
                           seconds: Date().timeIntervalSince(started))
            if output.json {
                try printJSON(r)
            } else {
                print("\(r.architecture) on \(r.dataset) test (\(r.count) images, seed \(r.seed)): "
                      + String(format: "clean %.2f%%, %@ (eps %g, alpha %g) %.2f%%  [%.1fs]", 100 * r.cleanAccuracy,
                               r.attack as NSString, r.epsilon, r.alpha, 100 * r.robustAccuracy, r.seconds))
            }
        } catch {
            throw fail(error)
        }
    }
}
