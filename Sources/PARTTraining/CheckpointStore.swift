import Foundation
import PARTData
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// `RUN/checkpoint.json`: which position of the run the files beside it hold, and their sizes
/// and digests. A checkpoint exists when, and as, this manifest says (docs/conventions.md.md section 4).
public struct CheckpointManifest: Codable, Equatable, Sendable {
    public static let currentFormat = "part-checkpoint-1"

    public struct FileRecord: Codable, Equatable, Sendable {
        public let bytes: Int
        public let md5: String
    }

    public var format = CheckpointManifest.currentFormat
    /// Epochs finished, and batches of the next epoch done (0 at an epoch's end).
    public var epochsDone: Int
    public var batchesDone: Int
    /// Batches per epoch and epochs of the run.
    public var batches: Int
    public var epochs: Int
    /// The checkpoint's files by name (`last.safetensors`, `last.state.safetensors`, and
    /// `best.safetensors` once a validation split picked an epoch).
    public var files: [String: FileRecord]
    /// The committed length of `log.jsonl`: a line beyond it belongs to no checkpoint.
    public var logBytes: Int
    public var logLines: Int
    /// Where the checkpoint was computed: bit-identical continuation is promised only on the
    /// same instruction set with the same thread count.
    public var instructionSet: String
    public var threads: Int

    /// "after epoch 2", "in epoch 3 after batch 40 of 391".
    public var position: String {
        batchesDone == 0 ? "after epoch \(epochsDone)" : "in epoch \(epochsDone + 1) after batch \(batchesDone) of \(batches)"
    }
}

/// A checkpoint write that failed; the previous checkpoint is intact.
public struct CheckpointWriteError: Error, CustomStringConvertible {
    public let description: String
}

/// Writes and recovers the checkpoints of one run directory as one atomic unit.
///
/// A commit writes each file as `NAME.pending` (fsynced), appends the log line, then writes
/// the manifest and renames it over `checkpoint.json`: that rename is the commit. Only then
/// are the pending files renamed over `last.safetensors` and the others, so until the new
/// checkpoint is complete the previous one stays whole. After a crash, `recover` finishes
/// what a committed manifest names (renames its pending files), discards what no manifest
/// names (pending files, log lines beyond the committed length), and refuses a file whose
/// size or digest differs from the manifest.
final class CheckpointStore {
    static let manifestName = "checkpoint.json"
    static let pendingSuffix = ".pending"
    static let logName = "log.jsonl"

    let directory: URL
    /// The last committed checkpoint, nil before the first.
    private(set) var committed: CheckpointManifest?

    init(directory: URL, committed: CheckpointManifest? = nil) {
        self.directory = directory
        self.committed = committed
    }

    private func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// "the previous checkpoint (after epoch 1) in RUN is intact".
    var previousText: String {
        guard let committed else { return "no checkpoint of this run had been written yet" }
        return "the previous checkpoint (\(committed.position)) in \(directory.path) is intact"
    }

    // MARK: commit

    /// Commits `files` (name, bytes) and `logLine` as the checkpoint `manifest` describes (its
    /// file records and log length are filled in here).
    func commit(_ files: [(String, [UInt8])], logLine: String?, manifest: CheckpointManifest) throws {
        var manifest = manifest
        manifest.files = committed?.files.filter { name, _ in !files.contains { $0.0 == name } } ?? [:]
        let previousLog = committed?.logBytes ?? 0
        manifest.logBytes = previousLog
        manifest.logLines = committed?.logLines ?? 0
        var written = [String]()
        do {
            for (name, bytes) in files {
                let pending = path(name + CheckpointStore.pendingSuffix)
                written.append(pending)
                try CheckpointStore.writeFile(pending, bytes, fault: name == "last.safetensors" ? "checkpoint-model" : nil)
                manifest.files[name] = .init(bytes: bytes.count, md5: bytes.withUnsafeBytes { MD5.hex($0) })
            }
            if let logLine {
                let bytes = Array((logLine + "\n").utf8)
                try CheckpointStore.append(path(CheckpointStore.logName), bytes, at: previousLog)
                manifest.logBytes += bytes.count
                manifest.logLines += 1
            }
            let encoder = JSONOutput.encoder()
            encoder.outputFormatting.insert(.prettyPrinted)
            let text = Array(try encoder.encode(manifest) + Data("\n".utf8))
            let pendingManifest = path(CheckpointStore.manifestName + CheckpointStore.pendingSuffix)
            written.append(pendingManifest)
            try CheckpointStore.writeFile(pendingManifest, text, fault: "checkpoint-manifest-write")
            guard rename(pendingManifest, path(CheckpointStore.manifestName)) == 0 else {
                throw CheckpointWriteError(description: "cannot rename \(pendingManifest) over "
                                           + "\(path(CheckpointStore.manifestName)) (\(RunDirectory.message(errno)))")
            }
            CheckpointStore.syncDirectory(directory.path)
        } catch {
            for p in written { unlink(p) }
            if logLine != nil { truncate(path(CheckpointStore.logName), off_t(previousLog)) }
            throw CheckpointWriteError(description: "\(error); \(previousText)")
        }
        committed = manifest
        FaultInjection.reach("checkpoint-manifest")
        try finishRenames()
        // The new run has a checkpoint: the run --overwrite set aside can go.
        RunDirectory.settleReplaced(directory)
    }

