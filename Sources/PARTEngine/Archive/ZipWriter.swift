import Foundation

/// A zip archive of stored (uncompressed) members, built in memory: what `numpy.savez` and
/// `torch.save` write and what `numpy.load` and `torch.load` open.
///
/// Layout (APPNOTE.TXT 4.3): per member a local header (signature 0x04034b50, version 20, no
/// flags, method 0 = stored, DOS time and date of 1980-01-01, CRC-32, sizes, name, extra field),
/// then the bytes; then a central directory entry per member (0x02014b50) and the end record
/// (0x06054b50). Sizes and offsets are 32-bit: an archive of 4 GiB or more would need ZIP64
/// and is refused.
public struct ZipWriter {
    public private(set) var bytes: [UInt8] = []
    private var central: [UInt8] = []
    private var count = 0
    /// Each member's data starts at a multiple of this many bytes (PyTorch aligns to 64 so that
    /// storages can be mapped), padded with an extra field of id "FB" as PyTorch's writer does.
    public let alignment: Int

    public init(alignment: Int = 1) {
        self.alignment = Swift.max(1, alignment)
    }

    /// Appends a member named `name` holding `body`.
    public mutating func add(_ name: String, _ body: UnsafeRawBufferPointer) throws {
        let nameBytes = Array(name.utf8)
        var extra = [UInt8]()
        let dataStart = bytes.count + 30 + nameBytes.count
        if alignment > 1 {
            // An extra field is 4 bytes of id and length, then the padding.
            let pad = (alignment - (dataStart + 4) % alignment) % alignment
            extra = [0x46, 0x42, UInt8(pad & 0xFF), UInt8(pad >> 8)] + [UInt8](repeating: 0x5A, count: pad)
        }
        guard nameBytes.count <= 0xFFFF,
              bytes.count + 30 + nameBytes.count + extra.count + body.count < Int(UInt32.max) else {
            throw ArchiveError("\(messageText(name)): the archive would reach 4 GiB, more than a zip archive without ZIP64 holds")
        }
        let crc = UInt32(body.count == 0 ? 0 : Zip.crc32Of(body))
        let offset = UInt32(bytes.count)
        let dosTime = 0, dosDate = (0 << 9) | (1 << 5) | 1   // 1980-01-01 00:00, zip's epoch
        func u16(_ v: Int, _ into: inout [UInt8]) { into += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func u32(_ v: UInt32, _ into: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { into.append(contentsOf: $0) } }
        u32(0x0403_4B50, &bytes); u16(20, &bytes); u16(0, &bytes); u16(0, &bytes); u16(dosTime, &bytes); u16(dosDate, &bytes)
        u32(crc, &bytes); u32(UInt32(body.count), &bytes); u32(UInt32(body.count), &bytes)
        u16(nameBytes.count, &bytes); u16(extra.count, &bytes)
        bytes += nameBytes
        bytes += extra
        bytes.append(contentsOf: body)
        u32(0x0201_4B50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(0, &central)
        u16(dosTime, &central); u16(dosDate, &central)
        u32(crc, &central); u32(UInt32(body.count), &central); u32(UInt32(body.count), &central)
        u16(nameBytes.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
        u32(0o100644 << 16, &central)   // a regular file, rw-r--r--
        u32(offset, &central)
        central += nameBytes
        count += 1
    }

    /// Appends a member holding `body`.
    public mutating func add(_ name: String, _ body: [UInt8]) throws {
        try body.withUnsafeBytes { try add(name, $0) }
    }

    /// The finished archive: the members, the central directory and the end record.
    public func finish() throws -> [UInt8] {
        guard count <= 0xFFFF, bytes.count + central.count + 22 < Int(UInt32.max) else {
            throw ArchiveError("the archive would hold \(count) members or reach 4 GiB, more than a zip archive without ZIP64 holds")
        }
        var out = bytes
        func u16(_ v: Int) { out += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        let centralOffset = UInt32(out.count)
        out += central
        u32(0x0605_4B50); u16(0); u16(0); u16(count); u16(count)
        u32(UInt32(central.count)); u32(centralOffset); u16(0)
        return out
    }
}
