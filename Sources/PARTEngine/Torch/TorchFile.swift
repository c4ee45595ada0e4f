import Foundation

/// Checkpoints written by `torch.save` (`.pt`, `.pth`), read without running anything.
///
/// Two layouts:
/// - the zip archive of torch >= 1.6: `<name>/data.pkl` (the pickled object, whose tensors name
///   their storages by persistent ids), `<name>/data/<key>` (each storage's raw little-endian
///   bytes), `<name>/byteorder`, `<name>/version`;
/// - the legacy stream (`_use_new_zipfile_serialization=False`): a pickled magic number, the
///   protocol version 1001, a `sys_info` dict, the pickled object, the pickled list of storage
///   keys, then per key an 8-byte element count and the storage's bytes.
///
/// The pickle is read by `PickleReader`, which knows only the globals a state_dict needs. Every
/// storage is checked against the bytes present, every tensor's size, stride and offset
/// against its storage, and the float32 output against the file's length, before anything is
/// allocated for it. Tensors may share storages and be non-contiguous; half, bfloat16 and
/// double become float32, and integer tensors (`num_batches_tracked`) become floats as the
/// safetensors path makes them.
public enum TorchFile {
    /// Whether `bytes` start like a `torch.save` file (a zip archive or a pickle).
    public static func recognises(_ bytes: UnsafeRawBufferPointer) -> Bool {
        (bytes.count >= 4 && bytes.u32(0) == 0x0403_4B50) || (bytes.count >= 2 && bytes[0] == 0x80 && (2...5).contains(bytes[1]))
    }

    /// The state_dict of a `torch.save` file, as float32 tensors with the stored element types
    /// in `dtypes`. `key` names the top-level entry that holds it when the file has several.
    public static func decode(_ bytes: UnsafeRawBufferPointer, source: String, key: String? = nil) throws -> SafetensorsFile {
        func fail(_ message: String) -> TorchFileError { TorchFileError("\(source): \(message)") }
        guard recognises(bytes) else {
            throw fail("not a torch.save file (neither a zip archive nor a pickle)")
        }
        var types = [String: TorchStorageType]()
        func persistentLoad(_ id: PickleValue) throws -> PickleValue {
            let ref = try TorchStorageRef(id, fail: fail)
            if let known = types[ref.key], known != ref.type {
                throw fail("corrupt checkpoint: storage \(messageText(ref.key)) is named both \(known.rawValue) and \(ref.type.rawValue)")
            }
            types[ref.key] = ref.type
            return .storage(ref)
        }
        if bytes.count >= 4, bytes.u32(0) == 0x0403_4B50 {
            let entries: [Zip.Entry]
            do { entries = try Zip.entries(bytes, source: source) } catch let e as ArchiveError { throw TorchFileError(e.description) }
            guard let pickle = entries.first(where: { $0.name == "data.pkl" || $0.name.hasSuffix("/data.pkl") }) else {
                throw fail("a zip archive without a data.pkl member: not a torch.save file")
            }
            let prefix = String(pickle.name.dropLast("data.pkl".count))
            func member(_ entry: Zip.Entry) throws -> [UInt8] {
                do { return try Zip.extract(entry, from: bytes, source: source) } catch let e as ArchiveError { throw TorchFileError(e.description) }
            }
            if let order = entries.first(where: { $0.name == prefix + "byteorder" }) {
                let text = String(decoding: try member(order), as: UTF8.self)
                guard text == "little" else {
                    throw fail("its byteorder record says \(messageText(text)); only little-endian checkpoints are read")
                }
            }
            let tensors = try member(pickle).withUnsafeBytes { raw in
                try PickleReader(raw, source: source, persistentLoad: persistentLoad).load { try stateDict($0, key: key, source: source) }
            }
            let wanted = Set(tensors.map(\.1.storage.key))
            var records = [String: [UInt8]]()
            for entry in entries where entry.name.hasPrefix(prefix + "data/") {
                let name = String(entry.name.dropFirst(prefix.count + 5))
                guard wanted.contains(name), records[name] == nil else { continue }
                records[name] = try member(entry)
            }
            return try materialise(tensors, records: records, budget: bytes.count, source: source)
        }
        var position = 0
        /// The next pickle of the stream, given to `body` while its values are alive.
        func next<T>(_ persistent: Bool, _ body: (PickleValue) throws -> T) throws -> T {
            let reader = PickleReader(bytes, at: position, source: source, persistentLoad: persistent ? persistentLoad : { _ in
                throw fail("corrupt checkpoint: a persistent id outside the pickled object")
            })
            let result = try reader.load(body)
            position = reader.position
            return result
        }
        // 0x1950a86a20f9469cfc6c, little-endian.
        let magic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
        guard try next(false, { (value: PickleValue) -> Bool in
            if case .bigInt(let b) = value { return b == magic }
            return false
        }) else {
            throw fail("a pickle that does not start with torch's magic number: not a torch.save file")
        }
        guard try next(false, { (value: PickleValue) -> Bool in value.integer == 1001 }) else {
            throw fail("a legacy torch.save file of a protocol version other than 1001, which this reader does not know")
        }
        let bigEndian = try next(false) { info -> Bool in
            guard case .dict(let d) = info, let entry = d.pairs.first(where: { $0.key.string == "little_endian" }),
                  case .bool(false) = entry.value else { return false }
            return true
        }
        guard !bigEndian else { throw fail("written on a big-endian machine; only little-endian checkpoints are read") }
        let tensors = try next(true) { (value: PickleValue) in try stateDict(value, key: key, source: source) }
        let keys = try next(false) { value -> [String] in
            guard case .list(let list) = value else { throw fail("corrupt checkpoint: the storage keys are not a list") }
            return try list.items.map { item -> String in
                switch item {
                case .string(let s): return s
                case .int(let v): return String(v)
                default: throw fail("corrupt checkpoint: a storage key is a \(item.kindName)")
                }
            }
        }
        var records = [String: [UInt8]]()
        for k in keys {
            guard let type = types[k] else { throw fail("corrupt checkpoint: storage \(messageText(k)) is listed but never used") }
            guard bytes.count - position >= 8 else { throw fail("truncated: storage \(messageText(k)) has no size") }
            let count = bytes.u64(position)
            let size = type.dtype.size
            guard count <= UInt64((bytes.count - position - 8) / size) else {
                throw fail("truncated: storage \(messageText(k)) declares \(count) elements, \(bytes.count - position - 8) bytes are left")
            }
            let start = position + 8, end = start + Int(count) * size
            if records[k] == nil { records[k] = Array(bytes[start..<end]) }
            position = end
        }
        return try materialise(tensors, records: records, budget: bytes.count, source: source)
    }