    /// Renames the committed checkpoint's pending files over their names.
    private func finishRenames() throws {
        guard let committed else { return }
        for name in committed.files.keys.sorted() {
            let pending = path(name + CheckpointStore.pendingSuffix)
            if access(pending, F_OK) == 0, rename(pending, path(name)) != 0 {
                throw CheckpointWriteError(description: "the checkpoint \(committed.position) is committed in "
                                           + "\(path(CheckpointStore.manifestName)) but \(pending) cannot be renamed to "
                                           + "\(name) (\(RunDirectory.message(errno))); --resume finishes it")
            }
        }
        CheckpointStore.syncDirectory(directory.path)
    }

    /// Writes `bytes` to `path` (created or truncated) and fsyncs it. `fault` names the point
    /// where an injected failure strikes, half-way through the bytes.
    static func writeFile(_ path: String, _ bytes: [UInt8], fault: String?) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CheckpointWriteError(description: "cannot create \(path) (\(RunDirectory.message(errno)))")
        }
        defer { close(fd) }
        let half = bytes.count / 2
        try writeAll(fd, bytes, 0..<half, path: path)
        if let fault, FaultInjection.reach(fault) == .fail {
            throw CheckpointWriteError(description: "cannot write \(path) (\(RunDirectory.message(ENOSPC)), injected)")
        }
        try writeAll(fd, bytes, half..<bytes.count, path: path)
        guard fsync(fd) == 0 else {
            throw CheckpointWriteError(description: "cannot write \(path) (\(RunDirectory.message(errno)))")
        }
    }

    /// Appends `bytes` to `path` at offset `at` (cutting anything beyond it) and fsyncs.
    static func append(_ path: String, _ bytes: [UInt8], at offset: Int) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CheckpointWriteError(description: "cannot open \(path) (\(RunDirectory.message(errno)))")
        }
        defer { close(fd) }
        guard ftruncate(fd, off_t(offset)) == 0, lseek(fd, off_t(offset), SEEK_SET) >= 0 else {
            throw CheckpointWriteError(description: "cannot write \(path) (\(RunDirectory.message(errno)))")
        }
        try writeAll(fd, bytes, 0..<bytes.count, path: path)
        guard fsync(fd) == 0 else {
            throw CheckpointWriteError(description: "cannot write \(path) (\(RunDirectory.message(errno)))")
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ range: Range<Int>, path: String) throws {
        try bytes.withUnsafeBytes { raw in
            var offset = range.lowerBound
            while offset < range.upperBound {
                let n = write(fd, raw.baseAddress! + offset, range.upperBound - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw CheckpointWriteError(description: "cannot write \(path) (\(RunDirectory.message(errno)))")
                }
                offset += n
            }
        }
    }

    /// Makes renames in `directory` durable (best effort).
    static func syncDirectory(_ directory: String) {
        let fd = open(directory, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }

    // MARK: recovery

    /// The store of an existing run directory after a crash: the committed checkpoint made
    /// whole (or none), uncommitted files and log lines removed.
    static func recover(_ directory: URL) throws -> CheckpointStore {
        let store = CheckpointStore(directory: directory)
        let fm = FileManager.default
        let manifestPath = store.path(manifestName)
        unlink(store.path(manifestName + pendingSuffix))
        let names = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        guard fm.fileExists(atPath: manifestPath) else {
            // Weights are renamed into place only after a manifest committed them, and at most one
            // log line precedes the first commit: either means the manifest was lost, and starting
            // over would overwrite the run.
            let weights = ["last.safetensors", "last.state.safetensors", "best.safetensors"].filter(names.contains)
            let logLines = (try? Data(contentsOf: URL(fileURLWithPath: store.path(logName))))
                .map { $0.filter { $0 == UInt8(ascii: "\n") }.count } ?? 0
            if !weights.isEmpty || logLines > 1 {
                let what = weights.isEmpty ? "\(logLines) lines of \(logName)" : weights.joined(separator: ", ")
                throw RunDirectoryError("\(directory.path) holds \(what) but no \(manifestName): the run's checkpoint "
                                        + "manifest was deleted, so the run cannot be resumed and is left as it is; "
                                        + "start a new run with another --out", badArgument: false)
            }
            for name in names where name.hasSuffix(pendingSuffix) { unlink(store.path(name)) }
            truncate(store.path(logName), 0)
            return store
        }
        let manifest: CheckpointManifest
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: manifestPath))
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch {
            throw RunDirectoryError("\(manifestPath) is not a readable checkpoint manifest (damaged or edited); the run "
                                    + "cannot be resumed from it", badArgument: false)
        }
        guard manifest.format == CheckpointManifest.currentFormat, manifest.epochsDone >= 0, manifest.batchesDone >= 0,
              manifest.logBytes >= 0, manifest.logLines >= 0 else {
            throw RunDirectoryError("\(manifestPath) is not a checkpoint manifest of this version (format "
                                    + "\(manifest.format)); the run cannot be resumed from it", badArgument: false)
        }
        for (name, record) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard !name.contains("/"), name != manifestName else {
                throw RunDirectoryError("\(manifestPath) names the file '\(name)', which is not a checkpoint file",
                                        badArgument: false)
            }
            let final = store.path(name), pending = store.path(name + pendingSuffix)
            if matches(final, record) {
                unlink(pending)
            } else if matches(pending, record) {
                guard rename(pending, final) == 0 else {
                    throw RunDirectoryError("cannot rename \(pending) to \(name) (\(RunDirectory.message(errno)))",
                                            badArgument: false)
                }
            } else {
                throw RunDirectoryError("\(final) does not match \(manifestPath) (\(record.bytes) bytes, md5 "
                                        + "\(record.md5)): it is truncated, damaged or was replaced; the run cannot be "
                                        + "resumed from it", badArgument: false)
            }
        }
        for name in names where name.hasSuffix(pendingSuffix) { unlink(store.path(name)) }
        let logPath = store.path(logName)
        var info = stat()
        let logSize = stat(logPath, &info) == 0 ? Int(info.st_size) : 0
        guard logSize >= manifest.logBytes else {
            throw RunDirectoryError("\(logPath) is shorter (\(logSize) bytes) than \(manifestPath) records "
                                    + "(\(manifest.logBytes)); it was truncated or replaced", badArgument: false)
        }
        if logSize > manifest.logBytes { truncate(logPath, off_t(manifest.logBytes)) }
        syncDirectory(directory.path)
        store.committed = manifest
        return store
    }

    /// Whether the file at `path` has the record's size and digest.
    static func matches(_ path: String, _ record: CheckpointManifest.FileRecord) -> Bool {
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG, Int(info.st_size) == record.bytes,
              let data = try? Data(contentsOf: URL(fileURLWithPath: path)) else { return false }
        return data.withUnsafeBytes { MD5.hex($0) } == record.md5
    }

    /// The committed lines of `log.jsonl`, decoded.
    func committedReports() throws -> [EpochReport] {
        guard let committed, committed.logBytes > 0 else { return [] }
        let logPath = path(CheckpointStore.logName)
        let data = try Data(contentsOf: URL(fileURLWithPath: logPath)).prefix(committed.logBytes)
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf",
                                                                        nan: "nan")
        var reports = [EpochReport]()
        for (n, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let report = try? decoder.decode(EpochReport.self, from: Data(line)) else {
                throw RunDirectoryError("\(logPath): line \(n + 1) is not an epoch record; the log was edited or damaged",
                                        badArgument: false)
            }
            reports.append(report)
        }
        return reports
    }
}
