import PARTTestSupport
import Foundation
import PARTCAM
import PARTData
import PARTEngine
import PARTNN
@testable import PARTTraining
import XCTest

/// The family in the trainer: objective x budget x generation, schedules, presets, the validation
/// split, the run directory and seed sweeps, on tiny synthetic data.
final class FamilyTrainerTests: XCTestCase {
    /// Stripes whose row band gives the class; `channels` 1 or 3.
    func dataset(count: Int, channels: Int = 1) throws -> ImageDataset {
        var rng = RNG(seed: 77)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<count {
            let label = Int32(i % 3)
            for r in 0..<16 { for c in 0..<16 { for k in 0..<channels {
                let bright = r / 6 == Int(label) && (k == 0 || c > 4)
                pixels.append(UInt8((bright ? 150 : 40) + Int(rng.uniform() * 80)))
            } } }
            labels.append(label)
        }
        return try ImageDataset(name: "stripes", images: pixels, labels: labels, height: 16, width: 16,
                                channels: channels, classes: 3)
    }

    /// Two epochs (the first of burn-in) of two batches, with one-step attacks.
    func tinyConfig(_ method: TrainingMethod = .part, seed: UInt64 = 1) -> TrainingConfig {
        var c = TrainingConfig()
        c.apply(method)
        c.epochs = 2
        c.burnIn = 1
        c.batchSize = 8
        c.steps = 1
        c.evalSteps = 1
        c.seed = seed
        return c
    }


    @discardableResult
    func train(_ config: TrainingConfig, data: ImageDataset? = nil, into dir: URL? = nil,
               progress: @escaping (Int, Int, Int) -> Void = { _, _, _ in }) throws -> (Trainer, [EpochReport], URL) {
        let data = try data ?? dataset(count: 16)
        let directory = try dir ?? temporaryDirectory(created: false)
        let trainer = try TrainingRun.trainer(config, data: data)
        var reports = [EpochReport]()
        try trainer.train(on: data, heldOut: data.prefix(6), runDirectory: directory, progress: progress) { reports.append($0) }
        return (trainer, reports, directory)
    }

    /// One epoch of each method (CAM budgets from the start: no burn-in).
    func testEveryMethodTrains() throws {
        for method in TrainingMethod.allCases {
            var c = tinyConfig(method)
            c.epochs = 1
            c.burnIn = 0
            let (trainer, reports, _) = try train(c)
            XCTAssertEqual(trainer.objective.name, method.objective.rawValue)
            XCTAssertEqual(reports.map(\.method), [method.rawValue])
            XCTAssertEqual(reports.map(\.budget), [method.budget == .cam ? "gradcam/zscore" : "constant"], method.rawValue)
            XCTAssert(reports.allSatisfy { $0.loss.isFinite && $0.loss > 0 }, method.rawValue)
            if method.budget == .cam { XCTAssertLessThan(reports[0].fullEpsilonFraction, 0.5, method.rawValue) }
        }
    }

    func testEveryCAMMethodTrains() throws {
        for cam in CAMMethodName.allCases {
            var c = tinyConfig(.part)
            c.epochs = 1
            c.burnIn = 0
            c.cam = cam
            let (_, reports, _) = try train(c)
            XCTAssertEqual(reports[0].budget, "\(cam.rawValue)/zscore")
            XCTAssertLessThan(reports[0].fullEpsilonFraction, 0.5, cam.rawValue)
        }
    }

    /// MMA generation in place of PGD: the objective's training loss is unchanged.
    func testMMAGenerationTrains() throws {
        for method in [TrainingMethod.part, .trades] {
            var c = tinyConfig(method)
            c.epochs = 1
            c.burnIn = 0
            c.generation = try GenerationAttack("mma")
            let (trainer, reports, dir) = try train(c)
            XCTAssertEqual(trainer.generator.name, "mma-1")
            XCTAssertEqual(reports[0].method, "\(method.rawValue)-mma")
            XCTAssertEqual(reports[0].generation, "mma")
            XCTAssert(reports[0].loss.isFinite)
            let meta = try SafetensorsFile.read(from: dir.appendingPathComponent("last.safetensors")).metadata
            XCTAssertEqual(meta[RecipeKey.generation], "mma")
        }
    }

