import PARTTestSupport
import Foundation
import XCTest
import PARTEngine
import PARTEvaluation
@testable import PARTData

final class RegistryTests: XCTestCase {
    func testRequestsAreChecked() {
        var r = DatasetRequest(name: .cifar10)
        XCTAssertEqual(r.problem(), "--dataset cifar10 needs --data: the extracted cifar-10-batches-bin folder, "
                       + "cifar-10-binary.tar.gz, or a folder with train/ and test/ holding the ten class folders of images")
        r.location = URL(fileURLWithPath: "/x")
        XCTAssertNil(r.problem())
        r.svhnExtra = true
        XCTAssertEqual(r.problem(), "--svhn-extra applies to --dataset svhn only")
        r = DatasetRequest(name: .npy, location: URL(fileURLWithPath: "/x"))
        r.classes = 0
        XCTAssertEqual(r.problem(), "--classes must be at least 1")
        r = DatasetRequest(name: .imagefolder, location: URL(fileURLWithPath: "/x"))
        r.channels = 2
        XCTAssertEqual(r.problem(), "--channels must be 1 or 3")
        XCTAssertNil(DatasetRequest().problem(), "fashion-mnist has a default location")
        XCTAssertEqual(DatasetName.allCases.map(\.rawValue),
                       ["fashion-mnist", "mnist", "cifar10", "cifar100", "svhn", "tinyimagenet", "imagefolder", "npy"])
        assertFails(try DatasetRegistry.load(DatasetRequest(name: .svhn), split: .train), "--dataset svhn needs --data")
    }

    func testAugmentationFollowsTheRecipeUnlessOverridden() throws {
        XCTAssertEqual(DatasetName.cifar10.defaultAugmentation, .cropFlip)
        XCTAssertEqual(DatasetName.tinyimagenet.defaultAugmentation, .cropFlip)
        XCTAssertEqual(DatasetName.svhn.defaultAugmentation, .none)
        XCTAssertEqual(DatasetName.fashionMNIST.defaultAugmentation, .none)
        var r = DatasetRequest(name: .npy, location: Fixtures.url("data_npy"))
        XCTAssertEqual(try DatasetRegistry.load(r, split: .train).augmentation, .none)
        r.augmentation = .cropFlip
        XCTAssertEqual(try DatasetRegistry.load(r, split: .train).augmentation, .cropFlip)
    }

    func testMNISTFormatThroughTheRegistry() throws {
        let dir = try makeTemporaryDirectory(self)
        try Data(makeIDX(dims: [3, 4, 4])).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(makeIDX(dims: [3], data: [1, 2, 3])).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let d = try DatasetRegistry.load(DatasetRequest(name: .mnist, location: dir), split: .test)
        XCTAssertEqual(d.name, dir.lastPathComponent, "users' IDX files are named after their folder")
        XCTAssertEqual(DatasetRequest().displayName, "fashion-mnist")
        XCTAssertEqual(d.labels, [1, 2, 3])
        XCTAssertEqual(d.classNames, (0...9).map(String.init))
        let f = try DatasetRegistry.load(DatasetRequest(name: .fashionMNIST, location: dir), split: .test)
        XCTAssertEqual(f.classNames.last, "Ankle boot")
    }

    func testSplitsMustAgree() throws {
        let a = try ImageDataset(name: "a", images: [UInt8](repeating: 0, count: 8), labels: [0, 1], height: 2, width: 2,
                                 channels: 1, classes: 2)
        let b = try ImageDataset(name: "a", images: [UInt8](repeating: 0, count: 18), labels: [0, 1], height: 3, width: 3,
                                 channels: 1, classes: 2)
        let c = try ImageDataset(name: "a", images: [UInt8](repeating: 0, count: 8), labels: [0, 1], height: 2, width: 2,
                                 channels: 1, classes: 3)
        XCTAssertNoThrow(try DatasetRegistry.checkSplitsAgree(train: a, test: a))
        assertFails(try DatasetRegistry.checkSplitsAgree(train: a, test: b), "training images are 2x2x1 but test images 3x3x1")
        assertFails(try DatasetRegistry.checkSplitsAgree(train: a, test: c), "2 classes but the test split 3")
    }

