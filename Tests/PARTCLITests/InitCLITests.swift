import PARTTestSupport
import Foundation
import PARTEngine
import XCTest

/// `part train --init CHECKPOINT`: a run that starts from a checkpoint's weights.
extension CLITests {
    func testInitStartsFromTheCheckpointsWeights() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 16)
        let common = ["train", "--data", dir.path, "--method", "at", "--epochs", "1", "--steps", "2", "--eval-limit", "4",
                      "--eval-steps", "1", "--batch-size", "8", "--quiet"]
        let first = dir.appendingPathComponent("first")
        let trained = try part(common + ["--out", first.path])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let weights = first.appendingPathComponent("last.safetensors")

        // With a vanishing learning rate the run ends where it started: on the checkpoint's weights.
        let still = dir.appendingPathComponent("still")
        let r = try part(common + ["--out", still.path, "--init", weights.path, "--lr", "1e-20", "--seed", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("starting from the weights of \(weights.path)"), r.stdout)
        let before = try SafetensorsFile.read(from: weights), after = try SafetensorsFile.read(from: still.appendingPathComponent("last.safetensors"))
        XCTAssertEqual(Set(before.tensors.keys), Set(after.tensors.keys))
        for (name, t) in before.tensors {
            let moved = zip(t.scalars, after.tensors[name]?.scalars ?? []).map { abs($0 - $1) }.max() ?? 1
            XCTAssertLessThan(moved, 1e-7, name)
        }
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: still.appendingPathComponent("config.json"))) as? [String: Any]
        XCTAssertEqual((config?["config"] as? [String: Any])?["initialWeights"] as? String, weights.path)

        // The same command without --init starts from the seed's initialisation instead.
        let fresh = dir.appendingPathComponent("fresh")
        XCTAssertEqual(try part(common + ["--out", fresh.path, "--lr", "1e-20", "--seed", "5"]).status, 0)
        let initialised = try SafetensorsFile.read(from: fresh.appendingPathComponent("last.safetensors"))
        XCTAssertNotEqual(initialised.tensors["conv1.weight"]?.scalars, before.tensors["conv1.weight"]?.scalars)
    }

    func testInitOfAMissingOrMismatchedCheckpointIsAClearError() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 16)
        let common = ["train", "--data", dir.path, "--method", "at", "--epochs", "1", "--steps", "1", "--eval-limit", "4",
                      "--batch-size", "8", "--quiet"]
        let missing = try part(common + ["--init", dir.appendingPathComponent("nope.safetensors").path,
                                         "--out", dir.appendingPathComponent("a").path])
        XCTAssertEqual(missing.status, 64, missing.stderr)
        XCTAssert(missing.stderr.contains("--init") && missing.stderr.contains("nope.safetensors"), missing.stderr)

        let first = dir.appendingPathComponent("first")
        XCTAssertEqual(try part(common + ["--out", first.path]).status, 0)
        let other = dir.appendingPathComponent("other")
        let mismatch = try part(common + ["--arch", "resnet18", "--init", first.appendingPathComponent("last.safetensors").path,
                                          "--out", other.path])
        XCTAssertEqual(mismatch.status, 1, mismatch.stderr)
        XCTAssert(mismatch.stderr.contains("--init") && mismatch.stderr.contains("resnet18"), mismatch.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: other.appendingPathComponent("last.safetensors").path))
    }
}
