import Foundation
import PARTTestSupport
import XCTest

/// `part train --budget regions --regions SPEC` as a user runs it: bad specs, the record, resume.
final class RegionBudgetCLITests: XCTestCase {
    func testBadSpecsAreOneLineErrorsWithExitCode64() throws {
        let cases: [([String], String)] = [
            (["--budget", "regions"], "--budget regions needs --regions"),
            (["--budget", "regions", "--regions", "middle=0.01"], "unknown region 'middle'"),
            (["--budget", "regions", "--regions", "centre=0.5"], "must lie in [0, eps]"),
            (["--budget", "regions", "--regions", "centre"], "region=eps items"),
            (["--method", "at", "--regions", "centre=0.01"], "add --budget regions"),
            // The default method's CAM budget: named before its burn-in (2 of 1 epoch) is.
            (["--regions", "centre=0.01"], "add --budget regions"),
        ]
        for (arguments, fragment) in cases {
            let r = try runPart(["train", "--epochs", "1"] + arguments)
            XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") }.count, 1,
                           "\(arguments): \(r.stderr)")
            XCTAssert(r.stderr.contains(fragment), "\(arguments): \(r.stderr)")
        }
    }

    /// The spec is part of the run's record: the run's log names the budget, and a resume with
    /// another spec is refused naming --regions.
    func testARegionRunRecordsItsSpecAndResumeChecksIt() throws {
        let ref = try tinyReferenceRun("part-regions") { data, out in
            ["train", "--data", data.path, "--method", "at", "--budget", "regions", "--regions", "top-left=0.05,centre=0",
             "--batch-size", "8", "--epochs", "1", "--steps", "1", "--eval-steps", "1", "--eval-limit", "4", "--out", out.path,
             "--quiet"]
        }
        addTeardownBlock { try? FileManager.default.removeItem(at: ref.data.deletingLastPathComponent()) }
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: ref.run.appendingPathComponent("config.json"))) as! [String: Any]
        let config = record["config"] as! [String: Any]
        XCTAssertEqual(config["budget"] as? String, "regions")
        XCTAssertEqual(config["regions"] as? String, "top-left=0.05,centre=0")
        XCTAssertEqual(record["method"] as? String, "at-regions")
        let log = try String(contentsOf: ref.run.appendingPathComponent("log.jsonl"), encoding: .utf8)
        XCTAssert(log.contains("\"budget\":\"regions\""), log)
        let other = try runPart(["train", "--resume", ref.run.path, "--regions", "centre=0.01"])
        XCTAssertEqual(other.status, 64, other.stderr)
        XCTAssert(other.stderr.contains("--regions top-left=0.05,centre=0, this command gives centre=0.01"), other.stderr)
        let same = try runPart(["train", "--resume", ref.run.path, "--regions", "top-left=0.05,centre=0", "--quiet"])
        XCTAssertEqual(same.status, 0, same.stderr)
    }
}
