import Foundation
import XCTest
@testable import PARTEngine

/// The `torch.save` reader on files PyTorch wrote (scripts/make_torch_fixtures.py), on hostile
/// files, and the writer whose output torch.load(weights_only=True) was checked to read.
final class TorchFileTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/torch")

    func url(_ name: String) -> URL { Self.folder.appendingPathComponent(name) }

    func read(_ name: String, key: String? = nil) throws -> SafetensorsFile {
        try CheckpointFile.read(from: url(name), key: key)
    }

    /// The refusal of `body`, which must be one line.
    func refusal(_ body: () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try body()
            XCTFail("accepted", file: file, line: line)
            return ""
        } catch {
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "one line: \(text.debugDescription)", file: file, line: line)
            return text
        }
    }

    func testBothLayoutsHoldTheTwinsTensorsExactly() throws {
        let twin = try read("smallcnn.safetensors")
        XCTAssertEqual(twin.tensors.count, 14)
        for name in ["smallcnn_zip.pt", "smallcnn_legacy.pt"] {
            let file = try read(name)
            XCTAssertEqual(Set(file.tensors.keys), Set(twin.tensors.keys), "\(name): names without module.")
            for (key, t) in twin.tensors {
                XCTAssertEqual(file.tensors[key]!.shape, t.shape, "\(name) \(key)")
                XCTAssertEqual(file.tensors[key]!.scalars, t.scalars, "\(name) \(key)")
                XCTAssertEqual(file.dtypes[key], .f32)
            }
        }
    }

    func testHalfAndBFloat16AreTheTwinRounded() throws {
        let twin = try read("smallcnn.safetensors")
        let half = try read("smallcnn_fp16.pt"), bf16 = try read("smallcnn_bf16_legacy.pt")
        for (key, t) in twin.tensors {
            XCTAssertEqual(half.tensors[key]!.scalars, t.scalars.map { Float(Float16($0)) }, "fp16 \(key) (_orig_mod. stripped)")
            XCTAssertEqual(half.dtypes[key], .f16)
            // bfloat16 rounds to nearest even: the top 16 bits of the float32, rounded.
            let rounded = t.scalars.map { v -> Float in
                let bits = v.bitPattern
                return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
            }
            XCTAssertEqual(bf16.tensors[key]!.scalars, rounded, "bf16 \(key)")
            XCTAssertEqual(bf16.dtypes[key], .bf16)
        }
    }

    /// The fuzz target's seeds (scripts/make_fuzz_corpus.py): parameters, protocol 4, double,
    /// views of one storage in both layouts.
    func testTheFuzzSeedsAreRead() throws {
        let corpus = Self.folder.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/corpus/torch")
        func decode(_ name: String) throws -> SafetensorsFile {
            let bytes = [UInt8](try Data(contentsOf: corpus.appendingPathComponent(name)))
            return try bytes.withUnsafeBytes { try TorchFile.decode($0, source: name) }
        }
        let w: [Float] = (0..<6).map { Float($0) / 7 }
        let plain = try decode("zip-float32")
        XCTAssertEqual(plain.tensors["conv.weight"]!.scalars, w)
        XCTAssertEqual(plain.tensors["bn.num_batches_tracked"]!.scalars, [3])
        XCTAssertEqual(plain.tensors["bn.num_batches_tracked"]!.shape, [])
        for name in ["legacy-float32", "zip-protocol-4", "zip-nested"] {
            let file = try decode(name)
            XCTAssertEqual(Set(file.tensors.keys), Set(plain.tensors.keys), name)
            for (k, t) in plain.tensors { XCTAssertEqual(file.tensors[k]!.scalars, t.scalars, "\(name) \(k)") }
        }
        XCTAssertEqual(try decode("zip-parameter").tensors["p"]!.scalars, w)
        XCTAssertEqual(try decode("zip-half-bf16-double").tensors["d"]!.scalars, w)
        for name in ["zip-views", "legacy-views"] {
            let views = try decode(name)
            XCTAssertEqual(views.tensors["t"]!.scalars, [0, 3, 1, 4, 2, 5].map { w[$0] }, name)
            XCTAssertEqual(views.tensors["first"]!.scalars, [0, 1, 2, 3], name)
            XCTAssertEqual(views.tensors["second"]!.scalars, [4, 5, 6, 7], name)
        }
    }

    func testSeveralDictsNeedAKey() throws {
        let message = refusal { try self.read("two_dicts.pt") }
        for fragment in ["two_dicts.pt", "several dicts of tensors", "'model'", "'ema'", "--key"] {
            XCTAssert(message.contains(fragment), "\(message) should mention \(fragment)")
        }
        let ema = try read("two_dicts.pt", key: "ema"), model = try read("two_dicts.pt", key: "model")
        XCTAssertEqual(model.tensors["a.weight"]!.scalars, [0, 1, 2, 3, 4, 5])
        XCTAssertEqual(ema.tensors["a.weight"]!.scalars, [0, 2, 4, 6, 8, 10])
        XCTAssert(refusal { try self.read("two_dicts.pt", key: "epoch") }.contains("under 'epoch' there is a int"))
        XCTAssert(refusal { try self.read("two_dicts.pt", key: "nope") }.contains("no top-level key 'nope'"))
        XCTAssert(refusal { try self.read("smallcnn.safetensors", key: "model") }.contains("drop --key"))
    }

    func testMaliciousPicklesAreRefusedNamingTheGlobal() throws {
        for name in ["evil.pkl", "evil_zip.pt"] {
            let message = refusal { try self.read(name) }
            XCTAssert(message.contains("refused: the pickle names the global posix.system"), message)
            XCTAssert(message.contains(name), message)
            XCTAssertThrowsError(try read(name)) { XCTAssert($0 is TorchFileError, "\(type(of: $0))") }
        }
    }

    func testConversionWritesTheBytesTorchWasCheckedToRead() throws {
        // tiny_converted.pt is what `part convert tiny.safetensors` wrote when
        // scripts/make_torch_fixtures.py --check-converted loaded it with torch.load(weights_only=True).
        let tiny = try read("tiny.safetensors")
        let bytes = try TorchFile.encode(tiny)
        XCTAssertEqual(bytes, [UInt8](try Data(contentsOf: url("tiny_converted.pt"))))
        let back = try CheckpointFile.decode(bytes, source: "converted")
        XCTAssertEqual(back.tensors["weight"]!.scalars, [1.5, -2.0, 0.25, 3.0, -0.125, 7.0])
        XCTAssertEqual(back.tensors["num_batches_tracked"]!.scalars, [1_234_567])
        XCTAssertEqual(back.dtypes["num_batches_tracked"], .i64)
        // Its structure: torch's member names, 64-byte aligned data, a protocol-2 pickle.
        let names = try bytes.withUnsafeBytes { try Zip.entries($0, source: "x").map(\.name) }
        XCTAssertEqual(names, ["archive/data.pkl", "archive/.format_version", "archive/.storage_alignment", "archive/byteorder",
                               "archive/data/0", "archive/data/1", "archive/version"])
        try bytes.withUnsafeBytes { raw in
            for entry in try Zip.entries(raw, source: "x") where entry.name.hasPrefix("archive/data/") {
                let start = entry.headerOffset + 30 + Int(raw.u16(entry.headerOffset + 26)) + Int(raw.u16(entry.headerOffset + 28))
                XCTAssertEqual(start % 64, 0, entry.name)
            }
        }
    }

    func testTheTwinRoundTripsThroughAPtFile() throws {
        let twin = try read("smallcnn.safetensors")
        let back = try CheckpointFile.decode(try TorchFile.encode(twin), source: "round trip")
        XCTAssertEqual(Set(back.tensors.keys), Set(twin.tensors.keys))
        for (key, t) in twin.tensors { XCTAssertEqual(back.tensors[key]!.scalars, t.scalars, key) }
    }

    func testASafetensorsHeaderLengthThatLooksLikeAPickleIsStillSafetensors() throws {
        // A header of 640 bytes: the file starts 0x80 0x02, like a protocol-2 pickle.
        var header = Array(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#.utf8)
        header += [UInt8](repeating: 0x20, count: 640 - header.count)
        let bytes = withUnsafeBytes(of: UInt64(640).littleEndian, Array.init) + header + withUnsafeBytes(of: Float(2.5), Array.init)
        XCTAssertEqual(Array(bytes[0..<2]), [0x80, 0x02])
        XCTAssertEqual(try CheckpointFile.decode(bytes, source: "s").tensors["a"]!.scalars, [2.5])
        // Cut short, it is still a safetensors file, refused as truncated.
        for n in [2, 5, 9, 100] {
            XCTAssertThrowsError(try CheckpointFile.decode(Array(bytes.prefix(n)), source: "s")) { XCTAssert($0 is SafetensorsError, "\($0)") }
        }
    }

    // MARK: Hostile files

    /// A zip archive holding `pickle` as archive/data.pkl and `storage` as archive/data/0.
    func archive(_ pickle: [UInt8], storage: [UInt8] = [UInt8](repeating: 0, count: 16)) throws -> [UInt8] {
        var writer = ZipWriter()
        try writer.add("archive/data.pkl", pickle)
        try writer.add("archive/data/0", storage)
        return try writer.finish()
    }

    /// The pickle of {"w": _rebuild_tensor_v2(storage of `numel` floats, offset, size, stride)}.
    func tensorPickle(numel: Int, offset: Int, size: [Int], stride: [Int]) -> [UInt8] {
        var p: [UInt8] = [0x80, 0x02, 0x7D, 0x28]
        func str(_ s: String) { p += [0x58] + withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian, Array.init) + Array(s.utf8) }
        func int(_ v: Int) { p += [0x8A, 8] + withUnsafeBytes(of: Int64(v).littleEndian, Array.init) }
        str("w")
        p += [0x63] + Array("torch._utils\n_rebuild_tensor_v2\n".utf8) + [0x28]
        p += [0x28]; str("storage"); p += [0x63] + Array("torch\nFloatStorage\n".utf8); str("0"); str("cpu"); int(numel); p += [0x74, 0x51]
        int(offset)
        p += [0x28]; size.forEach(int); p += [0x74]
        p += [0x28]; stride.forEach(int); p += [0x74]
        p += [0x89, 0x7D, 0x74, 0x52, 0x75, 0x2E]
        return p
    }

    func decode(_ bytes: [UInt8]) throws -> SafetensorsFile { try CheckpointFile.decode(bytes, source: "hostile.pt") }

    func testViewsOutsideTheirStorageAreRefused() throws {
        // Accepted: 2x2 of a 4-float storage, transposed.
        let ok = try decode(try archive(tensorPickle(numel: 4, offset: 0, size: [2, 2], stride: [1, 2]),
                                        storage: [1, 2, 3, 4].flatMap { withUnsafeBytes(of: Float($0), Array.init) }))
        XCTAssertEqual(ok.tensors["w"]!.scalars, [1, 3, 2, 4])
        let cases: [([UInt8], String)] = [
            (try archive(tensorPickle(numel: 4, offset: 1, size: [2, 2], stride: [2, 1])), "reach element 4 of a storage of 4"),
            (try archive(tensorPickle(numel: 4, offset: 0, size: [1 << 62, 4], stride: [4, 1])), "overflows"),
            (try archive(tensorPickle(numel: 8, offset: 0, size: [8], stride: [1])), "holds 16 bytes, 8 elements of FloatStorage need 32"),
            (try archive(tensorPickle(numel: 1, offset: 0, size: [1 << 20, 1 << 10], stride: [0, 0])), "more than a file of"),
            (try archive(tensorPickle(numel: 4, offset: -1, size: [2], stride: [1])), "storage offset"),
        ]
        for (bytes, fragment) in cases {
            let message = refusal { try self.decode(bytes) }
            XCTAssert(message.contains(fragment), "\(message) should mention \(fragment)")
        }
    }

    func testHostilePicklesAreRefusedWithoutRunningOrHanging() throws {
        let cases: [([UInt8], String)] = [
            // A list that holds itself: the reader neither recurses nor leaks.
            ([0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E], "holds a list, not a state_dict"),
            ([0x80, 0x02, 0x63] + Array("builtins\neval\n".utf8), "the global builtins.eval"),
            ([0x80, 0x04, 0x8C, 0x02] + Array("os".utf8) + [0x8C, 0x06] + Array("system".utf8) + [0x93], "the global os.system"),
            ([0x80, 0x02, 0x69] + Array("os\nsystem\n".utf8), "INST"),
            ([0x80, 0x02, 0x28, 0x28, 0x28, 0x2E], "stack is empty"),
            ([0x80, 0x02, 0x58, 0xFF, 0xFF, 0xFF, 0x7F], "truncated pickle"),
            ([0x80, 0x02, 0x68, 0x05, 0x2E], "memo entry 5"),
            ([0x80, 0x02, 0x7D, 0x4B, 0x01, 0x75, 0x2E], "no MARK"),
            ([0x80, 0x02, 0xFF], "unknown opcode 0xff"),
            ([0x80, 0x01, 0x2E], "pickle protocol 1"),
        ]
        for (pickle, fragment) in cases {
            let zipped = refusal { try self.decode(try self.archive(pickle)) }
            XCTAssert(zipped.contains(fragment), "\(zipped) should mention \(fragment)")
            let bare = refusal { try self.decode(pickle) }
            XCTAssertFalse(bare.isEmpty)
        }
        // A long chain of nested lists and tuples: linear work, no deep recursion when freed.
        var deep: [UInt8] = [0x80, 0x02]
        for _ in 0..<200_000 { deep += [0x5D] }
        for _ in 0..<199_999 { deep += [0x61] }
        deep += [0x85, 0x2E]
        XCTAssert(refusal { try self.decode(try self.archive(deep)) }.contains("holds a tuple"))
    }

    func testEveryTruncationAndManyCorruptionsOfARealFileAreRefusedOrRead() throws {
        for name in ["two_dicts.pt", "smallcnn_legacy.pt"] {
            let bytes = [UInt8](try Data(contentsOf: url(name)))
            let step = Swift.max(1, bytes.count / 400)
            for n in stride(from: 0, to: bytes.count, by: step) {
                XCTAssertThrowsError(try CheckpointFile.decode(Array(bytes[..<n]), source: name, key: "model"))
            }
            var state: UInt64 = 0x9E37_79B9_7F4A_7C15   // a fixed sequence (xorshift64)
            func next() -> Int {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                return Int(state >> 1)
            }
            for _ in 0..<(name == "two_dicts.pt" ? 300 : 60) {
                var copy = bytes
                for _ in 0..<3 { copy[next() % copy.count] = UInt8(next() % 256) }
                do {
                    _ = try CheckpointFile.decode(copy, source: name, key: name == "two_dicts.pt" ? "model" : nil)
                } catch {
                    XCTAssert(error is TorchFileError || error is SafetensorsError, "\(type(of: error)): \(error)")
                    XCTAssertFalse("\(error)".contains("\n"))
                }
            }
        }
    }
}
