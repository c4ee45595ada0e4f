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

/// Gzip files (`.tar.gz`) on the engine's inflater.
enum Gzip {
    /// Whether `bytes` start with the gzip magic `1f 8b`.
    static func isGzip(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Decompresses a whole gzip file.
    static func decompress(_ bytes: UnsafeRawBufferPointer, source: String) throws -> ByteBuffer {
        try datasetErrors {
            // The trailer's ISIZE (length mod 2^32) is a good first guess for the output size.
            var hint = 1 << 20
            if bytes.count >= 18 { hint = Int(bytes.u32(bytes.count - 4)) + 1 }
            let inflater = try Inflater(bytes, wrapper: .gzip, source: source)
            let all = try inflater.readAll(sizeHint: hint)
            let out = ByteBuffer.adopting(all.pointer, count: all.count)
            try inflater.expectEnd(what: "the gzip file")
            return out
        }
    }
}

extension Zip {
    /// `Zip.entries` with the dataset readers' error type.
    static func datasetEntries(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [Entry] {
        try datasetErrors { try entries(bytes, source: source) }
    }

    /// An `.npz` member in an owned buffer; a deflated member's size is checked against its
    /// `.npy` header before its memory is allocated.
    static func extractNPY(_ entry: Entry, from bytes: UnsafeRawBufferPointer, source: String) throws -> ByteBuffer {
        try datasetErrors {
            var out: ByteBuffer?
            let check = HeadCheck(length: NPY.largestHeader, what: ".npy header", describedSize: NPY.describedSize)
            try extract(entry, from: bytes, source: source, headCheck: check) { count in
                let buffer = try ByteBuffer.allocate(count)
                out = buffer
                return buffer.mutablePointer
            }
            if let out { return out }
            return try ByteBuffer.allocate(0)
        }
    }
}

/// Runs `body`, reporting the shared archive readers' errors (zip, inflation) as this module's
/// own type with the same sentence.
func datasetErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ArchiveError {
        throw DatasetError(error.description)
    }
}
