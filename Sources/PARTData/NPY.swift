import Foundation
import PARTEngine

/// NumPy `.npy` arrays as datasets read them: the bytes of a file or archive member, parsed by
/// the engine's `NPYFormat` and kept mapped, with the messages of a `DatasetError`.
public enum NPY {
    /// An element type: kind (`u` unsigned, `i` signed, `f` float, `b` bool, ...), size in
    /// bytes and byte order.
    public typealias DType = NPYFormat.ElementType

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

    /// Bytes of the longest .npy prefix `describedSize` needs (magic, version, length, header).
    static let largestHeader = NPYFormat.largestHeader

    /// The size of the whole `.npy` file whose first bytes are `prefix`, as its header describes
    /// it; nil when the prefix is not a readable header, which `parse` then reports.
    static func describedSize(_ prefix: UnsafeRawBufferPointer) -> Int? { NPYFormat.describedSize(prefix) }

    /// Parses a whole `.npy` file.
    public static func parse(_ file: ByteBuffer, source: String) throws -> Array {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        let bytes = file.bytes
        let header: NPYFormat.Header
        do {
            header = try NPYFormat.header(bytes)
        } catch {
            let text = messageText(error.header)
            switch error.kind {
            case .notNPY: throw fail(bytes.isEmpty ? "empty file" : "not a NumPy .npy file (no \\x93NUMPY magic)")
            case .truncatedHeader: throw fail("truncated header")
            case .unsupportedVersion(let major, let minor): throw fail("unsupported .npy version \(major).\(minor)")
            case .headerBeyondEnd(let declared, let left):
                throw fail("truncated: the header declares \(declared) bytes, the file has \(left) left")
            case .unreadable, .shapeNotIntegers: throw fail("unreadable .npy header: \(text)")
            case .noDescr: throw fail("the header has no 'descr' string (structured arrays are not supported): \(text)")
            case .noFortranOrder: throw fail("the header has no 'fortran_order'")
            case .noShape: throw fail("the header has no 'shape' tuple")
            case .unsupportedType(let descr): throw fail("unsupported element type '\(messageText(descr))'")
            case .fortranOrder:
                throw fail("the array is stored in Fortran order; save it with numpy.save(path, numpy.ascontiguousarray(array))")
            case .negativeDimension(let shape, _): throw fail("negative dimension in shape \(shape)")
            case .tooLarge(_, let shape): throw fail("shape \(shape) is too large")
            }
        }
        let shape = header.shape, dtype = header.elementType
        let needed = header.byteCount
        let available = bytes.count - header.dataOffset
        guard let needed, needed <= available else {
            throw fail("truncated: shape \(shape) of \(dtype) needs \(needed.map(String.init) ?? "too many") bytes of data, the file has \(available)")
        }
        guard needed == available else {
            throw fail("\(available - needed) bytes after the \(needed) bytes of data that shape \(shape) of \(dtype) declares")
        }
        return Array(shape: shape, dtype: dtype, count: header.count, buffer: file, offset: header.dataOffset)
    }
}
