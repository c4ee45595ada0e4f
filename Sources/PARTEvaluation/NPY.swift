import Foundation
import PARTEngine

/// A NumPy `.npy` file (format 1.0) of float32, C order, written row by row in place: the
/// worst-case adversarial examples of an evaluation, shape [N, H, W, C] (NHWC, values in
/// [0, 1]), readable with `numpy.load`.
///
/// The file is laid out at its full size when created (header, then N zero rows), so rows can be
/// written as batches finish and a resumed evaluation keeps the rows written before it stopped.
public final class NPYFile {
    public let url: URL
    public let shape: [Int]
    let headerSize: Int
    let handle: FileHandle

    var rowBytes: Int { shape.dropFirst().reduce(1, *) * MemoryLayout<Float>.size }

    private init(url: URL, shape: [Int], headerSize: Int, handle: FileHandle) {
        self.url = url
        self.shape = shape
        self.headerSize = headerSize
        self.handle = handle
    }

    deinit { try? handle.close() }

    /// The 1.0 header `numpy.save` writes for this shape and element type.
    static func header(shape: [Int], descr: String = "<f4") -> Data {
        Data(NPYFormat.header(shape: shape, descr: descr))
    }

    /// Writes `labels` as an int64 `.npy` vector (replacing any file at `url`): the labels saved
    /// beside adversarial examples, so the pair reads back as a dataset (`--dataset npy`).
    public static func writeLabels(_ labels: [Int32], to url: URL) throws {
        var data = header(shape: [labels.count], descr: "<i8")
        data.reserveCapacity(data.count + 8 * labels.count)
        for label in labels {
            withUnsafeBytes(of: Int64(label).littleEndian) { data.append(contentsOf: $0) }
        }
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw EvaluationError("cannot write \(url.path): check the directory exists and is writable")
        }
    }

    /// `<stem>_labels.npy` beside an array file `<stem>.npy`.
    public static func labelsURL(beside url: URL) -> URL {
        let stem = url.deletingPathExtension().lastPathComponent
        return url.deletingLastPathComponent().appendingPathComponent(stem + "_labels.npy")
    }

    /// A new file of `shape` (replacing any file at `url`), all zeros.
    public static func create(_ url: URL, shape: [Int]) throws -> NPYFile {
        let header = Self.header(shape: shape)
        guard FileManager.default.createFile(atPath: url.path, contents: header) else {
            throw EvaluationError("cannot write \(url.path): check the directory exists and is writable")
        }
        let handle = try FileHandle(forUpdating: url)
        let file = NPYFile(url: url, shape: shape, headerSize: header.count, handle: handle)
        try handle.truncate(atOffset: UInt64(header.count + shape[0] * file.rowBytes))
        return file
    }

    /// An existing file, which must be a float32 array of exactly `shape` written by `create`.
    public static func open(_ url: URL, shape: [Int]) throws -> NPYFile {
        let header = Self.header(shape: shape)
        guard let handle = try? FileHandle(forUpdating: url) else {
            throw EvaluationError("\(url.path) is missing or unreadable")
        }
        let start = try handle.read(upToCount: header.count) ?? Data()
        let size = try handle.seekToEnd()
        let file = NPYFile(url: url, shape: shape, headerSize: header.count, handle: handle)
        guard start == header, size == UInt64(header.count + shape[0] * file.rowBytes) else {
            throw EvaluationError("\(url.path) is not a float32 array of shape \(shape) as this evaluation writes")
        }
        return file
    }

    /// Writes row r of `rows` (a tensor [n, ...]) to row `at[r]` of the file.
    public func write(_ rows: Tensor, at positions: [Int]) throws {
        let size = rows.rowSize
        precondition(size * MemoryLayout<Float>.size == rowBytes && rows.shape.first == positions.count)
        do {
            try rows.withUnsafeBufferPointer { p in
                for (r, position) in positions.enumerated() {
                    try handle.seek(toOffset: UInt64(headerSize + position * rowBytes))
                    try handle.write(contentsOf: Data(bytes: p.baseAddress! + r * size, count: rowBytes))
                }
            }
        } catch {
            let reason = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) }
                ?? error.localizedDescription
            throw EvaluationError("cannot write \(url.path) (\(reason.lowercased())); free space and rerun the command to resume")
        }
    }

    /// Rows `positions` of the file as a tensor [n, ...].
    public func read(_ positions: [Int]) throws -> Tensor {
        var out = Tensor(shape: [positions.count] + shape.dropFirst())
        let size = out.rowSize
        try out.withUnsafeMutableBufferPointer { p in
            for (r, position) in positions.enumerated() {
                try handle.seek(toOffset: UInt64(headerSize + position * rowBytes))
                guard let data = try handle.read(upToCount: rowBytes), data.count == rowBytes else {
                    throw EvaluationError("\(url.path) is shorter than its header says")
                }
                data.withUnsafeBytes { raw in
                    UnsafeMutableRawPointer(p.baseAddress! + r * size).copyMemory(from: raw.baseAddress!, byteCount: rowBytes)
                }
            }
        }
        return out
    }

    /// Flushes the written rows to disk.
    public func synchronize() throws { try handle.synchronize() }

    /// The whole array of a file written by `create` (tests, tools). Any other content,
    /// including a shape that is not a tuple of non-negative integers or whose size overflows,
    /// is an `EvaluationError`.
    public static func read(_ url: URL) throws -> Tensor {
        let bytes: [UInt8]
        do {
            bytes = try FileInput.read(url)
        } catch let error as FileInputError {
            throw EvaluationError(error.description)
        }
        let header: NPYFormat.Header
        do {
            header = try bytes.withUnsafeBytes { try NPYFormat.header($0, fortranAllowed: true) }
        } catch let error as NPYFormat.Problem {
            switch error.kind {
            case .notNPY, .truncatedHeader, .unsupportedVersion: throw EvaluationError("\(url.path) is not a .npy file")
            case .shapeNotIntegers(let text), .negativeDimension(_, let text):
                throw EvaluationError("\(url.path): its shape (\(messageText(text, limit: 60))) is not a tuple of "
                                      + "non-negative integers")
            case .tooLarge(let shape, _): throw EvaluationError("\(url.path): its shape \(shape) is too large")
            case .unreadable: throw EvaluationError("\(url.path): unreadable .npy header: \(messageText(error.header, limit: 60))")
            default: throw EvaluationError("\(url.path) is not a C-order float32 .npy file")
            }
        }
        guard header.descr == "<f4", !header.fortranOrder else {
            throw EvaluationError("\(url.path) is not a C-order float32 .npy file")
        }
        let shape = header.shape, available = bytes.count - header.dataOffset
        guard let byteCount = header.byteCount, available == byteCount else {
            throw EvaluationError("\(url.path) holds \(available) data bytes, its shape \(shape) needs "
                                  + (header.byteCount.map(String.init) ?? "more"))
        }
        var out = Tensor(shape: shape)
        out.withUnsafeMutableBufferPointer { p in
            bytes.withUnsafeBytes { raw in
                if byteCount > 0 {
                    UnsafeMutableRawPointer(p.baseAddress!).copyMemory(from: raw.baseAddress! + header.dataOffset, byteCount: byteCount)
                }
            }
        }
        return out
    }
}

/// A problem with an evaluation's files or results, in a sentence the user can act on.
public struct EvaluationError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
