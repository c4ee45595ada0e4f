/// A strict JSON reader for the headers of files that come from outside (safetensors).
///
/// It follows RFC 8259 exactly and refuses what a lenient parser lets through silently: a
/// key that appears twice in one object (which of the two would win is up to the parser, so a
/// file could mean one thing to PyTorch and another here), invalid UTF-8, lone surrogates,
/// control characters in strings, nesting deeper than `maximumDepth`, and anything but white
/// space after the value. Numbers keep their text, so integers are read exactly.
public enum StrictJSON {
    public indirect enum Value: Equatable, Sendable {
        /// Members in file order (keys are unique).
        case object([(key: String, value: Value)])
        case array([Value])
        case string(String)
        /// The number's literal text, e.g. `-12`, `0.5`, `1e3`.
        case number(String)
        case bool(Bool)
        case null

        public static func == (a: Value, b: Value) -> Bool {
            switch (a, b) {
            case let (.object(x), .object(y)):
                return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
            case let (.array(x), .array(y)): return x == y
            case let (.string(x), .string(y)): return x == y
            case let (.number(x), .number(y)): return x == y
            case let (.bool(x), .bool(y)): return x == y
            case (.null, .null): return true
            default: return false
            }
        }

        /// The value of `key` when this is an object that has it.
        public subscript(key: String) -> Value? {
            guard case .object(let members) = self else { return nil }
            return members.first { $0.key == key }?.value
        }

        /// A non-negative integer literal (digits only, no sign, fraction or exponent) that
        /// fits in `Int`; nil for anything else.
        public var nonNegativeInteger: Int? {
            guard case .number(let text) = self, !text.isEmpty,
                  text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
            return Int(text)
        }

        /// A short description of the value's kind for error messages.
        public var kind: String {
            switch self {
            case .object: return "an object"
            case .array: return "an array"
            case .string: return "a string"
            case .number: return "a number"
            case .bool: return "a boolean"
            case .null: return "null"
            }
        }
    }

    /// Why a text is not strict JSON, with the byte offset where the problem was found.
    public struct SyntaxError: Error, CustomStringConvertible, Equatable {
        public let message: String
        public let offset: Int
        public var description: String { "\(message) at byte \(offset)" }
    }

    /// Deeper nesting is refused (a header needs three levels).
    public static let maximumDepth = 64

