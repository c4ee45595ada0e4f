import PARTTestSupport
import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTTraining
import XCTest

/// The trainer end to end on a tiny synthetic dataset.
final class TrainerTests: XCTestCase {
    func dataset(count: Int) throws -> ImageDataset {
        var rng = RNG(seed: 77)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<count {
            let label = Int32(i % 3)
            for r in 0..<16 { for _ in 0..<16 {
                pixels.append(UInt8((r / 6 == Int(label) ? 150 : 40) + Int(rng.uniform() * 80)))
            } }
            labels.append(label)
        }
        return try ImageDataset(name: "stripes", images: pixels, labels: labels, height: 16, width: 16, channels: 1, classes: 3)
    }

    func train(seed: UInt64, into dir: URL, checked: Int = 12) throws -> (ImageClassifier, [EpochReport]) {
        var config = TrainingConfig()
        config.epochs = 2
        config.burnIn = 1
        config.batchSize = 16
        config.steps = 2
        config.evalSteps = 2
        config.seed = seed
        var rng = RNG(seed: seed)
        var initRng = rng.split()
        let model = try ModelZoo.make("small-cnn", numClasses: 3, inChannels: 1, imageSize: 16, rng: &initRng)
        let trainer = try Trainer(config: config, model: model, rng: rng)
        var reports = [EpochReport]()
        let data = try dataset(count: 48)
        try trainer.train(on: data, heldOut: data.prefix(checked), runDirectory: dir) { reports.append($0) }
        return (model, reports)
    }


    func testSameSeedSameRunOtherSeedOtherRun() throws {
        let (a, reportsA) = try train(seed: 5, into: temporaryDirectory(created: false))
        let (b, _) = try train(seed: 5, into: temporaryDirectory(created: false))
        let (c, _) = try train(seed: 6, into: temporaryDirectory(created: false))
        XCTAssertEqual(a.state.map { $0.1.tensor.scalars }, b.state.map { $0.1.tensor.scalars }, "a run is a function of its seed")
        XCTAssertNotEqual(a.state.map { $0.1.tensor.scalars }, c.state.map { $0.1.tensor.scalars })
        XCTAssertEqual(reportsA.map(\.budget), ["constant", "gradcam/zscore"])
        XCTAssertEqual(reportsA[0].fullEpsilonFraction, 1)
        XCTAssertLessThan(reportsA[1].fullEpsilonFraction, 0.5)
    }

    /// The per-epoch check only reads the model: a run checked on fewer images trains the same
    /// weights, so a long run may check on a few images to save time without changing its result.
    func testTheCheckLeavesTrainingAlone() throws {
        let (a, reportsA) = try train(seed: 3, into: temporaryDirectory(created: false), checked: 12)
        let (b, reportsB) = try train(seed: 3, into: temporaryDirectory(created: false), checked: 3)
        XCTAssertEqual(a.state.map { $0.1.tensor.scalars }, b.state.map { $0.1.tensor.scalars })
        XCTAssertEqual(reportsA.map(\.evalCount), [12, 12])
        XCTAssertEqual(reportsB.map(\.evalCount), [3, 3])
        XCTAssertEqual(reportsA.map(\.loss), reportsB.map(\.loss))
    }

    func testWritesCheckpointStateAndLogEveryEpoch() throws {
        let dir = try temporaryDirectory(created: false)
        let (model, reports) = try train(seed: 1, into: dir)
        XCTAssertEqual(reports.count, 2)
        XCTAssert(reports.allSatisfy { ($0.cpuSeconds ?? 0) > 0 }, "\(reports.map(\.cpuSeconds))")
        var rng = RNG(seed: 0)
        let reloaded = try ModelZoo.make("small-cnn", numClasses: 3, inChannels: 1, imageSize: 16, rng: &rng)
        let meta = try Checkpoint.load(dir.appendingPathComponent("last.safetensors"), into: reloaded)
        XCTAssertEqual(meta["epoch"], "2")
        XCTAssertEqual(reloaded.state.map { $0.1.tensor.scalars }, model.state.map { $0.1.tensor.scalars })
        let state = try SafetensorsFile.read(from: dir.appendingPathComponent("last.state.safetensors"))
        XCTAssertEqual(state.tensors.keys.filter { $0.hasPrefix("momentum.") }.count, model.parameters.count)
        XCTAssertEqual(state.metadata["rng_state"]?.split(separator: ",").count, 4)
        let log = try String(contentsOf: dir.appendingPathComponent("log.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 2)
        // A commit writes NAME.pending files and renames them; other atomic writes use temporary
        // names: none may stay once the run is over, and the directory holds the run's files only.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0 != ".lock" }.sorted()
        XCTAssertEqual(files, ["checkpoint.json", "config.json", "last.safetensors", "last.state.safetensors", "log.jsonl"],
                       "atomic writes leave no pending or temporary files")
    }

    func testLearningRateMilestones() throws {
        var config = TrainingConfig()
        config.learningRate = 0.1
        config.milestones = [2, 4]
        config.gamma = 0.5
        XCTAssertEqual((1...5).map { config.learningRate(epoch: $0) }, [0.1, 0.1, 0.05, 0.05, 0.025])
    }

    func testInvalidSettingsAreNamed() throws {
        var config = TrainingConfig()
        config.epsilonLow = 0.2
        XCTAssertEqual(config.problem(), "--eps-low must be in [0, eps] (eps = 0.1), got 0.2")
        config = TrainingConfig()
        config.burnIn = 10
        XCTAssertEqual(config.problem()?.contains("--burn-in"), true)
    }
}
