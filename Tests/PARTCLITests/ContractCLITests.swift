import Foundation
import PARTEngine
import PARTNN
import PARTTestSupport
import XCTest

/// Bounds and contracts of the commands: thread counts, --distributed outside mpirun, an empty
/// test split, a results file edited between runs.
final class ContractCLITests: XCTestCase {
    func assertOneLine(_ r: PartRun, status: Int32, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") || $0.hasPrefix("Error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr, file: file, line: line)
        for f in fragments { XCTAssert(r.stderr.contains(f), "\(r.stderr) should say \(f)", file: file, line: line) }
    }

    func testThreadCountsAreBounded() throws {
        assertOneLine(try runPart(["bench", "--threads", "100000"]), status: 64, ["--threads 100000"])
        assertOneLine(try runPart(["eval", "x.safetensors", "--threads", "5000"]), status: 64, ["--threads 5000"])
    }

    func testDistributedOutsideMPIRunIsABadArgument() throws {
        assertOneLine(try runPart(["eval", "x.safetensors", "--distributed"]), status: 64, ["--distributed", "mpirun"])
        assertOneLine(try runPart(["train", "--distributed", "--epochs", "1"]), status: 64, ["--distributed", "mpirun"])
    }

    /// A small-cnn checkpoint for 16x16 grey images and the tiny dataset.
    func setUp(_ prefix: String) throws -> (dir: URL, checkpoint: URL) {
        let dir = try makeTemporaryDirectory(self, prefix)
        try writeTinyDataset(to: dir, train: 8, test: 8)
        var rng = RNG(seed: 2)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        return (dir, checkpoint)
    }

    func testEvalOnAnEmptyTestSplitExits1() throws {
        let (dir, checkpoint) = try setUp("part-empty-test")
        // An .npy pair with no images: [0, 16, 16, 1] and [0].
        func npy(_ descr: String, _ shape: String) -> Data {
            var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(shape)), }"
            dict += String(repeating: " ", count: (64 - (10 + dict.utf8.count + 1) % 64) % 64) + "\n"
            return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(dict.utf8.count), 0] + Array(dict.utf8))
        }
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try npy("|u1", "0, 16, 16, 1").write(to: empty.appendingPathComponent("x.npy"))
        try npy("<i8", "0,").write(to: empty.appendingPathComponent("x_labels.npy"))
        let r = try runPart(["eval", checkpoint.path, "--dataset", "npy", "--data", empty.appendingPathComponent("x.npy").path,
                             "--classes", "10", "--attacks", "natural", "--quiet"])
        assertOneLine(r, status: 1, ["no images"])
        XCTAssertEqual(r.stdout, "")
    }

    func testAnEditedResultsFileIsRefusedOnResume() throws {
        let (dir, checkpoint) = try setUp("part-edited-results")
        let results = dir.appendingPathComponent("results.jsonl")
        let arguments = ["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--batch-size", "4", "--quiet",
                         "--save-results", results.path]
        let first = try runPart(arguments)
        XCTAssertEqual(first.status, 0, first.stderr)
        var lines = try String(contentsOf: results, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
        XCTAssert(lines[1].contains("\"prediction\":"), lines[1])
        lines[1] = lines[1].replacingOccurrences(of: #""prediction":\d+"#, with: "\"prediction\":99", options: .regularExpression)
        try lines.joined(separator: "\n").write(to: results, atomically: true, encoding: .utf8)
        let edited = try Data(contentsOf: results)
        assertOneLine(try runPart(arguments), status: 1, [results.path, "point 0", "prediction 99"])
        XCTAssertEqual(try Data(contentsOf: results), edited, "the refused file is left as it is")
    }
}
