import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTEngine
import PARTNN
import PARTTraining

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model with PART (or plain AT) on a dataset of the registry (default Fashion-MNIST).",
        discussion: """
        PART trains --burn-in epochs of plain adversarial training, then, for every batch, computes \
        Grad-CAM maps of the batch's own images, keeps --eps on the important pixels (z-score > 1) \
        and lowers it to --eps-low elsewhere, and trains on PGD examples made under that map.

        After every epoch it prints loss, clean and PGD accuracy on the first --eval-limit test \
        images, the share of entries at full eps and images/s, and writes <out>/last.safetensors \
        (PyTorch names and layouts) atomically.

        The defaults are the quick main job (5 epochs, about 9 minutes on 2 cores). The full \
        Fashion-MNIST recipe: part train --epochs 10 --burn-in 3
        """)

    @OptionGroup var data: DataOptions
    @OptionGroup var augmentation: AugmentOptions
    @OptionGroup var output: OutputOptions

    @Option(help: "Training method.")
    var method: TrainingMethod = .part

    @Option(help: ArgumentHelp("Architecture.", valueName: "name"))
    var arch: String = "small-cnn"

    @Option(help: "Training epochs.")
    var epochs: Int = 5

    @Option(help: "Epochs of plain AT before PART's maps start.")
    var burnIn: Int = 2

    @Option(help: "Use the first N training images (0: all).")
    var trainLimit: Int = 0

    @Option(help: "Held-out test images for the per-epoch accuracy check.")
    var evalLimit: Int = 1000

    @Option(help: "Mini-batch size.")
    var batchSize: Int = 128

    @Option(help: "SGD learning rate.")
    var lr: Float = 0.01

    @Option(help: "SGD momentum.")
    var momentum: Float = 0.9

    @Option(help: "SGD weight decay.")
    var weightDecay: Float = 2e-4

    @Option(parsing: .upToNextOption, help: "Epochs after which the learning rate is multiplied by --lr-gamma.")
    var lrMilestones: [Int] = []

    @Option(help: "Learning-rate factor at each milestone.")
    var lrGamma: Float = 0.1

    @Option(name: .customLong("eps"), help: "Budget of important pixels (and of every pixel in AT).")
    var epsilon: Float = 0.1

    @Option(name: .customLong("eps-low"), help: "Budget of the other pixels in PART.")
    var epsilonLow: Float = 0.0875

    @Option(name: .customLong("alpha"), help: "PGD step size.")
    var stepSize: Float = 0.025

    @Option(help: "PGD steps when generating training examples.")
    var steps: Int = 10

    @Option(help: "PGD steps of the per-epoch robustness check.")
    var evalSteps: Int = 20

    @Option(help: ArgumentHelp("Directory for checkpoints and the log (default: runs/<method>-<dataset>, "
                               + "numbered so that no earlier run is overwritten).", valueName: "dir"))
    var out: String?

    @Flag(help: "Allow --out to name a directory that already holds a run (its files are replaced).")
    var overwrite = false

    /// The run directory: --out, or the first free runs/<method>-<dataset>[-N].
    func runDirectory(dataset: String) throws -> URL {
        let fm = FileManager.default
        func holdsRun(_ url: URL) -> Bool { fm.fileExists(atPath: url.appendingPathComponent("last.safetensors").path) }
        if let out {
            let url = URL(fileURLWithPath: out)
            if holdsRun(url) && !overwrite {
                throw ValidationError("\(out) already holds a run (last.safetensors); choose another --out or pass --overwrite")
            }
            return url
        }
        let base = "runs/\(method.rawValue)-\(dataset)"
        var candidate = URL(fileURLWithPath: base)
        var n = 2
        while holdsRun(candidate) {
            candidate = URL(fileURLWithPath: "\(base)-\(n)")
            n += 1
        }
        return candidate
    }

    var config: TrainingConfig {
        var c = TrainingConfig()
        c.method = method
        c.epochs = epochs
        c.burnIn = method == .part ? burnIn : 0
        c.batchSize = batchSize
        c.learningRate = lr
        c.momentum = momentum
        c.weightDecay = weightDecay
        c.milestones = lrMilestones
        c.gamma = lrGamma
        c.epsilon = epsilon
        c.epsilonLow = epsilonLow
        c.stepSize = stepSize
        c.steps = steps
        c.evalSteps = evalSteps
        c.seed = output.seed
        return c
    }

    func validate() throws {
        if let problem = config.problem() { throw ValidationError(problem) }
        guard trainLimit >= 0 else { throw ValidationError("--train-limit must be >= 0") }
        guard evalLimit >= 1 else { throw ValidationError("--eval-limit must be at least 1") }
        guard ModelZoo.architectures.contains(arch) else {
            throw ValidationError("unknown --arch '\(arch)' (known: \(ModelZoo.architectures.joined(separator: ", ")))")
        }
    }

    func run() throws {
        do {
            var train = try data.load(.train, augmentation: augmentation.policy)
            if trainLimit > 0 { train = train.prefix(trainLimit) }
            let heldOut = try data.load(.test).prefix(evalLimit)
            try DatasetRegistry.checkSplitsAgree(train: train, test: heldOut)
            var rng = RNG(seed: output.seed)
            var initRng = rng.split()
            let model = try ModelZoo.make(arch, numClasses: train.classes, inChannels: train.channels,
                                          imageSize: train.height, rng: &initRng)
            let trainer = Trainer(config: config, model: model, rng: rng)
            let runDirectory = try self.runDirectory(dataset: train.name)
            if !output.json {
                print("PART for Swift: \(method.rawValue) on \(train.name) (\(train.count) training images, "
                      + "\(heldOut.count) held-out), \(arch), eps \(epsilon), eps-low \(epsilonLow), "
                      + "alpha \(stepSize), PGD-\(steps); \(epochs) epochs, burn-in \(config.burnIn); "
                      + "writing \(runDirectory.path)")
            }
            var progress = Progress()
            let started = Date()
            try trainer.train(on: train, heldOut: heldOut, runDirectory: runDirectory, progress: { epoch, done, total in
                progress.update("epoch \(epoch)/\(epochs): batch \(done)/\(total)")
            }, report: { r in
                progress.clear()
                if output.json {
                    try printJSON(r)
                } else {
                    print(String(format: "epoch %d/%d  %@  lr %.4g  loss %.4f  train-adv-acc %.2f%%  clean %.2f%%  pgd-%d %.2f%%  full-eps %.1f%%  %.0f img/s  %.0fs",
                                 r.epoch, r.epochs, r.budget as NSString, r.learningRate, r.loss, 100 * r.trainAccuracy,
                                 100 * r.cleanAccuracy, evalSteps, 100 * r.robustAccuracy, 100 * r.fullEpsilonFraction,
                                 r.imagesPerSecond, r.seconds))
                }
                fflush(stdout)
            })
            if !output.json {
                print(String(format: "done in %.0fs; model: %@", Date().timeIntervalSince(started),
                             runDirectory.appendingPathComponent("last.safetensors").path as NSString))
            }
        } catch {
            throw fail(error)
        }
    }
}

extension TrainingMethod: ExpressibleByArgument {}
