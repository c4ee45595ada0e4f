import Foundation
import PARTEngine
import PARTNN
import XCTest

/// What checkpoint loading refuses: non-finite values, ambiguous names, metadata that would
/// build a wrong or enormous model, and files that are not files; and the hint when a
/// checkpoint of another dataset is loaded.
final class CheckpointLoadingTests: XCTestCase {
    var rng = RNG(seed: 3)

    func small(classes: Int = 10, channels: Int = 1, side: Int = 28) throws -> ImageClassifier {
        try ModelZoo.make("small-cnn", numClasses: classes, inChannels: channels, imageSize: side, rng: &rng)
    }

    func temporaryFile(_ name: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-load-\(UUID().uuidString)-\(name)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func assertRefused<T>(_ body: @autoclosure () throws -> T, _ fragments: [String],
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssert(error is CheckpointError || error is SafetensorsError, "\(type(of: error)): \(error)", file: file, line: line)
            XCTAssertFalse("\(error)".contains("\n"), "one line: \(error)", file: file, line: line)
            for f in fragments {
                XCTAssert("\(error)".contains(f), "\"\(error)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    func testNonFiniteValuesAreRefusedNamingTheTensorAndTheModelIsUnchanged() throws {
        let source = try small(), target = try small()
        let before = target.state.map { $0.1.tensor.scalars }
        for (name, value) in [("fc2.weight", Float.nan), ("conv1.bias", .infinity), ("fc3.bias", -.infinity)] {
            var file = Checkpoint.file(of: source)
            var t = try XCTUnwrap(file.tensors[name])
            t[flat: 1] = value
            file.tensors[name] = t
            assertRefused(try Checkpoint.apply(file, to: target, source: "run/last.safetensors"),
                          ["run/last.safetensors", "tensor '\(name)' holds \(value) at element 1", "diverged"])
        }
        XCTAssertEqual(target.state.map { $0.1.tensor.scalars }, before)
    }

    func testANameGivenWithAndWithoutTheDataParallelPrefixIsRefused() throws {
        let model = try small()
        var file = Checkpoint.file(of: model)
        file.tensors["module.fc1.bias"] = file.tensors["fc1.bias"]
        assertRefused(try Checkpoint.apply(file, to: model, source: "dp.safetensors"),
                      ["dp.safetensors", "'fc1.bias' is given twice"])
    }

    func testMetadataThatWouldBuildAWrongModelIsRefused() throws {
        let url = temporaryFile("m.safetensors")
        let model = try small()
        for (key, value, fragment) in [("classes", "0", "from 1 to 100000"), ("classes", "1e9", "from 1 to 100000"),
                                       ("classes", "99999999999999999999", "from 1 to 100000"),
                                       ("input_shape", "28,28", "\"H,W,C\""), ("input_shape", "100000,100000,1", "1 to 1024"),
                                       ("input_shape", "28,28,0", "1 to 64 channels"), ("input_shape", "a,b,c", "\"H,W,C\"")] {
            try Checkpoint.save(model, to: url, metadata: [key: value])
            var fresh = RNG(seed: 1)
            assertRefused(try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh),
                          [url.path, "metadata \"\(key)\" is \"\(value)\"", fragment])
        }
        // The metadata `part train` writes loads.
        try Checkpoint.save(model, to: url)
        var fresh = RNG(seed: 1)
        let (loaded, _) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh)
        XCTAssertEqual(loaded.state.map { $0.1.tensor.scalars }, model.state.map { $0.1.tensor.scalars })
    }

    func testACheckpointOfAnotherDatasetSaysSo() throws {
        let url = temporaryFile("cifar.safetensors")
        try Checkpoint.save(try small(channels: 3, side: 32), to: url)
        var fresh = RNG(seed: 1)
        assertRefused(try Checkpoint.loadModel(url, architecture: nil, numClasses: 10, inputShape: (28, 28, 1), rng: &fresh),
                      [url.path, "'conv1.weight' has shape [32, 3, 3, 3]", "made for 32x32x3 images",
                       "the data has 28x28x1 images", "another dataset"])
        // Another class count, same images.
        try Checkpoint.save(try small(classes: 4), to: url)
        assertRefused(try Checkpoint.loadModel(url, architecture: nil, numClasses: 10, inputShape: (28, 28, 1), rng: &fresh),
                      ["'fc3.weight'", "made for 4 classes", "the data has 10 classes"])
    }

    func testAModelThatCannotBeBuiltNamesTheFile() throws {
        let url = temporaryFile("tiny.safetensors")
        try Checkpoint.save(try small(), to: url, metadata: ["input_shape": "8,8,1"])
        var fresh = RNG(seed: 1)
        assertRefused(try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh),
                      [url.path, "small-cnn needs images of at least 16x16"])
        try Checkpoint.save(try small(), to: url, metadata: ["architecture": "vgg"])
        assertRefused(try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh),
                      [url.path, "unknown architecture 'vgg'"])
    }

    /// A few bytes naming a huge model, or tensors of no values whose shapes claim a billion
    /// classes or channels, are refused before the model is built (building it would exhaust
    /// memory).
    func testASmallFileCannotSizeAHugeModel() throws {
        var file = SafetensorsFile()
        file.tensors["conv1.weight"] = Tensor(shape: [1, 1, 3, 3])
        var fresh = RNG(seed: 1)
        for (arch, fragment) in [("wrn-250-32", "a wrn-250-32 for 10 classes and 32x32 images has at least"),
                                 ("small-cnn", "a small-cnn for 10 classes and 1024x1024 images has at least")] {
            file.metadata = ["architecture": arch, "input_shape": arch == "small-cnn" ? "1024,1024,1" : "32,32,3"]
            assertRefused(try Checkpoint.loadModel(file, source: "huge.safetensors", architecture: nil, numClasses: nil,
                                                   inputShape: nil, rng: &fresh),
                          ["huge.safetensors holds 9 values", fragment, "not a checkpoint of that model"])
        }
        // Names of a ResNet-18 with empty tensors claiming 10^9 classes, then 10^9 input channels.
        let names = ["layer4.1.bn2.weight", "bn1.weight"]
        for (head, conv, fragment) in [([1_000_000_000, 0], [64, 3, 3, 3], "last linear layer has 1000000000 rows"),
                                       ([10, 512], [0, 1_000_000_000, 3, 3], "takes 1000000000 input channels")] {
            var plain = SafetensorsFile()
            for name in names { plain.tensors[name] = Tensor(shape: [0]) }
            plain.tensors["linear.weight"] = Tensor(shape: head)
            plain.tensors["conv1.weight"] = Tensor(shape: conv)
            assertRefused(try Checkpoint.loadModel(plain, source: "plain.safetensors", architecture: nil, numClasses: nil,
                                                   inputShape: nil, rng: &fresh),
                          ["plain.safetensors", fragment])
        }
    }

    func testADirectoryOrADeviceIsNotACheckpoint() throws {
        var fresh = RNG(seed: 1)
        let dir = FileManager.default.temporaryDirectory
        assertRefused(try Checkpoint.loadModel(dir, architecture: "small-cnn", numClasses: nil, inputShape: nil, rng: &fresh),
                      ["is a directory, not a regular file"])
        assertRefused(try Checkpoint.load(URL(fileURLWithPath: "/dev/zero"), into: try small()),
                      ["/dev/zero: is a character device"])
    }
}
