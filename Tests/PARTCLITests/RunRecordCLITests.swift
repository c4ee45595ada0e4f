import Foundation
import PARTTestSupport
import XCTest

/// `config.json` is one typed record (configuration, dataset request, process options, seeds),
/// and `part train --resume` rebuilds the run from it alone: a run started from a preset with
/// another --dataset, killed with SIGKILL (the `PART_FAULT` hook), resumes to the uninterrupted
/// run's weights, as a whole sweep and one seed of it do; a record of the older layout (the
/// command line instead of the data request and options) still resumes, and one without either
/// is refused with a sentence.
final class RunRecordCLITests: XCTestCase {
    /// The Fashion-MNIST PART preset on the tiny IDX files read as --dataset mnist: 12 of the 16
    /// training images (2 batches of 8 and 4), 2 epochs (the second with a CAM budget), a
    /// checkpoint after every batch. The record must keep --dataset and --train-limit: without
    /// them the resumed run would read the default Fashion-MNIST folder, or 16 images.
    static func arguments(data: URL, out: URL, seeds: String? = nil) -> [String] {
        ["train", "--preset", "fashion-mnist-small-cnn-part", "--dataset", "mnist", "--data", data.path,
         "--train-limit", "12", "--batch-size", "8", "--epochs", "2", "--burn-in", "1", "--steps", "1",
         "--eval-steps", "1", "--threads", "2", "--checkpoint-every", "1", "--out", out.path]
            + (seeds.map { ["--seeds", $0] } ?? [])
    }

    /// The uninterrupted run and sweep, made once for the class.
    static let reference: Result<(data: URL, run: URL, sweep: URL), Error> = Result {
        let (data, run) = try tinyReferenceRun("part-record") { arguments(data: $0, out: $1) }
        let sweep = run.deletingLastPathComponent().appendingPathComponent("reference-sweep")
        let r = try runPart(arguments(data: data, out: sweep, seeds: "0,1"))
        guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": r.stderr]) }
        return (data, run, sweep)
    }

    override class func tearDown() {
        if case .success(let ref) = reference { try? FileManager.default.removeItem(at: ref.data.deletingLastPathComponent()) }
        super.tearDown()
    }

    func referenceRuns() throws -> (data: URL, run: URL, sweep: URL) { try RunRecordCLITests.reference.get() }

    /// Starts `arguments` and kills the process at `point`.
    func killed(_ arguments: [String], at point: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (r, reason) = try runPart(arguments, environment: ["PART_FAULT": "kill@\(point)"])
        XCTAssertEqual(reason, .uncaughtSignal, "\(point): \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, SIGKILL, point, file: file, line: line)
    }

    /// `part train --resume path` succeeds (and resumes, not restarts, when `from` is given).
    func resume(_ path: URL, from: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runPart(["train", "--resume", path.path])
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        if let from { XCTAssert(r.stderr.contains(from), "\(r.stderr) should say \(from)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("part: error"), r.stderr, file: file, line: line)
    }

    func assertSameWeights(_ a: URL, _ b: URL, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try Data(contentsOf: a.appendingPathComponent("last.safetensors"))
        let y = try Data(contentsOf: b.appendingPathComponent("last.safetensors"))
        XCTAssert(x == y, "\(context): the resumed weights differ from the uninterrupted run's", file: file, line: line)
    }

    func record(_ run: URL) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("config.json"))) as! [String: Any]
    }

    func testAPresetRunWithAnotherDatasetResumesFromItsRecord() throws {
        let ref = try referenceRuns()
        // The record holds the explicit --dataset (not the preset's) and the options; no command line.
        let saved = try record(ref.run)
        XCTAssertEqual((saved["config"] as? [String: Any])?["dataset"] as? String, "mnist")
        XCTAssertEqual((saved["dataset"] as? [String: Any])?["name"] as? String, "mnist")
        XCTAssertEqual((saved["dataset"] as? [String: Any])?["location"] as? String, ref.data.path)
        XCTAssertEqual((saved["options"] as? [String: Any])?["trainLimit"] as? Int, 12)
        XCTAssertEqual((saved["options"] as? [String: Any])?["checkpointEvery"] as? Int, 1)
        XCTAssertNil(saved["arguments"])
        XCTAssertEqual(saved["trainImages"] as? Int, 12)
        let run = try makeTemporaryDirectory(self, "part-record-run").appendingPathComponent("run")
        try killed(RunRecordCLITests.arguments(data: ref.data, out: run), at: "mid-batch#3")
        try resume(run, from: "resuming \(run.path) from the checkpoint")
        try assertSameWeights(ref.run, run, "preset + --dataset")
        // Given again on the resume, the same --dataset (with its --data, as anywhere) agrees;
        // another one is refused by name.
        let same = try runPart(["train", "--resume", run.path, "--dataset", "mnist", "--data", ref.data.path,
                                "--preset", "fashion-mnist-small-cnn-part"])
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssert(same.stderr.contains("is complete"), same.stderr)
        let other = try runPart(["train", "--resume", run.path, "--dataset", "fashion-mnist"])
        XCTAssertEqual(other.status, 64, other.stderr)
        XCTAssert(other.stderr.contains("the run was trained with --dataset mnist, this command gives fashion-mnist"),
                  other.stderr)
    }

