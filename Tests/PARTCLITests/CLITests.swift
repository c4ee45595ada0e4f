import Foundation
import PARTTestSupport
import XCTest

/// The `part` command as a user runs it: output, one-line errors, exit codes.
final class CLITests: XCTestCase {
    func part(_ arguments: [String]) throws -> PartRun { try runPart(arguments) }


    /// Writes a small MNIST-format dataset: images whose class is the bright quadrant.
    func writeDataset(to dir: URL, count: Int) throws {
        var seed: UInt32 = 1
        func next() -> UInt8 {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return UInt8(seed >> 26)
        }
        for split in ["train", "t10k"] {
            var images: [UInt8] = [0, 0, 8, 3]
            var labels: [UInt8] = [0, 0, 8, 1]
            for d in [count, 28, 28] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
            labels += withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
            for i in 0..<count {
                let label = i % 4
                for r in 0..<28 { for c in 0..<28 {
                    let quadrant = (r < 14 ? 0 : 2) + (c < 14 ? 0 : 1)
                    images.append((quadrant == label ? 160 : 40) + next())
                } }
                labels.append(UInt8(label))
            }
            try Data(images).write(to: dir.appendingPathComponent("\(split)-images-idx3-ubyte"))
            try Data(labels).write(to: dir.appendingPathComponent("\(split)-labels-idx1-ubyte"))
        }
    }

    func testHelpListsTheSubcommands() throws {
        let r = try part(["--help"])
        XCTAssertEqual(r.status, 0)
        XCTAssert(r.stdout.contains("train") && r.stdout.contains("eval"), r.stdout)
        let train = try part(["train", "--help"])
        XCTAssert(train.stdout.contains("--eps-low") && train.stdout.contains("--burn-in"), train.stdout)
    }

    func testBadArgumentsGiveAOneLineReasonAndExitCode64() throws {
        let r = try part(["train", "--eps", "2"])
        XCTAssertEqual(r.status, 64)
        XCTAssert(r.stderr.contains("--eps must be in [0, 1]"), r.stderr)
        let low = try part(["train", "--eps", "0.1", "--eps-low", "0.2"])
        XCTAssertEqual(low.status, 64)
        XCTAssert(low.stderr.contains("--eps-low"), low.stderr)
        let burn = try part(["train", "--epochs", "2", "--burn-in", "2"])
        XCTAssertEqual(burn.status, 64)
        XCTAssert(burn.stderr.contains("--burn-in"), burn.stderr)
        let method = try part(["train", "--method", "fgsm"])
        XCTAssertEqual(method.status, 64)
    }

    func testMissingAndCorruptFilesGiveAOneLineError() throws {
        let dir = try temporaryDirectory()
        let missing = try part(["eval", dir.appendingPathComponent("nope.safetensors").path])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)
        XCTAssert(missing.stderr.contains("no such file"), missing.stderr)

        try writeDataset(to: dir, count: 8)
        let corrupt = dir.appendingPathComponent("corrupt.safetensors")
        try Data([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]).write(to: corrupt)
        let bad = try part(["eval", corrupt.path, "--data", dir.path])
        XCTAssertEqual(bad.status, 1)
        XCTAssertEqual(bad.stderr.split(separator: "\n").count, 1, bad.stderr)
        XCTAssert(bad.stderr.hasPrefix("part: error: "), bad.stderr)

        let noData = try part(["train", "--data", dir.appendingPathComponent("absent").path])
        XCTAssertEqual(noData.status, 1)
        XCTAssert(noData.stderr.contains("train-images-idx3-ubyte"), noData.stderr)
    }

    /// Recipe flags the run never reads are named in one warning line, and the run goes on.
    func testFlagsWithoutEffectAreNamed() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 16)
        let train = try part(["train", "--data", dir.path, "--method", "at", "--eps-low", "0.01", "--burn-in", "1",
                              "--beta", "3", "--epochs", "1", "--eval-limit", "4", "--batch-size", "16", "--steps", "1",
                              "--eval-steps", "1", "--out", dir.appendingPathComponent("run").path, "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        let warnings = train.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") }
        XCTAssertEqual(warnings, ["warning: --eps-low, --burn-in shape a CAM budget, and this run's budget is constant; "
                                  + "--beta weights the KL term of TRADES and MART, and this run's objective is at: "
                                  + "without effect here"], train.stderr)
    }

    /// A tiny PART run end to end, then `part eval` of its checkpoint.
    func testTrainThenEvaluate() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 48)
        let out = dir.appendingPathComponent("run")
        let train = try part(["train", "--data", dir.path, "--epochs", "2", "--burn-in", "1", "--train-limit", "0",
                              "--eval-limit", "16", "--batch-size", "16", "--steps", "3", "--eval-steps", "3",
                              "--out", out.path, "--json"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertFalse(train.stderr.contains("without effect"), "a PART run reads --burn-in: \(train.stderr)")
        let reports = try train.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        XCTAssertEqual(reports.count, 2)
        XCTAssertEqual(reports[0]["budget"] as? String, "constant")
        XCTAssertEqual(reports[1]["budget"] as? String, "gradcam/zscore")
        let fraction = reports[1]["fullEpsilonFraction"] as! Double
        XCTAssert(fraction < 0.5, "PART keeps full eps on a minority of pixels (z > 1), got \(fraction)")

        let log = try String(contentsOf: out.appendingPathComponent("log.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 2, "the run keeps one log line per epoch")
        let again = try part(["train", "--data", dir.path, "--epochs", "1", "--burn-in", "0", "--out", out.path])
        XCTAssertEqual(again.status, 64, "an --out that holds a run is a bad argument")
        XCTAssert(again.stderr.contains("already holds a run"), "an earlier run must not be overwritten: \(again.stderr)")

        let checkpoint = out.appendingPathComponent("last.safetensors")
        let eval = try part(["eval", checkpoint.path, "--data", dir.path, "--limit", "16", "--pgd-steps", "3", "--json"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssert(eval.stderr.contains("part eval: trained as part: at objective, gradcam/zscore budget at act4, pgd generation"),
                  "eval names the recipe the checkpoint records: \(eval.stderr)")
        let result = try JSONSerialization.jsonObject(with: Data(eval.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(result["count"] as? Int, 16)
        XCTAssertEqual(result["architecture"] as? String, "small-cnn")
        XCTAssertEqual(result["cleanAccuracy"] as! Double, reports[1]["cleanAccuracy"] as! Double, accuracy: 1e-9,
                       "eval of the saved checkpoint must match the trainer's last check")
    }
}
