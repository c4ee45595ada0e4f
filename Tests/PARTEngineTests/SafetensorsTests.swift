import PARTTestSupport
import Foundation
import XCTest
@testable import PARTEngine

final class SafetensorsTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")


    /// A file from a header dictionary (serialised here) and raw data bytes.
    private func buildFile(header: Any, data: [UInt8]) throws -> [UInt8] {
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        return buildFile(headerText: [UInt8](json), data: data)
    }

    private func buildFile(headerText: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        let n = UInt64(headerText.count)
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: n >> (8 * UInt64(i)))) }
        return out + headerText + data
    }

    private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] {
        withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }

    private func assertError(_ bytes: [UInt8], contains fragments: [String],
                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SafetensorsFile.decode(bytes, source: "bad.safetensors"), file: file, line: line) { error in
            guard let e = error as? SafetensorsError else {
                return XCTFail("expected SafetensorsError, got \(error)", file: file, line: line)
            }
            XCTAssertTrue(e.description.hasPrefix("bad.safetensors: "), e.description, file: file, line: line)
            for f in fragments {
                XCTAssertTrue(e.description.contains(f), "\"\(e.description)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    // MARK: Round trip

    func testRoundTripThroughFile() throws {
        let weight = Tensor(shape: [2, 3, 1, 2], values: (0..<12).map { Float($0) * 0.25 - 1.5 })
        let bias = Tensor(shape: [3], values: [1e-7, -3.5e20, .pi])
        let scalar = Tensor(shape: [], values: [42.5])
        let steps = Tensor(shape: [2], values: [7, -123456])
        let empty = Tensor(shape: [0, 4], values: [])
        let original = SafetensorsFile(
            tensors: ["conv.weight": weight, "conv.bias": bias, "scale": scalar, "steps": steps, "empty": empty],
            dtypes: ["steps": .i64],
            metadata: ["format": "pt", "note": "quotes \" and \\ and\nnewline, ünïcode"])

        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("model.safetensors")
        try original.write(to: url)
        let loaded = try SafetensorsFile.read(from: url)

        XCTAssertEqual(Set(loaded.tensors.keys), ["conv.weight", "conv.bias", "scale", "steps", "empty"])
        XCTAssertEqual(loaded.metadata, original.metadata)
        for (name, t) in original.tensors {
            XCTAssertEqual(loaded.tensors[name]?.shape, t.shape, name)
            XCTAssertEqual(loaded.tensors[name]?.scalars, t.scalars, name)
        }
        XCTAssertEqual(loaded.tensors["scale"]?.shape, [])
        XCTAssertEqual(loaded.dtypes["steps"], .i64)
        XCTAssertEqual(loaded.dtypes["conv.weight"], .f32)
        XCTAssertEqual(loaded.dtypes["scale"], .f32)
    }

    func testEncodedLayout() throws {
        let file = SafetensorsFile(tensors: ["b": Tensor(shape: [1], values: [2]),
                                             "a": Tensor(shape: [2], values: [1, 3])],
                                   dtypes: ["a": .i64])
        let bytes = try file.encode()
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        XCTAssertEqual((8 + headerLength) % 8, 0, "data must start 8-byte aligned")
        let header = try XCTUnwrap(String(bytes: bytes[8..<(8 + headerLength)], encoding: .utf8))
        // Names sorted, contiguous: a (2 x I64 = 16 bytes) then b (4 bytes).
        XCTAssertLessThan(try XCTUnwrap(header.range(of: "\"a\"")).lowerBound, try XCTUnwrap(header.range(of: "\"b\"")).lowerBound)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(header.utf8)) as? [String: Any])
        let a = try XCTUnwrap(object["a"] as? [String: Any])
        let b = try XCTUnwrap(object["b"] as? [String: Any])
        XCTAssertEqual(a["dtype"] as? String, "I64")
        XCTAssertEqual(a["data_offsets"] as? [Int], [0, 16])
        XCTAssertEqual(b["dtype"] as? String, "F32")
        XCTAssertEqual(b["data_offsets"] as? [Int], [16, 20])
        XCTAssertNil(object["__metadata__"], "no metadata key when metadata is empty")
        XCTAssertEqual(bytes.count, 8 + headerLength + 20)
        XCTAssertEqual(Array(bytes[(8 + headerLength)...]), le(Int64(1)) + le(Int64(3)) + le(Float(2).bitPattern))
    }

    func testI64WriteRoundsAndRejectsNonFinite() throws {
        let rounded = try SafetensorsFile.decode(
            SafetensorsFile(tensors: ["n": Tensor(shape: [3], values: [2.6, -2.6, 0.4])], dtypes: ["n": .i64]).encode())
        XCTAssertEqual(rounded.tensors["n"]?.scalars, [3, -3, 0])
        let bad = SafetensorsFile(tensors: ["n": Tensor(shape: [1], values: [.nan])], dtypes: ["n": .i64])
        XCTAssertThrowsError(try bad.encode()) { error in
            XCTAssertTrue("\(error)".contains("\"n\""), "\(error)")
        }
    }

    // MARK: Hand-built headers

    func testDecodeHandBuiltHeaderWithEveryDType() throws {
        var data = [UInt8]()
        var header: [String: Any] = ["__metadata__": ["format": "pt"]]
        func add(_ name: String, _ dtype: String, _ shape: [Int], _ bytes: [UInt8]) {
            header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
            data += bytes
        }
        add("f32", "F32", [2], le(Float(1.5).bitPattern) + le(Float(-2).bitPattern))
        add("f64", "F64", [1], le(Double(0.125).bitPattern))
        // Half: 1.0 = 0x3C00, -2.0 = 0xC000, smallest subnormal 0x0001 = 2^-24, inf 0x7C00.
        add("f16", "F16", [4], le(UInt16(0x3C00)) + le(UInt16(0xC000)) + le(UInt16(0x0001)) + le(UInt16(0x7C00)))
        // bfloat16: upper half of a Float32; 3.0 = 0x4040.
        add("bf16", "BF16", [1, 1], le(UInt16(0x4040)))
        add("i64", "I64", [], le(Int64(-9)))
        add("i32", "I32", [2], le(Int32(100_000)) + le(Int32(-1)))
        add("u8", "U8", [3], [0, 7, 255])
        add("bool", "BOOL", [2], [0, 1])
        let file = try SafetensorsFile.decode(buildFile(header: header, data: data))

        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(file.tensors["f32"]?.scalars, [1.5, -2])
        XCTAssertEqual(file.tensors["f64"]?.scalars, [0.125])
        XCTAssertEqual(file.tensors["f16"]?.scalars, [1, -2, Float(1) / 16_777_216, .infinity])
        XCTAssertEqual(file.tensors["bf16"]?.shape, [1, 1])
        XCTAssertEqual(file.tensors["bf16"]?.scalars, [3])
        XCTAssertEqual(file.tensors["i64"]?.shape, [])
        XCTAssertEqual(file.tensors["i64"]?.scalars, [-9])
        XCTAssertEqual(file.tensors["i32"]?.scalars, [100_000, -1])
        XCTAssertEqual(file.tensors["u8"]?.scalars, [0, 7, 255])
        XCTAssertEqual(file.tensors["bool"]?.scalars, [0, 1])
        XCTAssertEqual(file.dtypes["f16"], .f16)
        XCTAssertEqual(file.dtypes["bf16"], .bf16)
        XCTAssertEqual(file.dtypes["bool"], .bool)
    }

    func testDecodeHeaderWithPaddingAndUnalignedData() throws {
        // A header padded with spaces, and F32 data at an odd offset after a one-byte tensor,
        // as other writers may produce.
        let text = #"{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}}   "#
        let file = try SafetensorsFile.decode(buildFile(headerText: Array(text.utf8), data: [0xAA] + le(Float(6.25).bitPattern)))
        XCTAssertEqual(file.tensors["x"]?.scalars, [6.25])
        XCTAssertEqual(file.tensors["b"]?.scalars, [170])
    }

    // MARK: Corrupt files

    func testTruncatedFile() throws {
        assertError([], contains: ["truncated file"])
        assertError([1, 0, 0], contains: ["truncated file", "3 bytes"])
    }

    func testHeaderLengthLargerThanFile() throws {
        assertError(le(UInt64(1000)) + Array("{}".utf8), contains: ["truncated file", "header length 1000"])
        assertError(le(UInt64.max), contains: ["truncated file"])
    }

    /// A file of another kind handed over as a checkpoint is named for what it looks like;
    /// a cut safetensors file with a binary length is still called truncated.
    func testOtherFormatsAreNamed() throws {
        let json = Array(#"{"config": {"epochs": 15}, "epoch": 3}"#.utf8)
        assertError(json, contains: ["a JSON file", #""{\"config"..."#, "not with the 8-byte header length"])
        assertError(Array("  [1, 2, 3, 4, 5, 6, 7]\n".utf8), contains: ["a JSON file"])
        assertError(Array("epoch,clean,robust\n1,0.5,0.3\n".utf8), contains: ["a text file"])
        assertError([0x50, 0x4B, 0x03, 0x04] + [UInt8](repeating: 0, count: 60), contains: ["a zip archive", "torch.save"])
        assertError([0x93] + Array("NUMPY".utf8) + [1, 0, 0x76, 0], contains: ["an NPY array"])
        assertError(le(UInt64(1000)) + Array("{}".utf8), contains: ["truncated file"])
    }

    func testHeaderNotJSON() throws {
        assertError(buildFile(headerText: Array("{not json".utf8), data: []), contains: ["not valid JSON"])
        assertError(buildFile(headerText: [0xFF, 0xFE, 0x7B], data: []), contains: ["not valid JSON"])
    }

    func testHeaderNotObject() throws {
        assertError(buildFile(headerText: Array("[1, 2]".utf8), data: []), contains: ["not a JSON object"])
    }

    func testUnknownDType() throws {
        let bytes = try buildFile(header: ["w": ["dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]]], data: [0])
        assertError(bytes, contains: ["\"w\"", "unknown dtype", "F8_E4M3"])
    }

    func testShapeOffsetMismatch() throws {
        let bytes = try buildFile(header: ["w": ["dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]]],
                                  data: [UInt8](repeating: 0, count: 24))
        assertError(bytes, contains: ["\"w\"", "mismatch", "24", "20"])
    }

    func testOffsetsOutsideData() throws {
        let bytes = try buildFile(header: ["w": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]]],
                                  data: [UInt8](repeating: 0, count: 12))
        assertError(bytes, contains: ["\"w\"", "outside"])
        let reversed = try buildFile(header: ["w": ["dtype": "U8", "shape": [0], "data_offsets": [4, 2]]],
                                     data: [UInt8](repeating: 0, count: 8))
        assertError(reversed, contains: ["\"w\"", "data_offsets"])
        let negative = try buildFile(header: ["w": ["dtype": "U8", "shape": [1], "data_offsets": [-1, 0]]],
                                     data: [0])
        assertError(negative, contains: ["\"w\"", "data_offsets"])
    }

    func testOverlappingOffsets() throws {
        let bytes = try buildFile(header: [
            "a": ["dtype": "F32", "shape": [2], "data_offsets": [0, 8]],
            "b": ["dtype": "F32", "shape": [2], "data_offsets": [4, 12]],
        ], data: [UInt8](repeating: 0, count: 12))
        assertError(bytes, contains: ["overlapping", "\"a\"", "\"b\""])
    }

    func testBadShapeAndMissingFields() throws {
        assertError(try buildFile(header: ["w": ["dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]]], data: [0, 0, 0, 0]),
                    contains: ["\"w\"", "shape"])
        assertError(try buildFile(header: ["w": ["shape": [1], "data_offsets": [0, 4]]], data: [0, 0, 0, 0]),
                    contains: ["\"w\"", "dtype"])
        assertError(try buildFile(header: ["w": ["dtype": "F32", "shape": [1]]], data: [0, 0, 0, 0]),
                    contains: ["\"w\"", "data_offsets"])
        assertError(try buildFile(header: ["w": 3], data: []), contains: ["\"w\"", "not a JSON object"])
    }

    func testNonStringMetadata() throws {
        assertError(try buildFile(header: ["__metadata__": ["epoch": 3]], data: []),
                    contains: ["metadata", "\"epoch\"", "not a string"])
        assertError(try buildFile(header: ["__metadata__": "x"], data: []), contains: ["__metadata__"])
    }

    // MARK: Hostile files (each also a fuzz regression input in Fixtures/fuzz/safetensors)

    private func regression(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.fixtures.appendingPathComponent("fuzz/safetensors/\(name)")))
    }

    func testRegressionInputsAreRefusedWithTheirReason() throws {
        let expected = [
            "trailing-bytes": ["4 trailing bytes", "cut or appended"],
            "duplicated-key": ["duplicated key \"a\""],
            "duplicated-metadata-key": ["duplicated key \"k\""],
            "hole-in-data": ["[0, 4)", "belong to no tensor"],
            "deep-nesting": ["nesting deeper than 64"],
            "lone-surrogate": ["surrogate"],
            "float-offsets": ["\"a\"", "data_offsets"],
            "huge-shape": ["\"a\"", "too many"],
        ]
        for (name, fragments) in expected {
            assertError(try regression(name), contains: fragments)
        }
        let folder = Self.fixtures.appendingPathComponent("fuzz/safetensors").path
        let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        XCTAssertEqual(Set(names), Set(expected.keys), "every safetensors regression input has its expected reason here")
    }

    func testTrailingBytesAndHolesAreRefused() throws {
        let valid = try SafetensorsFile(tensors: ["a": Tensor(shape: [2], values: [1, 2])]).encode()
        XCTAssertNoThrow(try SafetensorsFile.decode(valid))
        assertError(valid + [0], contains: ["1 trailing byte", "accounts for 8 of 9"])
        let hole = try buildFile(header: ["a": ["dtype": "U8", "shape": [1], "data_offsets": [0, 1]],
                                          "b": ["dtype": "U8", "shape": [1], "data_offsets": [2, 3]]], data: [1, 2, 3])
        assertError(hole, contains: ["[1, 2)", "\"b\"", "belong to no tensor"])
        // Zero-sized tensors may sit on the boundary between others.
        let empty = try buildFile(header: ["a": ["dtype": "U8", "shape": [1], "data_offsets": [0, 1]],
                                           "e": ["dtype": "F32", "shape": [0, 3], "data_offsets": [1, 1]]], data: [7])
        XCTAssertEqual(try SafetensorsFile.decode(empty).tensors["e"]?.shape, [0, 3])
    }

    func testDuplicatedKeysAreRefusedWherever() throws {
        let text = #"{"a":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}"#
        assertError(buildFile(headerText: Array(text.utf8), data: [0]), contains: ["duplicated key \"shape\""])
        let meta = #"{"__metadata__":{"x":"1"},"__metadata__":{"x":"2"}}"#
        assertError(buildFile(headerText: Array(meta.utf8), data: []), contains: ["duplicated key \"__metadata__\""])
        // Keys equal after unescaping are duplicates too.
        let escaped = #"{"__metadata__":{"k":"1","\u006b":"2"}}"#
        assertError(buildFile(headerText: Array(escaped.utf8), data: []), contains: ["duplicated key \"k\""])
    }

    func testHeaderMustBeStrictJSON() throws {
        let cases: [(String, String)] = [
            (#"{"__metadata__":{}} x"#, "after the JSON value"),
            ("{\"__metadata__\":{\"k\":\"a\u{01}\"}}", "control character"),
            (#"{"a":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}"#, "',' or ']' was expected"),
            (#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],}}"#, "a string key was expected"),
            (#"{"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}"#, "end of text"),
            (#"{"__metadata__":{"k":"\x"}}"#, "invalid escape"),
        ]
        for (text, fragment) in cases {
            assertError(buildFile(headerText: Array(text.utf8), data: [0]), contains: ["not valid JSON", fragment])
        }
        // Valid JSON, but not integers where the format needs them.
        for shape in ["1e0", "-1", "1.0", "18446744073709551616"] {
            let text = #"{"a":{"dtype":"U8","shape":["# + shape + #"],"data_offsets":[0,1]}}"#
            assertError(buildFile(headerText: Array(text.utf8), data: [0]), contains: ["\"shape\"", "not a non-negative integer"])
        }
        // An overlong encoding of a key.
        assertError(buildFile(headerText: [0x7B, 0x22, 0xC0, 0x80, 0x22, 0x3A, 0x31, 0x7D], data: []),
                    contains: ["not valid JSON", "UTF-8"])
        assertError(buildFile(headerText: [], data: []), contains: ["not valid JSON", "end of text"])
        // A null "__metadata__" is no metadata, as in the reference implementation.
        let null = #"{"__metadata__":null}"#
        XCTAssertEqual(try SafetensorsFile.decode(buildFile(headerText: Array(null.utf8), data: [])).metadata, [:])
    }

    func testHeaderLongerThanTheFormatAllowsIsRefusedWithoutReadingIt() throws {
        let length = le(UInt64(SafetensorsHeader.maximumLength + 1))
        XCTAssertThrowsError(try SafetensorsHeader.parse(length, fileSize: 200_000_000, source: "big.safetensors")) { error in
            XCTAssert("\(error)".contains("over the format's limit"), "\(error)")
        }
    }

    func testHeaderAloneIsReadFromAFile() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("m.safetensors")
        try SafetensorsFile(tensors: ["w": Tensor(shape: [2, 3], values: Array(repeating: 1, count: 6))],
                            metadata: ["classes": "10"]).write(to: url)
        let header = try SafetensorsHeader.read(from: url)
        XCTAssertEqual(header.metadata, ["classes": "10"])
        XCTAssertEqual(header.tensors.map(\.name), ["w"])
        XCTAssertEqual(header.tensors.first?.shape, [2, 3])
        // Cut inside the data: the header is whole, but the offsets lie beyond the end.
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 4).write(to: url)
        XCTAssertThrowsError(try SafetensorsHeader.read(from: url)) { error in
            XCTAssert("\(error)".contains("outside"), "\(error)")
        }
        try bytes.prefix(12).write(to: url)
        XCTAssertThrowsError(try SafetensorsHeader.read(from: url)) { error in
            XCTAssert("\(error)".contains("truncated file"), "\(error)")
        }
    }

    func testReadRefusesWhatIsNotARegularFile() throws {
        let dir = try temporaryDirectory()
        XCTAssertThrowsError(try SafetensorsFile.read(from: dir)) { error in
            XCTAssert("\(error)".contains("is a directory, not a regular file"), "\(error)")
        }
        let fifo = dir.appendingPathComponent("pipe.safetensors")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertThrowsError(try SafetensorsFile.read(from: fifo)) { error in
            XCTAssert("\(error)".contains("FIFO"), "\(error)")
        }
        XCTAssertThrowsError(try SafetensorsFile.read(from: URL(fileURLWithPath: "/dev/zero"))) { error in
            XCTAssert("\(error)".contains("/dev/zero: is a character device"), "\(error)")
        }
    }

    func testReadMissingFileNamesIt() throws {
        let url = URL(fileURLWithPath: "/nonexistent/dir/model.safetensors")
        XCTAssertThrowsError(try SafetensorsFile.read(from: url)) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/dir/model.safetensors"), "\(error)")
        }
    }

    // MARK: Atomic write

    func testAtomicWriteLeavesNoTemporaryFile() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("ckpt.safetensors")
        try SafetensorsFile(tensors: ["a": Tensor(shape: [2], values: [1, 2])]).write(to: url)
        // Overwrite the existing file.
        try SafetensorsFile(tensors: ["a": Tensor(shape: [3], values: [4, 5, 6])], metadata: ["v": "2"]).write(to: url)
        let listing = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertEqual(listing, ["ckpt.safetensors"])
        let loaded = try SafetensorsFile.read(from: url)
        XCTAssertEqual(loaded.tensors["a"]?.scalars, [4, 5, 6])
        XCTAssertEqual(loaded.metadata, ["v": "2"])
    }

    func testWriteIntoMissingDirectoryFails() throws {
        let url = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/x.safetensors")
        XCTAssertThrowsError(try SafetensorsFile(tensors: ["a": Tensor(shape: [1], values: [1])]).write(to: url)) { error in
            XCTAssertTrue(error is SafetensorsError)
            XCTAssertTrue("\(error)".contains("x.safetensors"), "\(error)")
        }
    }

    // MARK: Larger file

    func testLargeFileRoundTrip() throws {
        // ~50 MB: exercises the bulk copy paths.
        let n = 12_500_000
        var big = Tensor.uninitialized(shape: [n])
        big.withUnsafeMutableBufferPointer { p in for i in 0..<n { p[i] = Float(i % 1000) - 500 } }
        let bytes = try SafetensorsFile(tensors: ["big": big]).encode()
        let loaded = try SafetensorsFile.decode(bytes)
        let t = try XCTUnwrap(loaded.tensors["big"])
        XCTAssertEqual(t.shape, [n])
        XCTAssertEqual(t[flat: 0], -500)
        XCTAssertEqual(t[flat: n - 1], Float((n - 1) % 1000) - 500)
        XCTAssertEqual(t[flat: n / 2 + 123], Float((n / 2 + 123) % 1000) - 500)
    }

    // MARK: PyTorch fixture

    func testReadsPyTorchFixture() throws {
        let url = Self.fixtures.appendingPathComponent("smallcnn_torch_init.safetensors")
        // A committed fixture: its absence is a failure, not a skip.
        let file = try SafetensorsFile.read(from: url)
        XCTAssertEqual(file.tensors["conv1.weight"]?.shape, [32, 1, 3, 3])
        XCTAssertEqual(file.tensors["fc3.bias"]?.shape, [10])
        XCTAssertEqual(file.dtypes["conv1.weight"], .f32)
        let w = try XCTUnwrap(file.tensors["conv1.weight"])
        XCTAssertTrue(w.scalars.allSatisfy { $0.isFinite })
        XCTAssertTrue(w.scalars.contains { $0 != 0 }, "initial weights should not be all zero")
    }
}
