import Foundation
import PARTTestSupport
import XCTest

/// `part eval model.onnx` as a user runs it: a PyTorch export evaluated under attack, and the
/// files it refuses (one line, exit 1).
final class ONNXCLITests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/onnx")

    func testEvalRunsAnExportedModel() throws {
        let dir = try makeTemporaryDirectory(self, "part-onnx-eval")
        try writeTinyDataset(to: dir, test: 8, side: 16)
        let r = try runPart(["eval", Self.fixtures.appendingPathComponent("smallcnn.onnx").path, "--data", dir.path,
                             "--eps", "8/255", "--alpha", "2/255", "--attacks", "natural,pgd:steps=2", "--independent", "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["architecture"] as? String, "onnx")
        XCTAssertEqual(json["count"] as? Int, 8)
    }

    /// `part cam` reads the ONNX model's CAM layers (node names), and refuses another name.
    func testCamDrawsAnExportedModel() throws {
        let dir = try makeTemporaryDirectory(self, "part-onnx-cam")
        try writeTinyDataset(to: dir, test: 4, side: 16)
        let model = Self.fixtures.appendingPathComponent("smallcnn.onnx").path
        let grid = dir.appendingPathComponent("grid.png")
        let r = try runPart(["cam", model, "--data", dir.path, "--limit", "4", "--out", grid.path, "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["camLayer"] as? String, "/act4/Relu")
        XCTAssertTrue(FileManager.default.fileExists(atPath: grid.path))
        let bad = try runPart(["cam", model, "--data", dir.path, "--limit", "4", "--out", grid.path, "--cam-layer", "act9"])
        XCTAssertEqual(bad.status, 64, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("/conv4/Conv"), bad.stderr)
    }

    func testBrokenAndUnsupportedFilesExitOne() throws {
        let dir = try makeTemporaryDirectory(self, "part-onnx-refused")
        try writeTinyDataset(to: dir, test: 4, side: 16)
        let bytes = try Data(contentsOf: Self.fixtures.appendingPathComponent("smallcnn.onnx"))
        let truncated = dir.appendingPathComponent("truncated.onnx")
        try bytes.prefix(bytes.count - 1000).write(to: truncated)
        for (file, expected) in [(truncated.path, "not an ONNX model"),
                                 (Self.fixtures.appendingPathComponent("unsupported.onnx").path, "node '/Cos' (Cos)")] {
            let r = try runPart(["eval", file, "--data", dir.path, "--attacks", "natural"])
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.hasPrefix("part: error: ") && r.stderr.contains(expected), r.stderr)
        }
    }
}
