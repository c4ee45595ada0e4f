import Foundation
import PARTTestSupport
import PARTNN
import XCTest

/// `part eval --save-results` killed with SIGKILL and started again with the same command ends
/// with the same files as an uninterrupted run.
final class KillResumeTests: XCTestCase {
    func testKilledTwiceAndRerunGivesTheSameResults() throws {
        let dir = try makeTemporaryDirectory(self)
        let (model, data) = try Quadrants.model()
        try writeIDX(data.prefix(32), to: dir)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        func arguments(_ name: String) -> [String] {
            ["eval", checkpoint.path, "--data", dir.path, "--limit", "32", "--batch-size", "16", "--eps", "0.1",
             "--attacks", "natural,pgd:steps=6,cw:steps=6,mma:steps=2", "--json", "--quiet",
             "--save-results", dir.appendingPathComponent("\(name).jsonl").path,
             "--save-adversarial", dir.appendingPathComponent("\(name).npy").path]
        }
        let reference = try runPart(arguments("reference"))
        XCTAssertEqual(reference.status, 0, reference.stderr)

        let progress = dir.appendingPathComponent("killed.jsonl.progress.json")
        let results = dir.appendingPathComponent("killed.jsonl")
        // First kill: inside batch 1, after two stages; second kill: once a batch is written.
        let moments: [() -> Bool] = [
            { (try? String(contentsOf: progress, encoding: .utf8))?.contains("\"stagesDone\":2") == true },
            { ((try? String(contentsOf: results, encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 17 },
        ]
        for (n, moment) in moments.enumerated() {
            let process = Process()
            process.executableURL = partBinary
            process.arguments = arguments("killed")
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(120)
            while !moment() && process.isRunning && Date() < deadline { usleep(5_000) }
            XCTAssert(process.isRunning, "kill \(n + 1): the run ended before the moment to kill it")
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            XCTAssertEqual(process.terminationReason, .uncaughtSignal)
        }
        let resumed = try runPart(arguments("killed"))
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let a = try String(contentsOf: dir.appendingPathComponent("reference.jsonl"), encoding: .utf8).split(separator: "\n")
        let b = try String(contentsOf: results, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(a.count, 33)
        XCTAssertEqual(Array(a.dropFirst()), Array(b.dropFirst()), "per-example outcomes differ after the kills")
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("reference.npy")),
                       try Data(contentsOf: dir.appendingPathComponent("killed.npy")), "worst-case examples differ")
        let json = try JSONSerialization.jsonObject(with: Data(resumed.stdout.utf8)) as! [String: Any]
        XCTAssertGreaterThan(json["resumed"] as! Int, 0)
        let referenceJSON = try JSONSerialization.jsonObject(with: Data(reference.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["robustAccuracy"] as? Double, referenceJSON["robustAccuracy"] as? Double)
        XCTAssertLessThan(json["robustAccuracy"] as! Double, json["cleanAccuracy"] as! Double, "the attacks should break points")
    }
}
