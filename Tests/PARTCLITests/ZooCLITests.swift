import Foundation
import PARTEngine
import XCTest

/// The leaderboard's architectures from the command line: help lists them, `part bench` times
/// them and `part train` trains them, CAM budget included.
extension CLITests {
    func testDeepMindWideResNetBenchesAndTrains() throws {
        let help = try part(["train", "--help"])
        XCTAssertEqual(help.status, 0)
        let flat = help.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        for name in ["wrn-28-10", "wrn-34-20", "dm-wrn-28-10", "dm-wrn-70-16", "dm-wrn-<depth>-<widen> layer.2"] {
            XCTAssert(flat.contains(name), "train --help lists \(name)")
        }

        let bench = try part(["bench", "--arch", "dm-wrn-10-1", "--batch-size", "2", "--reps", "1", "--cam-images", "1",
                              "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(result["model"] as? String, "dm-wrn-10-1")
        XCTAssert((result["part_step_s_per_batch"] as? Double ?? 0) > 0, bench.stdout)

        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 16)
        let out = dir.appendingPathComponent("run")
        let run = try part(["train", "--data", dir.path, "--arch", "dm-wrn-10-1", "--method", "part", "--epochs", "2",
                            "--burn-in", "1", "--steps", "1", "--eval-limit", "4", "--eval-steps", "1", "--batch-size", "8",
                            "--quiet", "--out", out.path])
        XCTAssertEqual(run.status, 0, run.stderr)
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json")))
                                   as? [String: Any])
        XCTAssertEqual(record["camLayer"] as? String, "layer.2")
        XCTAssertEqual((record["config"] as? [String: Any])?["architecture"] as? String, "dm-wrn-10-1")
        let weights = try SafetensorsFile.read(from: out.appendingPathComponent("last.safetensors"))
        XCTAssertEqual(weights.metadata["architecture"], "dm-wrn-10-1")
        XCTAssertEqual(weights.tensors["mean"]?.scalars, [0], "a one-channel input has no CIFAR-10 constants")
    }
}
