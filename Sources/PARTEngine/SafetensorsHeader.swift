import Foundation

/// The checked header of a safetensors file: its metadata and where each tensor's bytes are.
///
/// The rules are those of the format's reference implementation (huggingface/safetensors),
/// and a file that breaks one is refused with a sentence naming the file and the tensor:
/// - an 8-byte little-endian header length of at most 100,000,000 bytes, then that many
///   bytes of UTF-8 JSON (an object, optionally padded with white space), read by
///   `StrictJSON`, so a key given twice is an error rather than a silent choice;
/// - `"__metadata__"`, when present, is an object of strings;
/// - every other key is a tensor `{"dtype", "shape", "data_offsets": [begin, end]}` with a
///   known dtype, non-negative integer dimensions and `end - begin` equal to the bytes the
///   shape needs;
/// - the tensors' byte ranges tile the data section exactly: no overlap, no hole, and no
///   trailing byte after the last tensor (a file with more bytes than its header accounts for
///   was cut or appended to).
public struct SafetensorsHeader: Sendable {
    /// One tensor's entry; offsets are relative to the start of the data section.
    public struct Entry: Sendable, Equatable {
        public let name: String
        public let dtype: SafetensorsDType
        public let shape: [Int]
        public let begin: Int
        public let end: Int
    }

    /// The reference implementation's limit on the JSON header's length.
    public static let maximumLength = 100_000_000

    public var metadata: [String: String]
    /// Entries in file order.
    public var tensors: [Entry]
    /// Offset of the data section in the file (8 + header length).
    public var dataStart: Int

    /// Parses and checks the header at the start of `bytes`, for a file of `fileSize` bytes
    /// (`bytes` may hold only the file's first `8 + header length` bytes).
    public static func parse(_ bytes: [UInt8], fileSize: Int, source: String) throws -> SafetensorsHeader {
        func fail(_ message: String) -> SafetensorsError { SafetensorsError("\(source): \(message)") }

        guard bytes.count >= 8, fileSize >= 8 else {
            throw fail("truncated file: \(min(bytes.count, fileSize)) bytes, too short for the 8-byte header length.")
        }
        var headerLength64: UInt64 = 0
        for i in 0..<8 { headerLength64 |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        if headerLength64 > UInt64(fileSize - 8) || headerLength64 > UInt64(maximumLength), let kind = otherFormat(bytes) {
            throw fail("it begins like \(kind), not with the 8-byte header length of a safetensors file.")
        }
        guard headerLength64 <= UInt64(fileSize - 8) else {
            throw fail("truncated file: header length \(headerLength64) is larger than the \(fileSize - 8) bytes that follow it.")
        }
        guard headerLength64 <= UInt64(maximumLength) else {
            throw fail("header length \(headerLength64) is over the format's limit of \(maximumLength) bytes; not a safetensors file.")
        }
        let headerLength = Int(headerLength64)
        let dataStart = 8 + headerLength
        guard bytes.count >= dataStart else {
            throw fail("truncated file: the header needs \(dataStart) bytes, only \(bytes.count) were read.")
        }
        let dataCount = fileSize - dataStart

        let parsed: StrictJSON.Value
        do {
            parsed = try StrictJSON.parse(bytes[8..<dataStart])
        } catch let error as StrictJSON.SyntaxError {
            throw fail("header is not valid JSON (\(error.message) at byte \(8 + error.offset) of the file).")
        }
        guard case .object(let members) = parsed else {
            throw fail("header is not a JSON object but \(parsed.kind).")
        }

        var header = SafetensorsHeader(metadata: [:], tensors: [], dataStart: dataStart)
        header.tensors.reserveCapacity(members.count)
        for (name, value) in members {
            if name == "__metadata__" {
                switch value {
                case .null: continue
                case .object(let entries):
                    for (key, entry) in entries {
                        guard case .string(let text) = entry else {
                            throw fail("metadata entry \"\(messageText(key))\" is not a string but \(entry.kind).")
                        }
                        header.metadata[key] = text
                    }
                default:
                    throw fail("\"__metadata__\" is not a JSON object of strings but \(value.kind).")
                }
                continue
            }
            header.tensors.append(try entry(name, value, dataCount: dataCount, fail: fail))
        }

        // The byte ranges, in order, must tile [0, dataCount) exactly.
        let byOffset = header.tensors.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var covered = 0
        var previous: Entry?
        for e in byOffset {
            if e.begin < covered, let p = previous {
                throw fail("tensors \"\(messageText(p.name))\" [\(p.begin), \(p.end)] and \"\(messageText(e.name))\" [\(e.begin), \(e.end)] have overlapping data_offsets.")
            }
            if e.begin > covered {
                throw fail("data bytes [\(covered), \(e.begin)) before tensor \"\(messageText(e.name))\" belong to no tensor (a hole in the data_offsets).")
            }
            covered = e.end
            previous = e
        }
        if covered < dataCount {
            let extra = dataCount - covered
            throw fail("\(extra) trailing byte\(extra == 1 ? "" : "s") after the last tensor's data (the header accounts for \(covered) of \(dataCount)); the file was cut or appended to.")
        }
        return header
    }

    private static func entry(_ name: String, _ value: StrictJSON.Value, dataCount: Int,
                              fail: (String) -> SafetensorsError) throws -> Entry {
        guard case .object = value else {
            throw fail("tensor \"\(messageText(name))\": entry is not a JSON object but \(value.kind).")
        }
        guard case .string(let dtypeName)? = value["dtype"] else {
            throw fail("tensor \"\(messageText(name))\": missing or non-string \"dtype\".")
        }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw fail("tensor \"\(messageText(name))\": unknown dtype \"\(messageText(dtypeName, limit: 20))\" (supported: \(SafetensorsDType.allCases.map(\.rawValue).joined(separator: ", "))).")
        }
        guard case .array(let shapeValues)? = value["shape"] else {
            throw fail("tensor \"\(messageText(name))\": missing or non-array \"shape\".")
        }
        var shape = [Int]()
        shape.reserveCapacity(shapeValues.count)
        for v in shapeValues {
            guard let d = v.nonNegativeInteger else {
                throw fail("tensor \"\(messageText(name))\": \"shape\" has an entry that is not a non-negative integer (\(describe(v))).")
            }
            shape.append(d)
        }
        guard case .array(let offsetValues)? = value["data_offsets"], offsetValues.count == 2,
              let begin = offsetValues[0].nonNegativeInteger, let end = offsetValues[1].nonNegativeInteger
        else {
            throw fail("tensor \"\(messageText(name))\": \"data_offsets\" must be two non-negative integers [begin, end].")
        }
        guard begin <= end else {
            throw fail("tensor \"\(messageText(name))\": data_offsets [\(begin), \(end)] end before they begin.")
        }
        guard end <= dataCount else {
            throw fail("tensor \"\(messageText(name))\": data_offsets [\(begin), \(end)] lie outside the \(dataCount) data bytes (truncated file?).")
        }
        var elements = 1
        var overflow = false
        for d in shape {
            let (p, o) = elements.multipliedReportingOverflow(by: d)
            elements = p
            overflow = overflow || o
        }
        let (byteCount, o2) = elements.multipliedReportingOverflow(by: dtype.size)
        guard !overflow, !o2, byteCount == end - begin else {
            throw fail("tensor \"\(messageText(name))\": shape \(shape) of \(dtype.rawValue) needs \(overflow || o2 ? "too many" : String(byteCount)) bytes but data_offsets [\(begin), \(end)] hold \(end - begin) (shape/offset mismatch).")
        }
        return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
    }

