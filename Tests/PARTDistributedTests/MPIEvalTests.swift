import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTTestSupport
import PARTTraining
import XCTest

/// `part eval` as two MPI ranks: the same per-example results file, adversarial examples and
/// accuracies as one process, and a job killed with SIGKILL resumes under mpirun to the same file.
final class MPIEvalTests: XCTestCase {
    var launcher: URL!
    var dir: URL!
    var checkpoint: URL!

    override func setUpWithError() throws {
        guard let found = mpirun else {
            throw XCTSkip("mpirun is not installed (Debian: openmpi-bin, libopenmpi-dev; scripts/setup.sh): "
                          + "the distributed evaluation is not tested")
        }
        launcher = found
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("part-mpi-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let data = try QuadrantImages.dataset(count: 256, classes: 10)
        try writeTestSplit(data.prefix(64), to: dir)
        checkpoint = dir.appendingPathComponent("model.safetensors")
        // Accurate, and not robust at eps 0.1.
        let model = try QuadrantImages.trainedSmallCNN(on: data, learningRate: 0.02, epochs: 10, batchSize: 16)
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
    }

    override func tearDownWithError() throws {
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    func mpi(_ ranks: Int) -> [String] {
        ["--oversubscribe", "-np", String(ranks)] + (geteuid() == 0 ? ["--allow-run-as-root"] : []) + [partBinary.path]
    }

    /// MNIST-format test files (t10k-images/labels-idx*-ubyte).
    func writeTestSplit(_ data: ImageDataset, to dir: URL) throws {
        var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
        for d in [data.count, data.height, data.width] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labels += withUnsafeBytes(of: UInt32(data.count).bigEndian, Array.init)
        images += data.batch(Array(0..<data.count)).images.scalars.map { UInt8(($0 * 255).rounded()) }
        labels += data.labels.map { UInt8($0) }
        try Data(images).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
    }

    /// `part eval` of the checkpoint on 40 points in batches of 16 (16 + 16 + 8: each split 8 + 8,
    /// the last 4 + 4), writing NAME.jsonl and NAME.npy.
    func evalArguments(_ name: String, queries: Int = 30) -> [String] {
        ["eval", checkpoint.path, "--data", dir.path, "--limit", "40", "--batch-size", "16", "--eps", "0.1",
         "--threads", "1", "--attacks", "natural,pgd:steps=3,apgd-ce:steps=3,square:queries=\(queries)", "--json",
         "--save-results", dir.appendingPathComponent("\(name).jsonl").path,
         "--save-adversarial", dir.appendingPathComponent("\(name).npy").path]
    }

    func lines(_ name: String) throws -> [Substring] {
        try String(contentsOf: dir.appendingPathComponent("\(name).jsonl"), encoding: .utf8).split(separator: "\n")
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    func testTwoRanksWriteTheResultsOfOneProcess() throws {
        let single = try runToEnd(partBinary, evalArguments("one"), in: dir, name: "one")
        XCTAssertEqual(single.status, 0, single.stderr)
        let double = try runToEnd(launcher, mpi(2) + evalArguments("two"), in: dir, name: "two")
        XCTAssertEqual(double.status, 0, double.stderr)

        let one = try lines("one"), two = try lines("two")
        XCTAssertEqual(one.count, 41)
        XCTAssertEqual(one, two, "the per-example results of two ranks differ from one process's")
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("one.npy")),
                       try Data(contentsOf: dir.appendingPathComponent("two.npy")), "the worst-case examples differ")
        // Rank 0 alone prints: one JSON line, and one stage log.
        XCTAssertEqual(double.stdout.split(separator: "\n").count, 1, double.stdout)
        XCTAssertEqual(double.stderr.components(separatedBy: "part eval: worst case").count, 2, double.stderr)
        let a = try json(single.stdout), b = try json(double.stdout)
        for key in ["cleanAccuracy", "robustAccuracy", "robust", "count", "unverified"] {
            XCTAssertEqual("\(a[key] ?? "none")", "\(b[key] ?? "none")", key)
        }
        let stages = { (o: [String: Any]) in ((o["attacks"] as? [[String: Any]]) ?? []).map { "\($0["name"] ?? "") \($0["robust"] ?? "")" } }
        XCTAssertEqual(stages(a), stages(b))
        XCTAssertGreaterThan(a["cleanAccuracy"] as? Double ?? 0, 0.5, "the model should have learnt the quadrants")
        XCTAssertLessThan(a["robustAccuracy"] as? Double ?? 1, a["cleanAccuracy"] as? Double ?? 0,
                          "the attacks should break points")
    }

    /// Without files to write (no --save-results, no --save-adversarial), two ranks print the
    /// accuracies of one process (the ranks then send their outcomes without examples).
    func testTwoRanksWithoutFilesPrintTheAccuraciesOfOneProcess() throws {
        let arguments = Array(evalArguments("plain").prefix(while: { $0 != "--save-results" }))
        let single = try runToEnd(partBinary, arguments, in: dir, name: "plain-one")
        XCTAssertEqual(single.status, 0, single.stderr)
        let double = try runToEnd(launcher, mpi(2) + arguments, in: dir, name: "plain-two")
        XCTAssertEqual(double.status, 0, double.stderr)
        let a = try json(single.stdout), b = try json(double.stdout)
        let stages = { (o: [String: Any]) in ((o["attacks"] as? [[String: Any]]) ?? []).map { "\($0["name"] ?? "") \($0["robust"] ?? "")" } }
        XCTAssertEqual(stages(a), stages(b))
        XCTAssertEqual("\(a["robustAccuracy"] ?? "none")", "\(b["robustAccuracy"] ?? "none")")
        XCTAssertLessThan(a["robustAccuracy"] as? Double ?? 1, a["cleanAccuracy"] as? Double ?? 0,
                          "the attacks should break points, so that examples would have been sent")
    }

    /// The mpirun job is killed with SIGKILL inside a batch after the first (after two or three of
    /// its stages; Square's 300 queries make that moment long enough to catch) and run again under
    /// mpirun: the results file and the .npy end as an uninterrupted run's.
    func testAKilledJobResumesUnderMPIToTheSameFile() throws {
        let reference = try runToEnd(partBinary, evalArguments("reference", queries: 300), in: dir, name: "reference")
        XCTAssertEqual(reference.status, 0, reference.stderr)

        let progress = dir.appendingPathComponent("killed.jsonl.progress.json")
        let results = dir.appendingPathComponent("killed.jsonl")
        let (job, _, _) = try start(launcher, mpi(2) + evalArguments("killed", queries: 300), in: dir, name: "killed")
        var ranks: [pid_t] = []
        var polls = 0
        let deadline = Date().addingTimeInterval(120)
        while job.isRunning && Date() < deadline {
            if ranks.count < 2 && polls % 50 == 0 { ranks = [0, 1].compactMap { rankProcess($0, of: job.processIdentifier) } }
            polls += 1
            let written = (try? String(contentsOf: results, encoding: .utf8))?.split(separator: "\n").count ?? 0
            let state = (try? String(contentsOf: progress, encoding: .utf8)) ?? ""
            // Inside batch 2 or 3, after its second or third stage.
            if (written == 17 && state.contains("\"start\":16") || written == 33 && state.contains("\"start\":32"))
                && (state.contains("\"stagesDone\":2") || state.contains("\"stagesDone\":3")) { break }
            usleep(2_000)
        }
        XCTAssertTrue(job.isRunning, "the job ended before the moment to kill it")
        XCTAssertEqual(ranks.count, 2, "the ranks' processes were not found")
        // The whole job at once, as a lost machine or a scheduler's kill. (Killed alone, mpirun
        // leaves its ranks running for up to a second, long enough to finish a batch.)
        for pid in ranks + [job.processIdentifier] { kill(pid, SIGKILL) }
        job.waitUntilExit()
        let gone = Date().addingTimeInterval(30)
        while ranks.contains(where: { kill($0, 0) == 0 && !isZombie($0) }) && Date() < gone { usleep(20_000) }
        XCTAssertLessThan(try lines("killed").count, 41, "the job finished before it was killed")

        let resumed = try runToEnd(launcher, mpi(2) + evalArguments("killed", queries: 300), in: dir, name: "resumed")
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let point = try XCTUnwrap(resumed.stderr.split(separator: "\n").first { $0.contains("resuming: ") }, resumed.stderr)
        XCTAssertTrue(point.hasSuffix("points done, 2 of 4 stages of the next batch")
                      || point.hasSuffix("points done, 3 of 4 stages of the next batch"), String(point))
        XCTAssertEqual(try lines("reference"), try lines("killed"), "the resumed results differ from an uninterrupted run's")
        XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("reference.npy")),
                       try Data(contentsOf: dir.appendingPathComponent("killed.npy")), "the worst-case examples differ")
        let a = try json(reference.stdout), b = try json(resumed.stdout)
        XCTAssertGreaterThanOrEqual(b["resumed"] as? Int ?? 0, 16)
        XCTAssertEqual(a["robustAccuracy"] as? Double, b["robustAccuracy"] as? Double)
    }

    /// Ranks given different settings stop with one line from rank 0, before evaluating.
    func testRanksWithDifferentSettingsStop() throws {
        let base = Array(evalArguments("differ").dropLast(4))
        let root = geteuid() == 0 ? ["--allow-run-as-root"] : []
        let arguments = ["--oversubscribe"] + root + ["-np", "1", partBinary.path] + base + ["--seed", "1"]
            + [":", "-np", "1", partBinary.path] + base + ["--seed", "2"]
        let r = try runToEnd(launcher, arguments, in: dir, name: "differ")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("rank 1 has a different evaluation configuration"), r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "part: error:").count, 2, r.stderr)
    }
}

/// True when `pid` has exited and waits to be reaped.
func isZombie(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return true }
    return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
}
