import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Element types of the safetensors format that this reader understands.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f64 = "F64", f16 = "F16", bf16 = "BF16", i64 = "I64", i32 = "I32", u8 = "U8", bool = "BOOL"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .u8, .bool: return 1
        }
    }
}

/// A safetensors file that could not be read or written; `description` is one sentence naming
/// the file and, where relevant, the tensor.
public struct SafetensorsError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping tensor
/// names to `{"dtype", "shape", "data_offsets"}` (plus an optional `"__metadata__"` object of
/// strings), then the raw little-endian tensor bytes.
///
/// Reading converts every tensor to Float32 and remembers the stored dtype; writing stores F32
/// (or I64 for tensors whose `dtypes` entry says so), names sorted, data contiguous and 8-byte
/// aligned.
public struct SafetensorsFile {
    /// Every tensor converted to Float32, same shape (`[]` for a scalar).
    public var tensors: [String: Tensor]
    /// The dtype stored in the file.
    public var dtypes: [String: SafetensorsDType]
    public var metadata: [String: String]

    public init(tensors: [String: Tensor] = [:], dtypes: [String: SafetensorsDType] = [:],
                metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.dtypes = dtypes
        self.metadata = metadata
    }

    // MARK: Reading

    /// Reads and decodes the file at `url` (a regular file; see `FileInput`).
    public static func read(from url: URL) throws -> SafetensorsFile {
        let bytes: [UInt8]
        do {
            bytes = try FileInput.read(url)
        } catch let error as FileInputError {
            throw SafetensorsError(error.description)
        }
        return try decode(bytes, source: url.path)
    }

    /// Decodes a whole file held in memory. Everything `SafetensorsHeader.parse` checks is
    /// checked; then every tensor is converted to Float32.
    public static func decode(_ bytes: [UInt8], source: String = "<memory>") throws -> SafetensorsFile {
        let header = try SafetensorsHeader.parse(bytes, fileSize: bytes.count, source: source)
        var result = SafetensorsFile()
        result.metadata = header.metadata
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress! + header.dataStart
            for e in header.tensors {
                var tensor = Tensor.uninitialized(shape: e.shape)
                let n = tensor.count
                tensor.withUnsafeMutableBufferPointer { dst in
                    guard n > 0, let out = dst.baseAddress else { return }
                    convert(UnsafeRawPointer(base + e.begin), e.dtype, count: n, into: out)
                }
                result.tensors[e.name] = tensor
                result.dtypes[e.name] = e.dtype
            }
        }
        return result
    }

    // MARK: Writing

    /// Writes F32 for every tensor unless `dtypes[name]` says I64 (written as Int64 of the
    /// rounded value), F32 otherwise. Atomic: writes `<path>.tmp-<pid>` in the same directory,
    /// fsyncs, renames over the target.
    public func write(to url: URL) throws {
        try Self.writeAtomically(try encode(), to: url)
    }

    /// Writes `bytes` to `url` atomically: `<path>.tmp-<pid>` in the same directory, fsync,
    /// rename over the target (any checkpoint format).
    public static func writeAtomically(_ bytes: [UInt8], to url: URL) throws {
        let path = url.path
        let tmp = "\(path).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SafetensorsError("\(path): cannot create temporary file \(tmp) (\(String(cString: strerror(errno)))).")
        }
        var failure: String?
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = posixWrite(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = "write failed (\(String(cString: strerror(errno))))"
                    return
                }
                offset += n
            }
        }
        if failure == nil, fsync(fd) != 0 {
            failure = "fsync failed (\(String(cString: strerror(errno))))"
        }
        if close(fd) != 0, failure == nil {
            failure = "close failed (\(String(cString: strerror(errno))))"
        }
        if failure == nil, rename(tmp, path) != 0 {
            failure = "cannot rename \(tmp) over it (\(String(cString: strerror(errno))))"
        }
        if let failure {
            unlink(tmp)
            throw SafetensorsError("\(path): \(failure).")
        }
        // Make the rename itself durable; best effort.
        let dir = url.deletingLastPathComponent().path
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    public func encode() throws -> [UInt8] {
        let names = tensors.keys.sorted()
        var json = "{"
        var first = true
        if !metadata.isEmpty {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map { "\(jsonStringLiteral($0)):\(jsonStringLiteral(metadata[$0]!))" }.joined(separator: ",")
            json += "}"
            first = false
        }
        var layout = [(name: String, dtype: SafetensorsDType, begin: Int)]()
        layout.reserveCapacity(names.count)
        var offset = 0
        for name in names {
            if name == "__metadata__" {
                throw SafetensorsError("<encode>: a tensor may not be named \"__metadata__\".")
            }
            let tensor = tensors[name]!
            let dtype: SafetensorsDType = dtypes[name] == .i64 ? .i64 : .f32
            let size = tensor.count * dtype.size
            if !first { json += "," }
            first = false
            json += "\(jsonStringLiteral(name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(tensor.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}"
            layout.append((name, dtype, offset))
            offset += size
        }
        json += "}"
        var header = Array(json.utf8)
        let padded = (header.count + 7) / 8 * 8
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: padded - header.count))

        var out = [UInt8](repeating: 0, count: 8 + header.count + offset)
        let headerLength = UInt64(header.count)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: headerLength >> (8 * UInt64(i))) }
        var badValue: (String, Float)?
        out.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            header.withUnsafeBytes { base.advanced(by: 8).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            let dataBase = base + 8 + header.count
            for entry in layout {
                let tensor = tensors[entry.name]!
                let n = tensor.count
                guard n > 0 else { continue }
                let dst = dataBase + entry.begin
                tensor.withUnsafeBufferPointer { src in
                    switch entry.dtype {
                    case .i64:
                        for i in 0..<n {
                            let v = src[i].rounded()
                            guard v.isFinite, v >= -0x1p63, v < 0x1p63 else {
                                badValue = (entry.name, src[i])
                                return
                            }
                            dst.storeBytes(of: Int64(v).littleEndian, toByteOffset: i * 8, as: Int64.self)
                        }
                    default:
                        #if _endian(little)
                        dst.copyMemory(from: src.baseAddress!, byteCount: n * 4)
                        #else
                        for i in 0..<n {
                            dst.storeBytes(of: src[i].bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                        }
                        #endif
                    }
                }
                if badValue != nil { return }
            }
        }
        if let (name, value) = badValue {
            throw SafetensorsError("<encode>: tensor \"\(name)\" is stored as I64 but holds \(value), which is not a representable integer.")
        }
        return out
    }
}

