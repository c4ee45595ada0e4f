import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTTraining
import XCTest

/// `TrainingConfig.trainPrecision` (`--train-precision`): how it is recorded and read back, and
/// a bf16 run end to end.
final class TrainPrecisionTests: XCTestCase {
    /// The configuration as JSON with the key removed, as config.json and state files of runs
    /// made before the setting existed hold it.
    func jsonWithout(_ key: String, _ config: TrainingConfig) throws -> Data {
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as? [String: Any])
        XCTAssertNotNil(object.removeValue(forKey: key), "\(key) is written")
        return try JSONSerialization.data(withJSONObject: object)
    }

    func testConfigurationWithoutTheSettingReadsAsFP32() throws {
        var config = TrainingConfig()
        config.epochs = 7
        let old = try JSONDecoder().decode(TrainingConfig.self, from: try jsonWithout("trainPrecision", config))
        XCTAssertEqual(old.trainPrecision, .fp32)
        XCTAssertEqual(old, config)
    }

    func testSettingRoundTripsAndUnknownValuesAreRefused() throws {
        var config = TrainingConfig()
        config.trainPrecision = .bf16
        let data = try JSONEncoder().encode(config)
        XCTAssert(String(decoding: data, as: UTF8.self).contains("\"trainPrecision\":\"bf16\""))
        XCTAssertEqual(try JSONDecoder().decode(TrainingConfig.self, from: data), config)
        let fp16 = Data(String(decoding: data, as: UTF8.self)
            .replacingOccurrences(of: "\"trainPrecision\":\"bf16\"", with: "\"trainPrecision\":\"fp16\"").utf8)
        XCTAssertThrowsError(try JSONDecoder().decode(TrainingConfig.self, from: fp16))
        XCTAssert(config.summaryLines(camLayer: nil).joined().contains("training passes in bf16"))
    }

    /// bf16 is refused, in one sentence naming the flag, exactly where the CPU cannot run it.
    func testBF16IsRefusedOnlyWithoutBF16Kernels() {
        var config = TrainingConfig()
        config.trainPrecision = .bf16
        if Engine.supportsBF16 {
            XCTAssertNil(config.problem())
        } else {
            let problem = config.problem() ?? ""
            XCTAssert(problem.hasPrefix("--train-precision bf16 needs a CPU with AVX-512 BF16"), problem)
            XCTAssertFalse(problem.contains("\n"))
        }
        config.trainPrecision = .fp32
        XCTAssertNil(config.problem())
    }

    /// A short PART run with bf16 training passes: it trains (finite loss, weights move), records
    /// the setting in config.json and in the state file, and its checkpoint holds f32 weights.
    func testBF16RunTrainsAndRecordsItsPrecision() throws {
        try XCTSkipUnless(Engine.supportsBF16, "this CPU (\(Engine.instructionSet)) has no bfloat16 kernels")
        var rng = RNG(seed: 3)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<48 {
            let label = Int32(i % 3)
            for r in 0..<16 { for _ in 0..<16 { pixels.append(UInt8((r / 6 == Int(label) ? 150 : 40) + Int(rng.uniform() * 80))) } }
            labels.append(label)
        }
        let data = try ImageDataset(name: "stripes", images: pixels, labels: labels, height: 16, width: 16, channels: 1,
                                    classes: 3)
        var config = TrainingConfig()
        config.epochs = 2
        config.burnIn = 1
        config.batchSize = 16
        config.steps = 2
        config.evalSteps = 2
        config.trainPrecision = .bf16
        let start = rng
        var initRng = rng.split()
        let model = try ModelZoo.make("small-cnn", numClasses: 3, inChannels: 1, imageSize: 16, rng: &initRng)
        let before = model.parameters.map { $0.1.value.scalars }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("part-bf16-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        var reports = [EpochReport]()
        try Trainer(config: config, model: model, rng: rng).train(on: data, heldOut: data.prefix(12), runDirectory: dir) {
            reports.append($0)
        }
        XCTAssertEqual(reports.count, 2)
        XCTAssert(reports.allSatisfy { $0.loss.isFinite })
        XCTAssertNotEqual(model.parameters.map { $0.1.value.scalars }, before)
        let recorded = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json")))
        XCTAssertEqual(((recorded as? [String: Any])?["config"] as? [String: Any])?["trainPrecision"] as? String, "bf16")
        let state = try SafetensorsFile.read(from: dir.appendingPathComponent("last.state.safetensors"))
        XCTAssert(state.metadata["config"]?.contains("\"trainPrecision\":\"bf16\"") ?? false)
        let checkpoint = try SafetensorsFile.read(from: dir.appendingPathComponent("last.safetensors"))
        XCTAssert(checkpoint.tensors.values.allSatisfy { $0.dtype == .f32 })

        // The same run with fp32 passes from the same weights: the bf16 passes did run (the
        // weights differ), and they follow the fp32 trajectory up to bf16's rounding.
        var fp32Rng = start
        var fp32InitRng = fp32Rng.split()
        let fp32Model = try ModelZoo.make("small-cnn", numClasses: 3, inChannels: 1, imageSize: 16, rng: &fp32InitRng)
        XCTAssertEqual(fp32Model.parameters.map { $0.1.value.scalars }, before)
        config.trainPrecision = .fp32
        let fp32Dir = dir.appendingPathComponent("fp32")
        try Trainer(config: config, model: fp32Model, rng: fp32Rng).train(on: data, heldOut: data.prefix(12), runDirectory: fp32Dir) { _ in }
        let low = model.parameters.flatMap { $0.1.value.scalars }, full = fp32Model.parameters.flatMap { $0.1.value.scalars }
        XCTAssertNotEqual(low, full, "the bf16 run trained with fp32 passes")
        let moved = zip(full, before.flatMap { $0 }).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        let apart = zip(low, full).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +).squareRoot()
        print("bf16 and fp32 runs: \(apart) apart; the fp32 run moved its weights by \(moved)")
        XCTAssertLessThan(apart, 0.2 * moved, "bf16 training left the fp32 trajectory")
    }
}
