import Foundation
import PARTTestSupport
import PARTEngine
import XCTest

/// Runs that survive: SIGKILL at named moments, SIGINT and SIGTERM, a write failing half-way,
/// a diverging learning rate, damaged checkpoints; each resumed run ends bit-identical to an
/// uninterrupted one. The moments are reached through the `PART_FAULT` hook of the trainer.
final class ResumeCLITests: XCTestCase {
    /// A tiny PART run: 16 images of 16x16, 2 epochs of 2 batches (the second with a CAM
    /// budget), a checkpoint after every batch, 2 threads.
    static func arguments(data: URL, out: URL) -> [String] {
        ["train", "--data", data.path, "--batch-size", "8", "--epochs", "2", "--burn-in", "1", "--steps", "1",
         "--eval-steps", "1", "--threads", "2", "--checkpoint-every", "1", "--out", out.path]
    }

    /// The uninterrupted run, made once for the class.
    static let reference: Result<(data: URL, run: URL), Error> = Result {
        try tinyReferenceRun("part-resume") { arguments(data: $0, out: $1) }
    }

    override class func tearDown() {
        if case .success(let ref) = reference { try? FileManager.default.removeItem(at: ref.data.deletingLastPathComponent()) }
        super.tearDown()
    }

    func referenceRun() throws -> (data: URL, run: URL) { try ResumeCLITests.reference.get() }

