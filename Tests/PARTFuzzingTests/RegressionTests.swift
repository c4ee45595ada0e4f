import Foundation
import PARTEngine
import PARTNN
import XCTest
import PARTData
import PARTEvaluation
@testable import PARTFuzzing

/// Each regression input of the checkpoint target (Tests/Fixtures/fuzz/checkpoint) with the
/// reason it must be refused for: hand-made hostile files and inputs the fuzzer found.
final class CheckpointRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/checkpoint")

    /// The first refusal of the loading path for `name`: decoding, then `loadModel` on the fuzz
    /// model with the metadata deciding classes and input shape.
    func refusal(_ name: String) throws -> String? {
        let bytes = [UInt8](try Data(contentsOf: Self.folder.appendingPathComponent(name)))
        do {
            let file = try SafetensorsFile.decode(bytes, source: name)
            var rng = RNG(seed: 1)
            _ = try Checkpoint.loadModel(file, source: name, architecture: nil, numClasses: nil, inputShape: nil,
                                         rng: &rng, build: TinyClassifier.build)
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testEveryRegressionInputIsRefusedForItsReason() throws {
        let expected: [String: [String]] = [
            "nan-weight": ["nan-weight: tensor 'linear.weight' holds nan at element 2", "diverged"],
            "inf-buffer": ["tensor 'bn1.running_var' holds inf at element 0"],
            "prefixed-twice": ["tensor 'conv1.bias' is given twice"],
            "huge-classes": ["metadata \"classes\" is \"99999999999\"", "from 1 to 100000"],
            "negative-classes": ["metadata \"classes\" is \"-3\""],
            "huge-input-shape": ["metadata \"input_shape\" is \"100000,100000,1\""],
            "malformed-input-shape": ["metadata \"input_shape\" is \"8,8\"", "\"H,W,C\""],
            // Found by fuzzing: a duplicated key holding a newline used to split the message.
            "newline-in-key": ["duplicated key", "\\n"],
        ]
        for (name, fragments) in expected {
            let message = try XCTUnwrap(try refusal(name), "\(name) must be refused")
            XCTAssertFalse(message.contains("\n"), "\(name): one line, got \(message.debugDescription)")
            for f in fragments {
                XCTAssert(message.contains(f), "\(name): \"\(message)\" should mention \"\(f)\"")
            }
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path)
        XCTAssertEqual(Set(names), Set(expected.keys), "every checkpoint regression input has its reason here")
    }

    func testTheSeedCheckpointsLoad() throws {
        let corpus = Self.folder.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/corpus/checkpoint")
        for name in ["tiny", "tiny-dataparallel", "tiny-scalar-as-1", "tiny-arch-only"] {
            let file = try SafetensorsFile.decode([UInt8](try Data(contentsOf: corpus.appendingPathComponent(name))), source: name)
            var rng = RNG(seed: 1)
            let (model, _) = try Checkpoint.loadModel(file, source: name, architecture: nil, numClasses: nil, inputShape: nil,
                                                      rng: &rng, build: TinyClassifier.build)
            XCTAssertEqual(model.architecture, "fuzz-tiny")
        }
        // Made for 16x16 images and 4 classes; loaded for 8x8 and 2: refused with the hint.
        let other = try SafetensorsFile.decode([UInt8](try Data(contentsOf: corpus.appendingPathComponent("tiny-other-shape"))))
        var rng = RNG(seed: 1)
        XCTAssertThrowsError(try Checkpoint.loadModel(other, source: "o", architecture: nil, numClasses: 2, inputShape: (8, 8, 1),
                                                      rng: &rng, build: TinyClassifier.build)) { error in
            XCTAssert("\(error)".contains("made for 16x16x1 images and 4 classes, the data has 8x8x1 images and 2 classes"),
                      "\(error)")
        }
    }
}

/// The regression inputs of the npy target: arrays `NPYFile.read` must refuse, not trap on.
final class NPYRegressionTests: XCTestCase {
    func testHostileArraysAreRefused() throws {
        let folder = CheckpointRegressionTests.folder.deletingLastPathComponent().appendingPathComponent("npy")
        let expected: [String: String] = [
            // Found by fuzzing: a dimension of 19 digits made the element count overflow (a trap).
            // Its header is not a dict either (a stray character after the descr), which the
            // one .npy reader (`NPYFormat`) says first.
            "overflowing-shape": "unreadable .npy header",
        ]
        for (name, fragment) in expected {
            let url = folder.appendingPathComponent(name)
            XCTAssertThrowsError(try NPYFile.read(url), name) { error in
                XCTAssert(error is EvaluationError && "\(error)".contains(fragment), "\(name): \(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(name): one line, got \("\(error)".debugDescription)")
            }
        }
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)), Set(expected.keys))
    }

    func testShapesThatOverflowOrAreNegativeAreRefused() throws {
        func npy(_ shape: String, dataBytes: Int) -> [UInt8] {
            var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape)), }"
            dict += String(repeating: " ", count: (64 - (11 + dict.utf8.count) % 64) % 64) + "\n"
            let n = dict.utf8.count
            return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(dict.utf8)
                + [UInt8](repeating: 0, count: dataBytes)
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString).npy")
        defer { try? FileManager.default.removeItem(at: url) }
        for (shape, fragment) in [("-2, -2", "non-negative"), ("4294967296, 4294967296, 4", "too large"),
                                  ("2305843009213693952,", "needs more"), ("2, x", "non-negative")] {
            try Data(npy(shape, dataBytes: 16)).write(to: url)
            XCTAssertThrowsError(try NPYFile.read(url), shape) { error in
                XCTAssert("\(error)".contains(fragment), "\(shape): \(error)")
            }
        }
        try Data(npy("2, 2", dataBytes: 16)).write(to: url)
        XCTAssertEqual(try NPYFile.read(url).shape, [2, 2])
    }
}

