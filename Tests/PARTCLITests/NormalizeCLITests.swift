import Foundation
import PARTEngine
import XCTest

/// `--normalize MEAN/STD` on `part train`, `part eval` and `part cam`: one syntax, recorded in
/// the run and its checkpoints, applied again by eval, cam and resume.
extension CLITests {
    func testNormalizeIsRecordedByTrainAndAppliedByEvalCamAndResume() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 16)
        let out = dir.appendingPathComponent("run")
        let common = ["--data", dir.path, "--method", "at", "--steps", "1", "--eval-limit", "4", "--eval-steps", "1",
                      "--batch-size", "8", "--quiet"]
        let run = try part(["train", "--epochs", "1", "--normalize", "0.50/0.250", "--out", out.path] + common)
        XCTAssertEqual(run.status, 0, run.stderr)
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json")))
                                   as? [String: Any])
        XCTAssertEqual((record["config"] as? [String: Any])?["normalize"] as? String, "0.5/0.25", "canonical in the record")
        let weights = out.appendingPathComponent("last.safetensors")
        XCTAssertEqual(try SafetensorsFile.read(from: weights).metadata["normalize"], "0.5/0.25")

        // eval applies the checkpoint's normalisation without the flag: the same logits as with
        // it, and other logits than without normalisation.
        let evalArgs = ["eval", weights.path, "--data", dir.path, "--attacks", "natural", "--limit", "8", "--json", "--quiet"]
        let logits = (implicit: dir.appendingPathComponent("implicit.npy"), explicit: dir.appendingPathComponent("explicit.npy"),
                      bare: dir.appendingPathComponent("bare.npy"))
        let implicit = try part(evalArgs + ["--save-logits", logits.implicit.path])
        let explicit = try part(evalArgs + ["--normalize", "0.5/0.25", "--save-logits", logits.explicit.path])
        let bare = try part(evalArgs + ["--normalize", "0/1", "--save-logits", logits.bare.path])
        for r in [implicit, explicit, bare] { XCTAssertEqual(r.status, 0, r.stderr) }
        XCTAssertEqual(try Data(contentsOf: logits.implicit), try Data(contentsOf: logits.explicit))
        XCTAssertNotEqual(try Data(contentsOf: logits.implicit), try Data(contentsOf: logits.bare))
        func json(_ text: String) throws -> [String: Any] {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        }
        XCTAssertEqual(try json(implicit.stdout)["normalize"] as? String, "0.5/0.25")
        XCTAssertEqual(try json(implicit.stdout)["cleanAccuracy"] as? Double, try json(explicit.stdout)["cleanAccuracy"] as? Double)
        XCTAssert(bare.stderr.contains("warning: --normalize 0/1 replaces the normalisation 0.5/0.25"), bare.stderr)
        XCTAssertFalse(implicit.stderr.contains("warning"), implicit.stderr)

        // cam takes it from the run's record.
        let cam = try part(["cam", weights.path, "--data", dir.path, "--limit", "4", "--json", "--quiet",
                            "--out", dir.appendingPathComponent("grid.png").path])
        XCTAssertEqual(cam.status, 0, cam.stderr)
        XCTAssertEqual(try json(cam.stdout)["normalize"] as? String, "0.5/0.25")

        // A resume refuses another normalisation and accepts the same one, however spelt.
        let other = try part(["train", "--resume", out.path, "--normalize", "0.4/0.3", "--quiet"])
        XCTAssertEqual(other.status, 64, other.stderr)
        XCTAssert(other.stderr.contains("--normalize 0.5/0.25, this command gives 0.4/0.3"), other.stderr)
        let same = try part(["train", "--resume", out.path, "--normalize", "0.500/0.25", "--quiet"])
        XCTAssertEqual(same.status, 0, same.stderr)
    }

    func testABadNormalizeIsOneLineAndExit64() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 8)
        for command in [["train", "--data", dir.path, "--out", dir.appendingPathComponent("r").path],
                        ["eval", dir.appendingPathComponent("none.safetensors").path, "--data", dir.path],
                        ["cam", dir.appendingPathComponent("none.safetensors").path, "--data", dir.path]] {
            for bad in ["0.5", "0.5/0", "0.1,0.2/0.3"] {
                let r = try part(command + ["--normalize", bad])
                XCTAssertEqual(r.status, 64, "\(command[0]) \(bad): \(r.stderr)")
                XCTAssert(r.stderr.contains("--normalize takes MEAN/STD"), r.stderr)
                XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            }
        }
        // Well-formed but for three channels, on one-channel images: refused when the model is built.
        let r = try part(["train", "--data", dir.path, "--method", "at", "--epochs", "1", "--batch-size", "8",
                          "--eval-limit", "4", "--quiet", "--normalize", "0.1,0.2,0.3/1,1,1",
                          "--out", dir.appendingPathComponent("three").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssert(r.stderr.contains("--normalize 0.1,0.2,0.3/1.0,1.0,1.0") && r.stderr.contains("1 channels"), r.stderr)
    }
}
