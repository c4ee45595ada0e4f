import Foundation
import PARTEngine

/// MATLAB level-5 MAT-files (MATLAB 5 to 7.x without HDF5; "MAT-File Format", MathWorks),
/// as SVHN's `*_32x32.mat` and SciPy's `savemat` write them.
///
/// Layout: a 128-byte header (text, subsystem offset, version 0x0100, endian indicator "IM" or
/// "MI"), then data elements. An element is an 8-byte tag (type, byte count) and its data
/// padded to 8 bytes, or a "small" element with type and count packed in 4 bytes and up to 4
/// bytes of data. A variable is a miMATRIX element holding sub-elements: array flags (class),
/// dimensions, name and the real part, stored column-major in any numeric type (MATLAB may
/// store a double array as bytes). miCOMPRESSED wraps one element in a zlib stream.
public enum MATFile {
    /// Storage types of numeric data (the "mi" types).
    public enum NumericType: UInt32, Sendable {
        case int8 = 1, uint8 = 2, int16 = 3, uint16 = 4, int32 = 5, uint32 = 6, single = 7, double = 9
        case int64 = 12, uint64 = 13

        public var size: Int {
            switch self {
            case .int8, .uint8: return 1
            case .int16, .uint16: return 2
            case .int32, .uint32, .single: return 4
            case .double, .int64, .uint64: return 8
            }
        }
    }

    /// Array classes (the "mx" classes) that hold numbers.
    static let classNames: [Int: String] = [
        1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 6: "double", 7: "single", 8: "int8",
        9: "uint8", 10: "int16", 11: "uint16", 12: "int32", 13: "uint32", 14: "int64", 15: "uint64",
    ]

    /// One variable. Numeric variables carry their real part: `count` values of `type` at
    /// `offset` in `buffer` (column-major).
    public struct Variable: Sendable {
        public let name: String
        /// The MATLAB class (6 double, 9 uint8, ...).
        public let classID: Int
        public let dimensions: [Int]
        public let isComplex: Bool
        public let type: NumericType?
        let buffer: ByteBuffer?
        let offset: Int
        public let count: Int
        let bigEndian: Bool

        public var className: String { MATFile.classNames[classID] ?? "class \(classID)" }

        /// Value `i` (column-major) as a Double.
        public func value(_ i: Int) -> Double {
            guard let buffer, let type else { return .nan }
            let b = buffer.bytes, at = offset + i * type.size
            switch type {
            case .int8: return Double(Int8(bitPattern: b[at]))
            case .uint8: return Double(b[at])
            case .int16: return Double(Int16(bitPattern: b.u16(at, bigEndian: bigEndian)))
            case .uint16: return Double(b.u16(at, bigEndian: bigEndian))
            case .int32: return Double(Int32(bitPattern: b.u32(at, bigEndian: bigEndian)))
            case .uint32: return Double(b.u32(at, bigEndian: bigEndian))
            case .single: return Double(Float(bitPattern: b.u32(at, bigEndian: bigEndian)))
            case .double: return Double(bitPattern: b.u64(at, bigEndian: bigEndian))
            case .int64: return Double(Int64(bitPattern: b.u64(at, bigEndian: bigEndian)))
            case .uint64: return Double(b.u64(at, bigEndian: bigEndian))
            }
        }

        /// The raw bytes of uint8 data (nil for other storage types).
        public var bytes: UnsafeRawBufferPointer? {
            guard let buffer, type == .uint8 else { return nil }
            return UnsafeRawBufferPointer(rebasing: buffer.bytes[offset..<(offset + count)])
        }

        /// Keeps the variable's memory alive during `body`.
        public func withStorage<R>(_ body: () throws -> R) rethrows -> R {
            try withExtendedLifetime(buffer) { try body() }
        }
    }

    static let miINT8: UInt32 = 1, miINT32: UInt32 = 5, miUINT32: UInt32 = 6, miMATRIX: UInt32 = 14
    static let miCOMPRESSED: UInt32 = 15

    /// The variables of a MAT-file (those named in `wanted`, or all).
    public static func parse(_ file: ByteBuffer, source: String, wanted: Set<String>? = nil) throws -> [String: Variable] {
        try datasetErrors { try parseVariables(file, source: source, wanted: wanted) }
    }

