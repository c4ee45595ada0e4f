/// A PyTorch checkpoint (`.pt`, `.pth`) that could not be read, or that was refused: one
/// sentence naming the file and what is wrong with it.
public struct TorchFileError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Element types of torch's storages, as the storage classes name them.
public enum TorchStorageType: String, Sendable, CaseIterable {
    case float = "FloatStorage", half = "HalfStorage", bfloat16 = "BFloat16Storage", double = "DoubleStorage"
    case long = "LongStorage", int = "IntStorage", byte = "ByteStorage", bool = "BoolStorage"
    /// `torch.UntypedStorage`: bytes.
    case untyped = "UntypedStorage"

    /// The same element type in safetensors terms (the conversion to float32 is shared).
    public var dtype: SafetensorsDType {
        switch self {
        case .float: return .f32
        case .half: return .f16
        case .bfloat16: return .bf16
        case .double: return .f64
        case .long: return .i64
        case .int: return .i32
        case .byte, .untyped: return .u8
        case .bool: return .bool
        }
    }
}

/// The only globals a checkpoint may name: what a `state_dict` needs to be rebuilt. Anything
/// else (`os.system`, `builtins.eval`, a model class, `argparse.Namespace`, `numpy` arrays) is
/// refused when the pickle names it, before it could be used.
enum TorchGlobal: Equatable {
    case orderedDict
    case rebuildTensorV2, rebuildTensor, rebuildParameter, rebuildParameterWithState
    case storage(TorchStorageType)

    /// Python's dotted name.
    var name: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case .rebuildParameterWithState: return "torch._utils._rebuild_parameter_with_state"
        case .storage(let type): return "torch.\(type.rawValue)"
        }
    }

    /// The global `module.name`, or a refusal naming it.
    static func named(module: String, name: String, source: String) throws -> TorchGlobal {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"): return .rebuildTensorV2
        case ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"): return .rebuildParameter
        case ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameterWithState
        case ("torch", _), ("torch.storage", "UntypedStorage"):
            if let type = TorchStorageType(rawValue: name) { return .storage(type) }
        default:
            break
        }
        throw TorchFileError("\(source): refused: the pickle names the global \(messageText(module, limit: 60)).\(messageText(name, limit: 60)), "
                             + "which a state_dict does not need; nothing was imported or run")
    }
}

/// A storage named by a persistent id: ('storage', type, key, location, numel) in the zip
/// layout; the legacy layout adds a sixth item, None or a view (view key, offset, size) of
/// the storage `key`.
struct TorchStorageRef {
    let type: TorchStorageType
    /// Key of the record that holds the data (a legacy view's root storage).
    let key: String
    /// Elements of that record's storage.
    let rootCount: Int
    /// Where this storage starts in the record, in elements (not 0 only for a legacy view).
    let offset: Int
    /// Elements of this storage.
    let count: Int

    init(_ id: PickleValue, fail: (String) -> TorchFileError) throws {
        guard case .tuple(let t) = id, t.items.count == 5 || t.items.count == 6, t.items[0].string == "storage" else {
            throw fail("corrupt checkpoint: a persistent id is not a ('storage', type, key, location, size) tuple")
        }
        guard case .global(.storage(let type)) = t.items[1] else {
            throw fail("corrupt checkpoint: a persistent id names \(t.items[1].kindName) as its storage type")
        }
        let key: String
        switch t.items[2] {
        case .string(let s): key = s
        case .int(let v): key = String(v)
        default: throw fail("corrupt checkpoint: a storage key is a \(t.items[2].kindName)")
        }
        guard let count = t.items[4].integer, count >= 0 else {
            throw fail("corrupt checkpoint: storage \(messageText(key)) has no valid size")
        }
        self.type = type
        self.key = key
        rootCount = count
        if t.items.count == 6, case .tuple(let v) = t.items[5] {
            guard v.items.count == 3, let offset = v.items[1].integer, let size = v.items[2].integer,
                  offset >= 0, size >= 0, offset <= count, size <= count - offset else {
                throw fail("corrupt checkpoint: storage \(messageText(key)) has a view outside it")
            }
            self.offset = offset
            self.count = size
        } else {
            offset = 0
            self.count = count
        }
    }
}

/// A tensor as `_rebuild_tensor_v2` describes it: a storage, an offset, a size and a stride (in
/// elements). Checked on construction: every element it views lies inside the storage.
struct TorchTensorRef {
    let storage: TorchStorageRef
    let offset: Int
    let shape: [Int]
    let strides: [Int]
    /// Elements of the tensor.
    let count: Int

    init(storage: PickleValue, offset: PickleValue, size: PickleValue, stride: PickleValue,
         fail: (String) -> TorchFileError) throws {
        guard case .storage(let s) = storage else { throw fail("the storage is a \(storage.kindName)") }
        func ints(_ value: PickleValue, _ what: String) throws -> [Int] {
            guard case .tuple(let t) = value, t.items.count <= 64 else { throw fail("the \(what) is not a tuple of at most 64 ints") }
            return try t.items.map {
                guard let v = $0.integer, v >= 0 else { throw fail("the \(what) holds \($0.kindName == "int" ? "a negative int" : "a \($0.kindName)")") }
                return v
            }
        }
        guard let offset = offset.integer, offset >= 0 else { throw fail("the storage offset is not a non-negative int") }
        let shape = try ints(size, "size"), strides = try ints(stride, "stride")
        guard shape.count == strides.count else { throw fail("a size of \(shape.count) dimensions with a stride of \(strides.count)") }
        var count = 1, last = offset
        for (n, st) in zip(shape, strides) {
            let (c, o1) = count.multipliedReportingOverflow(by: n)
            let (reach, o2) = (n == 0 ? 0 : n - 1).multipliedReportingOverflow(by: st)
            let (l, o3) = last.addingReportingOverflow(reach)
            guard !o1, !o2, !o3 else { throw fail("the size \(shape) with stride \(strides) overflows") }
            count = c
            last = l
        }
        guard count == 0 || last < s.count else {
            throw fail("size \(shape), stride \(strides) and offset \(offset) reach element \(last) of a storage of \(s.count)")
        }
        self.storage = s
        self.offset = offset
        self.shape = shape
        self.strides = strides
        self.count = count
    }
}
