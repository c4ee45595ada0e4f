import Foundation
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// A problem with a run directory, in one sentence naming it. `badArgument` marks what the
/// user fixes by changing a flag (`--out`, `--overwrite`, `--resume`: exit code 64); the others
/// are missing or damaged files (exit code 1).
public struct RunDirectoryError: ExitCoded, CustomStringConvertible {
    public let description: String
    public let badArgument: Bool
    public var exitCode: Int32 { badArgument ? Self.badArgumentStatus : 1 }
    public init(_ description: String, badArgument: Bool) {
        self.description = description
        self.badArgument = badArgument
    }
}

/// A run directory held by this process (docs/conventions.md.md section 4).
///
/// A directory is claimed by creating it (`mkdir` either creates it or fails) or, when it
/// exists, by taking an exclusive `flock` on its `.lock` file; the lock is held until the
/// process ends, however it ends, so two runs started at the same moment never share a
/// directory, and a run killed by SIGKILL leaves nothing that blocks its resume. Creating the
/// lock file is also the proof that the directory is writable, before any training.
public final class RunDirectory {
    public let url: URL
    private let lock: Int32
    /// Whether this process created the directory.
    private let created: Bool

    private init(url: URL, lock: Int32, created: Bool) {
        self.url = url
        self.lock = lock
        self.created = created
    }

    /// Called when the run ends, however it ends: puts back the run that `--overwrite` set aside
    /// when the new run committed no checkpoint (it failed on its data, its `--init`, diverged
    /// or was stopped first), then removes the directory again when this process created it and
    /// nothing but the lock was written into it (a run that failed before its first step leaves
    /// no empty folder).
    public func removeIfUnused() {
        RunDirectory.settleReplaced(url)
        guard created, let names = try? FileManager.default.contentsOfDirectory(atPath: url.path),
              names == [".lock"] else { return }
        unlink(url.appendingPathComponent(".lock").path)
        rmdir(url.path)
    }

    deinit { close(lock) }

