// Quickstart: PART on a tiny synthetic dataset with the library, no command line.
//
// Builds 384 grey 16x16 images in three classes (a bright band at the top, middle or bottom),
// trains a SmallCNN with PART for eight epochs (two of them a constant-budget burn-in), and
// evaluates it with PGD-10. Run it with `swift run -c release quickstart`.
import Foundation
import PARTAttacks
import PARTData
import PARTEngine
import PARTTraining

// 1. A dataset: pixels as bytes (NHWC), labels, shape and class count.
var rng = RNG(seed: 7)
var pixels: [UInt8] = []
var labels: [Int32] = []
for i in 0..<384 {
    let label = i % 3
    for row in 0..<16 {
        for _ in 0..<16 {
            let bright = row / 6 == label
            pixels.append(UInt8((bright ? 150 : 40) + Int(rng.uniform() * 80)))
        }
    }
    labels.append(Int32(label))
}
let data = try ImageDataset(name: "bands", images: pixels, labels: labels, height: 16, width: 16, channels: 1, classes: 3)
let heldOut = data.prefix(96)

// 2. The recipe: PART (AT objective, Grad-CAM budget after two burn-in epochs), PGD-3 generation.
var config = TrainingConfig()
config.apply(.part)
config.epochs = 8
config.burnIn = 2
config.batchSize = 32
config.learningRate = 0.05
config.steps = 3
config.evalSteps = 3
config.epsilon = 0.05
config.epsilonLow = 0.04
config.stepSize = 0.0125

// 3. Train into a fresh run directory: checkpoints, log and configuration land there.
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("part-quickstart-\(UUID().uuidString)")
defer { try? FileManager.default.removeItem(at: directory) }
let trainer = try TrainingRun.trainer(config, data: data)
try trainer.train(on: data, heldOut: heldOut, runDirectory: directory) { report in
    print(String(format: "epoch %d  %@  loss %.3f  clean %.1f%%  pgd-%d %.1f%%", report.epoch, report.budget,
                 report.loss, 100 * report.cleanAccuracy, config.evalSteps, 100 * report.robustAccuracy))
}

// 4. Evaluate the trained model with PGD-10 at the run's eps.
let result = try Evaluation.run(trainer.model, on: heldOut, attack: PGD(steps: 10, stepSize: config.epsilon / 4),
                                epsilon: config.epsilon, batchSize: 96, seed: 0)
print(String(format: "clean %.1f%%, PGD-10 %.1f%% on %d images", 100 * result.cleanAccuracy,
             100 * (result.robustAccuracy ?? 0), result.count))
