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
/// `numpy.load` opens as a dictionary of arrays. The archive is the engine's (`ZipWriter`,
/// `Zip`), shared with every other zip file the project reads or writes.
public enum NPZ {
    public static func archive(_ arrays: [(String, NPYArray)]) throws -> [UInt8] {
        var writer = ZipWriter()
        do {
            for (key, array) in arrays { try writer.add(key + ".npy", array.npy) }
            return try writer.finish()
        } catch is ArchiveError {
            throw ReportError("the maps exceed the 4 GiB of a plain .npz: draw fewer images (--limit)")
        }
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

    /// The arrays of an archive (stored or deflated members), by name without ".npy".
    public static func read(_ url: URL) throws -> [String: NPYArray] {
        do {
            let bytes = try FileInput.read(url)
            return try bytes.withUnsafeBytes { raw in
                var arrays = [String: NPYArray]()
                for entry in try Zip.entries(raw, source: url.path) {
                    var name = entry.name
                    if name.hasSuffix(".npy") { name.removeLast(4) }
                    let body = try Zip.extract(entry, from: raw, source: url.path)
                    arrays[name] = try NPYArray.parse(body, source: "\(url.path):\(name).npy")
                }
                return arrays
            }
        } catch let error as ArchiveError {
            throw ReportError(error.description)
        } catch let error as FileInputError {
            throw ReportError(error.description)
        }
    }
}
