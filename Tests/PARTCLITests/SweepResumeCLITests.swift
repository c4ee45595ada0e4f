import Foundation
import PARTTestSupport
import XCTest

/// `part train --resume RUN` of a `--seeds` sweep: a sweep killed (SIGKILL through the
/// `PART_FAULT` hook) in either seed and resumed ends with the uninterrupted sweep's weights and
/// summary; a complete sweep is left as it is; seed directories that are not the sweep's are
/// refused before anything trains.
final class SweepResumeCLITests: XCTestCase {
    /// Seeds 0 and 1 of the tiny run of `ResumeCLITests`: 16 images of 16x16, 2 epochs of 2
    /// batches per seed (the second epoch with a CAM budget), a checkpoint after every batch. The
    /// `batch` point is reached 4 times per seed.
    static func arguments(data: URL, out: URL) -> [String] {
        ["train", "--data", data.path, "--batch-size", "8", "--epochs", "2", "--burn-in", "1", "--steps", "1",
         "--eval-steps", "1", "--threads", "2", "--checkpoint-every", "1", "--seeds", "0,1", "--out", out.path]
    }

    /// The uninterrupted sweep, made once for the class.
    static let reference: Result<(data: URL, run: URL), Error> = Result {
        try tinyReferenceRun("part-sweep") { arguments(data: $0, out: $1) }
    }

    override class func tearDown() {
        if case .success(let ref) = reference { try? FileManager.default.removeItem(at: ref.data.deletingLastPathComponent()) }
        super.tearDown()
    }

    func referenceRun() throws -> (data: URL, run: URL) { try SweepResumeCLITests.reference.get() }

    /// Starts the sweep into `run` and kills it at `point`.
    func killedSweep(_ run: URL, at point: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try referenceRun()
        let (killed, reason) = try runPart(SweepResumeCLITests.arguments(data: ref.data, out: run),
                                           environment: ["PART_FAULT": "kill@\(point)"])
        XCTAssertEqual(reason, .uncaughtSignal, "\(point): \(killed.stderr)", file: file, line: line)
        XCTAssertEqual(killed.status, SIGKILL, point, file: file, line: line)
    }