    func testStatisticsOfFloatAndByteImages() throws {
        let d = try ImageDataset(name: "s", images: [0, 255, 51, 102], labels: [1, 1], height: 1, width: 1, channels: 2, classes: 3)
        let s = SplitStatistics(d, split: .test)
        XCTAssertEqual(s.histogram, [0, 2, 0])
        XCTAssertEqual(s.mean[0], 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.mean[1], 0.7, accuracy: 1e-12)
        XCTAssertEqual(s.std[0], 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.std[1], 0.3, accuracy: 1e-12)
        let floats: [Float] = [0, 1, 0.25, 0.75]
        let f = try ImageDataset(name: "f", storage: try floats.withUnsafeBytes { try ByteBuffer.copying($0) }, pixelType: .float32,
                                 labels: [0, 0], height: 1, width: 1, channels: 2, classes: 1)
        let t = SplitStatistics(f, split: .test)
        XCTAssertEqual(t.mean, [0.125, 0.875])
        XCTAssertEqual(t.std, [0.125, 0.125])
        XCTAssertEqual(t.pixelType, "float32")
    }

    func testCheckpointMustFitTheDataset() throws {
        let dir = try makeTemporaryDirectory(self)
        let data = try ImageDataset(name: "cifar10", images: [UInt8](repeating: 0, count: 2 * 32 * 32 * 3), labels: [0, 1],
                                    height: 32, width: 32, channels: 3, classes: 10)
        func checkpoint(_ meta: [String: String], head: [Int]? = nil, conv: [Int]? = nil) throws -> URL {
            var file = SafetensorsFile()
            file.metadata = meta
            if let head { file.tensors["module.linear.weight"] = Tensor(shape: head) }
            if let conv { file.tensors["conv1.weight"] = Tensor(shape: conv) }
            file.tensors["other"] = Tensor(shape: [1])
            let url = dir.appendingPathComponent("\(UUID().uuidString).safetensors")
            try file.write(to: url)
            return url
        }
        XCTAssertNoThrow(try CheckpointFit.check(try checkpoint(["classes": "10", "input_shape": "32,32,3"]), fits: data))
        let fashion = try checkpoint(["classes": "10", "input_shape": "28,28,1"])
        assertFails(try CheckpointFit.check(fashion, fits: data), fashion.path, "takes 28x28x1 images but cifar10 has 32x32x3",
                    "the dataset it was trained on (--dataset, --data)")
        // A checkpoint of part train names its dataset, and the remedy names it too.
        let trained = try checkpoint(["classes": "10", "input_shape": "28,28,1", "dataset": "fashion-mnist"])
        assertFails(try CheckpointFit.check(trained, fits: data), "the data it was trained on (fashion-mnist: --dataset fashion-mnist")
        let hundred = try checkpoint(["classes": "100", "input_shape": "32,32,3"])
        assertFails(try CheckpointFit.check(hundred, fits: data), "the model has 100 classes but cifar10 has 10")
        // A plain PyTorch state_dict: the head and the first convolution tell.
        XCTAssertNoThrow(try CheckpointFit.check(try checkpoint([:], head: [10, 512], conv: [64, 3, 3, 3]), fits: data))
        assertFails(try CheckpointFit.check(try checkpoint([:], head: [200, 512]), fits: data), "200 classes")
        assertFails(try CheckpointFit.check(try checkpoint([:], head: [10, 512], conv: [64, 1, 3, 3]), fits: data),
                    "takes 1-channel images but cifar10 has 3-channel ones")
        let junk = dir.appendingPathComponent("junk.safetensors")
        try write([1, 2, 3], to: junk)
        assertFails(try CheckpointFit.check(junk, fits: data), junk.path, "not a safetensors file")
    }
}
