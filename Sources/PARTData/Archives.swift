import CZlib
import Foundation
import PARTEngine

/// Where a format's files come from: a folder on disk or the members of an archive. Loaders
/// ask for files by their base name and name them in errors by `describe`.
protocol FileSource {
    /// Whether a file of that name exists.
    func contains(_ name: String) -> Bool
    /// The file's bytes, valid during `body`; nil when there is no such file.
    func withFile<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R?
    /// How to name the file in a message.
    func describe(_ name: String) -> String
}

/// Files in one folder.
struct FolderSource: FileSource {
    let directory: URL

    func contains(_ name: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: directory.appendingPathComponent(name).path,
                                              isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    func withFile<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        guard contains(name) else { return nil }
        let buffer = try ByteBuffer.mapping(directory.appendingPathComponent(name))
        return try withExtendedLifetime(buffer) { try body(buffer.bytes) }
    }

    func describe(_ name: String) -> String { directory.appendingPathComponent(name).path }
}

/// Regular files of a tar archive held in memory (a decompressed `.tar.gz`), found by base name.
struct TarSource: FileSource {
    let archivePath: String
    let contents: ByteBuffer
    /// Base name -> (member path, offset, size).
    let members: [String: (path: String, offset: Int, size: Int)]

    /// Reads and decompresses `url` (gzip or plain tar).
    init(url: URL) throws {
        let raw = try ByteBuffer.mapping(url)
        let tar = Gzip.isGzip(raw.bytes) ? try Gzip.decompress(raw.bytes, source: url.path) : raw
        try self.init(tar: tar, path: url.path)
    }

    init(tar: ByteBuffer, path: String) throws {
        archivePath = path
        contents = tar
        var byName: [String: (path: String, offset: Int, size: Int)] = [:]
        for entry in try Tar.entries(tar.bytes, source: path) {
            let base = (entry.path as NSString).lastPathComponent
            if let earlier = byName[base] {
                throw DatasetError("\(path): two members named \(messageText(base)) (\(messageText(earlier.path)) and \(messageText(entry.path))); keep one")
            }
            byName[base] = entry
        }
        members = byName
    }

    func contains(_ name: String) -> Bool { members[name] != nil }

    func withFile<R>(_ name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R? {
        guard let m = members[name] else { return nil }
        return try withExtendedLifetime(contents) {
            try body(UnsafeRawBufferPointer(rebasing: contents.bytes[m.offset..<(m.offset + m.size)]))
        }
    }

    func describe(_ name: String) -> String {
        "\(archivePath): \(messageText(members[name]?.path ?? name))"
    }
}

/// The POSIX (ustar) tar format with GNU long names and pax path records: 512-byte headers,
/// each followed by the member's data padded to 512 bytes, ended by zero blocks.
public enum Tar {
    /// The regular files of a tar archive: path, offset of the data and size. Checks every
    /// header's checksum and that every member lies inside the archive.
    public static func entries(_ bytes: UnsafeRawBufferPointer, source: String) throws
        -> [(path: String, offset: Int, size: Int)] {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        var result: [(path: String, offset: Int, size: Int)] = []
        var offset = 0
        var longName: String?
        var sawEnd = false
        while offset + 512 <= bytes.count {
            let header = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + 512)])
            if header.allSatisfy({ $0 == 0 }) { sawEnd = true; break }
            // The checksum is the sum of the header's bytes with the checksum field read as spaces.
            var sum = 0
            for (i, b) in header.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
            guard let stored = octal(header, 148, 8), stored == sum else {
                throw fail("corrupt tar header at byte \(offset) (checksum mismatch): not a tar archive, or damaged")
            }
            guard let size = number(header, 124, 12), size >= 0 else {
                throw fail("corrupt tar header at byte \(offset): unreadable size field")
            }
            let dataStart = offset + 512
            guard size <= bytes.count - dataStart else {
                throw fail("truncated: member at byte \(offset) declares \(size) bytes, the archive has \(bytes.count - dataStart) left")
            }
            let type = header[156]
            var name = string(header, 0, 100)
            let prefix = string(header, 345, 155)
            if header[257..<262].elementsEqual("ustar".utf8), !prefix.isEmpty { name = prefix + "/" + name }
            let data = UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + size)])
            switch type {
            case UInt8(ascii: "L"):  // GNU long name of the next member
                longName = String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
            case UInt8(ascii: "x"):  // pax extended header: "<len> key=value\n" records
                for record in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                    if let eq = record.firstIndex(of: "="), record[..<eq].hasSuffix(" path") {
                        longName = String(record[record.index(after: eq)...])
                    }
                }
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
                result.append((longName ?? name, dataStart, size))
                longName = nil
            default:
                longName = nil
            }
            offset = dataStart + (size + 511) / 512 * 512
        }
        if !sawEnd && offset < bytes.count {
            throw fail("truncated: \(bytes.count - offset) bytes at the end are not a whole tar header")
        }
        return result
    }

    private static func string(_ header: UnsafeRawBufferPointer, _ at: Int, _ length: Int) -> String {
        String(decoding: header[at..<(at + length)].prefix { $0 != 0 }, as: UTF8.self)
    }

    /// An octal field (digits, optionally surrounded by spaces and NULs).
    private static func octal(_ header: UnsafeRawBufferPointer, _ at: Int, _ length: Int) -> Int? {
        let text = string(header, at, length).trimmingCharacters(in: .whitespaces)
        guard !text.isEmpty, text.count <= 21 else { return text.isEmpty ? 0 : nil }
        return Int(text, radix: 8)
    }

    /// A numeric field: octal, or GNU's base-256 (high bit of the first byte set) for big sizes.
    private static func number(_ header: UnsafeRawBufferPointer, _ at: Int, _ length: Int) -> Int? {
        if header[at] & 0x80 != 0 {
            var value = Int(header[at] & 0x7F)
            for i in (at + 1)..<(at + length) {
                guard value < (Int.max >> 8) else { return nil }
                value = value << 8 | Int(header[i])
            }
            return value
        }
        return octal(header, at, length)
    }
}