    /// A JSON value shortened for an error message.
    private static func describe(_ value: StrictJSON.Value) -> String {
        switch value {
        case .number(let text): return text.count > 24 ? String(text.prefix(24)) + "..." : text
        case .string(let s): return "\"" + messageText(s, limit: 24) + "\""
        default: return value.kind
        }
    }

    /// What a file whose first 8 bytes are no plausible header length looks like instead, for
    /// the error message: a zip archive (a `torch.save` file), an NPY array, JSON or other text.
    /// nil when it looks like nothing in particular (then it may well be a cut safetensors file).
    static func otherFormat(_ bytes: [UInt8]) -> String? {
        let first = bytes.prefix(8)
        if first.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return "a zip archive (a torch.save file?)" }
        if first.starts(with: [0x93] + Array("NUMPY".utf8)) { return "an NPY array" }
        let printable = first.allSatisfy { (0x20...0x7E).contains($0) || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard printable, first.count == 8 else { return nil }
        let text = String(decoding: first, as: UTF8.self)
        let trimmed = text.drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        let kind = trimmed.first == "{" || trimmed.first == "[" ? "a JSON file" : "a text file"
        return "\(kind) (\(jsonStringLiteral(text))...)"
    }

    /// Reads only the header of the safetensors file at `url` (its first `8 + header length`
    /// bytes), for tools that need names, shapes and metadata without the weights.
    public static func read(from url: URL) throws -> SafetensorsHeader {
        do {
            let reader = try FileInput.Reader(url)
            let first = try reader.read(count: min(8, reader.size))
            var length: UInt64 = 0
            if first.count == 8 { for i in 0..<8 { length |= UInt64(first[i]) << (8 * UInt64(i)) } }
            // A length the file cannot hold is refused by `parse` without reading further.
            let rest = length <= UInt64(min(maximumLength, reader.size - first.count)) ? Int(length) : 0
            return try parse(first + reader.read(count: rest), fileSize: reader.size, source: url.path)
        } catch let error as FileInputError {
            throw SafetensorsError(error.description)
        }
    }
}