    private static func parseVariables(_ file: ByteBuffer, source: String, wanted: Set<String>?) throws -> [String: Variable] {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        let bytes = file.bytes
        guard bytes.count >= 128 else {
            throw fail(bytes.isEmpty ? "empty file" : "truncated: \(bytes.count) bytes, a MAT-file header has 128")
        }
        let text = String(decoding: bytes[0..<116].prefix { $0 != 0 }, as: UTF8.self)
        if text.hasPrefix("MATLAB 7.3") {
            throw fail("a MATLAB 7.3 (HDF5) MAT-file, which is not supported; save it with save(..., '-v7') or use the original files")
        }
        let bigEndian: Bool
        switch (bytes[126], bytes[127]) {
        case (UInt8(ascii: "I"), UInt8(ascii: "M")): bigEndian = false
        case (UInt8(ascii: "M"), UInt8(ascii: "I")): bigEndian = true
        default:
            throw fail("not a MATLAB level-5 MAT-file (no endian indicator at bytes 126-127; level-4 and other files are not supported)")
        }
        let version = bytes.u16(124, bigEndian: bigEndian)
        guard version == 0x0100 else {
            throw fail(String(format: "unsupported MAT-file version 0x%04x (level 5 is 0x0100)", version))
        }
        var variables: [String: Variable] = [:]
        var pos = 128
        while pos < bytes.count {
            guard bytes.count - pos >= 8 else {
                throw fail("truncated: \(bytes.count - pos) stray bytes at the end, where an element tag needs 8")
            }
            let tag = try readTag(bytes, pos, bigEndian: bigEndian, source: source)
            guard tag.dataSize <= bytes.count - tag.dataStart else {
                throw fail("truncated: the element at byte \(pos) declares \(tag.dataSize) bytes, the file has \(bytes.count - tag.dataStart) left")
            }
            switch tag.type {
            case miCOMPRESSED:
                let data = UnsafeRawBufferPointer(rebasing: bytes[tag.dataStart..<(tag.dataStart + tag.dataSize)])
                let what = "\(source) (compressed element at byte \(pos))"
                let inflater = try Inflater(data, wrapper: .zlib, source: what)
                var head = [UInt8](repeating: 0, count: 8)
                let got = try head.withUnsafeMutableBytes { try inflater.read(into: $0.baseAddress!, count: 8) }
                guard got == 8 else { throw DatasetError("\(what): decompresses to \(got) bytes, less than an element tag") }
                let inner = try head.withUnsafeBytes { try readTag($0, 0, bigEndian: bigEndian, source: what) }
                guard inner.type == miMATRIX, !inner.small else {
                    // A compressed non-matrix element carries no variable: skip it.
                    break
                }
                // Deflate expands at most 1032:1: a larger declared size is a lie, refused
                // before anything is allocated for it.
                guard inner.dataSize / 1032 <= tag.dataSize else {
                    throw DatasetError("\(what): its tag declares \(inner.dataSize) bytes, more than \(tag.dataSize) compressed bytes can hold")
                }
                let element = try ByteBuffer.allocate(inner.dataSize)
                let read = try inflater.read(into: element.mutablePointer, count: inner.dataSize)
                guard read == inner.dataSize else {
                    throw DatasetError("\(what): truncated: decompresses to \(read + 8) bytes, its tag declares \(inner.dataSize + 8)")
                }
                try inflater.expectEnd(what: "the compressed element")
                if let v = try matrix(element, 0, inner.dataSize, bigEndian: bigEndian, source: source, at: pos),
                   wanted?.contains(v.name) ?? true {
                    variables[v.name] = v
                }
            case miMATRIX:
                if let v = try matrix(file, tag.dataStart, tag.dataSize, bigEndian: bigEndian, source: source, at: pos),
                   wanted?.contains(v.name) ?? true {
                    variables[v.name] = v
                }
            default:
                break
            }
            // Compressed and matrix elements end where their byte count says (SciPy and MATLAB
            // agree); other elements are padded to 8 bytes.
            if tag.small {
                pos += 8
            } else if tag.type == miCOMPRESSED || tag.type == miMATRIX {
                pos = tag.dataStart + tag.dataSize
            } else {
                pos = Swift.min(bytes.count, tag.dataStart + (tag.dataSize + 7) / 8 * 8)
            }
        }
        return variables
    }

    struct Tag {
        let type: UInt32
        let dataStart: Int
        let dataSize: Int
        let small: Bool
    }

