import Foundation
import PARTData
import XCTest
@testable import PARTTraining

/// The typed record of `config.json`: it reads back what was written, names the flag of the
/// first setting in which two plans differ (the process-only options never count), and converts
/// an older record through the caller's function once.
final class RunRecordTests: XCTestCase {
    func plan() -> RunPlan {
        var config = TrainingConfig()
        config.dataset = "npy"
        config.epochs = 3
        var request = DatasetRequest(name: .npy, location: URL(fileURLWithPath: "/data/set.npz"))
        request.layout = .nchw
        request.classes = 4
        request.augmentation = .cropFlip
        var options = RunOptions()
        options.trainLimit = 12
        options.without = ["fusion"]
        options.precision = "bf16"
        options.checkpointEvery = 5
        options.syncBatchNorm = true
        return RunPlan(config: config, dataset: request, options: options, seeds: [0, 2])
    }

    func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("run-record-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testARecordReadsBackItsPlan() throws {
        let dir = try directory()
        let written = RunRecord(config: plan().config, plan: plan(), camLayer: "act4", trainImages: 12, heldOut: "test",
                                heldOutImages: 4, data: "set")
        try written.write(to: dir)
        let read = try XCTUnwrap(try RunRecord.read(dir))
        XCTAssertEqual(read.plan, plan())
        XCTAssertEqual(read.version, RunRecord.currentVersion)
        XCTAssertEqual(read.sweep?.seeds, [0, 2])
        XCTAssertNil(read.arguments)
        XCTAssertNil(try RunRecord.read(dir.appendingPathComponent("absent")))
        let text = try String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)
        XCTAssert(text.contains("\"location\" : \"\\/data\\/set.npz\""), text)
    }

    /// A field added to the configuration after a record was written takes its default there.
    func testAFieldTheRecordLacksTakesItsDefault() throws {
        let dir = try directory()
        try RunRecord(config: plan().config, plan: plan(), camLayer: nil, trainImages: 12, heldOut: "test", heldOutImages: 4,
                      data: "set").write(to: dir)
        let url = dir.appendingPathComponent("config.json")
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var config = object["config"] as! [String: Any]
        config.removeValue(forKey: "warmupEpochs")
        config["epochs"] = 4
        object["config"] = config
        try JSONSerialization.data(withJSONObject: object).write(to: url)
        let read = try XCTUnwrap(try RunRecord.read(dir))
        XCTAssertEqual(read.config.warmupEpochs, TrainingConfig().warmupEpochs)
        XCTAssertEqual(read.config.epochs, 4)
        XCTAssertEqual(read.config.epsilonLow, plan().config.epsilonLow)
        let state = try JSONSerialization.data(withJSONObject: config)
        XCTAssertEqual(try TrainingConfig.decodeFillingDefaults(state), read.config)
    }

    func testDifferencesNameTheFlagAndProcessOptionsDoNotCount() {
        let base = plan()
        XCTAssertNil(base.difference(base))
        var other = base
        other.options.precision = "fp32"
        other.options.checkpointEvery = 0
        other.options.without = []
        other.options.tensorboard = "/tmp/tb"
        other.dataset.cache = URL(fileURLWithPath: "/elsewhere")
        XCTAssertNil(base.difference(other), "engine, cadence, outputs and the cache folder do not define the run")
        other.config.learningRate = 0.5
        XCTAssertEqual(base.difference(other), "the run was trained with --lr 0.01, this command gives 0.5")
        other = base
        other.dataset.layout = .nhwc
        XCTAssertEqual(base.difference(other), "the run was trained with --layout nchw, this command gives nhwc")
        other = base
        other.dataset.augmentation = nil
        XCTAssertEqual(base.difference(other), "the run was trained with --augment crop-flip, this command gives auto")
        other = base
        other.options.evalLimit = 2
        XCTAssertEqual(base.difference(other, subject: "its run", other: "the sweep"),
                       "its run was trained with --eval-limit 1000, the sweep gives 2")
        XCTAssertEqual(base.seedRun(2).config.seed, 2)
        XCTAssertNil(base.seedRun(2).seeds)
    }

    func testAnOlderRecordIsConvertedOnceOrReadWithoutAPlan() throws {
        let dir = try directory()
        var old = RunRecord(config: plan().config, plan: nil, camLayer: nil, trainImages: 12, heldOut: "test",
                            heldOutImages: 4, data: "set")
        old.version = nil
        old.arguments = ["--dataset", "npy", "--data", "/data/set.npz"]
        try old.write(to: dir)
        XCTAssertNil(try XCTUnwrap(try RunRecord.read(dir)).plan, "read without a conversion: the configuration only")
        var calls = 0
        let converted = try XCTUnwrap(try RunRecord.read(dir) { arguments, config in
            calls += 1
            XCTAssertEqual(arguments, old.arguments)
            XCTAssertEqual(config.dataset, "npy")
            return (self.plan().dataset, self.plan().options)
        })
        XCTAssertEqual(calls, 1)
        XCTAssertEqual(converted.plan?.dataset, plan().dataset)
        // A conversion that fails, and a file that is not a record, are sentences naming the file.
        XCTAssertThrowsError(try RunRecord.read(dir) { _, _ in throw TrainingError("no such option --foo") }) {
            XCTAssert("\($0)".contains("config.json was written by an older version") && "\($0)".contains("--foo"), "\($0)")
        }
        try Data("{\"method\": 1}".utf8).write(to: dir.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try RunRecord.read(dir)) {
            XCTAssert("\($0)".contains("is not the configuration of a part train run"), "\($0)")
        }
    }
}
