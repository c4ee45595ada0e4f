import Foundation

extension TorchFile {
    /// A state_dict as `torch.save` writes it, which `torch.load(weights_only=True)` opens: a zip
    /// archive of stored members aligned to 64 bytes under `archive/` (`data.pkl`, `byteorder`,
    /// `data/<key>`, `version`), the pickle in protocol 2 building an `OrderedDict` of tensors
    /// with `torch._utils._rebuild_tensor_v2` on persistent ids
    /// ('storage', torch.FloatStorage, key, 'cpu', numel). Tensors are float32 (`FloatStorage`),
    /// or int64 (`LongStorage`, values rounded) where `dtypes` says I64, in the order of `names`.
    public static func encode(_ file: SafetensorsFile, names: [String]? = nil) throws -> [UInt8] {
        let order = names ?? file.tensors.keys.sorted()
        var pickle: [UInt8] = [0x80, 0x02]
        func op(_ byte: UInt8) { pickle.append(byte) }
        func global(_ module: String, _ name: String) { op(0x63); pickle += Array("\(module)\n\(name)\n".utf8) }
        func string(_ text: String) {
            let utf8 = Array(text.utf8)
            op(0x58)
            withUnsafeBytes(of: UInt32(utf8.count).littleEndian) { pickle += $0 }
            pickle += utf8
        }
        func int(_ value: Int) {
            if let small = Int32(exactly: value) {
                op(0x4A)
                withUnsafeBytes(of: small.littleEndian) { pickle += $0 }
            } else {
                op(0x8A); op(8)
                withUnsafeBytes(of: Int64(value).littleEndian) { pickle += $0 }
            }
        }
        func ints(_ values: [Int]) {
            if values.isEmpty { op(0x29); return }
            op(0x28)
            values.forEach(int)
            op(0x74)
        }
        func emptyOrderedDict() { global("collections", "OrderedDict"); op(0x29); op(0x52) }

        var writer = ZipWriter(alignment: 64)
        var storages = [(String, [UInt8])]()
        emptyOrderedDict()
        if !order.isEmpty { op(0x28) }
        for (index, name) in order.enumerated() {
            guard let tensor = file.tensors[name] else { continue }
            let isLong = file.dtypes[name].map { [.i64, .i32, .u8, .bool].contains($0) } ?? false
            let key = String(index)
            var data = [UInt8]()
            tensor.withUnsafeBufferPointer { values in
                if isLong {
                    data.reserveCapacity(values.count * 8)
                    for v in values { withUnsafeBytes(of: Int64(v.rounded()).littleEndian) { data += $0 } }
                } else {
                    data = Array(UnsafeRawBufferPointer(values))
                }
            }
            storages.append((key, data))
            var strides = [Int](repeating: 1, count: tensor.shape.count)
            for d in stride(from: tensor.shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * tensor.shape[d + 1] }
            string(name)
            global("torch._utils", "_rebuild_tensor_v2")
            op(0x28)
            op(0x28); string("storage"); global("torch", isLong ? "LongStorage" : "FloatStorage")
            string(key); string("cpu"); int(tensor.count); op(0x74); op(0x51)   // the persistent id
            int(0)
            ints(tensor.shape)
            ints(strides)
            op(0x89)                 // requires_grad = False
            emptyOrderedDict()       // backward hooks
            op(0x74); op(0x52)
        }
        if !order.isEmpty { op(0x75) }
        op(0x2E)
        do {
            try writer.add("archive/data.pkl", pickle)
            try writer.add("archive/.format_version", Array("1".utf8))
            try writer.add("archive/.storage_alignment", Array("64".utf8))
            try writer.add("archive/byteorder", Array("little".utf8))
            for (key, data) in storages { try writer.add("archive/data/\(key)", data) }
            try writer.add("archive/version", Array("3\n".utf8))
            return try writer.finish()
        } catch let error as ArchiveError {
            throw TorchFileError(error.description)
        }
    }
}