    /// The tag at `pos`: an 8-byte (type, size) pair, or a small element (size in the upper
    /// 16 bits of the first word, data in the next 4 bytes).
    static func readTag(_ bytes: UnsafeRawBufferPointer, _ pos: Int, bigEndian: Bool, source: String) throws -> Tag {
        guard bytes.count - pos >= 8 else {
            throw DatasetError("\(source): truncated element tag at byte \(pos)")
        }
        let first = bytes.u32(pos, bigEndian: bigEndian)
        if first >> 16 != 0 {
            let size = Int(first >> 16)
            guard size <= 4 else {
                throw DatasetError("\(source): corrupt small element at byte \(pos) (\(size) bytes, at most 4 fit)")
            }
            return Tag(type: first & 0xFFFF, dataStart: pos + 4, dataSize: size, small: true)
        }
        return Tag(type: first, dataStart: pos + 8, dataSize: Int(bytes.u32(pos + 4, bigEndian: bigEndian)), small: false)
    }

    /// The variable in the miMATRIX data at `start..<start + size` of `buffer`; nil for an
    /// empty matrix element.
    static func matrix(_ buffer: ByteBuffer, _ start: Int, _ size: Int, bigEndian: Bool, source: String,
                       at element: Int) throws -> Variable? {
        func fail(_ message: String) -> DatasetError {
            DatasetError("\(source): corrupt variable (element at byte \(element)): \(message)")
        }
        if size == 0 { return nil }
        let all = buffer.bytes
        let end = start + size
        let bytes = UnsafeRawBufferPointer(rebasing: all[0..<end])
        var p = start
        func next(_ what: String) throws -> Tag {
            guard end - p >= 8 else { throw fail("ends before its \(what)") }
            let tag = try readTag(bytes, p, bigEndian: bigEndian, source: source)
            guard tag.dataSize <= end - tag.dataStart else { throw fail("its \(what) runs past the element") }
            p = tag.small ? p + 8 : Swift.min(end, tag.dataStart + (tag.dataSize + 7) / 8 * 8)
            return tag
        }
        let flags = try next("array flags")
        guard flags.type == miUINT32, flags.dataSize == 8 else { throw fail("bad array flags sub-element") }
        let flagWord = bytes.u32(flags.dataStart, bigEndian: bigEndian)
        let classID = Int(flagWord & 0xFF)
        let isComplex = flagWord & 0x0800 != 0
        let dims = try next("dimensions")
        guard dims.type == miINT32, dims.dataSize % 4 == 0, dims.dataSize >= 8 else { throw fail("bad dimensions sub-element") }
        var dimensions: [Int] = []
        var product = 1
        for k in 0..<(dims.dataSize / 4) {
            let d = Int(Int32(bitPattern: bytes.u32(dims.dataStart + 4 * k, bigEndian: bigEndian)))
            guard d >= 0 else { throw fail("negative dimension \(d)") }
            dimensions.append(d)
            let (m, overflow) = product.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("dimensions \(dimensions) overflow") }
            product = m
        }
        let nameTag = try next("name")
        guard nameTag.type == miINT8 || nameTag.type == 2 || nameTag.type == 16 else { throw fail("bad name sub-element") }
        let name = String(decoding: bytes[nameTag.dataStart..<(nameTag.dataStart + nameTag.dataSize)], as: UTF8.self)
        guard (6...15).contains(classID) else {
            // Cells, structs, text and sparse arrays hold no image data; kept without values.
            return Variable(name: name, classID: classID, dimensions: dimensions, isComplex: isComplex, type: nil,
                            buffer: nil, offset: 0, count: 0, bigEndian: bigEndian)
        }
        let real = try next("real part")
        guard let type = NumericType(rawValue: real.type) else {
            throw fail("variable \(messageText(name)): unknown storage type \(real.type) of its values")
        }
        let (needed, overflow) = product.multipliedReportingOverflow(by: type.size)
        guard !overflow, real.dataSize == needed else {
            throw fail("variable \(messageText(name)): \(real.dataSize) bytes of values for dimensions \(dimensions.map(String.init).joined(separator: "x")) of \(type.size)-byte \(type)")
        }
        return Variable(name: name, classID: classID, dimensions: dimensions, isComplex: isComplex, type: type,
                        buffer: buffer, offset: real.dataStart, count: product, bigEndian: bigEndian)
    }
}