    /// Whether `url` holds (part of) a run: a file of `OutputPath.runFiles` (the one list of a
    /// run's files, which `--overwrite` removes exactly, with temporary files) or a `seed-K` sub-run.
    public static func holdsRun(_ url: URL) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        return names.contains { OutputPath.runFiles.contains($0) || $0.hasPrefix("seed-") }
    }

    /// Claims the directory `path` for a new run. An existing run there is refused unless
    /// `overwrite`, which removes it first, so the new run starts a fresh log.
    public static func claim(_ path: String, overwrite: Bool, flag: String = "--out") throws -> RunDirectory {
        guard !path.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw RunDirectoryError("\(flag) is empty; name a directory for the run, e.g. \(flag) runs/my-run", badArgument: true)
        }
        let url = URL(fileURLWithPath: path)
        let claimed = try take(url, flag: flag, creating: true)
        settleReplaced(url)
        if holdsRun(url) {
            guard overwrite else {
                throw RunDirectoryError("\(flag) \(path) already holds a run; choose another \(flag), pass --overwrite to "
                                        + "replace it, or continue it with --resume \(path)", badArgument: true)
            }
            try claimed.setAsideRun()
        }
        claimed.removeTemporaryFiles()
        return claimed
    }

    /// Claims the first of `base`, `base-2`, `base-3`, ... that holds no run and no other
    /// process holds.
    public static func claimFresh(base: String) throws -> RunDirectory {
        for n in 1...10_000 {
            let url = URL(fileURLWithPath: n == 1 ? base : "\(base)-\(n)")
            if holdsRun(url) { continue }
            guard let claimed = try? take(url, flag: "--out", creating: true) else { continue }
            // Another run may have written its first file between the look and the lock.
            if holdsRun(url) { continue }
            claimed.removeTemporaryFiles()
            return claimed
        }
        throw RunDirectoryError("no free run directory \(base)-N; pass --out", badArgument: true)
    }

    /// Takes an existing run directory for `--resume`.
    public static func existing(_ path: String) throws -> RunDirectory {
        guard !path.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw RunDirectoryError("--resume is empty; name the run directory to continue", badArgument: true)
        }
        let url = URL(fileURLWithPath: path)
        var info = stat()
        guard stat(url.path, &info) == 0 else {
            throw RunDirectoryError("--resume \(path): no such directory", badArgument: true)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw RunDirectoryError("--resume \(path) is not a directory; name the run directory (the folder of "
                                    + "config.json)", badArgument: true)
        }
        let claimed = try take(url, flag: "--resume", creating: false)
        settleReplaced(url)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
            throw RunDirectoryError("--resume \(path) holds no run (no config.json)", badArgument: true)
        }
        claimed.removeTemporaryFiles()
        return claimed
    }

    /// Creates (or finds) the directory and takes its lock.
    private static func take(_ url: URL, flag: String, creating: Bool) throws -> RunDirectory {
        let path = url.path
        var made = false
        if creating {
            let parent = url.deletingLastPathComponent()
            do {
                try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
            } catch {
                throw RunDirectoryError("\(flag) \(path) cannot be created: \(reason(for: parent)); choose another \(flag)",
                                        badArgument: true)
            }
            made = mkdir(path, 0o755) == 0
            if !made && errno != EEXIST {
                let e = errno
                throw RunDirectoryError("\(flag) \(path) cannot be created (\(message(e))); choose another \(flag)",
                                        badArgument: true)
            }
        }
        var info = stat()
        guard stat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw RunDirectoryError("\(flag) \(path) exists and is not a directory; choose another \(flag)", badArgument: true)
        }
        let lockPath = url.appendingPathComponent(".lock").path
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            throw RunDirectoryError("\(flag) \(path) is not writable (\(message(e))); choose another \(flag) or fix its "
                                    + "permissions", badArgument: true)
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw RunDirectoryError("another part train is writing into \(path); wait for it or choose another \(flag)",
                                    badArgument: true)
        }
        return RunDirectory(url: url, lock: fd, created: made)
    }

    /// Why `url` (or the nearest existing folder above it) cannot hold a new folder.
    private static func reason(for url: URL) -> String {
        var probe = url
        var info = stat()
        while stat(probe.path, &info) != 0 {
            let parent = probe.deletingLastPathComponent()
            if parent.path == probe.path { break }
            probe = parent
        }
        if info.st_mode & S_IFMT != S_IFDIR { return "\(probe.path) is not a directory" }
        return access(probe.path, W_OK) == 0 ? "\(probe.path) refused a new folder" : "\(probe.path) is not writable"
    }

    static func message(_ code: Int32) -> String { String(cString: strerror(code)).lowercased() }

    /// The folder where `--overwrite` keeps the old run until the new run's first checkpoint
    /// commits (`RUN/.replaced`).
    static let replacedName = ".replaced"

    /// Whether `name` is an entry of a run (what `--overwrite` sets aside).
    static func isRunEntry(_ name: String) -> Bool {
        OutputPath.runFiles.contains(name) || name.hasPrefix("seed-") || name.hasSuffix(CheckpointStore.pendingSuffix)
    }

    /// Moves the run's own entries into `RUN/.replaced` (for `--overwrite`): the old run is
    /// deleted only once the new one has committed a checkpoint (`CheckpointStore.commit`), and
    /// is put back when the new one ends without one, so a new run that fails early never costs
    /// the finished one.
    private func setAsideRun() throws {
        let fm = FileManager.default
        let aside = url.appendingPathComponent(RunDirectory.replacedName)
        try? fm.removeItem(at: aside)
        do {
            try fm.createDirectory(at: aside, withIntermediateDirectories: false)
        } catch {
            throw RunDirectoryError("--overwrite: cannot create \(aside.path) to keep the old run until the new one has a "
                                    + "checkpoint; choose another --out", badArgument: false)
        }
        let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where RunDirectory.isRunEntry(name) {
            guard rename(url.appendingPathComponent(name).path, aside.appendingPathComponent(name).path) == 0 else {
                throw RunDirectoryError("--overwrite: cannot move \(url.appendingPathComponent(name).path) of the old run "
                                        + "aside (\(RunDirectory.message(errno))); move it by hand or choose another --out",
                                        badArgument: false)
            }
        }
        CheckpointStore.syncDirectory(url.path)
    }

    /// Finishes an `--overwrite` in `directory` (under its lock): once the new run has committed a
    /// checkpoint the old run is deleted; before that, the new run's entries are removed and the
    /// old run is put back. Also run when a directory is claimed, for a process killed in between.
    static func settleReplaced(_ directory: URL) {
        let fm = FileManager.default
        let aside = directory.appendingPathComponent(replacedName)
        var info = stat()
        guard lstat(aside.path, &info) == 0 else { return }
        let names = (try? fm.contentsOfDirectory(atPath: directory.path)) ?? []
        // A checkpoint of the new run, or of a seed of a new sweep.
        let committed = ([""] + names.filter { $0.hasPrefix("seed-") }).contains {
            fm.fileExists(atPath: directory.appendingPathComponent($0).appendingPathComponent(CheckpointStore.manifestName).path)
        }
        if committed {
            try? fm.removeItem(at: aside)
            return
        }
        for name in names where isRunEntry(name) { try? fm.removeItem(at: directory.appendingPathComponent(name)) }
        for name in (try? fm.contentsOfDirectory(atPath: aside.path)) ?? [] {
            _ = rename(aside.appendingPathComponent(name).path, directory.appendingPathComponent(name).path)
        }
        rmdir(aside.path)
        CheckpointStore.syncDirectory(directory.path)
    }

    /// Removes temporary files that a killed writer left (`NAME.tmp-PID`): no process writes
    /// here but this one.
    func removeTemporaryFiles() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where name.range(of: ".tmp-") != nil {
            unlink(url.appendingPathComponent(name).path)
        }
    }
}
