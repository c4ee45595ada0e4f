import Foundation
import PARTEngine

/// A problem with a report's input or output, in a sentence that names the file and what to do.
public struct ReportError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The protobuf wire format, for the few fields of TensorBoard's `Event` and `Summary`
/// messages written here (tensorboard/compat/proto/event.proto, summary.proto).
///
/// A field is a key varint (field number << 3 | wire type) and its value: wire type 0 a varint,
/// 1 eight little-endian bytes, 2 a length varint and the bytes, 5 four little-endian bytes.
/// Fields are written in field-number order, as protobuf's serialisers do.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    /// A `double` field (wire type 1).
    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A `float` field (wire type 5).
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// An `int64` field (wire type 0; a negative value takes ten bytes, two's complement).
    mutating func int64(_ field: Int, _ value: Int64) {
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    /// A `string`, `bytes` or embedded-message field (wire type 2).
    mutating func lengthDelimited<Bytes: Collection>(_ field: Int, _ value: Bytes) where Bytes.Element == UInt8 {
        key(field, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }
}

/// TensorBoard's `Event` messages (proto3, so a wall time or step of 0 is not written).
public enum TensorBoardEvent {
    /// The first record of every event file: `Event{wall_time, file_version: "brain.Event:2",
    /// source_metadata{writer}}` (fields 1, 3, 10).
    public static func fileVersion(wallTime: Double, writer: String) -> [UInt8] {
        var event = ProtoWriter()
        if wallTime != 0 { event.double(1, wallTime) }
        event.lengthDelimited(3, Array("brain.Event:2".utf8))
        if !writer.isEmpty {
            var metadata = ProtoWriter()
            metadata.lengthDelimited(1, Array(writer.utf8))
            event.lengthDelimited(10, metadata.bytes)
        }
        return event.bytes
    }

    /// A scalar: `Event{wall_time, step, summary{value{tag, simple_value}}}` (Event fields 1, 2,
    /// 5; Summary.value is field 1; Value.tag 1, Value.simple_value 2). `simple_value` is a
    /// member of a oneof, so it is written even when it is 0. This is the "old style" scalar of
    /// PyTorch's `SummaryWriter.add_scalar`, which TensorBoard's scalar dashboard reads.
    public static func scalar(tag: String, value: Float, step: Int64, wallTime: Double) -> [UInt8] {
        var summaryValue = ProtoWriter()
        summaryValue.lengthDelimited(1, Array(tag.utf8))
        summaryValue.float(2, value)
        var summary = ProtoWriter()
        summary.lengthDelimited(1, summaryValue.bytes)
        var event = ProtoWriter()
        if wallTime != 0 { event.double(1, wallTime) }
        if step != 0 { event.int64(2, step) }
        event.lengthDelimited(5, summary.bytes)
        return event.bytes
    }
}

/// TFRecord framing: for each record, its length (uint64, little-endian), the masked CRC32C of
/// those 8 bytes, the data, and the masked CRC32C of the data (both uint32, little-endian).
public enum TFRecord {
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        out += length
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out.append(contentsOf: $0) }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    /// The records of a file's bytes, every length and CRC checked; `source` names the file in
    /// errors. A record cut short at the end (a writer still running) is an error too.
    public static func records(_ bytes: [UInt8], source: String) throws -> [[UInt8]] {
        func u32(_ at: Int) -> UInt32 { bytes[at..<(at + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        var records = [[UInt8]](), at = 0
        while at < bytes.count {
            guard at + 12 <= bytes.count else { throw ReportError("\(source): record \(records.count + 1) is cut short") }
            let length = bytes[at..<(at + 8)].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard u32(at + 8) == CRC32C.masked(bytes[at..<(at + 8)]) else {
                throw ReportError("\(source): the length of record \(records.count + 1) fails its CRC")
            }
            guard length <= UInt64(bytes.count - at - 16) else {
                throw ReportError("\(source): record \(records.count + 1) is cut short")
            }
            let start = at + 12, end = start + Int(length)
            guard u32(end) == CRC32C.masked(bytes[start..<end]) else {
                throw ReportError("\(source): the data of record \(records.count + 1) fails its CRC")
            }
            records.append(Array(bytes[start..<end]))
            at = end + 4
        }
        return records
    }
}

/// An event file that TensorBoard reads: scalars by tag and step.
///
/// The file is `events.out.tfevents.<seconds>.<host>.<pid>.<n>` in `directory` (TensorBoard
/// finds files by the `tfevents` in their names); it starts with the file-version record, and
/// every scalar is written through to the file at once, so a run that stops keeps what it
/// logged and TensorBoard can follow a run while it trains. A new writer (a resumed run) starts
/// a new file in the same directory, which TensorBoard reads as one run.
public final class TensorBoardWriter {
    public let url: URL
    private let handle: FileHandle
    private static let counter = Locked(0)

    /// - Parameter writer: the name recorded in the file-version record's `source_metadata`.
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970, writer: String = "part") throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw ReportError("cannot create the TensorBoard directory \(directory.path): choose another --tensorboard directory")
        }
        let n = Self.counter.withLock { c -> Int in defer { c += 1 }; return c }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        let name = String(format: "events.out.tfevents.%010d.%@.%d.%d", Int(wallTime), host, getpid(), n)
        url = directory.appendingPathComponent(name)
        guard FileManager.default.createFile(atPath: url.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: url) else {
            throw ReportError("cannot write \(url.path): check that the --tensorboard directory is writable")
        }
        self.handle = handle
        try write(TensorBoardEvent.fileVersion(wallTime: wallTime, writer: writer))
    }

    deinit { try? handle.close() }

    /// Appends a scalar of `tag` at `step` (float32, as TensorBoard stores it).
    public func add(_ tag: String, _ value: Double, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try write(TensorBoardEvent.scalar(tag: tag, value: Float(value), step: Int64(step), wallTime: wallTime))
    }

    private func write(_ event: [UInt8]) throws {
        do {
            try handle.write(contentsOf: Data(TFRecord.frame(event)))
        } catch {
            throw ReportError("cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
