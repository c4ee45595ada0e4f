import Foundation
import PARTEngine
import PARTNN
import XCTest

/// For every architecture of the zoo, `.pt` files evaluate like their safetensors twin: a seeded
/// model is saved as safetensors and written as `.pt` in four forms (zip and legacy layouts,
/// float32 and float16, each nested under "state_dict" with every name prefixed "module."), and
/// each file is read as `part eval` reads a checkpoint (`CheckpointFile.read`, the architecture
/// inferred from the tensor names and shapes, since a `.pt` carries no metadata, then
/// `Checkpoint.apply` into the model) and run on one fixed batch. Each architecture is built
/// once and every file is loaded into that one model, so the test stays quick.
///
/// float32 files give logits identical to the twin's. A float16 file gives logits identical to
/// those of the twin with every weight rounded to float16 (the rounding torch's `.half()` does,
/// checked in TorchWriterTests), and predictions that disagree with the float32 twin's on at
/// most one image in 200 (on this batch of 8: none).
final class TorchZooTests: XCTestCase {
    /// The named architectures at their real size; each family at a small member. The named big
    /// members (wrn-34-10, wrn-28-10, wrn-34-20, dm-wrn-28-10, dm-wrn-70-16) are built by the same
    /// code with the same tensor names, only more blocks and wider, and are too large to build
    /// here four times over.
    static let architectures = ["small-cnn", "resnet18", "preact-resnet18", "wrn-16-2", "dm-wrn-16-2"]

    static let forms: [(String, TorchWriteOptions)] = [
        ("zip-f32.pt", TorchWriteOptions(layout: .zip, precision: .float32, nestUnder: "state_dict", prefix: "module.")),
        ("legacy-f32.pt", TorchWriteOptions(layout: .legacy, precision: .float32, nestUnder: "state_dict", prefix: "module.")),
        ("zip-f16.pt", TorchWriteOptions(layout: .zip, precision: .float16, nestUnder: "state_dict", prefix: "module.")),
        ("legacy-f16.pt", TorchWriteOptions(layout: .legacy, precision: .float16, nestUnder: "state_dict", prefix: "module.")),
    ]

    func testEveryArchitecturesPtFilesEvaluateLikeItsSafetensorsTwin() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("torch-zoo-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        for (index, name) in Self.architectures.enumerated() {
            let entry = try ModelZoo.architecture(name)
            let side = entry.defaultInput.side, channels = entry.defaultInput.channels
            var rng = RNG(seed: 100 + UInt64(index))
            let model = try ModelZoo.make(name, numClasses: 10, inChannels: channels, imageSize: side, rng: &rng)
            let twinURL = folder.appendingPathComponent("\(name).safetensors")
            try Checkpoint.save(model, to: twinURL)
            let batch = Self.images(count: 8, side: side, channels: channels, seed: UInt64(index))

            let twin = try logits(twinURL, into: model, on: batch)
            let twinFile = try CheckpointFile.read(from: twinURL)
            var rounded = twinFile
            for (key, tensor) in twinFile.tensors where twinFile.dtypes[key] != .i64 {
                rounded.tensors[key] = Tensor(shape: tensor.shape, values: tensor.scalars.map(TorchFile.roundedToHalf))
            }
            let roundedURL = folder.appendingPathComponent("\(name)-rounded.safetensors")
            try rounded.write(to: roundedURL)
            let roundedTwin = try logits(roundedURL, into: model, on: batch)
            XCTAssertNotEqual(roundedTwin.scalars, twin.scalars, "\(name): float16 weights change the logits a little")

            for (form, options) in Self.forms {
                let url = folder.appendingPathComponent("\(name)-\(form)")
                try Data(try TorchFile.encode(twinFile, options: options)).write(to: url)
                let got = try logits(url, into: model, on: batch)
                if options.precision == .float32 {
                    XCTAssertEqual(got.scalars, twin.scalars, "\(name) \(form)")
                } else {
                    XCTAssertEqual(got.scalars, roundedTwin.scalars, "\(name) \(form)")
                    let disagreements = zip(got.argmaxRows(), twin.argmaxRows()).filter { $0 != $1 }.count
                    XCTAssertLessThanOrEqual(disagreements * 200, batch.shape[0], "\(name) \(form): predictions differ")
                }
                try FileManager.default.removeItem(at: url)
            }
        }
    }

    /// Logits on `batch` of the checkpoint at `url` loaded into `model`, after checking that its
    /// tensors name `model`'s architecture and class count, as `part eval` infers them.
    func logits(_ url: URL, into model: ImageClassifier, on batch: Tensor) throws -> Tensor {
        let file = try CheckpointFile.read(from: url)
        let shapes = file.tensors.mapValues(\.shape)
        XCTAssertEqual(file.metadata[Checkpoint.Key.architecture] ?? Checkpoint.inferArchitecture(shapes), model.architecture,
                       url.lastPathComponent)
        let head = try ModelZoo.architecture(model.architecture).headTensor
        XCTAssertEqual(file.tensors[head]?.shape.first, model.numClasses, url.lastPathComponent)
        try Checkpoint.apply(file, to: model, source: url.path)
        return try model.forward(batch, mode: .eval)
    }

    /// `count` images [N, side, side, channels] of values in [0, 1) drawn from `seed`.
    static func images(count: Int, side: Int, channels: Int, seed: UInt64) -> Tensor {
        var rng = RNG(seed: seed)
        let values = (0..<(count * side * side * channels)).map { _ in Float(rng.next() >> 40) / Float(1 << 24) }
        return Tensor(shape: [count, side, side, channels], values: values)
    }
}
