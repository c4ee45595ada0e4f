import Foundation
import XCTest
@testable import PARTEngine

/// `TorchFile.encode` in every form (zip and legacy layouts, float32 and float16, nested under
/// "state_dict" with the "module." prefix): the bytes torch.load was checked to read
/// (scripts/make_torch_fixtures.py --check-written), read back to the same tensors, laid out as
/// the files torch itself wrote (scripts/make_torch_fixtures.py).
final class TorchWriterTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/torch")

    func url(_ name: String) -> URL { Self.folder.appendingPathComponent(name) }

    static let forms: [(name: String, options: TorchWriteOptions)] = [
        ("written_zip_f32.pt", TorchWriteOptions(layout: .zip, precision: .float32, nestUnder: "state_dict", prefix: "module.")),
        ("written_zip_f16.pt", TorchWriteOptions(layout: .zip, precision: .float16, nestUnder: "state_dict", prefix: "module.")),
        ("written_legacy_f32.pt", TorchWriteOptions(layout: .legacy, precision: .float32, nestUnder: "state_dict", prefix: "module.")),
        ("written_legacy_f16.pt", TorchWriteOptions(layout: .legacy, precision: .float16, nestUnder: "state_dict", prefix: "module.")),
    ]

    func testEveryFormWritesTheBytesTorchWasCheckedToRead() throws {
        let input = try CheckpointFile.read(from: url("write_input.safetensors"))
        for (name, options) in Self.forms {
            let bytes = try TorchFile.encode(input, options: options)
            let committed = try? Data(contentsOf: url(name))
            if committed.map({ [UInt8]($0) }) != bytes {
                // After a deliberate change: copy this file over the fixture and run the script's --check-written.
                let written = FileManager.default.temporaryDirectory.appendingPathComponent(name)
                try Data(bytes).write(to: written)
                XCTFail("\(name): the writer's bytes changed; they are in \(written.path)")
            }
            let back = try CheckpointFile.decode(bytes, source: name)
            XCTAssertEqual(Set(back.tensors.keys), Set(input.tensors.keys), name)
            XCTAssertEqual(back.dtypes["bn.num_batches_tracked"], .i64, name)
            XCTAssertEqual(back.dtypes["a.weight"], options.precision == .float16 ? .f16 : .f32, name)
            for (key, tensor) in input.tensors {
                let want = options.precision == .float16 && key != "bn.num_batches_tracked"
                    ? tensor.scalars.map(TorchFile.roundedToHalf) : tensor.scalars
                XCTAssertEqual(back.tensors[key]!.shape, tensor.shape, "\(name) \(key)")
                XCTAssertEqual(back.tensors[key]!.scalars, want, "\(name) \(key)")
            }
        }
    }

    /// Rounding to float16 gives torch's `.half()` on every weight of a real model, and the
    /// files torch wrote in float16 hold exactly what the writer's float16 files hold.
    func testHalfPrecisionIsTorchsRounding() throws {
        let twin = try CheckpointFile.read(from: url("smallcnn.safetensors"))
        for (fixture, options) in [("smallcnn_fp16.pt", TorchWriteOptions(precision: .float16)),
                                   ("smallcnn_fp16_legacy_nested.pt",
                                    TorchWriteOptions(layout: .legacy, precision: .float16, nestUnder: "state_dict", prefix: "module."))] {
            let torchs = try CheckpointFile.read(from: url(fixture))
            let ours = try CheckpointFile.decode(try TorchFile.encode(twin, options: options), source: fixture)
            XCTAssertEqual(Set(ours.tensors.keys), Set(torchs.tensors.keys), fixture)
            for (key, tensor) in torchs.tensors {
                XCTAssertEqual(ours.tensors[key]!.scalars, tensor.scalars, "\(fixture) \(key)")
                XCTAssertEqual(ours.dtypes[key], torchs.dtypes[key], "\(fixture) \(key)")
            }
        }
        // Ties go to even, beyond 65504 to infinity, below half the least subnormal to zero.
        XCTAssertEqual(TorchFile.roundedToHalf(1 + 0x1p-11), 1)
        XCTAssertEqual(TorchFile.roundedToHalf(1 + 3 * 0x1p-11), 1 + 0x1p-9)
        XCTAssertEqual(TorchFile.roundedToHalf(65520), .infinity)
        XCTAssertEqual(TorchFile.roundedToHalf(0x1p-25), 0)
        XCTAssertEqual(TorchFile.roundedToHalf(0x1.8p-25), 0x1p-24)
    }

    /// The legacy layout as torch < 1.6 writes it: the same opening pickles byte for byte, one
    /// pickle for the object, one for the storage keys, then each storage's element count and
    /// bytes, ending the file.
    func testTheLegacyLayoutIsTorchs() throws {
        let torchs = [UInt8](try Data(contentsOf: url("smallcnn_fp16_legacy_nested.pt")))
        let preamble = TorchFile.legacyPreamble()
        XCTAssertEqual(Array(torchs.prefix(preamble.count)), preamble)
        let twin = try CheckpointFile.read(from: url("smallcnn.safetensors"))
        let ours = try TorchFile.encode(twin, names: ["conv1.weight"], options: TorchWriteOptions(layout: .legacy))
        XCTAssertEqual(Array(ours.prefix(preamble.count)), preamble)
        let values = twin.tensors["conv1.weight"]!.count
        let tail = Array(ours.suffix(values * 4 + 8))
        XCTAssertEqual(tail.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }, Int64(values))
        XCTAssertEqual(Array(tail.dropFirst(8)), twin.tensors["conv1.weight"]!.withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) })
        // The storage keys' pickle just before: ["0"].
        let keys: [UInt8] = [0x80, 0x02, 0x5D, 0x28, 0x58, 1, 0, 0, 0, 0x30, 0x65, 0x2E]
        XCTAssertEqual(Array(ours.dropLast(values * 4 + 8).suffix(keys.count)), keys)
    }

    /// Nesting and the prefix are what the reader undoes: a writer's nested, prefixed file and
    /// torch's own read to the same names.
    func testNestedPrefixedFilesReadLikeTorchsNestedFiles() throws {
        let twin = try CheckpointFile.read(from: url("smallcnn.safetensors"))
        let torchs = try CheckpointFile.read(from: url("smallcnn_zip.pt"))
        let options = TorchWriteOptions(nestUnder: "state_dict", prefix: "module.")
        let ours = try CheckpointFile.decode(try TorchFile.encode(twin, options: options), source: "nested")
        XCTAssertEqual(Set(ours.tensors.keys), Set(torchs.tensors.keys))
        for (key, tensor) in torchs.tensors { XCTAssertEqual(ours.tensors[key]!.scalars, tensor.scalars, key) }
        // Under another key the reader still finds the one dict of tensors.
        let other = try CheckpointFile.decode(try TorchFile.encode(twin, options: TorchWriteOptions(layout: .legacy, nestUnder: "model")),
                                              source: "model")
        XCTAssertEqual(Set(other.tensors.keys), Set(twin.tensors.keys))
    }
}
