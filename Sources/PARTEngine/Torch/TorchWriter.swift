import Foundation

/// How `TorchFile.encode` lays out a state_dict: the forms `torch.save` writes and
/// `torch.load(weights_only=True)` opens (scripts/make_torch_fixtures.py --check-written checks
/// each with torch).
public struct TorchWriteOptions: Sendable, Equatable {
    public enum Layout: Sendable, Equatable {
        /// The zip archive of torch >= 1.6.
        case zip
        /// The stream of torch < 1.6 (`_use_new_zipfile_serialization=False`).
        case legacy
    }

    public enum Precision: Sendable, Equatable {
        case float32
        /// `HalfStorage`, each value rounded to the nearest float16 (ties to even, as `.half()`).
        case float16
    }

    public var layout: Layout
    public var precision: Precision
    /// The top-level key the state_dict is saved under (`{"state_dict": {...}}`), nil for the
    /// state_dict itself at the top level.
    public var nestUnder: String?
    /// Prepended to every tensor name ("module." as `nn.DataParallel` names them).
    public var prefix: String

    public init(layout: Layout = .zip, precision: Precision = .float32, nestUnder: String? = nil, prefix: String = "") {
        self.layout = layout
        self.precision = precision
        self.nestUnder = nestUnder
        self.prefix = prefix
    }
}

/// The pickle opcodes the writer emits (protocol 2), appended to `bytes`.
struct PickleWriter {
    var bytes: [UInt8] = []
    private var memo: UInt32 = 0

    mutating func op(_ byte: UInt8) { bytes.append(byte) }
    mutating func proto() { bytes += [0x80, 0x02] }
    mutating func stop() { op(0x2E) }
    mutating func global(_ module: String, _ name: String) { op(0x63); bytes += Array("\(module)\n\(name)\n".utf8) }
    /// BINPUT, as Python's pickler memoises strings, dicts and tuples (the legacy preamble is
    /// written byte for byte as torch writes it).
    mutating func put() {
        op(0x71); op(UInt8(truncatingIfNeeded: memo)); memo += 1
    }
    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        op(0x58)
        withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { bytes += $0 }
        bytes += utf8
    }
    mutating func int(_ value: Int) {
        if let small = Int32(exactly: value) {
            op(0x4A)
            withUnsafeBytes(of: small.littleEndian) { bytes += $0 }
        } else {
            op(0x8A); op(8)
            withUnsafeBytes(of: Int64(value).littleEndian) { bytes += $0 }
        }
    }
    /// A small non-negative integer as Python writes it (BININT1 below 256, else BININT2).
    mutating func smallInt(_ value: UInt16) {
        if value < 256 { op(0x4B); op(UInt8(value)) } else { op(0x4D); withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
    }
    mutating func ints(_ values: [Int]) {
        if values.isEmpty { op(0x29); return }
        op(0x28)
        values.forEach { int($0) }
        op(0x74)
    }
    mutating func emptyOrderedDict() { global("collections", "OrderedDict"); op(0x29); op(0x52) }
}

