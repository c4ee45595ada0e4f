import Foundation
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// A block of bytes that is either owned (allocated, filled by a loader) or a read-only
/// memory mapping of a file. Datasets keep their pixels in one, so a decoded cache is
/// mapped, not read, and a prefix of a dataset shares its parent's memory.
// Safe: the bytes are written only by the loader that allocates the buffer (through the
// module-internal `mutablePointer`) before anything shares it; afterwards they are only read.
public final class ByteBuffer: @unchecked Sendable {
    public let count: Int
    private let base: UnsafeMutableRawPointer?
    private let mapped: Bool
    /// The buffer a view's bytes belong to (kept alive by the view).
    private let parent: ByteBuffer?

    private init(base: UnsafeMutableRawPointer?, count: Int, mapped: Bool, parent: ByteBuffer? = nil) {
        self.base = base
        self.count = count
        self.mapped = mapped
        self.parent = parent
    }

    /// Bytes `range` of `parent`, sharing its memory.
    public static func view(of parent: ByteBuffer, _ range: Range<Int>) -> ByteBuffer {
        precondition(range.lowerBound >= 0 && range.upperBound <= parent.count, "view \(range) of \(parent.count) bytes")
        return ByteBuffer(base: parent.base.map { $0 + range.lowerBound }, count: range.count, mapped: parent.mapped,
                          parent: parent)
    }

    /// `count` bytes of uninitialised, owned memory (16-byte aligned).
    public static func allocate(_ count: Int) throws -> ByteBuffer {
        guard count >= 0 else { throw DatasetError("cannot allocate \(count) bytes") }
        if count == 0 { return ByteBuffer(base: nil, count: 0, mapped: false) }
        guard let p = malloc(count) else {
            throw DatasetError("out of memory: cannot allocate \(count) bytes")
        }
        return ByteBuffer(base: p, count: count, mapped: false)
    }

    /// Takes ownership of `count` bytes at `pointer`, which `malloc` or `realloc` returned.
    static func adopting(_ pointer: UnsafeMutableRawPointer, count: Int) -> ByteBuffer {
        ByteBuffer(base: pointer, count: count, mapped: false)
    }

    /// A copy of `bytes`.
    public static func copying(_ bytes: UnsafeRawBufferPointer) throws -> ByteBuffer {
        let buffer = try allocate(bytes.count)
        if bytes.count > 0 { buffer.mutablePointer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
        return buffer
    }

    /// The file at `url`, mapped read-only. Errors name the path.
    public static func mapping(_ url: URL) throws -> ByteBuffer {
        let path = url.path
        // Non-blocking: opening a FIFO must not wait for a writer (it is refused just below).
        let fd = open(RawName.cPath(path), O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            let exists = FileManager.default.fileExists(atPath: path)
            throw DatasetError("\(path): \(exists ? "cannot open" : "no such file") (\(reason))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw DatasetError("\(path): cannot read its size (\(String(cString: strerror(errno))))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw DatasetError("\(path): not a regular file")
        }
        OutputPath.noteInput(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
        let size = Int(info.st_size)
        if size == 0 { return ByteBuffer(base: nil, count: 0, mapped: false) }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw DatasetError("\(path): cannot map \(size) bytes (\(String(cString: strerror(errno))))")
        }
        return ByteBuffer(base: p, count: size, mapped: true)
    }

    deinit {
        guard let base, parent == nil else { return }
        if mapped { munmap(base, count) } else { free(base) }
    }

    /// The bytes, read-only.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// The start of the bytes (a valid dangling-free pointer only when `count > 0`).
    public var pointer: UnsafeRawPointer { UnsafeRawPointer(base ?? UnsafeMutableRawPointer(bitPattern: 16)!) }

    /// Writable start of an owned buffer, for the loader that fills it.
    var mutablePointer: UnsafeMutableRawPointer {
        precondition(!mapped, "a mapped file is read-only")
        return base ?? UnsafeMutableRawPointer(bitPattern: 16)!
    }

    /// Whether the bytes are a mapping of a file.
    public var isMapped: Bool { mapped }
}
