import Foundation
import PARTEngine
import PARTNN
import XCTest

/// Checkpoints of PreAct-ResNet-18 and WideResNet: the official code's DataParallel /
/// `sub_block1` files, and architectures recognised from plain state_dicts.
final class ModelCheckpointTests: XCTestCase {
    /// A WRN state_dict as the official PART code saves it (DataParallel `module.` names and the
    /// unused `sub_block1`, written by PyTorch) loads without flags and gives PyTorch's logits.
    func testLoadsTheOfficialCodesWideResNetCheckpoint() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/wrn_dataparallel.safetensors")
        let file = try SafetensorsFile.read(from: url)
        XCTAssert(file.tensors.keys.allSatisfy { $0.hasPrefix("module.") })
        XCTAssert(file.tensors.keys.contains { $0.hasPrefix("module.sub_block1.") })
        var rng = RNG(seed: 2)
        let (m, _) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &rng)
        XCTAssertEqual(m.architecture, "wrn-10-1")
        XCTAssertEqual(m.numClasses, 10)
        let ref = try fixture("wrn_dataparallel_logits.safetensors")
        let logits = try m.forward(Layout.nchwToNHWC(ref.tensors["input"]!), mode: .eval)
        assertClose(logits.scalars, ref.tensors["logits"]!.scalars, tolerance: GoldenModelTests.logitTolerance, "logits")
        // The running statistics were loaded (they are not PyTorch's initial ones).
        let mean = m.buffers.first { $0.0 == "block2.layer.0.bn1.running_mean" }!.1.value
        XCTAssertGreaterThan(mean.maxAbs(), 0)
    }

    /// The names of PyTorch's models (the golden files' `grad.`, `gradsample.` and `running.`
    /// keys), with or without `module.`, tell the architectures apart.
    func testArchitecturesAreRecognisedFromPyTorchNames() throws {
        for arch in ["small-cnn", "resnet18", "preact-resnet18"] {
            let keys = try fixture("golden_\(arch).safetensors").tensors.keys
            var names = [String]()
            for key in keys {
                for prefix in ["grad.", "gradsample.", "running."] where key.hasPrefix(prefix) {
                    names.append(String(key.dropFirst(prefix.count)))
                }
            }
            let shapes = Dictionary(uniqueKeysWithValues: names.map { ($0, [Int]()) })
            XCTAssertEqual(Checkpoint.inferArchitecture(shapes), arch)
            XCTAssertEqual(Checkpoint.inferArchitecture(Dictionary(uniqueKeysWithValues: names.map { ("module.\($0)", [Int]()) })),
                           arch)
        }
    }

    /// A plain state_dict (no metadata, `module.` names) loads without flags, its classes and
    /// input channels read from its first and last layers.
    func testPlainStateDictsLoadWithTheirDimensions() throws {
        for arch in ["small-cnn", "wrn-16-2"] {
            var rng = RNG(seed: 4)
            let channels = arch == "small-cnn" ? 3 : 1
            let a = try ModelZoo.make(arch, numClasses: 7, inChannels: channels, imageSize: arch == "small-cnn" ? 28 : 8,
                                      rng: &rng)
            var file = Checkpoint.file(of: a)
            file.metadata = [:]
            file.tensors = Dictionary(uniqueKeysWithValues: file.tensors.map { ("module.\($0.key)", $0.value) })
            file.dtypes = Dictionary(uniqueKeysWithValues: file.dtypes.map { ("module.\($0.key)", $0.value) })
            let url = FileManager.default.temporaryDirectory.appendingPathComponent("plain-\(UUID()).safetensors")
            defer { try? FileManager.default.removeItem(at: url) }
            try file.write(to: url)
            var fresh = RNG(seed: 5)
            let (b, meta) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &fresh)
            XCTAssertNil(meta[Checkpoint.Key.architecture])
            XCTAssertEqual(b.architecture, arch)
            XCTAssertEqual(b.numClasses, 7, arch)
            XCTAssertEqual(b.inputChannels, channels, arch)
            XCTAssertEqual(b.state.map { $0.1.tensor.scalars }, a.state.map { $0.1.tensor.scalars }, arch)
        }
    }

    /// WRN-34-10's names and shapes (without building it): depth from the blocks of `block1`,
    /// width from their convolutions; `sub_block1` does not count.
    func testWideResNetDepthAndWidthFromNames() {
        func wrnShapes(blocks: Int, width: Int, prefix: String = "") -> [String: [Int]] {
            var shapes = [prefix + "conv1.weight": [16, 3, 3, 3], prefix + "bn1.weight": [64 * width],
                          prefix + "fc.weight": [10, 64 * width]]
            for g in 1...3 {
                for i in 0..<blocks {
                    let out = 16 * width << (g - 1)
                    shapes["\(prefix)block\(g).layer.\(i).conv1.weight"] = [out, i == 0 ? out / 2 : out, 3, 3]
                    shapes["\(prefix)block\(g).layer.\(i).bn2.running_var"] = [out]
                }
            }
            for i in 0..<blocks + 2 { shapes["\(prefix)sub_block1.layer.\(i).conv1.weight"] = [16 * width, 16, 3, 3] }
            return shapes
        }
        XCTAssertEqual(Checkpoint.inferArchitecture(wrnShapes(blocks: 5, width: 10, prefix: "module.")), "wrn-34-10")
        XCTAssertEqual(Checkpoint.inferArchitecture(wrnShapes(blocks: 4, width: 10)), "wrn-28-10")
        XCTAssertEqual(Checkpoint.inferArchitecture(wrnShapes(blocks: 2, width: 2)), "wrn-16-2")
        XCTAssertNil(Checkpoint.inferArchitecture(["conv1.weight": [16, 3, 3, 3], "fc.weight": [10, 64]]))
    }

    func testWideResNetShapesAreChecked() throws {
        var rng = RNG(seed: 0)
        for (name, message) in [("wrn-35-10", "depth must be 6n + 4"), ("wrn-34-0", "widen factor must be between 1 and 32"),
                                ("wrn-4-1", "depth must be 6n + 4"), ("wrn-9994-10", "depth must be 6n + 4 between 10 and 250"),
                                ("wrn-34-1000", "widen factor must be between 1 and 32"),
                                ("wrn-34", "unknown architecture 'wrn-34'")] {
            XCTAssertThrowsError(try ModelZoo.make(name, numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)) {
                XCTAssert("\($0)".contains(message), "\(name): \($0)")
            }
        }
        XCTAssert(ModelZoo.recognises("wrn-28-10"))
        XCTAssertFalse(ModelZoo.recognises("wrn-28"))
        XCTAssertFalse(ModelZoo.recognises("wrn-35-10"))
        XCTAssertFalse(ModelZoo.recognises("wrn-34-64"))
        XCTAssertEqual(ModelZoo.architectures, ModelZooTests.expectedNames)
        for (name, message) in [("dm-wrn-35-10", "depth must be 6n + 4"), ("dm-wrn-28-33", "widen factor must be between 1 and 32")] {
            XCTAssertThrowsError(try ModelZoo.make(name, numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)) {
                XCTAssert("\($0)".contains(message), "\(name): \($0)")
            }
        }
        XCTAssertThrowsError(try ModelZoo.make("dm-wrn-16-1", numClasses: 10, inChannels: 3, imageSize: 30, rng: &rng)) {
            XCTAssert("\($0)".contains("dm-wrn-16-1 needs an image side that is a multiple of 4"), "\($0)")
        }
    }
}
