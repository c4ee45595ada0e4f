import Foundation
import PARTEngine
import SwiftProtobuf

/// A constant of an ONNX graph: an initializer, the value of a Constant node or a result folded
/// at load time. Floating tensors are read as float32 (from float, float16 or double), integer
/// ones (shapes, axes, indices) as int64.
public struct ONNXConstant: Sendable, Equatable {
    public enum Values: Sendable, Equatable {
        case float([Float])
        case integer([Int64])
    }

    public let shape: [Int]
    public let values: Values

    public init(shape: [Int], values: Values) {
        self.shape = shape
        self.values = values
    }

    public var floats: [Float] {
        switch values {
        case .float(let v): return v
        case .integer(let v): return v.map { Float($0) }
        }
    }

    /// The values as integers, nil for a floating tensor.
    public var integers: [Int64]? {
        if case .integer(let v) = values { return v }
        return nil
    }

    public var count: Int { shape.reduce(1, *) }
}

/// An ONNX file as read: the graph of its ModelProto, its initializers decoded and the opset of
/// the default domain. Nothing is interpreted yet (`ONNXGraph` does that).
public struct ONNXModel {
    /// A protobuf message cannot be larger (the format's own limit, 2 GiB).
    public static let sizeLimit = Int(Int32.max)
    /// Nested messages deeper than this are refused (ONNX needs a handful; subgraphs are refused anyway).
    static let depthLimit = 64

    public let source: String
    /// The whole message as read (what a trained copy is written from, see ONNXExport.swift).
    public let proto: Onnx_ModelProto
    public let graph: Onnx_GraphProto
    public let initializers: [String: ONNXConstant]
    /// The version of the default ("" or "ai.onnx") operator set.
    public let opset: Int

    /// Reads the ONNX file at `url`: a regular file, at most `sizeLimit` bytes and what this
    /// machine can hold; every error is one sentence naming the file.
    public static func load(_ url: URL) throws -> ONNXModel {
        let bytes: [UInt8]
        do {
            bytes = try FileInput.read(url, limit: min(FileInput.defaultLimit, sizeLimit))
        } catch {
            throw ONNXError("\(error)")
        }
        return try decode(bytes, source: url.path)
    }

    /// Whether `url` is to be read as an ONNX model (its extension is `.onnx`); what it holds is
    /// checked when it is loaded.
    public static func names(_ url: URL) -> Bool { url.pathExtension.lowercased() == "onnx" }

    /// Decodes the bytes of an ONNX file; `source` names it in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws -> ONNXModel {
        let proto: Onnx_ModelProto
        do {
            var options = BinaryDecodingOptions()
            options.messageDepthLimit = depthLimit
            proto = try Onnx_ModelProto(serializedBytes: bytes, options: options)
        } catch {
            throw ONNXError("\(source): not an ONNX model (its protobuf message does not decode: \(error)); "
                            + "is the file complete?")
        }
        guard proto.hasGraph, !proto.graph.node.isEmpty else {
            throw ONNXError("\(source): not an ONNX model (no graph with nodes)")
        }
        guard let opset = proto.opsetImport.first(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" })?.version,
              opset > 0, opset < 1000 else {
            throw ONNXError("\(source): the model does not import the default ONNX operator set")
        }
        guard proto.graph.sparseInitializer.isEmpty else {
            throw ONNXError("\(source): the model has sparse initializers, which are not read")
        }
        var initializers = [String: ONNXConstant]()
        for tensor in proto.graph.initializer {
            initializers[tensor.name] = try constant(tensor, source: source)
        }
        return ONNXModel(source: source, proto: proto, graph: proto.graph, initializers: initializers, opset: Int(opset))
    }

    /// The values of a TensorProto, checked against its shape.
    static func constant(_ t: Onnx_TensorProto, source: String) throws -> ONNXConstant {
        let what = "\(source): tensor '\(t.name)'"
        if t.dataLocation == .external || !t.externalData.isEmpty {
            throw ONNXError("\(what) keeps its data in another file, which is not read; export the model with its "
                            + "weights inside the .onnx file")
        }
        var count = 1
        var shape = [Int]()
        for d in t.dims {
            guard d >= 0, d <= Int64(Int32.max) else { throw ONNXError("\(what) has a dimension of \(d)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
            guard !overflow, product <= ONNXModel.sizeLimit else { throw ONNXError("\(what) is too large (\(t.dims))") }
            count = product
            shape.append(Int(d))
        }
        let raw = t.hasRawData ? [UInt8](t.rawData) : nil
        /// The raw bytes as `count` little-endian values of `size` bytes, or the typed field.
        func values<T>(_ size: Int, _ typed: [T], _ load: (UnsafeRawBufferPointer, Int) -> T) throws -> [T] {
            if let raw {
                guard raw.count == count * size else {
                    throw ONNXError("\(what) has \(raw.count) bytes of data for \(count) values of \(size) bytes")
                }
                return raw.withUnsafeBytes { buffer in (0..<count).map { load(buffer, $0 * size) } }
            }
            guard typed.count == count else {
                throw ONNXError("\(what) has \(typed.count) values for its shape \(shape) of \(count)")
            }
            return typed
        }
        func le<T: FixedWidthInteger>(_ type: T.Type) -> (UnsafeRawBufferPointer, Int) -> T {
            { buffer, offset in T(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        switch t.dataType {
        case 1:   // FLOAT
            let bits = try values(4, t.floatData.map(\.bitPattern), le(UInt32.self))
            return ONNXConstant(shape: shape, values: .float(bits.map { Float(bitPattern: $0) }))
        case 10:  // FLOAT16, also kept in int32_data one value each
            let bits = try values(2, t.int32Data.map { UInt16(truncatingIfNeeded: $0) }, le(UInt16.self))
            return ONNXConstant(shape: shape, values: .float(bits.map(halfToFloat)))
        case 11:  // DOUBLE
            let bits = try values(8, t.doubleData.map(\.bitPattern), le(UInt64.self))
            return ONNXConstant(shape: shape, values: .float(bits.map { Float(Double(bitPattern: $0)) }))
        case 7:   // INT64
            let v = try values(8, t.int64Data, le(Int64.self))
            return ONNXConstant(shape: shape, values: .integer(v))
        case 6:   // INT32
            let v = try values(4, t.int32Data, le(Int32.self))
            return ONNXConstant(shape: shape, values: .integer(v.map(Int64.init)))
        case 9:   // BOOL (a training-mode export's Dropout flag), one byte each, or int32_data
            let v = try values(1, t.int32Data.map { UInt8(truncatingIfNeeded: $0) }, le(UInt8.self))
            return ONNXConstant(shape: shape, values: .integer(v.map { $0 == 0 ? 0 : 1 }))
        default:
            throw ONNXError("\(what) has ONNX data type \(t.dataType); float, float16, double, int32, int64 and bool are read")
        }
    }
}

/// An IEEE half-precision value's bits as a Float.
func halfToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int(h >> 10) & 0x1f
    let mantissa = UInt32(h & 0x3ff)
    if exponent == 0x1f {   // infinity or NaN
        return Float(bitPattern: sign | 0x7f80_0000 | (mantissa << 13))
    }
    if exponent == 0 {      // zero or subnormal: mantissa * 2^-24
        let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
        return sign == 0 ? magnitude : -magnitude
    }
    return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
}
