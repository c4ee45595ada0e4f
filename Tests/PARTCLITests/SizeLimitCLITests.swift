import Foundation
import PARTNN
import PARTTestSupport
import XCTest

/// Sizes from outside (a label, --classes, --batch-size, an architecture) are checked before
/// anything is allocated for them: one line and exit 64 or 1, never the runtime's allocation
/// failure (exit 134 and a backtrace), and no run directory left holding only its lock.
final class SizeLimitCLITests: XCTestCase {
    /// A `.npy` (format 1.0) of `descr` and `shape` holding `data`.
    func npy(_ descr: String, _ shape: [Int], _ data: [UInt8]) -> Data {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        dict += String(repeating: " ", count: (64 - (10 + dict.utf8.count + 1) % 64) % 64) + "\n"
        return Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(dict.utf8.count & 0xFF), UInt8(dict.utf8.count >> 8)]
                    + Array(dict.utf8) + data)
    }

    /// train/test splits of four 16x16 grey images as NumPy files; the training labels are `labels`.
    func writeNumPy(to dir: URL, trainLabels labels: [Int64]) throws {
        for (split, ys) in [("train", labels), ("test", [0, 1, 2, 3] as [Int64])] {
            let pixels = (0..<(ys.count * 256)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try npy("|u1", [ys.count, 16, 16, 1], pixels).write(to: dir.appendingPathComponent("\(split)_x.npy"))
            let bytes = ys.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
            try npy("<i8", [ys.count], bytes).write(to: dir.appendingPathComponent("\(split)_y.npy"))
        }
    }

    func assertOneLine(_ r: PartRun, status: Int32, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") || $0.hasPrefix("Error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr, file: file, line: line)
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("backtrace"), r.stderr, file: file, line: line)
        for f in fragments { XCTAssert(r.stderr.contains(f), "\(r.stderr) should say \(f)", file: file, line: line) }
    }

    func testAHugeLabelIsAFileErrorBeforeAnyModelIsBuilt() throws {
        let dir = try makeTemporaryDirectory(self, "part-huge-label")
        try writeNumPy(to: dir, trainLabels: [0, 1, 2, 100_000_000])
        let run = dir.appendingPathComponent("run")
        let r = try runPart(["train", "--dataset", "npy", "--data", dir.path, "--method", "at", "--epochs", "1",
                             "--batch-size", "4", "--steps", "1", "--eval-steps", "1", "--out", run.path])
        assertOneLine(r, status: 1, ["train_y.npy", "100000000"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.path), "no run directory holding only .lock")
    }

    func testHugeCountsInFlagsAreBadArguments() throws {
        let dir = try makeTemporaryDirectory(self, "part-huge-flags")
        try writeNumPy(to: dir, trainLabels: [0, 1, 2, 3])
        assertOneLine(try runPart(["train", "--dataset", "npy", "--data", dir.path, "--classes", "100000000"]),
                      status: 64, ["--classes"])
        assertOneLine(try runPart(["bench", "--batch-size", "100000000"]), status: 64, ["--batch-size"])
        assertOneLine(try runPart(["eval", "x.safetensors", "--batch-size", "100000000"]), status: 64, ["--batch-size"])
        assertOneLine(try runPart(["train", "--batch-size", "100000000"]), status: 64, ["--batch-size"])
        // Within the bound but far beyond this machine's memory for the model's activations.
        assertOneLine(try runPart(["bench", "--arch", "resnet18", "--batch-size", "65536"]), status: 64, ["lower --batch-size"])
    }

    func testAModelTooLargeForTheMachineIsOneLine() throws {
        let dir = try makeTemporaryDirectory(self, "part-huge-model")
        try writeNumPy(to: dir, trainLabels: [0, 1, 2, 3])
        let parameters = try XCTUnwrap(ModelZoo.estimatedParameters("wrn-250-32", numClasses: 4, inChannels: 1))
        try XCTSkipIf(Double(parameters) * 16 < Double(ProcessInfo.processInfo.physicalMemory), "this machine holds wrn-250-32")
        let run = dir.appendingPathComponent("run")
        let r = try runPart(["train", "--dataset", "npy", "--data", dir.path, "--arch", "wrn-250-32", "--method", "at",
                             "--epochs", "1", "--batch-size", "1", "--steps", "1", "--eval-steps", "1", "--out", run.path])
        XCTAssert(r.status == 1 || r.status == 64, r.stderr)
        assertOneLine(r, status: r.status, ["wrn-250-32"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.path), "no run directory holding only .lock")
    }

    /// What the up-front checks cannot foresee (here: a limit on the process's address space)
    /// ends in one line naming the tensor, with exit code 1, not the runtime's trap.
    func testAnAllocationTheEngineCannotGetIsOneLine() throws {
        try XCTSkipIf(ModelZoo.batchProblem("resnet18", imageSize: 32, batch: 2048) != nil, "refused up front on this machine")
        let command = "ulimit -v 1500000; exec '\(partBinary.path)' bench --arch resnet18 --batch-size 2048 --reps 1 --threads 2"
        let r = try runProcess(["-c", command], executable: URL(fileURLWithPath: "/bin/sh"))
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssert(r.stderr.contains("out of memory") && r.stderr.contains("tensor of shape"), r.stderr)
        XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
    }
}