    /// Where the weights are: the object itself when it is a dict of tensors, else the one
    /// dict of tensors under a top-level key (`key` when given); `module.`, `model.` and
    /// `_orig_mod.` prefixes shared by every name are removed.
    static func stateDict(_ object: PickleValue, key: String?, source: String) throws -> [(String, TorchTensorRef)] {
        func fail(_ message: String) -> TorchFileError { TorchFileError("\(source): \(message)") }
        var chosen: [(String, TorchTensorRef)]
        let top: [(key: PickleValue, value: PickleValue)]
        if case .dict(let d) = object { top = d.pairs } else { top = [] }
        let names = top.compactMap { $0.key.string }
        func listed(_ keys: [String]) -> String {
            keys.prefix(12).map { "'\(messageText($0, limit: 40))'" }.joined(separator: ", ") + (keys.count > 12 ? ", ..." : "")
        }
        if let key {
            guard let entry = top.last(where: { $0.key.string == key }) else {
                throw fail("has no top-level key '\(messageText(key))'" + (names.isEmpty ? "" : " (it has \(listed(names)))"))
            }
            guard let dict = tensorDict(entry.value) else {
                throw fail("under '\(messageText(key))' there is a \(entry.value.kindName), not a dict of tensors")
            }
            chosen = dict
        } else if let dict = tensorDict(object) {
            chosen = dict
        } else {
            // One answer per dict: a file may name the same large dict under many keys.
            var answers = [ObjectIdentifier: Bool]()
            let candidates = top.filter { pair in
                guard pair.key.string != nil, case .dict(let d) = pair.value else { return false }
                if let known = answers[ObjectIdentifier(d)] { return known }
                let answer = tensorDict(pair.value) != nil
                answers[ObjectIdentifier(d)] = answer
                return answer
            }
            guard candidates.count <= 1 else {
                throw fail("holds several dicts of tensors (\(listed(candidates.compactMap { $0.key.string }))): "
                           + "pass --key NAME to say which holds the model's weights (for part train --init, "
                           + "write that one out first with part convert --key NAME)")
            }
            guard let only = candidates.first, let dict = tensorDict(only.value) else {
                if case .dict = object {
                    throw fail("holds no dict of tensors at the top level or under one of its keys (\(names.isEmpty ? "none are strings" : listed(names))); "
                               + "is it a state_dict checkpoint?")
                }
                throw fail("holds a \(object.kindName), not a state_dict")
            }
            chosen = dict
        }
        var stripped = true
        while stripped {
            stripped = false
            for prefix in ["module.", "model.", "_orig_mod."] where chosen.allSatisfy({ $0.0.hasPrefix(prefix) }) {
                chosen = chosen.map { (String($0.0.dropFirst(prefix.count)), $0.1) }
                stripped = true
            }
        }
        var seen = Set<String>()
        for (name, _) in chosen where !seen.insert(name).inserted {
            throw fail("tensor '\(messageText(name))' is given twice")
        }
        return chosen
    }

