import Foundation
import PARTEngine
import PARTNN
import PARTTestSupport
import XCTest

/// What a refusal says: one line on standard error that names what to change, whatever the
/// argument parser, the data or a path holds.
final class MessageCLITests: XCTestCase {
    /// Exactly one line on standard error, containing every fragment.
    func assertOneLine(_ r: PartRun, status: Int32, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n", omittingEmptySubsequences: false).count, 2,
                       "one line: \(r.stderr)", file: file, line: line)
        for f in fragments { XCTAssert(r.stderr.contains(f), "\(r.stderr) should say \(f)", file: file, line: line) }
    }

    func testArgumentErrorsAreOneLine() throws {
        assertOneLine(try runPart(["eval"]), status: 64, ["Error: ", "Missing expected argument '<checkpoint>'"])
        assertOneLine(try runPart(["train", "--no-such-flag"]), status: 64, ["Unknown option '--no-such-flag'"])
        assertOneLine(try runPart(["eval", "x.safetensors", "--batch-size", "0"]), status: 64, ["--batch-size must be at least 1"])
        // Help is there when asked for.
        let help = try runPart(["eval", "--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssert(help.stdout.contains("USAGE") || help.stdout.contains("Usage"), help.stdout)
    }

    func testNegativeNumbersAreValuesNotMissingOnes() throws {
        assertOneLine(try runPart(["eval", "x.safetensors", "--eps", "-1"]), status: 64, ["--eps must be in [0, 1]"])
        assertOneLine(try runPart(["eval", "x.safetensors", "--seed", "-1"]), status: 64, ["--seed must be a whole number >= 0"])
        assertOneLine(try runPart(["cam", "x.safetensors", "--limit", "-1"]), status: 64, ["--limit must be at least 1"])
        assertOneLine(try runPart(["bench", "--reps", "-2"]), status: 64, ["--reps must be at least 1"])
        assertOneLine(try runPart(["eval", "x.safetensors", "--threads", "-4"]), status: 64, ["--threads must be at least 1"])
        assertOneLine(try runPart(["data", "inspect", "--classes", "-3", "--dataset", "npy", "--data", "x.npz"]), status: 64,
                      ["--classes must be at least 1"])
    }

    func testANewlineInAPathIsEscaped() throws {
        assertOneLine(try runPart(["eval", "a\nb.safetensors"]), status: 1, ["a\\nb.safetensors", "no such file"])
        let folder = try makeTemporaryDirectory(self, "part-newline").appendingPathComponent("two\nlines")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        assertOneLine(try runPart(["eval", "x.safetensors", "--save-results", folder.path]), status: 64,
                      ["--save-results", "two\\nlines", "is a directory"])
    }

    func testArchitectureLimitsAreStated() throws {
        assertOneLine(try runPart(["eval", "x.safetensors", "--arch", "wrn-28-64"]), status: 64,
                      ["wrn-28-64", "widen factor must be between 1 and 32"])
        assertOneLine(try runPart(["train", "--arch", "wrn-27-2"]), status: 64, ["depth must be 6n + 4 between 10 and 250"])
        assertOneLine(try runPart(["bench", "--arch", "vgg"]), status: 64, ["unknown --arch 'vgg'", "widen 1...32"])
        // part cam knows the WideResNet pattern as the other commands do.
        let cam = try runPart(["cam", "missing.safetensors", "--arch", "wrn-16-2"])
        XCTAssertEqual(cam.status, 1, cam.stderr)
        XCTAssert(cam.stderr.contains("no such file"), cam.stderr)
    }

    func testFlagsNamingTheWrongKindOfFile() throws {
        let dir = try makeTemporaryDirectory(self, "part-messages")
        let file = dir.appendingPathComponent("plain")
        try Data("x".utf8).write(to: file)
        assertOneLine(try runPart(["data", "inspect", "--dataset", "imagefolder", "--data", dir.path, "--cache", file.path]),
                      status: 64, ["--cache", "is a file"])
        assertOneLine(try runPart(["report", file.path]), status: 64, ["is a file, not a run directory"])
    }

    func testAnUnreadableInitNamesItsFileOnce() throws {
        let dir = try makeTemporaryDirectory(self, "part-bad-init")
        try writeTinyDataset(to: dir, train: 8, test: 4)
        let bad = dir.appendingPathComponent("bad.safetensors")
        try Data("not a checkpoint at all".utf8).write(to: bad)
        let r = try runPart(["train", "--data", dir.path, "--method", "at", "--epochs", "1", "--init", bad.path, "--quiet",
                             "--out", dir.appendingPathComponent("run").path])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        let line = String(errors.first ?? "")
        XCTAssertEqual(line.components(separatedBy: bad.path).count, 2, "the path once: \(line)")
        XCTAssertFalse(line.contains("resume"), line)
    }

    func testNonSquareImagesAreTheDatasProblem() throws {
        let dir = try makeTemporaryDirectory(self, "part-28x30")
        var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
        for d in [4, 28, 30] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labels += withUnsafeBytes(of: UInt32(4).bigEndian, Array.init)
        images += [UInt8](repeating: 100, count: 4 * 28 * 30)
        labels += [0, 1, 2, 3]
        try Data(images).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        var rng = RNG(seed: 1)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--quiet"])
        assertOneLine(r, status: 1, ["28x30", "square", "--data"])
        XCTAssertFalse(r.stderr.contains("model.safetensors"), "the checkpoint is not to blame: \(r.stderr)")
    }
}