    func testTRADESRunIsAFunctionOfItsSeed() throws {
        let a = try train(tinyConfig(.partT, seed: 3)).0.model.state.map { $0.1.tensor.scalars }
        let b = try train(tinyConfig(.partT, seed: 3)).0.model.state.map { $0.1.tensor.scalars }
        let c = try train(tinyConfig(.partT, seed: 4)).0.model.state.map { $0.1.tensor.scalars }
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testOfficialMapRuleNeedsRGB() throws {
        var c = tinyConfig(.part)
        c.mapRule = .official
        XCTAssertThrowsError(try train(c)) { XCTAssert("\($0)".contains("--map-rule zscore"), "\($0)") }
        let (_, reports, _) = try train(c, data: try dataset(count: 16, channels: 3))
        XCTAssertEqual(reports[1].budget, "gradcam/official")
        XCTAssertGreaterThan(reports[1].fullEpsilonFraction, 0)
        XCTAssertLessThan(reports[1].fullEpsilonFraction, 1)
    }

    func testValidationSplitReplacesTheTestImagesAndKeepsTheBest() throws {
        var c = tinyConfig(.at)
        c.validationSplit = 6
        let (_, reports, dir) = try train(c)
        XCTAssertEqual(reports.map(\.heldOut), ["validation", "validation"])
        XCTAssertEqual(reports.map(\.evalCount), [6, 6])
        XCTAssertEqual(reports[0].heldOut, "validation")
        XCTAssert(reports[0].best, "the first epoch is the best so far")
        XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("best.safetensors").path))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json")))
            as! [String: Any]
        XCTAssertEqual(config["trainImages"] as? Int, 10)
        XCTAssertEqual(config["heldOut"] as? String, "validation")
        // Without a split the check runs on the test images and keeps no best checkpoint.
        let (_, plain, plainDir) = try train(tinyConfig(.at))
        XCTAssertEqual(plain.map(\.heldOut), ["test", "test"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: plainDir.appendingPathComponent("best.safetensors").path))
        c.validationSplit = 16
        XCTAssertThrowsError(try train(c)) { XCTAssert("\($0)".contains("--val-split"), "\($0)") }
        // The held-out images keep their indices in the training split: the keys of the check's draws.
        let data = try dataset(count: 16)
        let split = try TrainingSplit(data, validation: 6)
        let held = Set(0..<16).subtracting(split.train).sorted()
        XCTAssertEqual(held.count, 6)
        XCTAssertEqual(split.validation?.splitIndices, held)
        XCTAssertEqual(split.validation?.images, try data.subset(held).images)
        XCTAssertEqual(split.validation?.name, "\(data.name) validation split")
        XCTAssert(split.validation?.augmentation.isIdentity == true)
    }

    func testConfigIsWrittenBeforeTheFirstStepAndCheckpointsCarryTheRecipe() throws {
        let dir = try temporaryDirectory(created: false)
        var sawConfig = false
        let (_, _, _) = try train(tinyConfig(.partT), into: dir) { epoch, done, _ in
            if epoch == 1 && done == 1 {
                sawConfig = FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path)
            }
        }
        XCTAssert(sawConfig, "config.json exists when the first step finishes")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json")))
            as! [String: Any]
        XCTAssertEqual(config["method"] as? String, "part-t")
        XCTAssertEqual(config["camLayer"] as? String, "act4")
        let recorded = config["config"] as! [String: Any]
        XCTAssertEqual(recorded["objective"] as? String, "trades")
        XCTAssertEqual(recorded["budget"] as? String, "cam")
        XCTAssertEqual(recorded["generation"] as? String, "pgd")
        let meta = try SafetensorsFile.read(from: dir.appendingPathComponent("last.safetensors")).metadata
        XCTAssertEqual(meta[RecipeKey.method], "part-t")
        XCTAssertEqual(meta[RecipeKey.objective], "trades")
        XCTAssertEqual(meta[RecipeKey.generation], "pgd")
        XCTAssertNotNil(meta[RecipeKey.epsilon])
        XCTAssertNotNil(meta[RecipeKey.epsilonLow], "a CAM budget's eps-low")
        XCTAssertEqual(meta[RecipeKey.epsilon].flatMap(Float.init), recorded["epsilon"].flatMap { ($0 as? NSNumber)?.floatValue })
        XCTAssertEqual(meta[RecipeKey.epsilonLow].flatMap(Float.init), recorded["epsilonLow"].flatMap { ($0 as? NSNumber)?.floatValue })
        XCTAssertEqual(RecipeKey.describe(meta), "part-t: trades objective (beta 6.0), gradcam/zscore budget at act4, pgd generation")
        XCTAssertNil(RecipeKey.describe(["architecture": "small-cnn"]))
    }

    func testSeedSweepSummarisesMeanAndStd() throws {
        let dir = try temporaryDirectory(created: false)
        var c = tinyConfig(.at)
        c.epochs = 1
        let data = try dataset(count: 16)
        let summary = try TrainingRun.sweep(c, seeds: [0, 1, 2], data: data, heldOut: data.prefix(6), directory: dir) { _, _ in }
        XCTAssertEqual(summary.seeds.map(\.seed), [0, 1, 2])
        let clean = summary.seeds.map(\.cleanAccuracy)
        XCTAssertEqual(summary.clean.mean, clean.reduce(0, +) / 3, accuracy: 1e-12)
        let m = summary.clean.mean
        XCTAssertEqual(summary.clean.std, (clean.map { ($0 - m) * ($0 - m) }.reduce(0, +) / 2).squareRoot(), accuracy: 1e-12)
        for seed in 0..<3 {
            XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("seed-\(seed)/last.safetensors").path))
        }
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("summary.json")))
            as! [String: Any]
        XCTAssertEqual((written["seeds"] as? [Any])?.count, 3)
        XCTAssertEqual(((written["robust"] as? [String: Any])?["mean"] as? Double) ?? -1, summary.robust.mean, accuracy: 1e-12)
        XCTAssert(summary.line.contains("± ") && summary.line.contains("3 seeds"), summary.line)
        XCTAssertEqual(MeanStd([0.5]).std, 0)
    }

    func testDivergingLossIsAnError() throws {
        var c = tinyConfig(.at)
        c.learningRate = 1e30
        c.momentum = 0
        XCTAssertThrowsError(try train(c)) { XCTAssert("\($0)".contains("diverged"), "\($0)") }
    }

    func testSchedules() throws {
        var s = LearningRateSchedule(base: 0.1, kind: .cosine, epochs: 4)
        for epoch in 1...4 {
            let expected: Double = 0.1 * (1 + cos(Double.pi * Double(epoch - 1) / 4)) / 2
            XCTAssertEqual(Double(s.rate(epoch: epoch)), expected, accuracy: 1e-7)
        }
        s.warmupEpochs = 1
        // Warm-up: linear over the batches of the first epoch, then cosine over the other 3 epochs.
        XCTAssertEqual(s.rate(epoch: 1, batch: 0, batches: 4), 0.025, accuracy: 1e-8)
        XCTAssertEqual(s.rate(epoch: 1, batch: 3, batches: 4), 0.1, accuracy: 1e-8)
        XCTAssertEqual(s.rate(epoch: 2, batch: 0, batches: 4), 0.1, accuracy: 1e-8)
        XCTAssertEqual(s.rate(epoch: 3, batch: 0, batches: 4), 0.075, accuracy: 1e-7)
        let official = LearningRateSchedule(base: 0.01, milestones: LearningRateSchedule.officialMilestones(epochs: 80, burnIn: 20),
                                            epochs: 80)
        XCTAssertEqual(official.milestones, [79])
        XCTAssertEqual(official.rate(epoch: 79), 0.01)
        XCTAssertEqual(official.rate(epoch: 80), 0.001, accuracy: 1e-9)
        XCTAssertEqual(LearningRateSchedule.officialMilestones(epochs: 120, burnIn: 20), [79, 109])
        // The rate the trainer reports is the schedule's.
        var c = tinyConfig(.at)
        c.milestones = [1]
        c.gamma = 0.5
        let (_, reports, _) = try train(c)
        XCTAssertEqual(reports.map(\.learningRate), [0.01, 0.005])
    }

    func testInvalidSettingsAreRefusedWithTheFlagName() throws {
        let cases: [(String, (inout TrainingConfig) -> Void, String?)] = [
            ("AT has no eps-low", { $0.apply(.at); $0.epsilon = 0.05 }, nil),
            ("PART needs eps-low <= eps", { $0.epsilon = 0.05 }, "--eps-low"),
            ("milestones decrease", { $0.epochs = 10; $0.milestones = [5, 3] }, "increasing"),
            ("milestones repeat", { $0.epochs = 10; $0.milestones = [3, 3] }, "unique"),
            ("milestone past the end", { $0.milestones = [5] }, "--lr-milestones must lie in 1...4"),
            ("milestone zero", { $0.milestones = [0] }, "--lr-milestones"),
            ("cosine with milestones", { $0.schedule = .cosine; $0.milestones = [2] }, "--schedule piecewise"),
            ("nan lr", { $0.learningRate = .nan }, "--lr"),
            ("infinite lr", { $0.learningRate = .infinity }, "--lr"),
            ("negative beta", { $0.beta = -1 }, "--beta"),
            ("infinite beta", { $0.beta = .infinity }, "--beta"),
            ("gamma zero", { $0.gamma = 0 }, "--lr-gamma"),
            ("nan momentum", { $0.momentum = .nan }, "--momentum"),
            ("warm-up too long", { $0.warmupEpochs = 5 }, "--warmup-epochs"),
            ("nan eps", { $0.epsilon = .nan }, "--eps"),
            ("infinite alpha", { $0.stepSize = .infinity }, "--alpha"),
            ("negative validation split", { $0.validationSplit = -1 }, "--val-split"),
            ("burn-in covers the run", { $0.burnIn = 5 }, "--burn-in"),
            ("burn-in ignored without CAM", { $0.apply(.mart); $0.burnIn = 5 }, nil),
            ("unknown architecture", { $0.architecture = "vgg" }, "--arch"),
            ("a WideResNet the zoo builds", { $0.architecture = "wrn-16-2" }, nil),
            ("a WideResNet depth that is not 6n + 4", { $0.architecture = "wrn-15-2" }, "--arch"),
        ]
        for (what, change, expected) in cases {
            var c = TrainingConfig()
            change(&c)
            if let expected {
                XCTAssert(c.problem()?.contains(expected) == true, "\(what): \(c.problem() ?? "accepted")")
            } else {
                XCTAssertNil(c.problem(), what)
            }
        }
        // The CAM layer is checked against the model's layers when the trainer is made.
        var layer = tinyConfig()
        layer.camLayer = "fc1"
        XCTAssertThrowsError(try TrainingRun.trainer(layer, data: try dataset(count: 4))) {
            XCTAssert("\($0)".contains("--cam-layer fc1") && "\($0)".contains("conv3"), "\($0)")
        }
        layer.apply(.trades)   // a constant budget reads no CAM layer
        XCTAssertNil(try TrainingRun.trainer(layer, data: try dataset(count: 4)).camLayer)
    }

    func testPresets() throws {
        XCTAssertEqual(Presets.all.count, 32)
        XCTAssertEqual(Set(Presets.all.map(\.name)).count, 32)
        let part = try XCTUnwrap(Presets.named("cifar10-resnet18-part"))
        XCTAssertEqual(part.config.dataset, "cifar10")
        XCTAssertEqual(part.config.objective, .at)
        XCTAssertEqual(part.config.budget, .cam)
        XCTAssertEqual(part.config.epochs, 80)
        XCTAssertEqual(part.config.burnIn, 20)
        XCTAssertEqual(part.config.milestones, [79])
        XCTAssertEqual(part.config.epsilon, 8 / 255)
        XCTAssertEqual(part.config.epsilonLow, 7 / 255)
        XCTAssertEqual(part.config.stepSize, 2 / 255)
        XCTAssertNil(part.config.problem())
        let svhn = try XCTUnwrap(Presets.named("svhn-resnet18-part-m"))
        XCTAssertEqual(svhn.config.stepSize, 1 / 255)
        XCTAssertEqual(svhn.config.weightDecay, 3.5e-3)
        XCTAssertEqual(svhn.config.objective, .mart)
        XCTAssertEqual(Presets.named("tinyimagenet-resnet18-trades")?.config.budget, .constant)
        XCTAssertEqual(Presets.named("cifar10-wrn-34-10-part-t")?.config.architecture, "wrn-34-10")
        // The Fashion-MNIST PART preset is the `part train` default.
        var defaults = TrainingConfig()
        defaults.preset = "fashion-mnist-small-cnn-part"
        XCTAssertEqual(Presets.named("fashion-mnist-small-cnn-part")?.config, defaults)
        // (The fast presets' bf16 passes are a problem only on CPUs without bf16 kernels.)
        for p in Presets.all where ModelZoo.architectures.contains(p.config.architecture)
            && (Engine.supportsBF16 || p.config.trainPrecision == .fp32) {
            XCTAssertNil(p.config.problem(), p.name)
        }
    }

    /// FGSM-RS generation trains with every objective and budget; its check steps eps/4.
    func testFGSMGenerationTrainsEveryObjective() throws {
        // One objective with a constant budget, the other two with a CAM budget from the start.
        for method in [TrainingMethod.at, .partT, .partM] {
            var c = tinyConfig(method)
            c.generation = .fgsm
            c.stepSize = 1.25 * c.epsilon
            c.epochs = 1
            c.burnIn = 0
            let (trainer, reports, _) = try train(c)
            XCTAssertEqual(trainer.generator.name, "pgd-1", "\(method): one step")
            XCTAssertEqual(reports.map(\.method), ["\(method.rawValue)-fgsm"])
            XCTAssert(reports.allSatisfy { $0.loss.isFinite && $0.generation == "fgsm" }, "\(method)")
        }
        var c = tinyConfig(.at)
        c.generation = .fgsm
        c.stepSize = 0.125
        XCTAssertEqual(c.checkStepSize, c.epsilon / 4, "the check keeps PGD's step whatever the FGSM step")
        c.generation = .pgd
        XCTAssertEqual(c.checkStepSize, 0.125)
    }

    /// One-cycle: linear from 0 up to the base rate at 2/5 of the steps, down to 0 at the last.
    func testOneCycleSchedule() throws {
        let s = LearningRateSchedule(base: 0.2, kind: .onecycle, epochs: 5)
        let batches = 10
        var rates: [Float] = []
        for epoch in 1...5 { for b in 0..<batches { rates.append(s.rate(epoch: epoch, batch: b, batches: batches)) } }
        // Step k (0-based) ends at t = (k + 1) / 10 epochs; the peak is at t = 2 (step 19).
        XCTAssertEqual(rates[0], 0.2 * 0.1 / 2, accuracy: 1e-7)
        XCTAssertEqual(rates[9], 0.1, accuracy: 1e-7)
        XCTAssertEqual(rates[19], 0.2, accuracy: 1e-7)
        XCTAssertEqual(rates[34], 0.1, accuracy: 1e-7)
        XCTAssertEqual(rates[49], 0, accuracy: 1e-9)
        XCTAssertEqual(rates.firstIndex(of: rates.max()!), 19)
        for k in 1..<rates.count {
            if k <= 19 { XCTAssertGreaterThan(rates[k], rates[k - 1], "rises until the peak (step \(k))") }
            else { XCTAssertLessThan(rates[k], rates[k - 1], "falls after the peak (step \(k))") }
        }
        // The trainer reports the rate of each epoch's last batch: 0 at the end.
        var c = tinyConfig(.at)
        c.schedule = .onecycle
        c.learningRate = 0.05
        let (_, reports, _) = try train(c)
        // Two batches an epoch: epoch 1 ends at t = 1 epoch, past the peak at 0.8: 0.05 (2 - 1) / 1.2.
        XCTAssertEqual(reports[0].learningRate, 0.05 / 1.2, accuracy: 1e-7)
        XCTAssertEqual(reports[1].learningRate, 0)
        // No milestones or warm-up of its own.
        c.milestones = [1]
        XCTAssertEqual(c.problem()?.contains("--lr-milestones"), true)
        c.milestones = []
        c.warmupEpochs = 1
        XCTAssertEqual(c.problem()?.contains("--warmup-epochs"), true)
    }

    /// The fast presets resolve to the recipe of Wong et al. (and PART's fast form).
    func testFastPresets() throws {
        let at = try XCTUnwrap(Presets.named("cifar10-fast-at")).config
        let part = try XCTUnwrap(Presets.named("cifar10-fast-part")).config
        for c in [at, part] {
            XCTAssertEqual(c.dataset, "cifar10")
            XCTAssertEqual(c.architecture, "preact-resnet18")
            XCTAssertEqual(c.generation, .fgsm)
            XCTAssertEqual(c.schedule, .onecycle)
            XCTAssertEqual(c.learningRate, 0.2)
            XCTAssertEqual(c.momentum, 0.9)
            XCTAssertEqual(c.weightDecay, 5e-4)
            XCTAssertEqual(c.batchSize, 128)
            XCTAssertEqual(c.epsilon, 8 / 255)
            XCTAssertEqual(c.stepSize, 10 / 255)
            XCTAssertEqual(c.checkStepSize, 2 / 255)
            XCTAssertEqual(c.precision, .bf16)
            XCTAssertEqual(c.trainPrecision, .bf16)
            XCTAssertEqual(c.balancedCheck, true)
            if Engine.supportsBF16 { XCTAssertNil(c.problem()) }
        }
        XCTAssertEqual(at.budget, .constant)
        XCTAssertEqual(at.burnIn, 0)
        XCTAssertEqual(at.method, "at-fgsm")
        XCTAssertEqual(part.budget, .cam)
        XCTAssertEqual(part.epsilonLow, 7 / 255)
        XCTAssertGreaterThan(part.burnIn, 0)
        XCTAssertLessThan(part.burnIn, part.epochs)
        XCTAssertEqual(part.method, "part-fgsm")
    }
}