    /// The pairs of a dict whose keys are strings and whose values are all tensors; nil for
    /// anything else (an empty dict included).
    static func tensorDict(_ value: PickleValue) -> [(String, TorchTensorRef)]? {
        guard case .dict(let d) = value, !d.pairs.isEmpty else { return nil }
        var out = [(String, TorchTensorRef)]()
        out.reserveCapacity(d.pairs.count)
        for pair in d.pairs {
            guard case .string(let name) = pair.key, case .tensor(let t) = pair.value else { return nil }
            out.append((name, t))
        }
        return out
    }

    /// The tensors in float32: each storage record converted once (tensors may share it), then
    /// each tensor gathered through its offset and strides.
    static func materialise(_ tensors: [(String, TorchTensorRef)], records: [String: [UInt8]],
                            budget fileSize: Int, source: String) throws -> SafetensorsFile {
        func fail(_ message: String) -> TorchFileError { TorchFileError("\(source): \(message)") }
        // What a file of this length may decode to: every element of a real checkpoint takes at
        // least one byte, shared storages aside; broadcast views (stride 0) of a tiny storage
        // must not become gigabytes.
        let allowed = Swift.min(Swift.max(4 * fileSize, 1 << 24), FileInput.defaultLimit / 4)
        var total = 0
        for (name, t) in tensors {
            total += t.count
            guard total <= allowed else {
                throw fail("tensor '\(messageText(name))' brings the tensors to more than \(allowed) elements, more than a file of \(fileSize) bytes holds")
            }
        }
        var converted = [String: [Float]]()
        var file = SafetensorsFile()
        for (name, t) in tensors {
            let ref = t.storage
            if converted[ref.key] == nil {
                guard let record = records[ref.key] else { throw fail("tensor '\(messageText(name))': storage \(messageText(ref.key)) is missing") }
                let size = ref.type.dtype.size
                guard record.count / size >= ref.rootCount else {
                    throw fail("tensor '\(messageText(name))': storage \(messageText(ref.key)) holds \(record.count) bytes, \(ref.rootCount) elements of \(ref.type.rawValue) need \(ref.rootCount * size)")
                }
                var values = [Float](repeating: 0, count: ref.rootCount)
                if ref.rootCount > 0 {
                    record.withUnsafeBytes { raw in
                        values.withUnsafeMutableBufferPointer { convert(raw.baseAddress!, ref.type.dtype, count: ref.rootCount, into: $0.baseAddress!) }
                    }
                }
                converted[ref.key] = values
            }
            let values = converted[ref.key]!
            guard ref.offset + ref.count <= values.count else {
                throw fail("tensor '\(messageText(name))': storage \(messageText(ref.key)) is smaller than a view of it")
            }
            var tensor = Tensor.uninitialized(shape: t.shape)
            values.withUnsafeBufferPointer { src in
                tensor.withUnsafeMutableBufferPointer { dst in gather(src, from: ref.offset + t.offset, t, into: dst) }
            }
            file.tensors[name] = tensor
            file.dtypes[name] = ref.type.dtype
        }
        return file
    }

    /// Copies the elements of `t` (shape and strides from `base`) in row-major order.
    static func gather(_ src: UnsafeBufferPointer<Float>, from base: Int, _ t: TorchTensorRef,
                       into dst: UnsafeMutableBufferPointer<Float>) {
        guard t.count > 0 else { return }
        let rank = t.shape.count
        var index = [Int](repeating: 0, count: rank)
        var at = base
        for i in 0..<t.count {
            dst[i] = src[at]
            var d = rank - 1
            while d >= 0 {
                index[d] += 1
                at += t.strides[d]
                if index[d] < t.shape[d] { break }
                at -= t.strides[d] * t.shape[d]
                index[d] = 0
                d -= 1
            }
        }
    }
}
