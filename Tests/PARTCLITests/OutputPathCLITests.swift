import Foundation
import PARTEngine
import PARTNN
import PARTTestSupport
import XCTest

/// Outputs never replace what they must not: an input, a device or FIFO, another output of the
/// same command, a file of a run directory. Each is refused before any work, in one line with
/// exit code 64, and the file is left as it was.
final class OutputPathCLITests: XCTestCase {
    /// A temporary folder with the tiny MNIST-format dataset and a small-cnn checkpoint.
    func setUpFiles() throws -> (dir: URL, checkpoint: URL) {
        let dir = try makeTemporaryDirectory(self, "part-outputs")
        try writeTinyDataset(to: dir)
        var rng = RNG(seed: 3)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        return (dir, checkpoint)
    }

    /// Exit 64, one line on standard error containing `reason`, nothing on standard output.
    func assertRefused(_ arguments: [String], _ reason: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runPart(arguments)
        XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)", file: file, line: line)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "one line: \(r.stderr)", file: file, line: line)
        XCTAssert(r.stderr.contains(reason), "\(arguments): \(r.stderr) should say \(reason)", file: file, line: line)
        XCTAssertEqual(r.stdout, "", file: file, line: line)
    }

    func testEvalRefusesToWriteOverItsCheckpoint() throws {
        let (dir, checkpoint) = try setUpFiles()
        let before = try Data(contentsOf: checkpoint)
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet",
                           "--save-adversarial", checkpoint.path], "is an input of this command")
        XCTAssertEqual(try Data(contentsOf: checkpoint), before, "the checkpoint is unchanged")
        // A symbolic link to the checkpoint is the checkpoint.
        let link = dir.appendingPathComponent("link.jsonl")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: checkpoint)
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet",
                           "--save-results", link.path], "is an input of this command")
        XCTAssertEqual(try Data(contentsOf: checkpoint), before)
    }

    func testEvalOutputsMustNotShareAFile() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("X_labels.npy"), adversarial = dir.appendingPathComponent("X.npy")
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet",
                           "--save-results", results.path, "--save-adversarial", adversarial.path], "--save-results")
        XCTAssertFalse(FileManager.default.fileExists(atPath: results.path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: adversarial.path))
    }

    func testSpecialFilesAreNotOutputs() throws {
        let (dir, checkpoint) = try setUpFiles()
        let fifo = dir.appendingPathComponent("fifo.png")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        try assertRefused(["cam", checkpoint.path, "--data", dir.path, "--limit", "2", "--out", fifo.path], "a FIFO")
        var info = stat()
        XCTAssertEqual(lstat(fifo.path, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFIFO, "the FIFO is still a FIFO")
        let folder = dir.appendingPathComponent("folder.png")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try assertRefused(["cam", checkpoint.path, "--data", dir.path, "--limit", "2", "--out", folder.path], "a directory")
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--save-results", "/dev/null"], "a character device")
    }

    func testReportDoesNotReplaceTheRunsFiles() throws {
        let (dir, checkpoint) = try setUpFiles()
        let run = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        let last = run.appendingPathComponent("last.safetensors")
        try FileManager.default.copyItem(at: checkpoint, to: last)
        try Data("{}\n".utf8).write(to: run.appendingPathComponent("config.json"))
        let before = try Data(contentsOf: last)
        try assertRefused(["report", run.path, "--out", last.path], "--out")
        XCTAssertEqual(try Data(contentsOf: last), before)
        // Another run's report is that run's file, and a run's manifest is never an output.
        let other = dir.appendingPathComponent("other")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        try Data("{}\n".utf8).write(to: other.appendingPathComponent("config.json"))
        try assertRefused(["report", run.path, "--out", other.appendingPathComponent("report.html").path],
                          "is a file of the run directory")
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--save-results",
                           other.appendingPathComponent("checkpoint.json").path], "is a file of the run directory")
        XCTAssertFalse(FileManager.default.fileExists(atPath: other.appendingPathComponent("checkpoint.json").path))
        // The trained graphs of an ONNX run are its files too.
        for name in ["last.onnx", "best.onnx"] {
            try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--save-logits",
                               other.appendingPathComponent(name).path], "is a file of the run directory")
        }
    }

    func testAFileBesideTheInputsIsStillWritten() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("eval/results.jsonl")
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet",
                             "--save-results", results.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(FileManager.default.fileExists(atPath: results.path))
    }

    func testAFileOfTheDataFolderIsNotAnOutput() throws {
        let (dir, checkpoint) = try setUpFiles()
        let images = dir.appendingPathComponent("t10k-images-idx3-ubyte")
        let before = try Data(contentsOf: images)
        try assertRefused(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet",
                           "--save-results", images.path], "has read")
        XCTAssertEqual(try Data(contentsOf: images), before, "the data file is unchanged")
    }

    func testAFIFOGivenAsDataDoesNotBlock() throws {
        let (dir, checkpoint) = try setUpFiles()
        let fifo = dir.appendingPathComponent("fifo.npz")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        let started = Date()
        let r = try runPart(["eval", checkpoint.path, "--dataset", "npy", "--data", fifo.path, "--quiet"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssert(r.stderr.contains("fifo.npz") && r.stderr.contains("not a regular file"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30)
    }
}
