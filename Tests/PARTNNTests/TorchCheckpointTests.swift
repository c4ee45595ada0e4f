import Foundation
import PARTEngine
import PARTNN
import XCTest

/// Every `torch.save` fixture (scripts/make_torch_fixtures.py) builds the same small-cnn as its
/// safetensors twin and gives its logits: identical in float32, within the rounding of float16
/// and bfloat16; the twin agrees with PyTorch's own logits.
final class TorchCheckpointTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/torch")

    func logits(_ name: String, key: String? = nil) throws -> Tensor {
        let url = Self.folder.appendingPathComponent(name)
        var rng = RNG(seed: 0)
        let (model, _) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: (16, 16, 1),
                                                  key: key, rng: &rng)
        XCTAssertEqual(model.architecture, "small-cnn", name)
        XCTAssertEqual(model.numClasses, 2, name)
        let reference = try SafetensorsFile.read(from: Self.folder.appendingPathComponent("smallcnn_logits.safetensors"))
        return try model.forward(Layout.nchwToNHWC(reference.tensors["input"]!), mode: .eval)
    }

    func testTheTwinGivesPyTorchsLogits() throws {
        let reference = try SafetensorsFile.read(from: Self.folder.appendingPathComponent("smallcnn_logits.safetensors"))
        let twin = try logits("smallcnn.safetensors").scalars
        XCTAssertLessThan(relativeError(twin, reference.tensors["logits"]!.scalars), 1e-4)
    }

    func testFloat32FilesGiveIdenticalLogits() throws {
        let twin = try logits("smallcnn.safetensors").scalars
        for name in ["smallcnn_zip.pt", "smallcnn_legacy.pt"] {
            XCTAssertEqual(try logits(name).scalars, twin, name)
        }
    }

    func testHalfPrecisionFilesGiveLogitsWithinTheirRounding() throws {
        let twin = try logits("smallcnn.safetensors").scalars
        // float16 keeps 11 significant bits, bfloat16 8: the logits move by about that share.
        for (name, tolerance) in [("smallcnn_fp16.pt", 2e-3), ("smallcnn_bf16_legacy.pt", 2e-2)] {
            let error = relativeError(try logits(name).scalars, twin)
            XCTAssertLessThan(error, tolerance, name)
            XCTAssertGreaterThan(error, 0, "\(name): rounded weights change the logits a little")
        }
    }

    /// `Checkpoint.load`, what `part train --init` calls, reads a .pt into a built model.
    func testLoadIntoAModelReadsTorchFiles() throws {
        var rng = RNG(seed: 1)
        let model = try ModelZoo.make("small-cnn", numClasses: 2, inChannels: 1, imageSize: 16, rng: &rng)
        try Checkpoint.load(Self.folder.appendingPathComponent("smallcnn_legacy.pt"), into: model)
        let twin = try SafetensorsFile.read(from: Self.folder.appendingPathComponent("smallcnn.safetensors"))
        for (name, entry) in model.state { XCTAssertEqual(entry.tensor.scalars, twin.tensors[name]!.scalars, name) }
        XCTAssertThrowsError(try Checkpoint.load(Self.folder.appendingPathComponent("two_dicts.pt"), into: model)) {
            XCTAssert("\($0)".contains("--key"), "\($0)")
        }
    }
}
