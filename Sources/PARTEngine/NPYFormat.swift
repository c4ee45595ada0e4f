import Foundation

/// NumPy's `.npy` format (numpy.lib.format, versions 1.0 to 3.0): the magic `\x93NUMPY`, a
/// version, a header length (2 bytes in 1.0, 4 in 2.0 and 3.0), a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (N, 32, 32, 3), }`, then the data.
///
/// The one reader and writer of the format in the project: dataset arrays (PARTData), the
/// adversarial examples an evaluation writes (PARTEvaluation) and the arrays of a CAM `.npz`
/// (PARTReport) all go through it. It reports what is wrong as a `Problem`; each caller words
/// that for its own users and error type.
public enum NPYFormat {
    static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]

    /// Bytes of the longest `.npy` prefix `describedSize` needs (magic, version, length, header).
    public static let largestHeader = 12 + 65_536

    /// An element type: kind (`u` unsigned, `i` signed, `f` float, `b` bool, ...), size in
    /// bytes and byte order.
    public struct ElementType: Sendable, Equatable, CustomStringConvertible {
        public let kind: Character
        public let size: Int
        public let bigEndian: Bool
        /// NumPy's type string (`<f4`, `|u1`, `>i8`).
        public let text: String

        /// Parses NumPy's type string; nil for anything but `<`, `>`, `|` or `=`, a kind letter
        /// and a positive size.
        public init?(_ descr: String) {
            let chars = Array(descr)
            guard chars.count >= 3, "<>|=".contains(chars[0]), let size = Int(String(chars[2...])), size > 0 else {
                return nil
            }
            kind = chars[1]
            self.size = size
            bigEndian = chars[0] == ">"
            text = descr
        }

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

    /// A parsed header: what the dict says and where the data starts.
    public struct Header: Sendable, Equatable {
        public let major: UInt8
        public let descr: String
        public let elementType: ElementType
        public let fortranOrder: Bool
        public let shape: [Int]
        /// Elements: the product of `shape`.
        public let count: Int
        /// Offset of the first data byte.
        public let dataOffset: Int

        /// Bytes of data the shape declares; nil when that overflows.
        public var byteCount: Int? {
            let (bytes, overflow) = count.multipliedReportingOverflow(by: elementType.size)
            return overflow ? nil : bytes
        }
    }

    /// What keeps bytes from being read as an array. `header` is the header dict's text,
    /// trimmed ("" before it is found).
    public struct Problem: Error, Sendable {
        public enum Kind: Sendable, Equatable {
            /// Fewer than 10 bytes, or no magic.
            case notNPY
            /// A 2.0 or 3.0 file cut inside its header length.
            case truncatedHeader
            case unsupportedVersion(major: UInt8, minor: UInt8)
            /// The header length runs past the end of the bytes.
            case headerBeyondEnd(declared: Int, left: Int)
            /// Not a dict of Python literals.
            case unreadable
            /// No `descr` string (structured arrays have a list there).
            case noDescr
            case noFortranOrder
            case noShape
            /// The shape tuple holds something other than integers; `text` is what is between its
            /// parentheses.
            case shapeNotIntegers(text: String)
            case unsupportedType(descr: String)
            /// Fortran order for an array of more than one dimension.
            case fortranOrder
            case negativeDimension(shape: [Int], text: String)
            /// `shape` is the dimensions up to and including the one that makes the count overflow.
            case tooLarge(shape: [Int], whole: [Int])
        }

        public let kind: Kind
        public let header: String
    }

    /// Parses the header at the start of `bytes` (which may be the whole file or only a prefix).
    /// Fortran order is refused for more than one dimension unless `fortranAllowed`.
    public static func header(_ bytes: UnsafeRawBufferPointer, fortranAllowed: Bool = false) throws(Problem) -> Header {
        func fail(_ kind: Problem.Kind, _ text: String = "") -> Problem { Problem(kind: kind, header: text) }
        guard bytes.count >= 10, bytes[0..<6].elementsEqual(magic) else { throw fail(.notNPY) }
        let major = bytes[6]
        let length: Int, start: Int
        switch major {
        case 1:
            length = Int(bytes[8]) | Int(bytes[9]) << 8; start = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw fail(.truncatedHeader) }
            length = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24; start = 12
        default:
            throw fail(.unsupportedVersion(major: major, minor: bytes[7]))
        }
        guard length <= bytes.count - start else { throw fail(.headerBeyondEnd(declared: length, left: bytes.count - start)) }
        let text = String(decoding: bytes[start..<(start + length)], as: UTF8.self)
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        var parser = DictParser(text)
        guard let dict = parser.dictionary() else { throw fail(.unreadable, trimmed) }
        guard case .string(let descr)? = dict["descr"] else { throw fail(.noDescr, trimmed) }
        guard case .bool(let fortran)? = dict["fortran_order"] else { throw fail(.noFortranOrder, trimmed) }
        guard case .tuple(let items, let shapeText)? = dict["shape"] else { throw fail(.noShape, trimmed) }
        var shape = [Int]()
        for item in items {
            guard let d = Int(item.hasSuffix("L") ? String(item.dropLast()) : item) else {
                throw fail(.shapeNotIntegers(text: shapeText), trimmed)
            }
            shape.append(d)
        }
        guard let type = ElementType(descr) else { throw fail(.unsupportedType(descr: descr), trimmed) }
        guard !fortran || shape.count <= 1 || fortranAllowed else { throw fail(.fortranOrder, trimmed) }
        var count = 1
        for (k, d) in shape.enumerated() {
            guard d >= 0 else { throw fail(.negativeDimension(shape: shape, text: shapeText), trimmed) }
            let (m, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw fail(.tooLarge(shape: Array(shape[...k]), whole: shape), trimmed) }
            count = m
        }
        return Header(major: major, descr: descr, elementType: type, fortranOrder: fortran, shape: shape, count: count,
                      dataOffset: start + length)
    }

    /// The size of the whole `.npy` file whose first bytes are `prefix`, as its header describes
    /// it (header plus shape x element size; `Int.max` when that overflows); nil when the prefix
    /// is not a readable header, which a full parse then reports. Archive readers check a
    /// member's declared size against it before inflating anything.
    public static func describedSize(_ prefix: UnsafeRawBufferPointer) -> Int? {
        let header: Header
        do {
            header = try Self.header(prefix, fortranAllowed: true)
        } catch {
            if case .tooLarge = error.kind { return Int.max }
            return nil
        }
        guard let bytes = header.byteCount else { return Int.max }
        let (total, overflow) = bytes.addingReportingOverflow(header.dataOffset)
        return overflow ? Int.max : total
    }

    /// A version 1.0 header for a C-order array: magic, version, little-endian length, and the
    /// dict padded with spaces to a multiple of 64 bytes, ending in a newline (what `numpy.save`
    /// writes).
    public static func header(shape: [Int], descr: String) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        dict += String(repeating: " ", count: (64 - (10 + dict.utf8.count + 1) % 64) % 64) + "\n"
        let length = UInt16(dict.utf8.count)
        return magic + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8)
    }

    /// A whole `.npy` file: the header, then `data` (C order, the byte order `descr` names).
    public static func encode(shape: [Int], descr: String, data: [UInt8]) -> [UInt8] {
        header(shape: shape, descr: descr) + data
    }

    /// Values in the header dictionary.
    enum Value: Equatable {
        case string(String)
        case bool(Bool)
        /// The items as written (integers, perhaps with Python 2's `L`) and the text between the
        /// parentheses.
        case tuple([String], String)
        case other
    }

    /// A parser for the Python literals NumPy writes in the header; nil for anything else.
    struct DictParser {
        let chars: [Character]
        var i = 0

        init(_ text: String) { chars = Array(text) }

        mutating func skipSpace() { while i < chars.count, chars[i].isWhitespace { i += 1 } }

        mutating func expect(_ c: Character) -> Bool {
            skipSpace()
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
            return true
        }

        mutating func peek() -> Character? {
            skipSpace()
            return i < chars.count ? chars[i] : nil
        }

        mutating func string() -> String? {
            skipSpace()
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { return nil }
            let quote = chars[i]
            i += 1
            var out = ""
            while i < chars.count, chars[i] != quote { out.append(chars[i]); i += 1 }
            return expect(quote) ? out : nil
        }

        mutating func value() -> Value? {
            switch peek() {
            case "'", "\"":
                return string().map(Value.string)
            case "(":
                i += 1
                let first = i
                var items: [String] = []
                while peek() != ")" {
                    var item = ""
                    while i < chars.count, chars[i] != ",", chars[i] != ")" { item.append(chars[i]); i += 1 }
                    guard i < chars.count else { return nil }
                    items.append(item.trimmingCharacters(in: .whitespacesAndNewlines))
                    if chars[i] == "," { i += 1 } else { break }
                }
                let text = String(chars[first..<Swift.min(i, chars.count)])
                return expect(")") ? .tuple(items, text) : nil
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
                return word.isEmpty ? nil : .other
            }
        }

        mutating func dictionary() -> [String: Value]? {
            guard expect("{") else { return nil }
            var out: [String: Value] = [:]
            while peek() != "}" {
                guard let key = string(), expect(":"), let value = value() else { return nil }
                out[key] = value
                if peek() == "," { i += 1 } else { break }
            }
            return expect("}") ? out : nil
        }
    }
}
