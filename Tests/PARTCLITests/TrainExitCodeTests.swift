import Foundation
import PARTTestSupport
import XCTest

/// `part train`'s side of the exit-code contract (docs/conventions.md.md section 1) and its run
/// directories: a bad flag exits 64 with one line before any work; a missing or unusable
/// file exits 1 naming it; runs never share or silently extend a directory.
final class TrainExitCodeTests: XCTestCase {
    func assertBadArgument(_ arguments: [String], _ reason: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runPart(arguments)
        XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)", file: file, line: line)
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        XCTAssert(first.contains(reason), "\(arguments): first line \"\(first)\" should give \"\(reason)\"", file: file, line: line)
        XCTAssertEqual(r.stdout, "", file: file, line: line)
    }

    /// Non-finite and out-of-range rates, budgets and schedules are refused before any data is read.
    func testNonFiniteAndOutOfRangeFlagsExit64() throws {
        try assertBadArgument(["train", "--lr", "inf"], "--lr must be a finite number > 0, got inf")
        try assertBadArgument(["train", "--alpha", "inf"], "--alpha must be a finite number >= 0, got inf")
        try assertBadArgument(["train", "--weight-decay", "inf"], "--weight-decay must be a finite number >= 0")
        try assertBadArgument(["train", "--lr-gamma", "nan"], "--lr-gamma must be in (0, 1], got nan")
        try assertBadArgument(["train", "--lr-gamma=-10"], "--lr-gamma must be in (0, 1]")
        try assertBadArgument(["train", "--epochs", "5", "--lr-milestones", "0"], "--lr-milestones must lie in 1...4")
        try assertBadArgument(["train", "--epochs", "5", "--lr-milestones", "9"], "--lr-milestones must lie in 1...4")
        try assertBadArgument(["train", "--epochs", "5", "--lr-milestones", "2,2"], "increasing and unique")
        try assertBadArgument(["train", "--epochs", "5", "--lr-milestones", "3", "2"], "increasing and unique")
        // A negative number is a value to check, not a missing one.
        try assertBadArgument(["train", "--epochs", "-1"], "--epochs must be at least 1")
        try assertBadArgument(["train", "--lr", "-0.1"], "--lr must be a finite number > 0")
        try assertBadArgument(["train", "--checkpoint-every", "-1"], "--checkpoint-every must be >= 0")
        try assertBadArgument(["train", "--checkpoint-minutes", "nan"], "--checkpoint-minutes must be a finite number")
        try assertBadArgument(["train", "--threads", "0"], "--threads must be at least 1")
        try assertBadArgument(["train", "--resume", "x", "--out", "y"], "--resume names the run directory; drop --out")
    }

    /// `--out` that cannot hold a run is refused before any training: exit 64, one line, no NSError text.
    func testUnusableOutExits64BeforeTraining() throws {
        let dir = try makeTemporaryDirectory(self, "part-out")
        try writeTinyDataset(to: dir)
        let file = dir.appendingPathComponent("train-images-idx3-ubyte")
        let train = ["train", "--data", dir.path, "--epochs", "2", "--burn-in", "1"]
        try assertBadArgument(train + ["--out", ""], "--out is empty")
        try assertBadArgument(train + ["--out", file.path], "--out \(file.path) exists and is not a directory")
        try assertBadArgument(train + ["--out", file.appendingPathComponent("run").path],
                              "\(file.path) is not a directory")
        if getuid() != 0 {
            let locked = dir.appendingPathComponent("locked")
            try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: false)
            chmod(locked.path, 0o555)
            defer { chmod(locked.path, 0o755) }
            try assertBadArgument(train + ["--out", locked.path], "is not writable")
        } else {
            // Root writes into any mode-555 folder; sysfs refuses it files all the same.
            try assertBadArgument(train + ["--out", "/sys"], "--out /sys is not writable")
        }
    }

    /// Splits of different image shapes, and a split without images: exit 1 before training.
    func testDataThatCannotTrainExits1BeforeTraining() throws {
        let dir = try makeTemporaryDirectory(self, "part-shapes")
        try writeTinyDataset(to: dir, side: 16, testSide: 28)
        let out = dir.appendingPathComponent("run")
        let r = try runPart(["train", "--data", dir.path, "--epochs", "2", "--burn-in", "1", "--out", out.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssert(r.stderr.contains("16x16x1") && r.stderr.contains("28x28x1"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "a run that never started leaves no directory")

        let empty = try makeTemporaryDirectory(self, "part-empty")
        try writeTinyDataset(to: empty, train: 0, test: 4)
        let none = try runPart(["train", "--data", empty.path, "--epochs", "2", "--burn-in", "1",
                                "--out", empty.appendingPathComponent("run").path])
        XCTAssertEqual(none.status, 1, none.stderr)
        XCTAssert(none.stderr.contains("has no images"), none.stderr)
    }

    /// Image folders that cannot train as given exit 1 before training, naming the fix: images of
    /// one class, or --data naming the folder above the image folder. A folder without split
    /// folders trains, with a warning that its check reads training images, and a --train-limit
    /// that drops classes is named.
    func testImageFoldersThatCannotTrainAsGiven() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/data_imagefolder")
        let dir = try makeTemporaryDirectory(self, "part-imagefolder")
        let fm = FileManager.default
        let above = dir.appendingPathComponent("above"), one = dir.appendingPathComponent("one")
        let shared = dir.appendingPathComponent("shared")
        for d in [above, one, shared] { try fm.createDirectory(at: d, withIntermediateDirectories: true) }
        try fm.copyItem(at: fixture, to: above.appendingPathComponent("pets"))
        try fm.copyItem(at: fixture.appendingPathComponent("train/cat"), to: one.appendingPathComponent("cat"))
        for c in ["cat", "dog", "emu"] {
            try fm.copyItem(at: fixture.appendingPathComponent("train/\(c)"), to: shared.appendingPathComponent(c))
        }
        let train = ["train", "--dataset", "imagefolder", "--method", "at", "--epochs", "1", "--steps", "1",
                     "--eval-steps", "1", "--batch-size", "2"]
        let out = dir.appendingPathComponent("run")

        let single = try runPart(train + ["--data", one.path, "--out", out.path])
        XCTAssertEqual(single.status, 1, single.stderr)
        XCTAssert(single.stderr.contains("the 4 training images of one are all of one class (cat)"), single.stderr)
        let high = try runPart(train + ["--data", above.path, "--out", out.path])
        XCTAssertEqual(high.status, 1, high.stderr)
        XCTAssert(high.stderr.contains("its sub-folder pets holds the split folders")
                  && high.stderr.contains("name \(above.appendingPathComponent("pets").path) in --data"), high.stderr)
        XCTAssertFalse(fm.fileExists(atPath: out.path), "a run that never started leaves no directory")

        let r = try runPart(train + ["--data", shared.path, "--train-limit", "5", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("part: warning: \(shared.path) has no train/ and test/ (or val/) folders"), r.stderr)
        XCTAssert(r.stderr.contains("--train-limit 5 keeps 2 of the 3 classes of the training images (drops emu): --train-limit takes the first images, and these come sorted by class"), r.stderr)
        XCTAssert(r.stdout.contains("(5 training images, checked on 7 of them)"), r.stdout)
        XCTAssert(r.stderr.contains("(--balanced takes the first of each class)"), r.stderr)

        // With --balanced, --train-limit 3 takes the first image of each class; the record keeps it.
        let balanced = dir.appendingPathComponent("balanced")
        let b = try runPart(train + ["--data", shared.path, "--train-limit", "3", "--balanced", "--out", balanced.path])
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertFalse(b.stderr.contains("keeps"), b.stderr)
        XCTAssert(b.stdout.contains("(3 training images, checked on"), b.stdout)
        let record = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: balanced.appendingPathComponent("config.json")))
                                   as? [String: Any])
        let options = try XCTUnwrap(record["options"] as? [String: Any], "\(record.keys)")
        XCTAssertEqual(options["balancedTrainLimit"] as? Bool, true)
        XCTAssertEqual(options["trainLimit"] as? Int, 3)
    }

    /// Two runs started together without --out claim two directories; --overwrite replaces a
    /// run (its log starts again); AT takes --eps below the default --eps-low.
    func testRunDirectoriesAreClaimedOnceAndOverwriteReplaces() throws {
        let dir = try makeTemporaryDirectory(self, "part-claim")
        let data = dir.appendingPathComponent("tiny")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyDataset(to: data, train: 8)
        let arguments = ["train", "--data", data.path, "--method", "at", "--eps", "0.05", "--epochs", "1",
                         "--steps", "1", "--eval-steps", "1", "--batch-size", "8"]
        let a = try LivePart(arguments, directory: dir), b = try LivePart(arguments, directory: dir)
        let ra = a.finish(), rb = b.finish()
        XCTAssertEqual(ra.status, 0, ra.stderr)
        XCTAssertEqual(rb.status, 0, rb.stderr)
        let runs = try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("runs").path).sorted()
        XCTAssertEqual(runs, ["at-tiny", "at-tiny-2"], "each run claims its own directory")

        let run = dir.appendingPathComponent("runs/at-tiny")
        let again = try runPart(arguments + ["--out", run.path, "--overwrite"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let log = try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 1, "--overwrite starts a new log, it does not append")
    }
}