/// The regression inputs of the eval-results target, resumed into the target's evaluation: a
/// corrupt results line or header is refused on one line naming it, a corrupt batch in
/// progress is redone; none may trap or split the message (each did before it was fixed).
final class EvaluationRegressionTests: XCTestCase {
    func testCorruptResultsAndProgressFilesAreRefusedOrRedone() throws {
        let folder = CheckpointRegressionTests.folder.deletingLastPathComponent().appendingPathComponent("eval-results")
        let refused: [String: String] = [
            "label-beyond-int32": "line 2 is not the record of point 0; the file is corrupt",
            "prediction-not-a-number": "line 2 is not the record of point 0; the file is corrupt",
            // Found by fuzzing: a header whose attack name holds an escaped newline, quoted
            // verbatim, split the message.
            "newline-in-header-value": "holds results of another evaluation (--attacks: the file has \\\\\\\\",
        ]
        // Found by fuzzing: a progress file whose batch named point 4 of 4 points.
        let redone = ["progress-with-wrong-index", "progress-short-robust", "progress-stage-beyond-list"]
        try Engine.withThreads(1) {
            for (name, fragment) in refused {
                let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
                XCTAssertNoThrow(try EvaluationFuzz.runResults(bytes), name)
                guard let runner = EvaluationFuzz.runner else { return XCTFail("no runner") }
                XCTAssertThrowsError(try runner.run(), name) { error in
                    XCTAssert(error is EvaluationError && "\(error)".contains(fragment), "\(name): \(error)")
                    XCTAssertFalse("\(error)".contains("\n"), "\(name): one line, got \("\(error)".debugDescription)")
                }
            }
            for name in redone {
                let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
                XCTAssertNoThrow(try EvaluationFuzz.runResults(bytes), name)
            }
            XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: folder.path)), Set(refused.keys).union(redone))
        }
    }
}

/// The regression inputs of the dataset targets, all found by fuzzing: names and headers from
/// the file used to split the one-line error, declared sizes that overflowed or asked for
/// gigabytes before the data was looked at, and a JPEG header of no size.
final class DatasetRegressionTests: XCTestCase {
    static let folder = CheckpointRegressionTests.folder.deletingLastPathComponent()

    func bytes(_ target: String, _ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: Self.folder.appendingPathComponent("\(target)/\(name)")))
    }

    /// The first refusal of `target`'s reader on the regression input.
    func refusal(_ target: String, _ name: String) throws -> String? {
        let input = try bytes(target, name)
        do {
            switch target {
            case "mat":
                _ = try input.withUnsafeBytes { try MATFile.parse(try ByteBuffer.copying($0), source: name) }
            case "numpy-data":
                let array = try input.dropFirst().withUnsafeBytes { try NPY.parse(try ByteBuffer.copying($0), source: name) }
                _ = try NumPyData.images(array, layout: nil, source: name)
            case "image":
                // The target's first byte picks grey or RGB output; the rest is the file.
                let codec = try JPEGDecoder()
                _ = try Array(input.dropFirst()).withUnsafeBytes { try codec.header($0, source: name) }
            case "zip":
                try input.withUnsafeBytes { raw in
                    for entry in try Zip.entries(raw, source: name) { _ = try Zip.extract(entry, from: raw, source: name) }
                }
            case "torch":
                _ = try input.withUnsafeBytes { try TorchFile.decode($0, source: name) }
            default:
                XCTFail("no reader for \(target)")
            }
            return nil
        } catch {
            return "\(error)"
        }
    }

    func testEveryRegressionInputIsRefusedOnOneLine() throws {
        let expected: [String: [String: String]] = [
            "mat": ["newline-in-name": "unknown storage type", "overflowing-size": "bytes of values for dimensions",
                    "declared-4gib": "compressed bytes can hold"],
            "numpy-data": ["newline-in-name": "unreadable .npy header", "newline-in-header": "no 'descr' string"],
            "zip": ["newline-in-name": "corrupt", "declared-4gib": "more than deflate can expand to"],
            // Hand-made: torch.save files whose loading with pickle runs a shell command, and a list.
            "torch": ["os-system-zip": "the global posix.system", "os-system-legacy": "the global posix.system",
                      "list-not-dict": "holds a list, not a state_dict"],
            // A JPEG cut after its start marker: a 0x0 header that tjDecompress2 would have
            // filled into an empty buffer.
            "image": ["jpeg-cut-after-start": "its header gives a 0x0 image"],
        ]
        for (target, inputs) in expected {
            for (name, fragment) in inputs {
                let message = try XCTUnwrap(try refusal(target, name), "\(target)/\(name) must be refused")
                XCTAssertFalse(message.contains("\n"), "\(target)/\(name): one line, got \(message.debugDescription)")
                XCTAssert(message.contains(fragment), "\(target)/\(name): \"\(message)\" should mention \"\(fragment)\"")
            }
            let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder.appendingPathComponent(target).path)
            XCTAssertEqual(Set(names), Set(inputs.keys), target)
        }
    }
}