    /// Parses `bytes` as one JSON value surrounded by optional white space.
    public static func parse<C: Collection>(_ bytes: C) throws -> Value where C.Element == UInt8 {
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            var parser = Parser(bytes: buffer)
            parser.skipWhitespace()
            let value = try parser.value(depth: 0)
            parser.skipWhitespace()
            guard parser.position == buffer.count else {
                throw parser.error("unexpected \(parser.describeCurrent()) after the JSON value")
            }
            return value
        }
    }

    private struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var position = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        func error(_ message: String) -> SyntaxError { SyntaxError(message: message, offset: position) }

        func describeCurrent() -> String {
            guard position < bytes.count else { return "end of text" }
            let b = bytes[position]
            if b >= 0x21 && b < 0x7F { return "'\(Character(Unicode.Scalar(b)))'" }
            return "byte 0x" + String(b, radix: 16, uppercase: true)
        }

        mutating func skipWhitespace() {
            while position < bytes.count {
                switch bytes[position] {
                case 0x20, 0x09, 0x0A, 0x0D: position += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws -> Value {
            guard position < bytes.count else { throw error("unexpected end of text, a value was expected") }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw error("unexpected \(describeCurrent()), a value was expected")
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let matches = word.withUTF8Buffer { expected in
                bytes.count - position >= expected.count
                    && expected.indices.allSatisfy { bytes[position + $0] == expected[$0] }
            }
            guard matches else { throw error("unexpected \(describeCurrent()), \"\(word)\" was expected") }
            position += word.utf8CodeUnitCount
        }

        mutating func object(depth: Int) throws -> Value {
            guard depth <= maximumDepth else { throw error("nesting deeper than \(maximumDepth) levels") }
            position += 1  // {
            var members = [(key: String, value: Value)]()
            var seen = Set<String>()
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "}") {
                position += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else {
                    throw error("unexpected \(describeCurrent()), a string key was expected")
                }
                let keyOffset = position
                let key = try string()
                guard seen.insert(key).inserted else {
                    throw SyntaxError(message: "duplicated key \"\(messageText(key))\"", offset: keyOffset)
                }
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else {
                    throw error("unexpected \(describeCurrent()), ':' was expected")
                }
                position += 1
                skipWhitespace()
                members.append((key, try value(depth: depth)))
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end of text inside an object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(members) }
                throw error("unexpected \(describeCurrent()), ',' or '}' was expected")
            }
        }

        mutating func array(depth: Int) throws -> Value {
            guard depth <= maximumDepth else { throw error("nesting deeper than \(maximumDepth) levels") }
            position += 1  // [
            var elements = [Value]()
            skipWhitespace()
            if position < bytes.count && bytes[position] == UInt8(ascii: "]") {
                position += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth))
                skipWhitespace()
                guard position < bytes.count else { throw error("unexpected end of text inside an array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(elements) }
                throw error("unexpected \(describeCurrent()), ',' or ']' was expected")
            }
        }

        mutating func number() throws -> String {
            let start = position
            func digits() -> Int {
                let from = position
                while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
                    position += 1
                }
                return position - from
            }
            if bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard position < bytes.count else { throw error("a number ends after its sign") }
            if bytes[position] == UInt8(ascii: "0") {
                position += 1
            } else {
                guard digits() > 0 else { throw error("unexpected \(describeCurrent()) in a number") }
            }
            if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
                position += 1
                guard digits() > 0 else { throw error("a number's fraction has no digits") }
            }
            if position < bytes.count, bytes[position] == UInt8(ascii: "e") || bytes[position] == UInt8(ascii: "E") {
                position += 1
                if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                    position += 1
                }
                guard digits() > 0 else { throw error("a number's exponent has no digits") }
            }
            return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
        }

        mutating func string() throws -> String {
            position += 1  // opening quote
            var scalars = String.UnicodeScalarView()
            while true {
                guard position < bytes.count else { throw error("unexpected end of text inside a string") }
                let b = bytes[position]
                switch b {
                case UInt8(ascii: "\""):
                    position += 1
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    position += 1
                    scalars.append(try escape())
                case 0..<0x20:
                    throw error("control character 0x\(String(b, radix: 16, uppercase: true)) inside a string")
                case 0..<0x80:
                    scalars.append(Unicode.Scalar(b))
                    position += 1
                default:
                    scalars.append(try multiByteScalar())
                }
            }
        }

        /// One escape sequence after its backslash.
        mutating func escape() throws -> Unicode.Scalar {
            guard position < bytes.count else { throw error("unexpected end of text inside an escape") }
            let b = bytes[position]
            position += 1
            switch b {
            case UInt8(ascii: "\""): return "\""
            case UInt8(ascii: "\\"): return "\\"
            case UInt8(ascii: "/"): return "/"
            case UInt8(ascii: "b"): return "\u{08}"
            case UInt8(ascii: "f"): return "\u{0C}"
            case UInt8(ascii: "n"): return "\n"
            case UInt8(ascii: "r"): return "\r"
            case UInt8(ascii: "t"): return "\t"
            case UInt8(ascii: "u"):
                let first = try hex4()
                if (0xD800..<0xDC00).contains(first) {
                    // A high surrogate must be followed by an escaped low surrogate.
                    guard bytes.count - position >= 2, bytes[position] == UInt8(ascii: "\\"),
                          bytes[position + 1] == UInt8(ascii: "u") else {
                        throw error("a lone UTF-16 surrogate \\u\(String(first, radix: 16, uppercase: true))")
                    }
                    position += 2
                    let second = try hex4()
                    guard (0xDC00..<0xE000).contains(second) else {
                        throw error("a UTF-16 high surrogate is not followed by a low one")
                    }
                    let value = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    return Unicode.Scalar(value)!
                }
                guard let scalar = Unicode.Scalar(first) else {
                    throw error("a lone UTF-16 surrogate \\u\(String(first, radix: 16, uppercase: true))")
                }
                return scalar
            default:
                position -= 1
                throw error("invalid escape \\\(describeCurrent())")
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard bytes.count - position >= 4 else { throw error("a \\u escape needs four hex digits") }
            var value: UInt32 = 0
            for _ in 0..<4 {
                let b = bytes[position]
                let digit: UInt8
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
                default: throw error("\(describeCurrent()) is not a hex digit of a \\u escape")
                }
                value = value << 4 | UInt32(digit)
                position += 1
            }
            return value
        }

        /// A well-formed UTF-8 sequence of 2 to 4 bytes (no overlong forms, no surrogates).
        mutating func multiByteScalar() throws -> Unicode.Scalar {
            let lead = bytes[position]
            let count: Int, minimum: UInt32
            var value: UInt32
            switch lead {
            case 0xC2...0xDF: count = 2; minimum = 0x80; value = UInt32(lead & 0x1F)
            case 0xE0...0xEF: count = 3; minimum = 0x800; value = UInt32(lead & 0x0F)
            case 0xF0...0xF4: count = 4; minimum = 0x10000; value = UInt32(lead & 0x07)
            default: throw error("invalid UTF-8 byte 0x\(String(lead, radix: 16, uppercase: true))")
            }
            guard bytes.count - position >= count else { throw error("a UTF-8 sequence is cut short") }
            for k in 1..<count {
                let b = bytes[position + k]
                guard b & 0xC0 == 0x80 else { throw error("invalid UTF-8 continuation byte") }
                value = value << 6 | UInt32(b & 0x3F)
            }
            guard value >= minimum, value <= 0x10FFFF, let scalar = Unicode.Scalar(value) else {
                throw error("invalid UTF-8 sequence (overlong, surrogate or beyond U+10FFFF)")
            }
            position += count
            return scalar
        }
    }
}