    /// part report and part cam read the record too: without --dataset and --data they draw the
    /// test images of the data the run trained on.
    func testReportAndCamReadTheRunsData() throws {
        let ref = try referenceRuns()
        let dir = try makeTemporaryDirectory(self, "part-record-report")
        let report = try runPart(["report", ref.run.path, "--out", dir.appendingPathComponent("report.html").path,
                                  "--grid-rows", "2"])
        XCTAssertEqual(report.status, 0, report.stderr)
        XCTAssertFalse(report.stderr.contains("no CAM grid"), report.stderr)
        let cam = try runPart(["cam", ref.run.appendingPathComponent("last.safetensors").path, "--limit", "2",
                               "--out", dir.appendingPathComponent("grid.png").path])
        XCTAssertEqual(cam.status, 0, cam.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: dir.appendingPathComponent("grid.png").path))
    }

    func testASweepResumesAsAWholeAndSeedBySeed() throws {
        let ref = try referenceRuns()
        let dir = try makeTemporaryDirectory(self, "part-record-sweep")
        // Killed in seed 1's second batch; the whole sweep resumes.
        let whole = dir.appendingPathComponent("whole")
        try killed(RunRecordCLITests.arguments(data: ref.data, out: whole, seeds: "0,1"), at: "batch#6")
        try resume(whole, from: "seed 1: resuming \(whole.path)/seed-1")
        // Killed in seed 0; seed 0 resumes alone, then the sweep trains seed 1.
        let bySeed = dir.appendingPathComponent("by-seed")
        try killed(RunRecordCLITests.arguments(data: ref.data, out: bySeed, seeds: "0,1"), at: "mid-batch#3")
        try resume(bySeed.appendingPathComponent("seed-0"), from: "resuming \(bySeed.path)/seed-0 from the checkpoint")
        try resume(bySeed, from: "seed 1: starts")
        for sweep in [whole, bySeed] {
            for seed in ["seed-0", "seed-1"] {
                try assertSameWeights(ref.sweep.appendingPathComponent(seed), sweep.appendingPathComponent(seed),
                                      "\(sweep.lastPathComponent)/\(seed)")
            }
            XCTAssertEqual((try record(sweep)["sweep"] as? [String: Any])?["seeds"] as? [Int], [0, 1])
        }
    }

    /// `config.json` as the versions before the typed record wrote it: the command line (paths
    /// absolute) instead of the dataset request and the options.
    func makeOldRecord(_ run: URL, arguments: [String]?) throws {
        var object = try record(run)
        for key in ["version", "dataset", "options"] { object.removeValue(forKey: key) }
        if let arguments { object["arguments"] = arguments }
        try JSONSerialization.data(withJSONObject: object).write(to: run.appendingPathComponent("config.json"))
    }

    func testAnOldRecordStillResumesAndOneWithoutItsCommandIsRefused() throws {
        let ref = try referenceRuns()
        let dir = try makeTemporaryDirectory(self, "part-record-old")
        let run = dir.appendingPathComponent("run")
        let arguments = RunRecordCLITests.arguments(data: ref.data, out: run)
        try killed(arguments, at: "batch#2")
        let kept = dir.appendingPathComponent("kept")
        try FileManager.default.copyItem(at: run, to: kept)
        // The old layout's command (its --preset and --dataset included) is converted once.
        try makeOldRecord(run, arguments: Array(arguments.dropFirst()))
        try resume(run, from: "resuming \(run.path) from the checkpoint")
        try assertSameWeights(ref.run, run, "an old record")
        // Without its command the record cannot say what data the run read: a sentence, exit 64.
        try makeOldRecord(kept, arguments: nil)
        let refused = try runPart(["train", "--resume", kept.path])
        XCTAssertEqual(refused.status, 64, refused.stderr)
        let errors = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, refused.stderr)
        XCTAssert(refused.stderr.contains("records neither its data nor its command (written by an older version); "
                                          + "start a new run"), refused.stderr)
    }
}
