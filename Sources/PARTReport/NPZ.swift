import CZlib
import Foundation
import PARTEngine

/// One array of a NumPy file: shape, element type ('<f4', '<f8', '<i8') and little-endian data.
public struct NPYArray: Equatable {
    public let shape: [Int]
    /// NumPy's type string.
    public let descr: String
    public let data: [UInt8]

    public init(shape: [Int], descr: String, data: [UInt8]) {
        self.shape = shape
        self.descr = descr
        self.data = data
    }

    /// float32, the tensor's shape.
    public init(_ tensor: Tensor) {
        shape = tensor.shape
        descr = "<f4"
        data = tensor.withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) }
    }

    public init(int64 values: [Int64]) {
        shape = [values.count]
        descr = "<i8"
        data = values.withUnsafeBytes(Array.init)
    }

    public init(float64 values: [Double]) {
        shape = [values.count]
        descr = "<f8"
        data = values.withUnsafeBytes(Array.init)
    }

    /// A 0-d float32 array.
    public init(scalar: Float) {
        shape = []
        descr = "<f4"
        data = withUnsafeBytes(of: scalar, Array.init)
    }

    /// The values of a '<f4' array.
    public var floats: [Float]? {
        guard descr == "<f4" else { return nil }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    /// The values of a '<i8' array.
    public var int64s: [Int64]? {
        guard descr == "<i8" else { return nil }
        return data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
    }

    /// The `.npy` file (format 1.0, as `numpy.save` writes it): `NPYFormat`'s header, then the
    /// data in C order.
    public var npy: [UInt8] { NPYFormat.encode(shape: shape, descr: descr, data: data) }

    /// Parses a `.npy` file of one of the three element types written here.
    public static func parse(_ bytes: [UInt8], source: String) throws -> NPYArray {
        let header: NPYFormat.Header
        do {
            header = try bytes.withUnsafeBytes { try NPYFormat.header($0, fortranAllowed: true) }
        } catch let error as NPYFormat.Problem {
            switch error.kind {
            case .notNPY, .truncatedHeader, .unsupportedVersion: throw ReportError("\(source) is not a NumPy 1.0 .npy file")
            case .headerBeyondEnd: throw ReportError("\(source): the .npy header is cut short")
            case .unsupportedType(let descr):
                throw ReportError("\(source): element type \(messageText(descr)) is not one this reader knows")
            case .negativeDimension(let shape, _), .tooLarge(_, let shape):
                throw ReportError("\(source): the .npy header's shape \(shape) describes no array this reader can hold")
            default: throw ReportError("\(source): the .npy header is not a C-order array header")
            }
        }
        guard header.major == 1 else { throw ReportError("\(source) is not a NumPy 1.0 .npy file") }
        guard !header.fortranOrder else { throw ReportError("\(source): the .npy header is not a C-order array header") }
        let descr = header.descr, shape = header.shape
        guard ["<f4", "<f8", "<i8"].contains(descr) else {
            throw ReportError("\(source): element type \(messageText(descr)) is not one this reader knows")
        }
        let data = Array(bytes[header.dataOffset...])
        guard data.count == header.byteCount else {
            throw ReportError("\(source): \(data.count) data bytes for shape \(shape) of \(descr)")
        }
        return NPYArray(shape: shape, descr: descr, data: data)
    }
}

/// NumPy's `.npz`: a zip archive of `.npy` files, stored without compression, which
/// `numpy.load` opens as a dictionary of arrays.
///
/// Zip layout (APPNOTE.TXT 4.3): per member a local header (signature 0x04034b50, version 20,
/// no flags, method 0 = stored, DOS time and date, CRC-32, sizes, name), then the bytes; then a
/// central directory entry per member (0x02014b50) and the end record (0x06054b50). Sizes and
/// offsets are 32-bit: larger archives would need zip64 and are refused.
public enum NPZ {
    public static func archive(_ arrays: [(String, NPYArray)]) throws -> [UInt8] {
        var out = [UInt8](), central = [UInt8]()
        func u16(_ v: Int, _ into: inout [UInt8]) { into += [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
        func u32(_ v: UInt32, _ into: inout [UInt8]) { withUnsafeBytes(of: v.littleEndian) { into.append(contentsOf: $0) } }
        let dosTime = 0, dosDate = (0 << 9) | (1 << 5) | 1   // 1980-01-01 00:00, zip's epoch
        for (key, array) in arrays {
            let name = Array((key + ".npy").utf8)
            let body = array.npy
            guard out.count + body.count + name.count + 30 < Int(UInt32.max) else {
                throw ReportError("the maps exceed the 4 GiB of a plain .npz: draw fewer images (--limit)")
            }
            let crc = body.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, UInt32($0.count))) }
            let offset = UInt32(out.count)
            u32(0x0403_4B50, &out); u16(20, &out); u16(0, &out); u16(0, &out); u16(dosTime, &out); u16(dosDate, &out)
            u32(crc, &out); u32(UInt32(body.count), &out); u32(UInt32(body.count), &out)
            u16(name.count, &out); u16(0, &out)
            out += name
            out += body
            u32(0x0201_4B50, &central); u16(20, &central); u16(20, &central); u16(0, &central); u16(0, &central)
            u16(dosTime, &central); u16(dosDate, &central)
            u32(crc, &central); u32(UInt32(body.count), &central); u32(UInt32(body.count), &central)
            u16(name.count, &central); u16(0, &central); u16(0, &central); u16(0, &central); u16(0, &central)
            u32(0o100644 << 16, &central)   // a regular file, rw-r--r--
            u32(offset, &central)
            central += name
        }
        let centralOffset = UInt32(out.count)
        out += central
        u32(0x0605_4B50, &out); u16(0, &out); u16(0, &out); u16(arrays.count, &out); u16(arrays.count, &out)
        u32(UInt32(central.count), &out); u32(centralOffset, &out); u16(0, &out)
        return out
    }

    /// Writes the archive atomically.
    public static func write(_ arrays: [(String, NPYArray)], to url: URL) throws {
        let bytes = try archive(arrays)
        do {
            try Data(bytes).write(to: url, options: .atomic)
        } catch {
            throw ReportError("cannot write \(url.path): check that its folder exists and is writable")
        }
    }

    /// The arrays of an archive of stored members (as written here), by name without ".npy".
    public static func read(_ url: URL) throws -> [String: NPYArray] {
        let bytes = Array(try Data(contentsOf: url))
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        var arrays = [String: NPYArray](), at = 0
        while at + 30 <= bytes.count && u32(at) == 0x0403_4B50 {
            guard u16(at + 8) == 0 else { throw ReportError("\(url.path): a member is compressed; this reader takes stored members") }
            let size = u32(at + 18), nameLength = u16(at + 26), extra = u16(at + 28)
            let start = at + 30 + nameLength + extra
            guard start + size <= bytes.count else { throw ReportError("\(url.path): a member is cut short") }
            var name = String(decoding: bytes[(at + 30)..<(at + 30 + nameLength)], as: UTF8.self)
            if name.hasSuffix(".npy") { name.removeLast(4) }
            let body = Array(bytes[start..<(start + size)])
            let crc = body.withUnsafeBufferPointer { Int(crc32(0, $0.baseAddress, UInt32($0.count))) }
            guard crc == u32(at + 14) else { throw ReportError("\(url.path): member \(name) fails its CRC-32") }
            arrays[name] = try NPYArray.parse(body, source: "\(url.path):\(name).npy")
            at = start + size
        }
        return arrays
    }
}