/// The zip format (PKWARE APPNOTE) as NumPy's `.npz` files use it: stored or deflated members,
/// ZIP64 sizes and offsets, CRC-32 checked on extraction.
public enum Zip {
    public struct Entry: Sendable {
        public let name: String
        public let method: Int
        public let compressedSize: Int
        public let size: Int
        public let crc: UInt32
        /// Offset of the member's local header.
        public let headerOffset: Int
    }

    /// The members listed in the central directory.
    public static func entries(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [Entry] {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        // The end-of-central-directory record (22 bytes plus a comment of up to 65,535 bytes).
        guard bytes.count >= 22 else { throw fail("not a zip archive (\(bytes.count) bytes, too short)") }
        var eocd = -1
        var i = bytes.count - 22
        let lowest = Swift.max(0, bytes.count - 22 - 65_535)
        while i >= lowest {
            if bytes.u32(i) == 0x0605_4B50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else {
            throw fail("not a zip archive, or truncated: no end-of-central-directory record")
        }
        var count = Int(bytes.u16(eocd + 10))
        var directorySize = Int(bytes.u32(eocd + 12))
        var directoryOffset = Int(bytes.u32(eocd + 16))
        // ZIP64: a locator just before the record points at the 64-bit end record.
        if eocd >= 20, bytes.u32(eocd - 20) == 0x0706_4B50 {
            let at = bytes.u64(eocd - 12)
            guard at <= UInt64(bytes.count - 56), bytes.u32(Int(at)) == 0x0606_4B50 else {
                throw fail("corrupt zip archive: bad ZIP64 end-of-central-directory record")
            }
            count = Int(truncatingIfNeeded: bytes.u64(Int(at) + 32))
            directorySize = Int(truncatingIfNeeded: bytes.u64(Int(at) + 40))
            directoryOffset = Int(truncatingIfNeeded: bytes.u64(Int(at) + 48))
        }
        guard count >= 0, directoryOffset >= 0, directorySize >= 0, directoryOffset <= bytes.count,
              directorySize <= bytes.count - directoryOffset else {
            throw fail("truncated zip archive: the central directory lies outside the file")
        }
        var entries: [Entry] = []
        var p = directoryOffset
        for _ in 0..<count {
            guard p + 46 <= bytes.count, bytes.u32(p) == 0x0201_4B50 else {
                throw fail("corrupt zip archive: bad central directory entry at byte \(p)")
            }
            let method = Int(bytes.u16(p + 10))
            let crc = bytes.u32(p + 16)
            var compressed = Int(bytes.u32(p + 20))
            var size = Int(bytes.u32(p + 24))
            let nameLength = Int(bytes.u16(p + 28)), extraLength = Int(bytes.u16(p + 30))
            let commentLength = Int(bytes.u16(p + 32))
            var headerOffset = Int(bytes.u32(p + 42))
            guard p + 46 + nameLength + extraLength + commentLength <= bytes.count else {
                throw fail("truncated zip archive: central directory entry at byte \(p) runs past the end")
            }
            let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            // ZIP64 extended information: the 64-bit values of the fields that read 0xFFFFFFFF, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = bytes.u16(e), length = Int(bytes.u16(e + 2))
                guard e + 4 + length <= extraEnd else { break }
                if id == 0x0001 {
                    var q = e + 4
                    func take() -> Int? {
                        guard q + 8 <= e + 4 + length else { return nil }
                        defer { q += 8 }
                        return Int(truncatingIfNeeded: bytes.u64(q))
                    }
                    if size == 0xFFFF_FFFF, let v = take() { size = v }
                    if compressed == 0xFFFF_FFFF, let v = take() { compressed = v }
                    if headerOffset == 0xFFFF_FFFF, let v = take() { headerOffset = v }
                }
                e += 4 + length
            }
            guard size >= 0, compressed >= 0, headerOffset >= 0 else {
                throw fail("corrupt zip archive: member \(messageText(name)) has a negative size or offset")
            }
            entries.append(Entry(name: name, method: method, compressedSize: compressed, size: size, crc: crc,
                                 headerOffset: headerOffset))
            p += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// The uncompressed contents of `entry`, with its CRC-32 checked.
    public static func extract(_ entry: Entry, from bytes: UnsafeRawBufferPointer, source: String) throws -> ByteBuffer {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(messageText(entry.name)): \(message)") }
        let h = entry.headerOffset
        guard h <= bytes.count - 30, bytes.u32(h) == 0x0403_4B50 else {
            throw fail("corrupt zip archive: no local header at byte \(h)")
        }
        let start = h + 30 + Int(bytes.u16(h + 26)) + Int(bytes.u16(h + 28))
        guard start <= bytes.count, entry.compressedSize <= bytes.count - start else {
            throw fail("truncated: \(entry.compressedSize) compressed bytes declared, \(Swift.max(0, bytes.count - start)) present")
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + entry.compressedSize)])
        let out: ByteBuffer
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.size else {
                throw fail("corrupt: stored member with \(entry.compressedSize) bytes declared as \(entry.size)")
            }
            out = try ByteBuffer.copying(data)
        case 8:
            // Deflate expands at most 1032:1: a larger declared size is a lie, refused before
            // anything is allocated for it.
            guard entry.size / 1032 <= entry.compressedSize else {
                throw fail("corrupt: \(entry.size) bytes declared from \(entry.compressedSize) compressed bytes, more than deflate can expand to")
            }
            guard entry.size <= FileInput.defaultLimit else {
                throw fail("declares \(entry.size) bytes, more than the \(FileInput.defaultLimit) this machine can load")
            }
            let inflater = try Inflater(data, wrapper: .raw, source: "\(source): \(messageText(entry.name))")
            // An .npy member's own header says how large it is: the archive's declared size is
            // checked against it before the member's memory is allocated.
            var head = [UInt8](repeating: 0, count: Swift.min(entry.size, NPY.largestHeader))
            let headCount = try head.withUnsafeMutableBytes { try inflater.read(into: $0.baseAddress!, count: $0.count) }
            if let described = head.withUnsafeBytes({ NPY.describedSize(UnsafeRawBufferPointer(rebasing: $0[..<headCount])) }),
               described != entry.size {
                throw fail("corrupt: the archive declares \(entry.size) bytes, the member's .npy header describes \(described)")
            }
            out = try ByteBuffer.allocate(entry.size)
            if headCount > 0 { head.withUnsafeBytes { out.mutablePointer.copyMemory(from: $0.baseAddress!, byteCount: headCount) } }
            let got = headCount + (headCount < entry.size
                ? try inflater.read(into: out.mutablePointer + headCount, count: entry.size - headCount) : 0)
            guard got == entry.size else {
                throw fail("corrupt: decompresses to \(got) bytes, the archive declares \(entry.size)")
            }
            try inflater.expectEnd(what: "the member")
        default:
            throw fail("compression method \(entry.method) is not supported (only stored and deflate, as numpy.savez and savez_compressed write)")
        }
        let crc = UInt32(out.count == 0 ? 0 : crc32Of(out.bytes))
        guard crc == entry.crc else {
            throw fail(String(format: "corrupt: CRC-32 %08x differs from the recorded %08x", crc, entry.crc))
        }
        return out
    }

    /// zlib's CRC-32 over any number of bytes (zlib counts in 32 bits).
    static func crc32Of(_ bytes: UnsafeRawBufferPointer) -> UInt {
        var crc: UInt = crc32(0, nil, 0)
        var offset = 0
        while offset < bytes.count {
            let n = Swift.min(bytes.count - offset, 1 << 30)
            crc = crc32(crc, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset, UInt32(n))
            offset += n
        }
        return crc
    }
}
