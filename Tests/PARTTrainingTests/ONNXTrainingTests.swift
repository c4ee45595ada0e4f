import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTONNX
import PARTTestSupport
import PARTTraining
import XCTest

/// Training ONNX graphs exported by PyTorch (scripts/make_onnx_fixtures.py): batch norm in its
/// training form, `last.onnx` holding the trained weights, resume, the warning and a changed file.
final class ONNXTrainingTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/onnx")

    /// Images whose class is a bright band of rows (as TrainerTests' stripes), any size and channels.
    static func dataset(count: Int, side: Int = 16, channels: Int = 1, classes: Int = 3) throws -> ImageDataset {
        var rng = RNG(seed: 77)
        var pixels = [UInt8](), labels = [Int32]()
        for i in 0..<count {
            let label = i % classes
            for r in 0..<side { for _ in 0..<(side * channels) {
                pixels.append(UInt8((r * classes / side == label ? 150 : 40) + Int(rng.uniform() * 80)))
            } }
            labels.append(Int32(label))
        }
        return try ImageDataset(name: "stripes", images: pixels, labels: labels, height: side, width: side,
                                channels: channels, classes: classes)
    }

    func dataset(count: Int, side: Int = 16, channels: Int = 1, classes: Int = 3) throws -> ImageDataset {
        try Self.dataset(count: count, side: side, channels: channels, classes: classes)
    }

    func config(_ fixture: String) throws -> TrainingConfig {
        var c = TrainingConfig()
        try ONNXTraining.use(Self.folder.appendingPathComponent(fixture).path, in: &c)
        c.epochs = 1
        c.burnIn = 0
        c.budget = .constant
        c.batchSize = 8
        c.steps = 2
        c.evalSteps = 1
        return c
    }

    func logits(_ model: ImageClassifier, _ x: Tensor) throws -> [Float] {
        try model.head(try model.features(x, mode: .eval, tape: nil), mode: .eval, tape: nil).scalars
    }

    func values(_ model: ImageClassifier) -> [String: [Float]] {
        Dictionary(uniqueKeysWithValues: model.state.map { ($0.0, $0.1.tensor.scalars) })
    }

    struct Stop: Error {}

    /// Trains the training-mode export `fixture` for one epoch on 8x8 colour images and checks that
    /// its batch norm `norm` trained and that last.onnx and last.safetensors hold the trained graph.
    func checkTrainedGraph(_ fixture: String, norm: String, names: [String], norms: Int) throws {
        let data = try dataset(count: 24, side: 8, channels: 3)
        let trainer = try TrainingRun.trainer(try config(fixture), data: data)
        XCTAssertEqual(trainer.modelWarnings, [], "the graph keeps its BatchNormalization nodes")
        let stateNames = trainer.model.state.map(\.0)
        for name in names + ["\(norm).running_mean", "\(norm).weight", "\(norm).num_batches_tracked"] {
            XCTAssert(stateNames.contains(name), "\(name) in \(stateNames)")
        }
        let before = values(trainer.model)
        let dir = try temporaryDirectory(created: false)
        try trainer.train(on: data, heldOut: data.prefix(8), runDirectory: dir) { _ in }
        let after = values(trainer.model)
        XCTAssertNotEqual(before["\(norm).running_mean"], after["\(norm).running_mean"], "batch statistics update the running mean")
        XCTAssertNotEqual(before["\(norm).weight"], after["\(norm).weight"], "the batch norm's scale is trained")
        XCTAssertEqual(after["\(norm).num_batches_tracked"], [3])

        // last.onnx: the same graph in inference form with the trained values.
        let url = dir.appendingPathComponent("last.onnx")
        let file = try ONNXModel.load(url)
        let nodes = file.graph.node.filter { $0.opType == "BatchNormalization" }
        XCTAssertEqual(nodes.count, norms)
        for node in nodes {
            XCTAssertEqual(node.output.count, 1)
            XCTAssertFalse(node.attribute.contains { $0.name == "training_mode" })
        }
        let reloaded = try ONNXClassifier.load(url)
        for (name, value) in values(reloaded) where !name.hasSuffix("num_batches_tracked") {
            XCTAssertEqual(value, after[name], name)
        }
        let x = data.batch(Array(0..<5)).images
        XCTAssertEqual(try logits(reloaded, x), try logits(trainer.model, x))

        // last.safetensors loads into the graph read from the original file.
        let fresh = try ONNXClassifier.load(Self.folder.appendingPathComponent(fixture))
        try Checkpoint.load(dir.appendingPathComponent("last.safetensors"), into: fresh)
        XCTAssertEqual(values(fresh), after)
    }

    func testTrainingModeBatchNormTrainsAndLastONNXHoldsTheTrainedGraph() throws {
        try checkTrainedGraph("resnet_blocks_train.onnx", norm: "bn1",
                              names: ["bn_in.running_mean", "layer1.0.conv1.weight", "linear.bias"], norms: 7)
    }

    /// A batch norm of the head's features (BatchNorm1d) trains and is written back like an image's.
    func testFeatureBatchNormTrainsAndIsWrittenBack() throws {
        try checkTrainedGraph("head_train.onnx", norm: "bn", names: ["conv.weight", "fc1.weight", "fc2.bias"], norms: 1)
    }

    func testEvalModeSmallCNNWarnsTrainsPARTAndResumesToTheUninterruptedWeights() throws {
        let data = try dataset(count: 40, classes: 10)
        var c = try config("smallcnn.onnx")
        c.budget = .cam
        c.epochs = 2
        c.burnIn = 1
        c.batchSize = 16
        let a = try TrainingRun.trainer(c, data: data)
        XCTAssertEqual(a.modelWarnings.count, 1)
        XCTAssert(a.modelWarnings[0].contains("no BatchNormalization") && a.modelWarnings[0].contains("TrainingMode.TRAINING"),
                  a.modelWarnings[0])
        let dirA = try temporaryDirectory(created: false)
        var budgets = [String]()
        try a.train(on: data, heldOut: data.prefix(10), runDirectory: dirA) { budgets.append($0.budget) }
        XCTAssertEqual(budgets, ["constant", "gradcam/zscore"])

        let dirB = try temporaryDirectory(created: false)
        let b = try TrainingRun.trainer(c, data: data)
        XCTAssertThrowsError(try b.train(on: data, heldOut: data.prefix(10), runDirectory: dirB) { _ in throw Stop() })
        let resumed = try TrainingRun.trainer(c, data: data)
        let info = try resumed.resume(from: dirB)
        XCTAssertEqual(info.position, "after epoch 1")
        try resumed.train(on: data, heldOut: data.prefix(10), runDirectory: dirB) { _ in }
        XCTAssertEqual(values(resumed.model), values(a.model), "resumed = uninterrupted")
        XCTAssertEqual(try Data(contentsOf: dirB.appendingPathComponent("last.onnx")),
                       try Data(contentsOf: dirA.appendingPathComponent("last.onnx")))
    }

    func testEveryObjectiveAndGenerationTrainsTheGraph() throws {
        let data = try dataset(count: 16)
        for (objective, budget, generation) in [(ObjectiveKind.trades, BudgetKind.cam, GenerationAttack.fgsm),
                                                (.mart, .constant, .pgd)] {
            var c = try config("smallcnn_train.onnx")
            c.objective = objective
            c.budget = budget
            c.generation = generation
            let trainer = try TrainingRun.trainer(c, data: data)
            let before = values(trainer.model)
            try trainer.train(on: data, heldOut: data.prefix(4), runDirectory: try temporaryDirectory(created: false)) { _ in }
            let after = values(trainer.model)
            XCTAssertNotEqual(before["fc3.weight"], after["fc3.weight"], "\(objective)")
            XCTAssert(after.values.allSatisfy { $0.allSatisfy(\.isFinite) }, "\(objective)")
        }
    }

    func testTheCAMLayerMayBeNamedByItsTensor() throws {
        var c = try config("smallcnn_train.onnx")
        c.budget = .cam
        c.epochs = 2
        c.burnIn = 1
        c.camLayer = "/act4/Relu_output_0"
        let trainer = try TrainingRun.trainer(c, data: try dataset(count: 8))
        XCTAssertEqual(trainer.camLayer, "/act4/Relu")
        c.camLayer = "/nothing"
        XCTAssertThrowsError(try TrainingRun.trainer(c, data: try dataset(count: 8))) { error in
            XCTAssert("\(error)".contains("/act4/Relu"), "\(error)")
        }
    }

    func testAChangedModelFileOrAnotherImageSizeIsRefused() throws {
        let dir = try temporaryDirectory()
        let copy = dir.appendingPathComponent("model.onnx")
        try FileManager.default.copyItem(at: Self.folder.appendingPathComponent("smallcnn_train.onnx"), to: copy)
        var c = TrainingConfig()
        try ONNXTraining.use(copy.path, in: &c)
        XCTAssertEqual(c.architecture, "onnx")
        XCTAssertNil(c.problem())
        let data = try dataset(count: 8)
        _ = try TrainingRun.trainer(c, data: data)
        var bytes = try Data(contentsOf: copy)
        bytes[bytes.count - 1] ^= 1
        try bytes.write(to: copy)
        XCTAssertThrowsError(try TrainingRun.trainer(c, data: data)) { error in
            XCTAssert("\(error)".contains("changed since the run started"), "\(error)")
        }
        var other = try config("smallcnn_train.onnx")
        XCTAssertThrowsError(try TrainingRun.trainer(other, data: try dataset(count: 8, side: 8))) { error in
            XCTAssert("\(error)".contains("takes 16x16 images"), "\(error)")
        }
        other.architecture = "resnet18"
        XCTAssertEqual(other.problem(), "--model brings its own architecture; drop --arch resnet18")
        XCTAssertThrowsError(try ONNXTraining.use(dir.appendingPathComponent("none.onnx").path, in: &other))
    }
}

