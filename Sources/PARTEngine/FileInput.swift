import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file that could not be read, in one sentence naming it and what to change.
public struct FileInputError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Reads files that come from outside (checkpoints, datasets) without surprises.
///
/// Only regular files are read: a directory, FIFO, socket or device (`/dev/zero` never ends, a
/// FIFO blocks until a writer appears) is refused by `stat` before anything is opened. The
/// size is known before reading and a whole-file read must fit in memory, so a sparse or
/// enormous file is an error instead of an allocation failure. Errors are sentences naming the
/// file, not `NSError` text.
public enum FileInput {
    /// Bytes of a file this machine can hold: half its physical memory, leaving room for what
    /// is decoded from them.
    public static var defaultLimit: Int {
        Int(clamping: ProcessInfo.processInfo.physicalMemory / 2)
    }

    /// The whole content of the regular file at `url`.
    /// - Parameter limit: largest accepted size in bytes.
    public static func read(_ url: URL, limit: Int = defaultLimit) throws -> [UInt8] {
        let reader = try Reader(url)
        guard reader.size <= limit else {
            throw FileInputError("\(reader.path): the file is \(reader.size) bytes, more than the \(limit) this machine can load; "
                                 + "is it the right file?")
        }
        return try reader.read(count: reader.size)
    }

    /// An open regular file read from its start.
    public final class Reader {
        public let path: String
        /// The file's size when it was opened.
        public let size: Int
        private let fd: Int32
        private var position = 0

        public init(_ url: URL) throws {
            path = url.path
            var info = stat()
            guard stat(path, &info) == 0 else { throw FileInputError("\(path): \(FileInput.problem(errno))") }
            try FileInput.requireRegular(info, path)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw FileInputError("\(path): \(FileInput.problem(errno))") }
            // The file may have been replaced between stat and open: check what was opened.
            guard fstat(fd, &info) == 0 else {
                let code = errno
                close(fd)
                throw FileInputError("\(path): \(FileInput.problem(code))")
            }
            do {
                try FileInput.requireRegular(info, path)
            } catch {
                close(fd)
                throw error
            }
            self.fd = fd
            size = Int(info.st_size)
            OutputPath.noteInput(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        }

        deinit { close(fd) }

        /// The next `count` bytes; fewer left in the file is an error.
        public func read(count: Int) throws -> [UInt8] {
            guard count > 0 else { return [] }
            guard count <= size - position else {
                throw FileInputError("\(path): the file ends after \(size) bytes, \(position + count) were needed (truncated file?)")
            }
            var bytes = [UInt8](repeating: 0, count: count)
            var failure: Int32 = 0
            let got = bytes.withUnsafeMutableBytes { raw -> Int in
                var offset = 0
                while offset < count {
                    let n = posixRead(fd, raw.baseAddress! + offset, count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = errno
                        break
                    }
                    if n == 0 { break }
                    offset += n
                }
                return offset
            }
            if failure != 0 { throw FileInputError("\(path): \(FileInput.problem(failure))") }
            position += got
            guard got == count else {
                throw FileInputError("\(path): the file shrank to \(position) bytes while it was read; "
                                     + "is another program writing it?")
            }
            return bytes
        }
    }

    static func requireRegular(_ info: stat, _ path: String) throws {
        let kind = info.st_mode & S_IFMT
        guard kind != S_IFREG else { return }
        let what: String
        switch kind {
        case S_IFDIR: what = "a directory"
        case S_IFIFO: what = "a FIFO (named pipe)"
        case S_IFCHR: what = "a character device"
        case S_IFBLK: what = "a block device"
        case S_IFSOCK: what = "a socket"
        default: what = "a special file"
        }
        throw FileInputError("\(path): is \(what), not a regular file; name the file itself")
    }

    /// The reason behind `code`, as the end of a sentence.
    static func problem(_ code: Int32) -> String {
        switch code {
        case ENOENT: return "no such file"
        case EACCES, EPERM: return "permission denied; check the file's permissions"
        case ENOTDIR: return "a component of the path is not a directory"
        case ELOOP: return "too many levels of symbolic links"
        case ENAMETOOLONG: return "the path is too long"
        case EISDIR: return "is a directory, not a regular file; name the file itself"
        case EIO: return "input/output error while reading (is the disk failing?)"
        default: return "cannot read it (\(String(cString: strerror(code))))"
        }
    }
}

/// `read(2)` under a name that does not clash with `FileInput.Reader.read`.
@inline(__always) private func posixRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    read(fd, buffer, count)
}