    /// `summary.json` without the seeds' directories (the runs live in different folders).
    func summary(_ run: URL) throws -> NSDictionary {
        var object = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("summary.json")))
            as! [String: Any]
        object["seeds"] = (object["seeds"] as! [[String: Any]]).map { $0.filter { $0.key != "directory" } }
        return object as NSDictionary
    }

    /// Epoch numbers, losses and accuracies of a seed's log (timings differ between runs).
    func logSummary(_ run: URL) throws -> [String] {
        try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8).split(separator: "\n").map {
            let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return "\(o["seed"]!) \(o["epoch"]!) \(o["loss"]!) \(o["cleanAccuracy"]!) \(o["robustAccuracy"]!) \(o["budget"]!)"
        }
    }

    /// Each seed's weights byte for byte, its log and the summary against the uninterrupted sweep's.
    func assertMatchesReference(_ run: URL, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try referenceRun()
        for seed in ["seed-0", "seed-1"] {
            let a = try Data(contentsOf: ref.run.appendingPathComponent("\(seed)/last.safetensors"))
            let b = try Data(contentsOf: run.appendingPathComponent("\(seed)/last.safetensors"))
            XCTAssert(a == b, "\(context): \(seed)'s weights differ from the uninterrupted sweep's", file: file, line: line)
            XCTAssertEqual(try logSummary(run.appendingPathComponent(seed)), try logSummary(ref.run.appendingPathComponent(seed)),
                           "\(context): \(seed)/log.jsonl", file: file, line: line)
        }
        let expected = try summary(ref.run), got = try summary(run)
        XCTAssertEqual(got, expected, "\(context): summary.json", file: file, line: line)
        let seeds = got["seeds"] as? [[String: Any]] ?? []
        XCTAssertEqual(seeds.map { $0["seed"] as? Int }, [0, 1], context, file: file, line: line)
        let directories = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("summary.json")))
        XCTAssertEqual(((directories as? [String: Any])?["seeds"] as? [[String: Any]])?.map { $0["directory"] as? String },
                       [run.appendingPathComponent("seed-0").path, run.appendingPathComponent("seed-1").path], context,
                       file: file, line: line)
    }

    func testKilledInTheSecondSeedResumesToTheUninterruptedSweep() throws {
        let run = try makeTemporaryDirectory(self, "part-sweep-kill").appendingPathComponent("run")
        // After the step of seed 1's second batch, before that epoch's checkpoint.
        try killedSweep(run, at: "batch#6")
        let before = try summary(run)
        XCTAssertEqual((before["seeds"] as? [Any])?.count, 1, "summary.json holds the finished seed 0")
        let resumed = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(resumed.stdout.contains("seeds 0,1; resuming the sweep in \(run.path)"), resumed.stdout)
        XCTAssert(resumed.stderr.contains("seed 0: complete (after epoch 2)"), resumed.stderr)
        XCTAssert(resumed.stderr.contains("seed 1: resuming \(run.path)/seed-1 from the checkpoint in epoch 1 after batch 1 of 2"),
                  resumed.stderr)
        XCTAssert(resumed.stdout.contains("over seeds 0,1: clean"), resumed.stdout)
        XCTAssertFalse(resumed.stdout.contains("seed 0  epoch"), "seed 0 is not trained again: \(resumed.stdout)")
        try assertMatchesReference(run, "killed in seed 1")
    }

    func testInterruptedInTheFirstSeedResumesToTheUninterruptedSweep() throws {
        let ref = try referenceRun()
        let run = try makeTemporaryDirectory(self, "part-sweep-first").appendingPathComponent("run")
        // Ctrl-C after seed 0's third batch: the batch's checkpoint, and the sweep's resume command.
        var arguments = SweepResumeCLITests.arguments(data: ref.data, out: run)
        if let i = arguments.firstIndex(of: "--checkpoint-every") { arguments[i + 1] = "0" }
        let live = try LivePart(arguments, environment: ["PART_FAULT": "pause@batch#3"])
        XCTAssert(live.waitFor("fault: paused at batch"), live.stderr)
        kill(live.process.processIdentifier, SIGINT)
        let r = live.finish()
        XCTAssertEqual(r.status, 130, r.stderr)
        let last = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssert(last.contains("checkpoint written in epoch 2 after batch 1 of 2 (seed 0): resume with part train --resume \(run.path)"),
                  last)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent("seed-1").path), "seed 1 never started")
        let resumed = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(resumed.stderr.contains("seed 0: resuming \(run.path)/seed-0 from the checkpoint in epoch 2 after batch 1 of 2"),
                  resumed.stderr)
        XCTAssert(resumed.stderr.contains("seed 1: starts"), resumed.stderr)
        try assertMatchesReference(run, "interrupted in seed 0")
    }

    func testASeedDirectoryWithoutACheckpointStartsOver() throws {
        let run = try makeTemporaryDirectory(self, "part-sweep-none").appendingPathComponent("run")
        // Seed 1 killed in its first batch: its directory holds config.json and no checkpoint.
        try killedSweep(run, at: "mid-batch#5")
        let resumed = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssert(resumed.stderr.contains("seed 1: \(run.path)/seed-1 holds no checkpoint; the seed starts over"), resumed.stderr)
        try assertMatchesReference(run, "seed 1 without a checkpoint")
    }

    /// One seed resumed alone is a single run; the sweep's resume then reads both seeds back and
    /// writes the summary without training anything.
    func testASeedResumedAloneThenTheSweepWritesTheSummary() throws {
        let run = try makeTemporaryDirectory(self, "part-sweep-one").appendingPathComponent("run")
        try killedSweep(run, at: "batch#8")
        let seed = try runPart(["train", "--resume", run.appendingPathComponent("seed-1").path])
        XCTAssertEqual(seed.status, 0, seed.stderr)
        XCTAssert(seed.stderr.contains("resuming \(run.path)/seed-1 from the checkpoint in epoch 2 after batch 1 of 2"),
                  seed.stderr)
        XCTAssertEqual((try summary(run)["seeds"] as? [Any])?.count, 1, "a seed alone leaves summary.json")
        let sweep = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(sweep.status, 0, sweep.stderr)
        XCTAssert(sweep.stderr.contains("seed 0: complete") && sweep.stderr.contains("seed 1: complete"), sweep.stderr)
        XCTAssertFalse(sweep.stderr.contains("nothing to resume"), "summary.json was written: \(sweep.stderr)")
        try assertMatchesReference(run, "seed 1 resumed alone")
    }

    /// Every file of `run` but the locks: path, then size, modification time and content.
    func snapshot(_ run: URL) throws -> [String: String] {
        var out = [String: String]()
        // Data's hashValue reads only a prefix of the bytes: a digest of all of them.
        func digest(_ data: Data) -> String {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in data { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
            return String(h, radix: 16)
        }
        let fm = FileManager.default
        for case let path as String in fm.enumerator(atPath: run.path)! where !path.hasSuffix(".lock") {
            let url = run.appendingPathComponent(path)
            let attributes = try fm.attributesOfItem(atPath: url.path)
            guard attributes[.type] as? FileAttributeType == .typeRegular else { continue }
            let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
            out[path] = "\(attributes[.size] ?? 0) \(modified) \(digest(try Data(contentsOf: url)))"
        }
        return out
    }

    func testAFinishedSweepHasNothingToResumeAndChangesNothing() throws {
        let ref = try referenceRun()
        let before = try snapshot(ref.run)
        XCTAssertNotNil(before["seed-1/last.safetensors"])
        let r = try runPart(["train", "--resume", ref.run.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("the sweep in \(ref.run.path) is complete (seeds 0,1); nothing to resume"), r.stderr)
        XCTAssertEqual(try snapshot(ref.run), before, "a finished sweep resumed changes no file")
    }

    /// `part report` on the sweep's directory says it is a sweep and shows the summary, although
    /// the sweep's config.json makes it look like a run that has not finished an epoch.
    func testTheReportOfASweepSaysSoAndShowsTheSummary() throws {
        let ref = try referenceRun()
        let html = ref.run.deletingLastPathComponent().appendingPathComponent("sweep-report.html")
        let r = try runPart(["report", ref.run.path, "--out", html.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let page = try String(contentsOf: html, encoding: .utf8)
        XCTAssert(page.contains("holds a seed sweep (seed-0, seed-1)"), page)
        XCTAssert(page.contains("summary.json"), page)
    }

    func testSeedDirectoriesNotOfTheSweepAreRefusedBeforeAnythingTrains() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-sweep-foreign")
        func copy(_ name: String) throws -> URL {
            let run = dir.appendingPathComponent(name)
            try FileManager.default.copyItem(at: ref.run, to: run)
            return run
        }
        func edit(_ url: URL, _ change: (inout [String: Any]) -> Void) throws {
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
            change(&object)
            try JSONSerialization.data(withJSONObject: object).write(to: url)
        }
        func assertRefused(_ run: URL, _ fragments: [String], status: Int32 = 1, line: UInt = #line) throws {
            let before = try snapshot(run)
            let r = try runPart(["train", "--resume", run.path])
            XCTAssertEqual(r.status, status, r.stderr, line: line)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
            XCTAssertEqual(errors.count, 1, r.stderr, line: line)
            for f in fragments { XCTAssert(r.stderr.contains(f), "\(r.stderr) should name \(f)", line: line) }
            XCTAssertEqual(try snapshot(run), before, "a refused resume changes nothing", line: line)
        }
        // Seed 1 of another configuration (its recorded learning rate differs).
        let otherLR = try copy("other-lr")
        try edit(otherLR.appendingPathComponent("seed-1/config.json")) { o in
            var c = o["config"] as! [String: Any]
            c["learningRate"] = 0.02
            o["config"] = c
        }
        try assertRefused(otherLR, ["\(otherLR.path)/seed-1 is not seed 1 of the sweep", "--lr 0.02", "the sweep gives 0.01"])
        // Seed 1 from a sweep of other options (another --eval-limit).
        let otherData = try copy("other-data")
        try edit(otherData.appendingPathComponent("seed-1/config.json")) { o in
            var options = o["options"] as! [String: Any]
            options["evalLimit"] = 2
            o["options"] = options
        }
        try assertRefused(otherData, ["seed-1 is not seed 1", "--eval-limit 2", "the sweep gives 1000"])
        // Seed 0's run copied in place of seed 1.
        let renamed = try copy("renamed")
        try FileManager.default.removeItem(at: renamed.appendingPathComponent("seed-1"))
        try FileManager.default.copyItem(at: renamed.appendingPathComponent("seed-0"),
                                         to: renamed.appendingPathComponent("seed-1"))
        try assertRefused(renamed, ["seed-1 is not seed 1", "holds a run of seed 0"])
        // A sweep of an older version (no config.json of its own), and folders that hold no run.
        let old = try copy("old")
        try FileManager.default.removeItem(at: old.appendingPathComponent("config.json"))
        try assertRefused(old, ["older version"], status: 64)
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try assertRefused(empty, ["holds no run"], status: 64)
        let notDirectory = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: notDirectory)
        let r = try runPart(["train", "--resume", notDirectory.path])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssert(r.stderr.contains("is not a directory"), r.stderr)
        // --seeds cannot be changed on a resume.
        let seeds = try runPart(["train", "--resume", ref.run.path, "--seeds", "0,1,2"])
        XCTAssertEqual(seeds.status, 64, seeds.stderr)
        XCTAssert(seeds.stderr.contains("drop --seeds") && seeds.stderr.contains("--resume RUN continues a whole --seeds sweep"),
                  seeds.stderr)
    }
}
