import CZlib
import Foundation

/// The zip format (PKWARE APPNOTE) as NumPy's `.npz` and PyTorch's `torch.save` files use it:
/// stored or deflated members, ZIP64 sizes and offsets, CRC-32 checked on extraction. Every
/// size and offset is checked against the archive's length before it is used.
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

    /// A check of a member's declared size against the member's own header, made on its first
    /// bytes before the member's memory is allocated (an `.npy` header says how large the array
    /// is): `describedSize` reads the first `length` bytes (or fewer) and returns the size they
    /// describe, or nil when they describe none; `what` names the header in the message.
    public struct HeadCheck {
        public let length: Int
        public let what: String
        public let describedSize: (UnsafeRawBufferPointer) -> Int?
        public init(length: Int, what: String, describedSize: @escaping (UnsafeRawBufferPointer) -> Int?) {
            self.length = length
            self.what = what
            self.describedSize = describedSize
        }
    }

    /// The members listed in the central directory.
    public static func entries(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [Entry] {
        func fail(_ message: String) -> ArchiveError { ArchiveError("\(source): \(message)") }
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
            guard bytes.count >= 56, at <= UInt64(bytes.count - 56), bytes.u32(Int(at)) == 0x0606_4B50 else {
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

    /// The uncompressed contents of `entry`, with its CRC-32 checked, written to the memory
    /// `allocate(size)` returns (called once, after the declared size has been checked).
    public static func extract(_ entry: Entry, from bytes: UnsafeRawBufferPointer, source: String,
                               headCheck: HeadCheck? = nil,
                               allocate: (Int) throws -> UnsafeMutableRawPointer) throws {
        func fail(_ message: String) -> ArchiveError { ArchiveError("\(source): \(messageText(entry.name)): \(message)") }
        let h = entry.headerOffset
        guard bytes.count >= 30, h <= bytes.count - 30, bytes.u32(h) == 0x0403_4B50 else {
            throw fail("corrupt zip archive: no local header at byte \(h)")
        }
        let start = h + 30 + Int(bytes.u16(h + 26)) + Int(bytes.u16(h + 28))
        guard start <= bytes.count, entry.compressedSize <= bytes.count - start else {
            throw fail("truncated: \(entry.compressedSize) compressed bytes declared, \(Swift.max(0, bytes.count - start)) present")
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[start..<(start + entry.compressedSize)])
        let out: UnsafeMutableRawPointer
        switch entry.method {
        case 0:
            guard entry.compressedSize == entry.size else {
                throw fail("corrupt: stored member with \(entry.compressedSize) bytes declared as \(entry.size)")
            }
            out = try allocate(entry.size)
            if entry.size > 0 { out.copyMemory(from: data.baseAddress!, byteCount: entry.size) }
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
            var head = [UInt8](repeating: 0, count: Swift.min(entry.size, headCheck?.length ?? 0))
            let headCount = try head.withUnsafeMutableBytes { buffer -> Int in
                guard buffer.count > 0 else { return 0 }
                return try inflater.read(into: buffer.baseAddress!, count: buffer.count)
            }
            if let headCheck,
               let described = head.withUnsafeBytes({ headCheck.describedSize(UnsafeRawBufferPointer(rebasing: $0[..<headCount])) }),
               described != entry.size {
                throw fail("corrupt: the archive declares \(entry.size) bytes, the member's \(headCheck.what) describes \(described)")
            }
            out = try allocate(entry.size)
            if headCount > 0 { head.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: headCount) } }
            let got = headCount + (headCount < entry.size
                ? try inflater.read(into: out + headCount, count: entry.size - headCount) : 0)
            guard got == entry.size else {
                throw fail("corrupt: decompresses to \(got) bytes, the archive declares \(entry.size)")
            }
            try inflater.expectEnd(what: "the member")
        default:
            throw fail("compression method \(entry.method) is not supported (only stored and deflate, as numpy.savez, savez_compressed and torch.save write)")
        }
        let crc = UInt32(entry.size == 0 ? 0 : crc32Of(UnsafeRawBufferPointer(start: out, count: entry.size)))
        guard crc == entry.crc else {
            throw fail(String(format: "corrupt: CRC-32 %08x differs from the recorded %08x", crc, entry.crc))
        }
    }

    /// The uncompressed contents of `entry` as an array (see the other `extract`).
    public static func extract(_ entry: Entry, from bytes: UnsafeRawBufferPointer, source: String,
                               headCheck: HeadCheck? = nil) throws -> [UInt8] {
        var result = [UInt8]()
        var storage: UnsafeMutableRawPointer?
        defer { storage?.deallocate() }
        try extract(entry, from: bytes, source: source, headCheck: headCheck) { count in
            let p = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(count, 1), alignment: 16)
            storage = p
            return p
        }
        if entry.size > 0, let storage {
            result = Array(UnsafeRawBufferPointer(start: storage, count: entry.size))
        }
        return result
    }

    /// zlib's CRC-32 over any number of bytes (zlib counts in 32 bits).
    public static func crc32Of(_ bytes: UnsafeRawBufferPointer) -> UInt {
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
