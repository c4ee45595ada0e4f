import Foundation
import PARTEngine

/// NumPy's `.npy` format (numpy.lib.format, versions 1.0 to 3.0): the magic `\x93NUMPY`, a
/// version, a header length (2 bytes in 1.0, 4 in 2.0 and 3.0), a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (N, 32, 32, 3), }`, then the data.
public enum NPY {
    /// An element type: kind (`u` unsigned, `i` signed, `f` float, `b` bool, ...), size in
    /// bytes and byte order.
    public struct DType: Sendable, Equatable, CustomStringConvertible {
        public let kind: Character
        public let size: Int
        public let bigEndian: Bool
        public let text: String

        public var description: String {
            switch kind {
            case "u": return "uint\(size * 8)"
            case "i": return "int\(size * 8)"
            case "f": return "float\(size * 8)"
            case "b": return "bool"
            default: return text
            }
        }
    }

    /// One array: shape, element type and its data (C order) in `buffer` at `offset`.
    public struct Array: Sendable {
        public let shape: [Int]
        public let dtype: DType
        public let count: Int
        let buffer: ByteBuffer
        let offset: Int

        /// The data bytes, valid while the array lives.
        public var data: UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: buffer.bytes[offset..<(offset + count * dtype.size)])
        }

        /// Keeps the array's memory alive during `body`.
        public func withData<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
            try withExtendedLifetime(buffer) { try body(data) }
        }

        /// Element `i` as an integer (integer and bool types only).
        func integer(_ i: Int) -> Int64? {
            let b = buffer.bytes, at = offset + i * dtype.size, be = dtype.bigEndian
            switch (dtype.kind, dtype.size) {
            case ("u", 1), ("b", 1): return Int64(b[at])
            case ("i", 1): return Int64(Int8(bitPattern: b[at]))
            case ("u", 2): return Int64(b.u16(at, bigEndian: be))
            case ("i", 2): return Int64(Int16(bitPattern: b.u16(at, bigEndian: be)))
            case ("u", 4): return Int64(b.u32(at, bigEndian: be))
            case ("i", 4): return Int64(Int32(bitPattern: b.u32(at, bigEndian: be)))
            case ("u", 8): return Int64(truncatingIfNeeded: b.u64(at, bigEndian: be))
            case ("i", 8): return Int64(bitPattern: b.u64(at, bigEndian: be))
            default: return nil
            }
        }

        /// Element `i` of a float array as a Float.
        func float(_ i: Int) -> Float {
            let b = buffer.bytes, at = offset + i * dtype.size
            if dtype.size == 8 { return Float(Double(bitPattern: b.u64(at, bigEndian: dtype.bigEndian))) }
            return Float(bitPattern: b.u32(at, bigEndian: dtype.bigEndian))
        }
    }

    /// Parses a whole `.npy` file.
    /// Bytes of the longest .npy prefix `describedSize` needs (magic, version, length, header).
    static let largestHeader = 12 + 65_536

    /// The size of the whole `.npy` file whose first bytes are `prefix`, as its header describes
    /// it (header plus shape x element size); nil when the prefix is not a readable header, which
    /// `parse` then reports.
    static func describedSize(_ prefix: UnsafeRawBufferPointer) -> Int? {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        guard prefix.count >= 10, prefix[0..<6].elementsEqual(magic) else { return nil }
        let length: Int, start: Int
        switch prefix[6] {
        case 1: length = Int(prefix[8]) | Int(prefix[9]) << 8; start = 10
        case 2, 3:
            guard prefix.count >= 12 else { return nil }
            length = Int(prefix[8]) | Int(prefix[9]) << 8 | Int(prefix[10]) << 16 | Int(prefix[11]) << 24; start = 12
        default: return nil
        }
        guard length <= prefix.count - start else { return nil }
        let header = String(decoding: prefix[start..<(start + length)], as: UTF8.self)
        var parser = HeaderParser(header, source: "")
        guard let dict = try? parser.dictionary(), case .string(let descr)? = dict["descr"],
              case .tuple(let shape)? = dict["shape"], let dtype = try? parseDType(descr, source: "") else { return nil }
        var size = dtype.size
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, overflow) = size.multipliedReportingOverflow(by: d)
            guard !overflow else { return Int.max }
            size = m
        }
        let (total, overflow) = size.addingReportingOverflow(start + length)
        return overflow ? Int.max : total
    }

    public static func parse(_ file: ByteBuffer, source: String) throws -> Array {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        let bytes = file.bytes
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        guard bytes.count >= 10, bytes[0..<6].elementsEqual(magic) else {
            throw fail(bytes.isEmpty ? "empty file" : "not a NumPy .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes.u16(8)); headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail("truncated header") }
            headerLength = Int(bytes.u32(8)); headerStart = 12
        default:
            throw fail("unsupported .npy version \(major).\(bytes[7])")
        }
        guard headerLength <= bytes.count - headerStart else {
            throw fail("truncated: the header declares \(headerLength) bytes, the file has \(bytes.count - headerStart) left")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        var parser = HeaderParser(header, source: source)
        let dict = try parser.dictionary()
        guard case .string(let descr)? = dict["descr"] else {
            throw fail("the header has no 'descr' string (structured arrays are not supported): \(messageText(header.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        guard case .bool(let fortran)? = dict["fortran_order"] else { throw fail("the header has no 'fortran_order'") }
        guard case .tuple(let shape)? = dict["shape"] else { throw fail("the header has no 'shape' tuple") }
        let dtype = try parseDType(descr, source: source)
        guard !fortran || shape.count <= 1 else {
            throw fail("the array is stored in Fortran order; save it with numpy.save(path, numpy.ascontiguousarray(array))")
        }
        var count = 1
        for d in shape {
            guard d >= 0 else { throw fail("negative dimension in shape \(shape)") }
            let (m, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail("shape \(shape) is too large") }
            count = m
        }
        let dataStart = headerStart + headerLength
        let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        let available = bytes.count - dataStart
        guard !overflow, needed <= available else {
            throw fail("truncated: shape \(shape) of \(dtype) needs \(overflow ? "too many" : String(needed)) bytes of data, the file has \(available)")
        }
        guard needed == available else {
            throw fail("\(available - needed) bytes after the \(needed) bytes of data that shape \(shape) of \(dtype) declares")
        }
        return Array(shape: shape, dtype: dtype, count: count, buffer: file, offset: dataStart)
    }

    /// `<f4`, `|u1`, `>i8`, ...
    static func parseDType(_ descr: String, source: String) throws -> DType {
        let chars = Swift.Array(descr)
        guard chars.count >= 3, "<>|=".contains(chars[0]), let size = Int(String(chars[2...])), size > 0 else {
            throw DatasetError("\(source): unsupported element type '\(messageText(descr))'")
        }
        return DType(kind: chars[1], size: size, bigEndian: chars[0] == ">", text: descr)
    }

    /// Values in the header dictionary.
    enum Value: Equatable {
        case string(String)
        case bool(Bool)
        case tuple([Int])
        case other
    }

    /// A parser for the Python literals NumPy writes in the header.
    struct HeaderParser {
        let chars: [Character]
        var i = 0
        let source: String

        init(_ text: String, source: String) {
            chars = Swift.Array(text)
            self.source = source
        }

        func fail() -> DatasetError {
            DatasetError("\(source): unreadable .npy header: \(messageText(String(chars).trimmingCharacters(in: .whitespacesAndNewlines)))")
        }

        mutating func skipSpace() { while i < chars.count, chars[i].isWhitespace { i += 1 } }

        mutating func expect(_ c: Character) throws {
            skipSpace()
            guard i < chars.count, chars[i] == c else { throw fail() }
            i += 1
        }

        mutating func peek() -> Character? {
            skipSpace()
            return i < chars.count ? chars[i] : nil
        }

        mutating func string() throws -> String {
            skipSpace()
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { throw fail() }
            let quote = chars[i]
            i += 1
            var out = ""
            while i < chars.count, chars[i] != quote { out.append(chars[i]); i += 1 }
            try expect(quote)
            return out
        }

        mutating func value() throws -> Value {
            switch peek() {
            case "'", "\"":
                return .string(try string())
            case "(":
                i += 1
                var items: [Int] = []
                while peek() != ")" {
                    var digits = ""
                    skipSpace()
                    while i < chars.count, chars[i].isNumber || chars[i] == "-" { digits.append(chars[i]); i += 1 }
                    if i < chars.count, chars[i] == "L" { i += 1 }
                    guard let n = Int(digits) else { throw fail() }
                    items.append(n)
                    if peek() == "," { i += 1 } else { break }
                }
                try expect(")")
                return .tuple(items)
            case "[", "{":
                // A structured dtype: skip the balanced brackets.
                var depth = 0
                repeat {
                    if "[{(".contains(chars[i]) { depth += 1 }
                    if "]})".contains(chars[i]) { depth -= 1 }
                    i += 1
                } while depth > 0 && i < chars.count
                return .other
            default:
                var word = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber { word.append(chars[i]); i += 1 }
                if word == "True" { return .bool(true) }
                if word == "False" { return .bool(false) }
                guard !word.isEmpty else { throw fail() }
                return .other
            }
        }

        mutating func dictionary() throws -> [String: Value] {
            try expect("{")
            var out: [String: Value] = [:]
            while peek() != "}" {
                let key = try string()
                try expect(":")
                out[key] = try value()
                if peek() == "," { i += 1 } else { break }
            }
            try expect("}")
            return out
        }
    }
}