/// The acceptance bar of ONNX training (docs/commands.md#training-an-onnx-model): the SmallCNN
/// exported by PyTorch in training mode, started from the weights of the engine's own SmallCNN,
/// trains as that SmallCNN does.
final class ONNXTrainingAgreementTests: XCTestCase {
    func testTwentyStepsOfPARTOnTheExportedSmallCNNEndWhereTheNativeOnesDo() throws {
        let data = try ONNXTrainingTests.dataset(count: 160)
        var native = TrainingConfig()
        native.architecture = "small-cnn"
        native.budget = .cam   // PART: AT with a CAM budget from the first batch
        native.burnIn = 0
        native.epochs = 1
        native.batchSize = 8   // 20 steps
        native.steps = 3
        native.evalSteps = 1
        native.seed = 3
        let a = try TrainingRun.trainer(native, data: data)
        // The native model's starting weights, under PyTorch's names, which the export keeps.
        let dir = try temporaryDirectory()
        let start = dir.appendingPathComponent("start.safetensors")
        try Data(try Checkpoint.file(of: a.model).encode()).write(to: start)
        var onnx = native
        try ONNXTraining.use(ONNXTrainingTests.folder.appendingPathComponent("smallcnn_train.onnx").path, in: &onnx)
        onnx.initialWeights = start.path
        let b = try TrainingRun.trainer(onnx, data: data)
        XCTAssertEqual(Set(a.model.state.map(\.0)), Set(b.model.state.map(\.0)))
        XCTAssertEqual(b.camLayer, "/act4/Relu", "the node of SmallCNN's act4")
        var steps = 0
        try a.train(on: data, heldOut: data.prefix(8), runDirectory: dir.appendingPathComponent("native"),
                    progress: { _, _, _ in steps += 1 }) { _ in }
        try b.train(on: data, heldOut: data.prefix(8), runDirectory: dir.appendingPathComponent("onnx")) { _ in }
        XCTAssertEqual(steps, 20)
        var trained = [String: [Float]]()
        for (name, entry) in b.model.state { trained[name] = entry.tensor.scalars }
        var largest: Float = 0
        for (name, entry) in a.model.state {
            let x = entry.tensor.scalars, y = trained[name] ?? []
            XCTAssertEqual(x.count, y.count, name)
            for i in 0..<min(x.count, y.count) { largest = max(largest, abs(x[i] - y[i])) }
        }
        XCTAssertLessThanOrEqual(largest, 1e-5)
        // The runs moved: the agreement is not that of two untouched models.
        let first = try SafetensorsFile.read(from: start).tensors["fc3.weight"]?.scalars ?? []
        let last = trained["fc3.weight"] ?? []
        var moved: Float = 0
        for i in 0..<min(first.count, last.count) { moved = max(moved, abs(first[i] - last[i])) }
        XCTAssertGreaterThan(moved, 1e-3)
        print("largest difference of the final weights: \(largest); fc3.weight moved up to \(moved)")
    }
}
