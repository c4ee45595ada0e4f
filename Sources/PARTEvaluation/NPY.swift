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

    /// The 1.0 header: magic, version, little-endian length, and the dict padded with spaces to
    /// a multiple of 64 bytes, ending in a newline.
    static func header(shape: [Int], descr: String = "<f4") -> Data {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var dict = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(dict.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xFF), UInt8(length >> 8)])
        data.append(contentsOf: Array(dict.utf8))
        return data
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
        let data = Data(bytes)
        guard data.count >= 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
            throw EvaluationError("\(url.path) is not a .npy file")
        }
        let length = Int(data[8]) | Int(data[9]) << 8
        guard data.count >= 10 + length, let dict = String(data: data.subdata(in: 10..<(10 + length)), encoding: .ascii),
              dict.contains("'descr': '<f4'"), dict.contains("'fortran_order': False"),
              let open = dict.range(of: "'shape': ("), let close = dict[open.upperBound...].firstIndex(of: ")") else {
            throw EvaluationError("\(url.path) is not a C-order float32 .npy file")
        }
        let text = dict[open.upperBound..<close]
        var shape = [Int]()
        var count = 1
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !part.isEmpty {
            guard let d = Int(part), d >= 0 else {
                throw EvaluationError("\(url.path): its shape (\(messageText(String(text), limit: 60))) is not a tuple of "
                                      + "non-negative integers")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw EvaluationError("\(url.path): its shape \(shape + [d]) is too large") }
            shape.append(d)
            count = product
        }
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: 4)
        guard !overflow, data.count - 10 - length == byteCount else {
            throw EvaluationError("\(url.path) holds \(data.count - 10 - length) data bytes, its shape \(shape) needs "
                                  + (overflow ? "more" : "\(byteCount)"))
        }
        var out = Tensor(shape: shape)
        out.withUnsafeMutableBufferPointer { p in
            data.subdata(in: (10 + length)..<data.count).withUnsafeBytes { raw in
                if count > 0 { UnsafeMutableRawPointer(p.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: byteCount) }
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