// MARK: - Helpers

/// `write(2)` under a name that does not clash with `SafetensorsFile.write(to:)`.
@inline(__always) private func posixWrite(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, buf, n)
}

/// IEEE half-precision bits to Float.
@inline(__always) func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exponent = UInt32(h >> 10) & 0x1F
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
        // Zero or subnormal: mantissa * 2^-24.
        let magnitude = Float(mantissa) * (1.0 / 16_777_216.0)
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 0x1F {
        return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
}

/// Converts `count` little-endian elements of `dtype` at `src` (any alignment) to Float.
func convert(_ src: UnsafeRawPointer, _ dtype: SafetensorsDType, count n: Int,
                     into out: UnsafeMutablePointer<Float>) {
    switch dtype {
    case .f32:
        #if _endian(little)
        UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: n * 4)
        #else
        for i in 0..<n {
            out[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
        }
        #endif
    case .f64:
        for i in 0..<n {
            out[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
        }
    case .f16:
        for i in 0..<n {
            out[i] = halfToFloat(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        }
    case .bf16:
        for i in 0..<n {
            let bits = UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
            out[i] = Float(bitPattern: UInt32(bits) << 16)
        }
    case .i64:
        for i in 0..<n {
            out[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)))
        }
    case .i32:
        for i in 0..<n {
            out[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
        }
    case .u8:
        let bytes = src.assumingMemoryBound(to: UInt8.self)
        for i in 0..<n { out[i] = Float(bytes[i]) }
    case .bool:
        let bytes = src.assumingMemoryBound(to: UInt8.self)
        for i in 0..<n { out[i] = bytes[i] != 0 ? 1 : 0 }
    }
}
