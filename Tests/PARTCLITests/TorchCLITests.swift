import Foundation
import PARTEngine
import PARTTestSupport
import XCTest

/// `part eval` on `torch.save` files and `part convert`, run as a user would.
final class TorchCLITests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/torch")

    func fixture(_ name: String) -> String { Self.folder.appendingPathComponent(name).path }

    func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("part-torch-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// `part eval` of natural accuracy on the 4 fixture images: the JSON fields that depend on
    /// the weights.
    func evaluate(_ checkpoint: String, _ extra: [String] = []) throws -> [String: String] {
        let r = try runPart(["eval", checkpoint, "--dataset", "npy", "--data", fixture("npy"), "--attacks", "natural",
                             "--json", "--quiet", "--threads", "1"] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        var flat = [String: String]()
        // What depends on the weights (timings and the checkpoint's name do not).
        for (k, v) in object where k.lowercased().contains("accuracy") || ["robust", "architecture", "count"].contains(k) {
            flat[k] = "\(v)"
        }
        XCTAssertEqual(flat.count, 5, "\(object.keys.sorted())")
        return flat
    }

    func testEvalReadsTorchFilesLikeTheirTwin() throws {
        let twin = try evaluate(fixture("smallcnn.safetensors"))
        XCTAssertFalse(twin.isEmpty)
        XCTAssertEqual(try evaluate(fixture("smallcnn_zip.pt")), twin)
        XCTAssertEqual(try evaluate(fixture("smallcnn_legacy.pt")), twin)
    }

    func testMaliciousFilesAreRefusedAndRunNothing() throws {
        let dir = try scratch()
        for name in ["evil.pkl", "evil_zip.pt"] {
            let r = try runProcess(["eval", fixture(name), "--dataset", "npy", "--data", fixture("npy"), "--attacks", "natural"],
                                   currentDirectory: dir)
            XCTAssertEqual(r.status, 1, r.stderr)
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, r.stderr)
            XCTAssert(r.stderr.contains("posix.system") && r.stderr.contains("nothing was imported or run"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("part_torch_pwned").path),
                           "\(name): the command in the pickle ran")
        }
    }

    func testConvertBothWaysRoundTrips() throws {
        let dir = try scratch()
        let pt = dir.appendingPathComponent("model.pt").path, back = dir.appendingPathComponent("back.safetensors").path
        var r = try runPart(["convert", fixture("smallcnn_zip.pt"), pt])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runPart(["convert", pt, back])
        XCTAssertEqual(r.status, 0, r.stderr)
        let twin = try SafetensorsFile.read(from: URL(fileURLWithPath: fixture("smallcnn.safetensors")))
        let result = try SafetensorsFile.read(from: URL(fileURLWithPath: back))
        XCTAssertEqual(Set(result.tensors.keys), Set(twin.tensors.keys))
        for (k, t) in twin.tensors { XCTAssertEqual(result.tensors[k]!.scalars, t.scalars, k) }
        XCTAssertEqual(try evaluate(pt), try evaluate(fixture("smallcnn.safetensors")))

        // The refusals: an existing OUT, OUT the same file as IN, an unknown extension, two dicts.
        r = try runPart(["convert", fixture("smallcnn.safetensors"), pt])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("--overwrite"), r.stderr)
        r = try runPart(["convert", pt, pt, "--overwrite"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("is an input of this command"), r.stderr)
        r = try runPart(["convert", pt, dir.appendingPathComponent("x.bin").path])
        XCTAssertEqual(r.status, 64, r.stderr)
        r = try runPart(["convert", fixture("two_dicts.pt"), dir.appendingPathComponent("two.safetensors").path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.contains("--key"), r.stderr)
        r = try runPart(["convert", fixture("two_dicts.pt"), dir.appendingPathComponent("two.safetensors").path, "--key", "ema"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try runPart(["convert", fixture("smallcnn.safetensors"), pt, "--overwrite"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testCamAndTrainInitReadTorchFiles() throws {
        let dir = try scratch()
        var r = try runPart(["cam", fixture("smallcnn_fp16.pt"), "--dataset", "npy", "--data", fixture("npy"), "--limit", "2",
                             "--out", dir.appendingPathComponent("cam.png").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("cam.png").path))
        let train = ["train", "--dataset", "npy", "--data", fixture("npy"), "--arch", "small-cnn", "--epochs", "1",
                     "--method", "at", "--quiet"]
        r = try runPart(train + ["--init", fixture("smallcnn_zip.pt"), "--out", dir.appendingPathComponent("run").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/last.safetensors").path))
        r = try runPart(train + ["--init", fixture("two_dicts.pt"), "--out", dir.appendingPathComponent("run2").path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.contains("part convert --key"), r.stderr)
    }
}