extension TorchFile {
    /// A state_dict as `torch.save` writes it, which `torch.load(weights_only=True)` opens.
    ///
    /// The pickle (protocol 2) builds an `OrderedDict` of tensors with
    /// `torch._utils._rebuild_tensor_v2` on persistent ids ('storage', torch.FloatStorage, key,
    /// 'cpu', numel), one storage per tensor in the order of `names`; under `options.nestUnder`
    /// it is the value of a one-key dict. Tensors are float32 or float16 as `options.precision`
    /// says, int64 (`LongStorage`, values rounded) where `dtypes` says an integer type.
    /// - zip layout: stored members aligned to 64 bytes under `archive/` (`data.pkl`,
    ///   `byteorder`, `data/<key>`, `version`);
    /// - legacy layout: the pickles of the magic number, the protocol version 1001 and the
    ///   `sys_info` dict, the object (persistent ids with a sixth item, None: no view), the list
    ///   of storage keys, then per key its element count (8 bytes) and its bytes.
    public static func encode(_ file: SafetensorsFile, names: [String]? = nil,
                              options: TorchWriteOptions = TorchWriteOptions()) throws -> [UInt8] {
        let order = (names ?? file.tensors.keys.sorted()).filter { file.tensors[$0] != nil }
        var p = PickleWriter()
        p.proto()
        if let outer = options.nestUnder {
            p.op(0x7D)   // EMPTY_DICT
            p.string(outer)
        }
        p.emptyOrderedDict()
        if !order.isEmpty { p.op(0x28) }
        var storages = [(String, [UInt8])]()
        var counts = [Int]()
        for (index, name) in order.enumerated() {
            let tensor = file.tensors[name]!
            let isLong = file.dtypes[name].map { [.i64, .i32, .u8, .bool].contains($0) } ?? false
            let isHalf = !isLong && options.precision == .float16
            let key = String(index)
            var data = [UInt8]()
            tensor.withUnsafeBufferPointer { values in
                if isLong {
                    data.reserveCapacity(values.count * 8)
                    for v in values { withUnsafeBytes(of: Int64(v.rounded()).littleEndian) { data += $0 } }
                } else if isHalf {
                    data.reserveCapacity(values.count * 2)
                    for v in values { withUnsafeBytes(of: halfBits(v).littleEndian) { data += $0 } }
                } else {
                    data = Array(UnsafeRawBufferPointer(values))
                }
            }
            storages.append((key, data))
            counts.append(tensor.count)
            var strides = [Int](repeating: 1, count: tensor.shape.count)
            for d in stride(from: tensor.shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * tensor.shape[d + 1] }
            p.string(options.prefix + name)
            p.global("torch._utils", "_rebuild_tensor_v2")
            p.op(0x28)
            p.op(0x28); p.string("storage"); p.global("torch", isLong ? "LongStorage" : isHalf ? "HalfStorage" : "FloatStorage")
            p.string(key); p.string("cpu"); p.int(tensor.count)
            if options.layout == .legacy { p.op(0x4E) }   // view_metadata = None
            p.op(0x74); p.op(0x51)   // the persistent id
            p.int(0)
            p.ints(tensor.shape)
            p.ints(strides)
            p.op(0x89)                 // requires_grad = False
            p.emptyOrderedDict()       // backward hooks
            p.op(0x74); p.op(0x52)
        }
        if !order.isEmpty { p.op(0x75) }
        if options.nestUnder != nil { p.op(0x73) }   // SETITEM
        p.stop()
        switch options.layout {
        case .zip:
            var writer = ZipWriter(alignment: 64)
            do {
                try writer.add("archive/data.pkl", p.bytes)
                try writer.add("archive/.format_version", Array("1".utf8))
                try writer.add("archive/.storage_alignment", Array("64".utf8))
                try writer.add("archive/byteorder", Array("little".utf8))
                for (key, data) in storages { try writer.add("archive/data/\(key)", data) }
                try writer.add("archive/version", Array("3\n".utf8))
                return try writer.finish()
            } catch let error as ArchiveError {
                throw TorchFileError(error.description)
            }
        case .legacy:
            var out = legacyPreamble()
            out += p.bytes
            var keys = PickleWriter()
            keys.proto()
            keys.op(0x5D)   // EMPTY_LIST
            if !storages.isEmpty {
                keys.op(0x28)
                for (key, _) in storages { keys.string(key) }
                keys.op(0x65)   // APPENDS
            }
            keys.stop()
            out += keys.bytes
            for ((_, data), count) in zip(storages, counts) {
                withUnsafeBytes(of: Int64(count).littleEndian) { out += $0 }
                out += data
            }
            return out
        }
    }

    /// The three pickles that open a legacy file, as torch writes them: the magic number
    /// 0x1950a86a20f9469cfc6c, the protocol version 1001, and `sys_info` ({"protocol_version":
    /// 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}).
    static func legacyPreamble() -> [UInt8] {
        var p = PickleWriter()
        p.proto()
        p.op(0x8A); p.op(10)
        p.bytes += [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
        p.stop()
        p.proto(); p.smallInt(1001); p.stop()
        var info = PickleWriter()
        info.proto()
        info.op(0x7D); info.put(); info.op(0x28)
        info.string("protocol_version"); info.put(); info.smallInt(1001)
        info.string("little_endian"); info.put(); info.op(0x88)
        info.string("type_sizes"); info.put()
        info.op(0x7D); info.put(); info.op(0x28)
        for (name, size) in [("short", UInt16(2)), ("int", 4), ("long", 4)] {
            info.string(name); info.put(); info.smallInt(size)
        }
        info.op(0x75); info.op(0x75)
        info.stop()
        return p.bytes + info.bytes
    }

    /// `value` rounded to the nearest float16 (ties to even, as torch's `.half()`), as a Float.
    public static func roundedToHalf(_ value: Float) -> Float { halfToFloat(halfBits(value)) }

    /// The IEEE half-precision bits nearest `value` (ties to even); beyond the half range,
    /// infinity; NaN stays NaN.
    static func halfBits(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF)
        var mantissa = bits & 0x7F_FFFF
        if exponent == 0xFF { return sign | 0x7C00 | (mantissa != 0 ? 0x200 : 0) }
        let e = exponent - 127 + 15
        if e >= 0x1F { return sign | 0x7C00 }
        if e <= 0 {
            // A subnormal half (or zero): the implicit bit joins the mantissa, shifted further.
            if e < -10 { return sign }
            mantissa |= 0x80_0000
            let shift = UInt32(14 - e)
            let kept = mantissa >> shift
            let rest = mantissa & ((1 << shift) - 1)
            let halfway = UInt32(1) << (shift - 1)
            let rounded = kept + ((rest > halfway || (rest == halfway && kept & 1 == 1)) ? 1 : 0)
            return sign | UInt16(rounded)
        }
        let kept = UInt32(e << 10) | (mantissa >> 13)
        let rest = mantissa & 0x1FFF
        // A carry out of the mantissa raises the exponent, up to infinity: still the nearest.
        let rounded = kept + ((rest > 0x1000 || (rest == 0x1000 && kept & 1 == 1)) ? 1 : 0)
        return sign | UInt16(rounded)
    }
}
