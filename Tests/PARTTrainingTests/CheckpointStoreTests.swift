import Foundation
import PARTData
import PARTEngine
@testable import PARTTraining
import XCTest

/// The checkpoint unit without training: commits, recovery after a crash at each step, the
/// run directory's claim, the finiteness check of the NaN guard.
final class CheckpointStoreTests: XCTestCase {
    func directory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("part-store-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func manifest(epochsDone: Int, batchesDone: Int = 0) -> CheckpointManifest {
        CheckpointManifest(epochsDone: epochsDone, batchesDone: batchesDone, batches: 4, epochs: 3, files: [:], logBytes: 0,
                           logLines: 0, instructionSet: "test", threads: 1)
    }

    func contents(_ dir: URL, _ name: String) throws -> [UInt8] { Array(try Data(contentsOf: dir.appendingPathComponent(name))) }

    func testCommitsAndRecoveryKeepOneWholeCheckpoint() throws {
        let dir = try directory()
        let store = CheckpointStore(directory: dir)
        try store.commit([("last.safetensors", [1, 2, 3]), ("last.state.safetensors", [4, 5])], logLine: "{\"epoch\":1}",
                         manifest: manifest(epochsDone: 1))
        XCTAssertEqual(try contents(dir, "last.safetensors"), [1, 2, 3])
        XCTAssertEqual(store.committed?.logLines, 1)

        // A crash after the second commit's manifest, before its files were renamed: recovery
        // finishes the renames.
        try CheckpointStore.writeFile(dir.appendingPathComponent("last.safetensors.pending").path, [9, 9], fault: nil)
        try CheckpointStore.writeFile(dir.appendingPathComponent("last.state.safetensors.pending").path, [8], fault: nil)
        var second = manifest(epochsDone: 1, batchesDone: 2)
        second.files["last.safetensors"] = .init(bytes: 2, md5: [UInt8]([9, 9]).withUnsafeBytes { MD5.hex($0) })
        second.files["last.state.safetensors"] = .init(bytes: 1, md5: [UInt8]([8]).withUnsafeBytes { MD5.hex($0) })
        second.logBytes = store.committed!.logBytes
        second.logLines = 1
        try JSONEncoder().encode(second).write(to: dir.appendingPathComponent("checkpoint.json"))
        // And a log line that no manifest committed.
        let log = dir.appendingPathComponent("log.jsonl")
        let handle = try FileHandle(forWritingTo: log)
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"epoch\":2}\n".utf8))
        try handle.close()

        let recovered = try CheckpointStore.recover(dir)
        XCTAssertEqual(recovered.committed?.batchesDone, 2)
        XCTAssertEqual(try contents(dir, "last.safetensors"), [9, 9])
        XCTAssertEqual(try contents(dir, "last.state.safetensors"), [8])
        XCTAssertEqual(try String(contentsOf: log, encoding: .utf8), "{\"epoch\":1}\n", "the uncommitted line is cut")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".pending") }, [])

        // A crash before the manifest: pending files are discarded, the committed ones stay.
        try CheckpointStore.writeFile(dir.appendingPathComponent("last.safetensors.pending").path, [7], fault: nil)
        _ = try CheckpointStore.recover(dir)
        XCTAssertEqual(try contents(dir, "last.safetensors"), [9, 9])

        // A file that matches neither its record nor a pending copy is refused, naming it.
        try Data([1]).write(to: dir.appendingPathComponent("last.state.safetensors"))
        XCTAssertThrowsError(try CheckpointStore.recover(dir)) { error in
            XCTAssert("\(error)".contains("last.state.safetensors does not match"), "\(error)")
        }
    }

    func testAFailedWriteLeavesThePreviousCheckpointAndLog() throws {
        let dir = try directory()
        let store = CheckpointStore(directory: dir)
        try store.commit([("last.safetensors", [1, 2, 3])], logLine: "{\"epoch\":1}", manifest: manifest(epochsDone: 1))
        let before = try contents(dir, "checkpoint.json")
        // A file name that cannot be created makes the second commit fail after the first file.
        XCTAssertThrowsError(try store.commit([("last.safetensors", [4, 5, 6]), ("missing/state", [1])],
                                              logLine: "{\"epoch\":2}", manifest: manifest(epochsDone: 2))) { error in
            XCTAssert("\(error)".contains("the previous checkpoint (after epoch 1) in \(dir.path) is intact"), "\(error)")
        }
        XCTAssertEqual(try contents(dir, "checkpoint.json"), before)
        XCTAssertEqual(try contents(dir, "last.safetensors"), [1, 2, 3])
        XCTAssertEqual(try String(contentsOf: dir.appendingPathComponent("log.jsonl"), encoding: .utf8), "{\"epoch\":1}\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("last.safetensors.pending").path))
    }

    func testARunDirectoryIsClaimedOnce() throws {
        let parent = try directory()
        let base = parent.appendingPathComponent("runs/at-x").path
        let first = try RunDirectory.claimFresh(base: base)
        let second = try RunDirectory.claimFresh(base: base)
        XCTAssertEqual(first.url.lastPathComponent, "at-x")
        XCTAssertEqual(second.url.lastPathComponent, "at-x-2", "a held directory is not handed out again")
        XCTAssertThrowsError(try RunDirectory.claim(base, overwrite: true)) { error in
            XCTAssert("\(error)".contains("another part train is writing into"), "\(error)")
        }
        try Data("{}".utf8).write(to: second.url.appendingPathComponent("config.json"))
        try Data().write(to: second.url.appendingPathComponent("last.safetensors.tmp-123"))
        let path = second.url.path
        // Held, a directory is refused for that reason (not only because it holds a run), and
        // nothing of it is touched, even with --overwrite.
        try withExtendedLifetime((first, second)) {
            for overwrite in [false, true] {
                XCTAssertThrowsError(try RunDirectory.claim(path, overwrite: overwrite), "still held") { error in
                    XCTAssert("\(error)".contains("another part train is writing into"), "\(error)")
                }
            }
        }
        XCTAssert(FileManager.default.fileExists(atPath: second.url.appendingPathComponent("config.json").path))
        XCTAssert(FileManager.default.fileExists(atPath: second.url.appendingPathComponent("last.safetensors.tmp-123").path))
    }

    func testOverwriteRemovesTheRunAndOnlyTheRun() throws {
        let parent = try directory()
        let run = parent.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run.appendingPathComponent("seed-1"), withIntermediateDirectories: true)
        for name in ["config.json", "log.jsonl", "last.safetensors", "notes.txt", "x.tmp-99"] {
            try Data("x".utf8).write(to: run.appendingPathComponent(name))
        }
        XCTAssertThrowsError(try RunDirectory.claim(run.path, overwrite: false)) { error in
            XCTAssert("\(error)".contains("already holds a run"), "\(error)")
            XCTAssertEqual((error as? RunDirectoryError)?.badArgument, true)
        }
        let claimed = try RunDirectory.claim(run.path, overwrite: true)
        let left = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
        XCTAssertEqual(left, [".lock", ".replaced", "notes.txt"], "the old run's files are set aside, the user's stay")
        let aside = try FileManager.default.contentsOfDirectory(atPath: run.appendingPathComponent(".replaced").path).sorted()
        XCTAssertEqual(aside, ["config.json", "last.safetensors", "log.jsonl", "seed-1"])
        // The new run ends without a checkpoint: the old one is back.
        try Data("new".utf8).write(to: run.appendingPathComponent("config.json"))
        claimed.removeIfUnused()
        let back = try FileManager.default.contentsOfDirectory(atPath: run.path).sorted()
        XCTAssertEqual(back, [".lock", "config.json", "last.safetensors", "log.jsonl", "notes.txt", "seed-1"])
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("config.json")), Data("x".utf8))
        withExtendedLifetime(claimed) {}
    }

    func testOverwriteDeletesTheOldRunOnceTheNewOneCommits() throws {
        let run = try directory().appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: run.appendingPathComponent("last.safetensors"))
        try Data("{}".utf8).write(to: run.appendingPathComponent("config.json"))
        let claimed = try RunDirectory.claim(run.path, overwrite: true)
        let store = CheckpointStore(directory: run)
        try store.commit([("last.safetensors", Array("new".utf8))], logLine: nil,
                         manifest: CheckpointManifest(epochsDone: 1, batchesDone: 0, batches: 1, epochs: 1, files: [:],
                                                      logBytes: 0, logLines: 0, instructionSet: "", threads: 1))
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.appendingPathComponent(".replaced").path))
        claimed.removeIfUnused()
        XCTAssertEqual(try Data(contentsOf: run.appendingPathComponent("last.safetensors")), Data("new".utf8))
    }

    func testFinitenessCheckFindsOneBadElementAnywhere() {
        var t = Tensor(shape: [100_003], repeating: 1.5)
        XCTAssert(t.allFinite)
        for (index, value) in [(0, Float.nan), (65_537, .infinity), (100_002, -.infinity), (77, -Float.nan)] {
            var u = t
            u[flat: index] = value
            XCTAssertFalse(u.allFinite, "\(value) at \(index)")
        }
        t[flat: 5] = .greatestFiniteMagnitude
        t[flat: 6] = -.leastNonzeroMagnitude
        XCTAssert(t.allFinite)
    }

    func testCheckpointPolicy() {
        let every = CheckpointPolicy(everyBatches: 3)
        XCTAssertEqual((1...10).filter { every.due(done: $0, of: 10, since: Date()) }, [3, 6, 9])
        XCTAssertFalse(CheckpointPolicy(everyBatches: 5).due(done: 10, of: 10, since: Date()), "the epoch's end has its own")
        let minutes = CheckpointPolicy(minutes: 1)
        XCTAssertFalse(minutes.due(done: 1, of: 10, since: Date()))
        XCTAssert(minutes.due(done: 1, of: 10, since: Date().addingTimeInterval(-61)))
    }
}
