import Foundation
import PARTTestSupport
import XCTest

/// `part train --model model.onnx` as a user runs it: the warning, RUN/last.onnx and best.onnx, the record, a
/// changed file refused on resume, bad flags; and `part eval --save-logits`.
final class ONNXTrainCLITests: XCTestCase {
    func testTrainWritesLastONNXAndResumeRefusesAChangedModel() throws {
        let dir = try makeTemporaryDirectory(self, "part-onnx-train")
        try writeTinyDataset(to: dir, train: 16, test: 4, side: 16)
        let model = dir.appendingPathComponent("model.onnx")
        try FileManager.default.copyItem(at: ONNXCLITests.fixtures.appendingPathComponent("smallcnn.onnx"), to: model)
        let run = dir.appendingPathComponent("run")
        let flags = ["--data", dir.path, "--budget", "constant", "--batch-size", "8", "--steps", "1", "--eval-steps", "1",
                     "--eval-limit", "4", "--quiet"]
        let r = try runPart(["train", "--model", model.path, "--epochs", "1", "--val-split", "4", "--out", run.path] + flags)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("warning: ") && r.stderr.contains("no BatchNormalization"), r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: run.appendingPathComponent("last.onnx").path))
        // With --val-split, the best epoch's graph beside best.safetensors (here the only epoch's).
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("best.onnx")),
                       try Data(contentsOf: run.appendingPathComponent("last.onnx")))
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("config.json")))
            as? [String: Any])
        let config = try XCTUnwrap(record["config"] as? [String: Any])
        XCTAssertEqual(config["model"] as? String, model.path)
        XCTAssertEqual((config["modelMD5"] as? String)?.count, 32)
        XCTAssertEqual(config["architecture"] as? String, "onnx")

        // The trained graph evaluates, and --save-logits writes one row of logits per image.
        let logits = dir.appendingPathComponent("logits.npy")
        let e = try runPart(["eval", run.appendingPathComponent("last.onnx").path, "--data", dir.path, "--attacks", "natural",
                             "--save-logits", logits.path, "--quiet"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let size = try XCTUnwrap(try FileManager.default.attributesOfItem(atPath: logits.path)[.size] as? Int)
        XCTAssertEqual(size, 128 + 4 * 10 * 4)

        // Resuming with another file at the recorded path is refused in one line (exit 1).
        var bytes = try Data(contentsOf: model)
        bytes[bytes.count - 1] ^= 1
        try bytes.write(to: model)
        let resumed = try runPart(["train", "--resume", run.path, "--quiet"])
        XCTAssertEqual(resumed.status, 1, resumed.stderr)
        XCTAssert(resumed.stderr.contains("changed since the run started"), resumed.stderr)
        XCTAssertEqual(resumed.stderr.split(separator: "\n").count, 1, resumed.stderr)
    }

    func testBadModelFlagsExit64() throws {
        let dir = try makeTemporaryDirectory(self, "part-onnx-train-flags")
        let model = ONNXCLITests.fixtures.appendingPathComponent("smallcnn.onnx").path
        for (arguments, expected) in [(["--model", model, "--arch", "resnet18"], "drop --arch resnet18"),
                                      (["--model", dir.appendingPathComponent("none.onnx").path], "none.onnx"),
                                      (["--model", model, "--normalize", "0.5/0.25"], "--normalize")] {
            let r = try runPart(["train"] + arguments + ["--data", dir.path, "--out", dir.appendingPathComponent("run").path])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssert(r.stderr.contains(expected), r.stderr)
        }
    }

    /// `part bench --model` times the graph on images of its own shape and classes.
    func testBenchTimesAnONNXModel() throws {
        let model = ONNXCLITests.fixtures.appendingPathComponent("smallcnn_train.onnx").path
        let r = try runPart(["bench", "--model", model, "--batch-size", "4", "--reps", "1", "--cam-images", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["model"] as? String, "smallcnn_train.onnx")
        XCTAssertGreaterThan(json["at_images_per_s"] as? Double ?? 0, 0)
        let bad = try runPart(["bench", "--model", ONNXCLITests.fixtures.appendingPathComponent("unsupported.onnx").path])
        XCTAssertEqual(bad.status, 1, bad.stderr)
        XCTAssert(bad.stderr.contains("Cos"), bad.stderr)
    }
}