    /// Epoch numbers and losses of a run's log (timings differ between runs).
    func logSummary(_ run: URL) throws -> [String] {
        try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8).split(separator: "\n").map {
            let o = try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
            return "\(o["epoch"]!) \(o["loss"]!) \(o["cleanAccuracy"]!) \(o["robustAccuracy"]!) \(o["budget"]!)"
        }
    }

    /// Resumes `run` to its end and checks it against the reference, byte for byte.
    func assertResumesToReference(_ run: URL, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try referenceRun()
        let resumed = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(resumed.status, 0, "\(context): \(resumed.stderr)", file: file, line: line)
        XCTAssert(resumed.stderr.contains("resuming \(run.path)"), resumed.stderr, file: file, line: line)
        let a = try Data(contentsOf: ref.run.appendingPathComponent("last.safetensors"))
        let b = try Data(contentsOf: run.appendingPathComponent("last.safetensors"))
        XCTAssert(a == b, "\(context): the resumed run's weights differ from the uninterrupted run's", file: file, line: line)
        XCTAssertEqual(try logSummary(run), try logSummary(ref.run), "\(context): log.jsonl", file: file, line: line)
        // CPU seconds are carried through the state file like the wall-clock seconds.
        let cpu = try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8).split(separator: "\n").map {
            (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["cpuSeconds"] as? Double ?? -1
        }
        XCTAssert(!cpu.isEmpty && cpu.allSatisfy { $0 > 0 }, "\(context): cpuSeconds \(cpu)", file: file, line: line)
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path)
        XCTAssertEqual(names.filter { $0.hasSuffix(".pending") || $0.contains(".tmp-") }, [], context, file: file, line: line)
    }

    func testSIGKILLAtAnyMomentThenResumeGivesTheUninterruptedWeights() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-kill")
        // Mid-batch (gradients computed, no step); half-way through writing the model of the
        // second checkpoint; after the third manifest's commit, before its files are renamed;
        // between the epochs.
        for point in ["mid-batch#2", "checkpoint-model#2", "checkpoint-manifest#3", "epoch-end#1"] {
            let run = dir.appendingPathComponent(point.replacingOccurrences(of: "#", with: "-"))
            let (killed, reason) = try runPart(ResumeCLITests.arguments(data: ref.data, out: run),
                                               environment: ["PART_FAULT": "kill@\(point)"])
            XCTAssertEqual(reason, .uncaughtSignal, "\(point): \(killed.stderr)")
            XCTAssertEqual(killed.status, SIGKILL, point)
            try assertResumesToReference(run, "killed at \(point)")
        }
    }

    func testSIGINTAndSIGTERMFinishTheBatchWriteACheckpointAndSayHowToResume() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-signal")
        for (signal, point, code) in [(SIGINT, "batch#1", Int32(130)), (SIGTERM, "batch#3", Int32(143))] {
            let run = dir.appendingPathComponent("run-\(signal)")
            var arguments = ResumeCLITests.arguments(data: ref.data, out: run)
            // Only the checkpoint the signal asks for.
            if let i = arguments.firstIndex(of: "--checkpoint-every") { arguments[i + 1] = "0" }
            let live = try LivePart(arguments, environment: ["PART_FAULT": "pause@\(point)"])
            XCTAssert(live.waitFor("fault: paused at batch"), live.stderr)
            kill(live.process.processIdentifier, signal)
            let r = live.finish()
            XCTAssertEqual(r.status, code, r.stderr)
            XCTAssertEqual(live.process.terminationReason, .exit, "a signal ends the run by its own exit")
            let last = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
            XCTAssert(last.contains("part train --resume \(run.path)"), last)
            let batch = signal == SIGINT ? "in epoch 1 after batch 1 of 2" : "in epoch 2 after batch 1 of 2"
            XCTAssert(last.contains(batch), "\(last) should give the position \(batch)")
            try assertResumesToReference(run, "after \(signal)")
        }
    }

    func testAWriteFailingHalfWayKeepsThePreviousCheckpointAndSaysSo() throws {
        let ref = try referenceRun()
        let run = try makeTemporaryDirectory(self, "part-full").appendingPathComponent("run")
        // The third checkpoint's model file fails half-way, as on a full disk.
        let (r, _) = try runPart(ResumeCLITests.arguments(data: ref.data, out: run),
                                 environment: ["PART_FAULT": "fail@checkpoint-model#3"])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        let line = String(errors.first ?? "")
        XCTAssert(line.contains("last.safetensors.pending") && line.contains("no space left on device"), line)
        XCTAssert(line.contains("the previous checkpoint (after epoch 1) in \(run.path) is intact"), line)
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path)
        XCTAssertEqual(names.filter { $0.hasSuffix(".pending") }, [], "the failed write leaves nothing behind")
        let eval = try runPart(["eval", run.appendingPathComponent("last.safetensors").path, "--data", ref.data.path,
                                "--limit", "4", "--pgd-steps", "1"])
        XCTAssertEqual(eval.status, 0, "the previous checkpoint loads: \(eval.stderr)")
        try assertResumesToReference(run, "after a failed write")
    }

    /// A real full disk: a 1.5 MB tmpfs holds one checkpoint of the tiny run (about 1 MB) but not
    /// the next one's files beside it. Needs a machine that lets the test mount (root); skipped elsewhere.
    func testADiskFullDuringACheckpointKeepsThePreviousOneAndSaysSo() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-tmpfs")
        let mountPoint = dir.appendingPathComponent("small")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        func system(_ arguments: [String]) throws -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = arguments
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return p.terminationStatus
        }
        guard getuid() == 0, (try? system(["mount", "-t", "tmpfs", "-o", "size=1536k", "tmpfs", mountPoint.path])) == 0 else {
            throw XCTSkip("mounting a small tmpfs needs root")
        }
        defer { _ = try? system(["umount", mountPoint.path]) }
        let run = mountPoint.appendingPathComponent("run")
        let r = try runPart(ResumeCLITests.arguments(data: ref.data, out: run))
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        let line = String(errors.first ?? "")
        XCTAssert(line.contains("no space left on device") && line.contains("the previous checkpoint (in epoch 1 after batch 1 of 2)")
                  && line.contains("is intact"), line)
        let names = try FileManager.default.contentsOfDirectory(atPath: run.path)
        XCTAssertEqual(names.filter { $0.hasSuffix(".pending") }, [], "the failed write leaves nothing behind")
        // The kept checkpoint, moved to a disk with room, resumes to the uninterrupted weights.
        let moved = dir.appendingPathComponent("moved")
        try FileManager.default.copyItem(at: run, to: moved)
        try assertResumesToReference(moved, "after a full disk")
    }

    func testADivergingRunStopsWithOneLineAndKeepsTheLastGoodCheckpoint() throws {
        let ref = try referenceRun()
        let run = try makeTemporaryDirectory(self, "part-nan").appendingPathComponent("run")
        let r = try runPart(["train", "--data", ref.data.path, "--batch-size", "8", "--epochs", "3", "--burn-in", "1",
                             "--steps", "1", "--eval-steps", "1", "--lr", "1e2", "--out", run.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        let line = String(errors.first ?? "")
        XCTAssert(line.contains("epoch 2, batch 2 of 2") && line.contains("nan"), line)
        XCTAssert(line.contains("the last good checkpoint (after epoch 1) stays in \(run.path)"), line)
        let log = try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 1, "only the finite epoch is logged")
        // The kept checkpoint is epoch 1's: finite weights, and finite logits on the held-out images.
        let kept = try SafetensorsFile.read(from: run.appendingPathComponent("last.safetensors"))
        XCTAssertFalse(kept.tensors.isEmpty)
        for (name, t) in kept.tensors { XCTAssert(t.allFinite, "\(name) is not finite") }
        let eval = try runPart(["eval", run.appendingPathComponent("last.safetensors").path, "--data", ref.data.path,
                                "--limit", "4", "--pgd-steps", "1", "--json"])
        XCTAssertEqual(eval.status, 0, "the last good checkpoint evaluates: \(eval.stderr)")
    }

    /// Weights can stay finite (1e35) while the logits are not: such a checkpoint is not kept as
    /// "last good", and part eval and part cam refuse a model whose logits are not finite.
    func testACheckpointWhoseHeldOutLogitsAreNotFiniteIsNotKept() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-nan-logits")
        let run = dir.appendingPathComponent("run")
        let r = try runPart(["train", "--data", ref.data.path, "--batch-size", "8", "--epochs", "3", "--burn-in", "1",
                             "--steps", "1", "--eval-steps", "1", "--lr", "1e6", "--out", run.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssert(r.stderr.contains("held-out logits") && r.stderr.contains("not finite"), r.stderr)
        if FileManager.default.fileExists(atPath: run.appendingPathComponent("last.safetensors").path) {
            let eval = try runPart(["eval", run.appendingPathComponent("last.safetensors").path, "--data", ref.data.path,
                                    "--limit", "4", "--pgd-steps", "1"])
            XCTAssertEqual(eval.status, 0, "a kept checkpoint has finite logits: \(eval.stderr)")
        }
        // part cam on weights of 1e35: the logits overflow, and cam says so as part eval does.
        var file = try SafetensorsFile.read(from: ref.run.appendingPathComponent("last.safetensors"))
        for (name, t) in file.tensors where name.hasSuffix("weight") && t.shape.count > 1 {
            var big = t
            big.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = p[i] >= 0 ? 4e35 : -4e35 } }
            file.tensors[name] = big
        }
        let huge = dir.appendingPathComponent("huge.safetensors")
        try Data(try file.encode()).write(to: huge)
        let cam = try runPart(["cam", huge.path, "--data", ref.data.path, "--limit", "2",
                               "--out", dir.appendingPathComponent("grid.png").path])
        XCTAssertEqual(cam.status, 1, cam.stderr)
        XCTAssert(cam.stderr.contains("logits") && cam.stderr.contains("not finite"), cam.stderr)
        XCTAssertEqual(cam.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }.count, 1, cam.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("grid.png").path))
    }

    /// --overwrite keeps the finished run until the new one commits its first checkpoint.
    func testOverwriteKeepsTheOldRunUntilTheNewOneHasACheckpoint() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-overwrite")
        let run = dir.appendingPathComponent("run")
        try FileManager.default.copyItem(at: ref.run, to: run)
        func snapshot() throws -> [String: Data] {
            var files = [String: Data]()
            for name in try FileManager.default.contentsOfDirectory(atPath: run.path) where !name.hasPrefix(".") {
                var isDirectory: ObjCBool = false
                let path = run.appendingPathComponent(name).path
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                    files[name] = try Data(contentsOf: run.appendingPathComponent(name))
                }
            }
            return files
        }
        let before = try snapshot()
        XCTAssertNotNil(before["last.safetensors"])
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let garbage = dir.appendingPathComponent("garbage.safetensors")
        try Data("not a checkpoint".utf8).write(to: garbage)
        let failures: [[String]] = [
            ["--data", empty.path],                                                   // a data error
            ["--data", ref.data.path, "--init", garbage.path],                        // a bad --init
            ["--data", ref.data.path, "--lr", "1e6"],                                 // diverges before a checkpoint
        ]
        for extra in failures {
            let r = try runPart(["train", "--method", "at", "--batch-size", "8", "--epochs", "2", "--steps", "1",
                                 "--eval-steps", "1", "--out", run.path, "--overwrite"] + extra)
            XCTAssert(r.status == 1 || r.status == 64, "\(extra): \(r.stderr)")
            XCTAssertEqual(try snapshot(), before, "\(extra): the old run is back as it was")
            XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent(".replaced").path))
        }
        // A new run that commits a checkpoint replaces the old one.
        let r = try runPart(["train", "--method", "at", "--data", ref.data.path, "--batch-size", "8", "--epochs", "1",
                             "--steps", "1", "--eval-steps", "1", "--seed", "3", "--out", run.path, "--overwrite"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(try snapshot()["last.safetensors"], before["last.safetensors"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent(".replaced").path))
    }

    /// A run whose manifest was deleted still holds its weights: resuming it "from its start"
    /// would overwrite them, so it is refused and nothing is changed.
    func testARunWithWeightsButNoManifestIsRefused() throws {
        let ref = try referenceRun()
        let run = try makeTemporaryDirectory(self, "part-no-manifest").appendingPathComponent("run")
        try FileManager.default.copyItem(at: ref.run, to: run)
        try FileManager.default.removeItem(at: run.appendingPathComponent("checkpoint.json"))
        let weights = try Data(contentsOf: run.appendingPathComponent("last.safetensors"))
        let log = try Data(contentsOf: run.appendingPathComponent("log.jsonl"))
        let r = try runPart(["train", "--resume", run.path])
        XCTAssertEqual(r.status, 1, r.stderr)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, r.stderr)
        XCTAssert(r.stderr.contains("checkpoint.json"), r.stderr)
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("last.safetensors")), weights)
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("log.jsonl")), log)
    }

    func testDamagedCheckpointsAreRefusedNamingTheFile() throws {
        let ref = try referenceRun()
        let dir = try makeTemporaryDirectory(self, "part-damaged")
        func copy(_ name: String) throws -> URL {
            let run = dir.appendingPathComponent(name)
            try FileManager.default.copyItem(at: ref.run, to: run)
            return run
        }
        func assertFileError(_ r: PartRun, _ fragments: [String], line: UInt = #line) {
            XCTAssertEqual(r.status, 1, r.stderr, line: line)
            let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("part: error: ") }
            XCTAssertEqual(errors.count, 1, r.stderr, line: line)
            for f in fragments { XCTAssert(r.stderr.contains(f), "\(r.stderr) should name \(f)", line: line) }
        }
        // Truncated weights: --resume and part eval both refuse them.
        let truncated = try copy("truncated")
        let weights = truncated.appendingPathComponent("last.safetensors")
        let bytes = try Data(contentsOf: weights)
        try bytes.prefix(bytes.count / 2).write(to: weights)
        assertFileError(try runPart(["train", "--resume", truncated.path]), [weights.path, "does not match"])
        assertFileError(try runPart(["eval", weights.path, "--data", ref.data.path, "--limit", "4"]), [weights.path])
        // One flipped byte in the state file.
        let flipped = try copy("flipped")
        let state = flipped.appendingPathComponent("last.state.safetensors")
        var stateBytes = try Data(contentsOf: state)
        stateBytes[stateBytes.count - 3] ^= 0xFF
        try stateBytes.write(to: state)
        assertFileError(try runPart(["train", "--resume", flipped.path]), [state.path, "does not match"])
        // A manifest that is not one.
        let garbage = try copy("garbage")
        let manifest = garbage.appendingPathComponent("checkpoint.json")
        try Data("{\"epochsDone\": ".utf8).write(to: manifest)
        assertFileError(try runPart(["train", "--resume", garbage.path]), [manifest.path])
        // The same command on files that changed since (8 training images instead of 16).
        let moved = try copy("moved")
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyDataset(to: data, train: 8)
        let configURL = moved.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        var dataset = config["dataset"] as! [String: Any]
        dataset["location"] = data.path
        config["dataset"] = dataset
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        assertFileError(try runPart(["train", "--resume", moved.path]), ["the run trained on 16 images", "changed"])
        // No run at all, or no directory: a bad argument.
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let none = try runPart(["train", "--resume", empty.path])
        XCTAssertEqual(none.status, 64, none.stderr)
        XCTAssert(none.stderr.contains("holds no run"), none.stderr)
        let missing = try runPart(["train", "--resume", dir.appendingPathComponent("absent").path])
        XCTAssertEqual(missing.status, 64, missing.stderr)
    }

    func testFlagsGivenAgainOnResumeMustAgree() throws {
        let ref = try referenceRun()
        let differs = try runPart(["train", "--resume", ref.run.path, "--lr", "0.5"])
        XCTAssertEqual(differs.status, 64, differs.stderr)
        XCTAssert(differs.stderr.contains("the run was trained with --lr 0.01, this command gives 0.5"), differs.stderr)
        let data = try runPart(["train", "--resume", ref.run.path, "--train-limit", "8"])
        XCTAssertEqual(data.status, 64, data.stderr)
        XCTAssert(data.stderr.contains("--train-limit"), data.stderr)
        let eps = try runPart(["train", "--resume", ref.run.path, "--eps", "8/255"])
        XCTAssertEqual(eps.status, 64, eps.stderr)
        XCTAssert(eps.stderr.contains("--eps"), eps.stderr)
        // The same values, and options of the process only, are accepted; the run is complete.
        let same = try runPart(["train", "--resume", ref.run.path, "--lr", "0.01", "--batch-size", "8", "--threads", "1",
                                "--checkpoint-every", "0"])
        XCTAssertEqual(same.status, 0, same.stderr)
        XCTAssert(same.stderr.contains("is complete"), same.stderr)
        XCTAssert(same.stderr.contains("computed with") && same.stderr.contains("not promised to be bit-identical"),
                  "another thread count is warned about: \(same.stderr)")
        let sweep = try runPart(["train", "--resume", ref.run.path, "--seeds", "0,1"])
        XCTAssertEqual(sweep.status, 64, sweep.stderr)
    }
}
