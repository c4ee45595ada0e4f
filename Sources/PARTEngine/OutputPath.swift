import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one check every command makes of the files it is about to write, before any work.
///
/// Outputs are written as a temporary file renamed over the path, which replaces whatever was
/// there without looking: a device (`/dev/full` would become a regular file), the checkpoint
/// being evaluated, another output of the same command, or a file of a run directory. So an
/// output path is accepted only when it is absent or a regular file (symbolic links followed),
/// is not the same file as one of the command's inputs (compared by device and inode, so a
/// hard or symbolic link to an input is caught too), is not the path of another output of the
/// command, and is not one of the files that make a run directory (`checkpoint.json`,
/// `last.safetensors`, `log.jsonl`, ...) unless the command names it as its own (`part report
/// RUN` writes `RUN/report.html`).
public enum OutputPath {
    /// One output: the flag that names it (for the message) and the path.
    public struct Output {
        public let flag: String
        public let path: String
        public init(_ flag: String, _ path: String) {
            self.flag = flag
            self.path = path
        }
    }

    /// The files and folders of a run directory (its checkpoint, log, configuration, report and
    /// evaluations): the one list, which `part train --overwrite` removes exactly and no other
    /// command writes into unless it owns the file.
    public static let runFiles = ["config.json", "checkpoint.json", "last.safetensors", "last.state.safetensors",
                                  "best.safetensors", "last.onnx", "best.onnx", "log.jsonl", "summary.json",
                                  "report.html", "tb", "eval"]

    /// `runFiles` and the run's lock file.
    public static let runEntries = runFiles + [".lock"]

    /// Whether the directory `url` holds a run (a run's manifest, configuration, log or lock).
    static func isRunDirectory(_ url: URL) -> Bool {
        ["checkpoint.json", "config.json", "log.jsonl", ".lock", "last.safetensors"].contains {
            access(url.appendingPathComponent($0).path, F_OK) == 0
        }
    }

    private static let read = Locked(Set<FileID>())

    /// Records a file this process has read (the readers of outside files call it), so that a
    /// later `check` refuses it as an output even when no flag named it (a file of a `--data`
    /// folder).
    public static func noteInput(device: UInt64, inode: UInt64) {
        _ = read.withLock { $0.insert(FileID(device: device, inode: inode)) }
    }

    /// Whether this process has read the file `id`.
    static func wasRead(_ id: FileID) -> Bool {
        read.withLock { $0.contains(id) }
    }

    /// Checks `outputs` against each other and against `inputs` (paths of files or folders the
    /// command reads; absent ones are ignored). `owned` lists paths of run files the command
    /// itself writes. Throws the first problem found.
    public static func check(_ outputs: [Output], inputs: [String], owned: [String] = []) throws {
        let inputIdentities = inputs.compactMap { identity($0).map { (path: $0, id: $1) } }
        let ownedPaths = Set(owned.map(canonical))
        var seen = [(flag: String, path: String, canonical: String, id: FileID?)]()
        for output in outputs {
            let flag = output.flag, path = output.path
            let shownPath = shown(path)
            guard !path.isEmpty else { throw OutputPathError("\(flag) is empty; name a file") }
            var info = stat()
            let exists = stat(path, &info) == 0
            if exists {
                let kind = info.st_mode & S_IFMT
                guard kind == S_IFREG else {
                    throw OutputPathError("\(flag) \(shownPath) is \(describe(kind)), not a regular file; name a file to write")
                }
            } else if errno != ENOENT {
                throw OutputPathError("\(flag) \(shownPath) cannot be written (\(String(cString: strerror(errno)).lowercased())); "
                                      + "name another file")
            }
            let id = exists ? FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)) : nil
            let where_ = canonical(path)
            if let id, let input = inputIdentities.first(where: { $0.id == id }) {
                throw OutputPathError("\(flag) \(shownPath) is an input of this command (\(shown(input.path))); "
                                      + "name another file")
            }
            if let id, wasRead(id) {
                throw OutputPathError("\(flag) \(shownPath) is a file this command has read (its data); name another file")
            }
            if let other = seen.first(where: { $0.canonical == where_ || (id != nil && $0.id == id) }) {
                throw OutputPathError("\(flag) \(shownPath) is also the file of \(other.flag); give each output its own file")
            }
            let url = URL(fileURLWithPath: where_)
            if !ownedPaths.contains(where_), isRunEntry(url.lastPathComponent),
               isRunDirectory(url.deletingLastPathComponent()) {
                throw OutputPathError("\(flag) \(shownPath) is a file of the run directory "
                                      + "\(shown(url.deletingLastPathComponent().path)); name a file outside it "
                                      + "(or a new name in it)")
            }
            seen.append((flag, path, where_, id))
        }
    }

    /// Whether `name` is one of the entries a run directory is made of.
    static func isRunEntry(_ name: String) -> Bool {
        runEntries.contains(name) || name.hasSuffix(".pending") || name.hasPrefix("seed-")
    }

    struct FileID: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Whether two paths name the same existing file (through links or other spellings).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        guard let x = identity(a)?.1, let y = identity(b)?.1 else { return false }
        return x == y
    }

    static func identity(_ path: String) -> (String, FileID)? {
        var info = stat()
        guard !path.isEmpty, stat(path, &info) == 0 else { return nil }
        return (path, FileID(device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }

    /// The absolute path with `.`/`..` and the symbolic links of its folder resolved (the file
    /// itself may not exist yet).
    static func canonical(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        guard let resolved = realpath(parent, nil) else { return url.path }
        defer { free(resolved) }
        return URL(fileURLWithPath: String(cString: resolved)).appendingPathComponent(url.lastPathComponent).path
    }

    /// A path as one line of a message (a newline in it is escaped).
    static func shown(_ path: String) -> String { messageText(path, limit: 4096) }

    static func describe(_ kind: mode_t) -> String {
        switch kind {
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }
}
