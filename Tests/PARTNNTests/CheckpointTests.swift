import Foundation
import PARTEngine
import PARTNN
import XCTest

/// Checkpoints: PyTorch names and layouts, round trips, and errors that name the tensor.
final class CheckpointTests: XCTestCase {
    var rng = RNG(seed: 9)

    func resnet() throws -> ImageClassifier {
        try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 8, rng: &rng)
    }

    func testStateNamesFollowPyTorch() throws {
        let small = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        XCTAssertEqual(small.state.map(\.0), ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
                                              "conv3.bias", "conv4.weight", "conv4.bias", "fc1.weight", "fc1.bias",
                                              "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
        XCTAssertEqual(small.state.first { $0.0 == "fc1.weight" }!.1.tensor.shape, [200, 1024])
        let names = try resnet().state.map(\.0)
        XCTAssertEqual(names.count, 122)
        for name in ["bn1.num_batches_tracked", "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.running_var",
                     "layer4.1.bn2.bias", "linear.weight"] {
            XCTAssert(names.contains(name), name)
        }
    }

    func testRoundTripThroughAFile() throws {
        let a = try resnet(), b = try resnet()
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Checkpoint.save(a, to: url, metadata: ["epoch": "3"])
        let meta = try Checkpoint.load(url, into: b)
        XCTAssertEqual(meta["epoch"], "3")
        XCTAssertEqual(meta["architecture"], "resnet18")
        XCTAssertEqual(a.state.map { $0.1.tensor.scalars }, b.state.map { $0.1.tensor.scalars })
        let file = try SafetensorsFile.read(from: url)
        XCTAssertEqual(file.dtypes["bn1.num_batches_tracked"], .i64)
        XCTAssertEqual(file.dtypes["conv1.weight"], .f32)
        var fresh = RNG(seed: 1)
        let (rebuilt, _) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh)
        XCTAssertEqual(rebuilt.inputHeight, 8)
        XCTAssertEqual(rebuilt.state.map { $0.1.tensor.scalars }, a.state.map { $0.1.tensor.scalars })
    }

    func testDataParallelPrefixAndUnusedSubBlockAreAccepted() throws {
        let a = try resnet(), b = try resnet()
        var file = Checkpoint.file(of: a)
        file.tensors = Dictionary(uniqueKeysWithValues: file.tensors.map { ("module.\($0.key)", $0.value) })
        file.tensors["module.sub_block1.layer.0.bn1.weight"] = Tensor(shape: [3])
        try Checkpoint.apply(file, to: b, source: "dp.safetensors")
        XCTAssertEqual(a.state.map { $0.1.tensor.scalars }, b.state.map { $0.1.tensor.scalars })
    }

    func testErrorsNameTheTensorAndLeaveTheModelUnchanged() throws {
        let a = try resnet(), b = try resnet()
        let before = b.state.map { $0.1.tensor.scalars }
        func expectError(_ file: SafetensorsFile, mentioning text: String, line: UInt = #line) {
            XCTAssertThrowsError(try Checkpoint.apply(file, to: b, source: "x.safetensors"), line: line) {
                XCTAssert("\($0)".contains(text) && "\($0)".contains("x.safetensors"), "\($0)", line: line)
            }
            XCTAssertEqual(b.state.map { $0.1.tensor.scalars }, before, "a failed load must not change the model", line: line)
        }
        var unknown = Checkpoint.file(of: a)
        unknown.tensors["layer9.weight"] = Tensor(shape: [1])
        expectError(unknown, mentioning: "'layer9.weight' is not part of resnet18")
        var missing = Checkpoint.file(of: a)
        missing.tensors["layer3.1.bn2.running_mean"] = nil
        expectError(missing, mentioning: "'layer3.1.bn2.running_mean' of resnet18 is missing")
        var misshaped = Checkpoint.file(of: a)
        misshaped.tensors["linear.weight"] = Tensor(shape: [10, 256])
        expectError(misshaped, mentioning: "'linear.weight' has shape [10, 256], resnet18 needs [10, 512]")
    }

    func testUnknownArchitectureIsAClearError() throws {
        XCTAssertThrowsError(try ModelZoo.make("vgg", numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)) {
            XCTAssert("\($0)".contains("unknown architecture 'vgg'"), "\($0)")
        }
    }
}
