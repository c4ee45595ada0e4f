/// A restricted reader of Python pickles (protocols 2 to 5) that understands only what
/// `torch.save` writes for a `state_dict`, and never imports, calls or writes anything.
///
/// Python's `pickle.load` runs whatever callables a file names (`os.system`, `builtins.exec`):
/// loading a checkpoint from a stranger is running their program. This reader instead builds
/// plain values (numbers, strings, lists, tuples, dictionaries) and knows a fixed list of
/// globals (`TorchGlobal`): `collections.OrderedDict`, the tensor rebuild functions of
/// `torch._utils` and the storage types. A GLOBAL or STACK_GLOBAL naming anything else, and
/// every opcode that would call or build an arbitrary object (INST, OBJ, NEWOBJ_EX, EXT*,
/// out-of-band buffers), stops the reading with one sentence naming it
/// (docs/reliability.md#the-restricted-unpickler).
///
/// Bounds: every length is checked against the bytes left, each opcode consumes at least one
/// byte and does work proportional to what it pushes or pops, so a file of n bytes costs O(n)
/// memory and time. Lists, tuples and dictionaries are objects kept in an arena that is
/// cleared when the reader goes away, so a list appended to itself neither leaks nor recurses.
final class PickleReader {
    /// A list, tuple, set or dictionary: pickles share and mutate them by reference (a
    /// memoised dictionary is filled after it is memoised).
    final class Object {
        enum Kind { case list, tuple, set, dict }
        let kind: Kind
        var items: [PickleValue] = []
        var pairs: [(key: PickleValue, value: PickleValue)] = []
        init(_ kind: Kind) { self.kind = kind }
    }

    let bytes: UnsafeRawBufferPointer
    let source: String
    private(set) var position: Int
    /// Every object made, so that `deinit` can break reference cycles.
    private var arena: [Object] = []
    private var stack: [PickleValue] = []
    private var marks: [[PickleValue]] = []
    private var memo: [Int: PickleValue] = [:]
    /// Resolves a persistent id (torch's storages) to a value.
    private let persistentLoad: (PickleValue) throws -> PickleValue

    init(_ bytes: UnsafeRawBufferPointer, at position: Int = 0, source: String,
         persistentLoad: @escaping (PickleValue) throws -> PickleValue) {
        self.bytes = bytes
        self.position = position
        self.source = source
        self.persistentLoad = persistentLoad
    }

    deinit {
        for object in arena {
            object.items.removeAll()
            object.pairs.removeAll()
        }
    }

    func fail(_ message: String) -> TorchFileError { TorchFileError("\(source): \(message)") }

    func newObject(_ kind: Object.Kind, items: [PickleValue] = []) -> PickleValue {
        let object = Object(kind)
        object.items = items
        arena.append(object)
        switch kind {
        case .list: return .list(object)
        case .tuple: return .tuple(object)
        case .set: return .set(object)
        case .dict: return .dict(object)
        }
    }

    // MARK: Reading bytes

    private func take(_ count: Int) throws -> UnsafeRawBufferPointer {
        guard count >= 0, count <= bytes.count - position else {
            throw fail("truncated pickle: \(count) bytes needed at byte \(position), \(bytes.count - position) left")
        }
        defer { position += count }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + count)])
    }

    private func byte() throws -> UInt8 { try take(1)[0] }

    private func length(_ width: Int) throws -> Int {
        let raw = try take(width)
        let value: UInt64
        switch width {
        case 1: value = UInt64(raw[0])
        case 4: value = UInt64(raw.u32(0))
        default: value = raw.u64(0)
        }
        guard value <= UInt64(bytes.count - position) else {
            throw fail("truncated pickle: a length of \(value) bytes at byte \(position - width), \(bytes.count - position) left")
        }
        return Int(value)
    }

    /// A line ending in "\n" (the module and name of GLOBAL), at most 256 bytes.
    private func line() throws -> String {
        let start = position
        let end = Swift.min(bytes.count, start + 257)
        guard let newline = bytes[start..<end].firstIndex(of: 0x0A) else {
            throw fail("corrupt pickle: a GLOBAL name at byte \(start) is not a short line")
        }
        position = newline + 1
        return String(decoding: bytes[start..<newline], as: UTF8.self)
    }

    /// A little-endian two's-complement integer of `raw.count` bytes.
    private func integer(_ raw: UnsafeRawBufferPointer) -> PickleValue {
        if raw.count > 8 { return .bigInt(Array(raw)) }
        if raw.isEmpty { return .int(0) }
        var value: UInt64 = 0
        for (i, b) in raw.enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
        let shift = UInt64(64 - 8 * raw.count)
        return .int(Int64(bitPattern: value << shift) >> Int64(shift))
    }

    // MARK: The stack

    private func push(_ value: PickleValue) { stack.append(value) }

    private func pop() throws -> PickleValue {
        guard let value = stack.popLast() else { throw fail("corrupt pickle: the stack is empty at byte \(position - 1)") }
        return value
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last else { throw fail("corrupt pickle: the stack is empty at byte \(position - 1)") }
        return value
    }

    /// The items pushed since the last MARK, which is removed.
    private func popMark() throws -> [PickleValue] {
        guard let outer = marks.popLast() else { throw fail("corrupt pickle: no MARK before byte \(position - 1)") }
        let items = stack
        stack = outer
        return items
    }

    private func memoize(_ index: Int) throws {
        memo[index] = try top()
    }

    private func recall(_ index: Int) throws {
        guard let value = memo[index] else { throw fail("corrupt pickle: memo entry \(index) is read before it is written") }
        push(value)
    }

    private func object(_ value: PickleValue, _ kinds: Set<String>, for op: String) throws -> Object {
        switch value {
        case .list(let o) where kinds.contains("list"), .dict(let o) where kinds.contains("dict"),
             .set(let o) where kinds.contains("set"):
            return o
        default:
            throw fail("corrupt pickle: \(op) at byte \(position - 1) applies to \(value.kindName)")
        }
    }

    // MARK: Running

    /// Reads one pickle and gives its value to `body` while the reader (which owns the
    /// value's lists and dictionaries) is alive.
    func load<T>(_ body: (PickleValue) throws -> T) throws -> T {
        let value = try load()
        return try withExtendedLifetime(self) { try body(value) }
    }

    /// Reads one pickle from the current position to its STOP; returns its value.
    func load() throws -> PickleValue {
        stack = []
        marks = []
        memo = [:]
        while true {
            let at = position
            let op = try byte()
            switch op {
            case 0x80:  // PROTO
                let version = try byte()
                guard (2...5).contains(version) else {
                    throw fail("pickle protocol \(version) at byte \(at) is not one this reader takes (2 to 5, as torch.save writes)")
                }
            case 0x95: _ = try take(8)  // FRAME: a length hint only
            case 0x2E: return try pop()  // STOP
            case 0x28: marks.append(stack); stack = []  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: push(try top())  // DUP
            case 0x4E: push(.none)  // NONE
            case 0x88: push(.bool(true))  // NEWTRUE
            case 0x89: push(.bool(false))  // NEWFALSE
            case 0x4A: push(.int(Int64(Int32(bitPattern: try take(4).u32(0)))))  // BININT
            case 0x4B: push(.int(Int64(try byte())))  // BININT1
            case 0x4D: push(.int(Int64(try take(2).u16(0))))  // BININT2
            case 0x8A: push(integer(try take(try length(1))))  // LONG1
            case 0x8B: push(integer(try take(try length(4))))  // LONG4
            case 0x47: push(.float(Double(bitPattern: try take(8).u64(0, bigEndian: true))))  // BINFLOAT
            case 0x58: push(.string(String(decoding: try take(try length(4)), as: UTF8.self)))  // BINUNICODE
            case 0x8C: push(.string(String(decoding: try take(try length(1)), as: UTF8.self)))  // SHORT_BINUNICODE
            case 0x8D: push(.string(String(decoding: try take(try length(8)), as: UTF8.self)))  // BINUNICODE8
            case 0x43: push(.bytes(Array(try take(try length(1)))))  // SHORT_BINBYTES
            case 0x42: push(.bytes(Array(try take(try length(4)))))  // BINBYTES
            case 0x8E, 0x96: push(.bytes(Array(try take(try length(8)))))  // BINBYTES8, BYTEARRAY8
            case 0x55: push(.bytes(Array(try take(try length(1)))))  // SHORT_BINSTRING
            case 0x54: push(.bytes(Array(try take(try length(4)))))  // BINSTRING
            case 0x29: push(newObject(.tuple))  // EMPTY_TUPLE
            case 0x85, 0x86, 0x87:  // TUPLE1, TUPLE2, TUPLE3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw fail("corrupt pickle: TUPLE\(n) at byte \(at) on a shorter stack") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                push(newObject(.tuple, items: items))
            case 0x74: push(newObject(.tuple, items: try popMark()))  // TUPLE
            case 0x5D: push(newObject(.list))  // EMPTY_LIST
            case 0x6C: push(newObject(.list, items: try popMark()))  // LIST
            case 0x7D: push(newObject(.dict))  // EMPTY_DICT
            case 0x8F: push(newObject(.set))  // EMPTY_SET
            case 0x64, 0x91:  // DICT, FROZENSET
                let items = try popMark()
                if op == 0x91 {
                    push(newObject(.set, items: items))
                } else {
                    guard items.count % 2 == 0 else { throw fail("corrupt pickle: DICT at byte \(at) with an odd number of items") }
                    let dict = newObject(.dict)
                    try setItems(dict, items, at: at)
                    push(dict)
                }
            case 0x61:  // APPEND
                let value = try pop()
                try object(try top(), ["list"], for: "APPEND").items.append(value)
            case 0x65:  // APPENDS
                let items = try popMark()
                try object(try top(), ["list"], for: "APPENDS").items += items
            case 0x90:  // ADDITEMS
                let items = try popMark()
                try object(try top(), ["set"], for: "ADDITEMS").items += items
            case 0x73:  // SETITEM
                let value = try pop(), key = try pop()
                try setItems(try top(), [key, value], at: at)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("corrupt pickle: SETITEMS at byte \(at) with an odd number of items") }
                try setItems(try top(), items, at: at)
            case 0x71: try memoize(Int(try byte()))  // BINPUT
            case 0x72: try memoize(Int(try take(4).u32(0)))  // LONG_BINPUT
            case 0x94: try memoize(memo.count)  // MEMOIZE
            case 0x68: try recall(Int(try byte()))  // BINGET
            case 0x6A: try recall(Int(try take(4).u32(0)))  // LONG_BINGET
            case 0x63:  // GLOBAL
                let module = try line(), name = try line()
                push(.global(try TorchGlobal.named(module: module, name: name, source: source)))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else {
                    throw fail("corrupt pickle: STACK_GLOBAL at byte \(at) without two strings")
                }
                push(.global(try TorchGlobal.named(module: m, name: n, source: source)))
            case 0x51:  // BINPERSID
                push(try persistentLoad(try pop()))
            case 0x52:  // REDUCE
                let arguments = try pop(), callable = try pop()
                push(try reduce(callable, arguments, at: at))
            case 0x81:  // NEWOBJ: only an OrderedDict, made empty
                let arguments = try pop(), type = try pop()
                guard case .global(.orderedDict) = type, case .tuple(let t) = arguments, t.items.isEmpty else {
                    throw fail("refused: NEWOBJ at byte \(at) makes a \(type.kindName); a state_dict needs none")
                }
                push(newObject(.dict))
            case 0x62:  // BUILD: sets attributes (an OrderedDict's _metadata); they are not needed
                let state = try pop()
                switch try top() {
                case .dict, .tensor: _ = state
                case let other: throw fail("refused: BUILD at byte \(at) sets the state of a \(other.kindName)")
                }
            default:
                throw fail(Self.refusal(op, at: at))
            }
        }
    }

    private func setItems(_ target: PickleValue, _ items: [PickleValue], at: Int) throws {
        let dict = try object(target, ["dict"], for: "SETITEMS")
        var i = 0
        while i + 1 < items.count {
            dict.pairs.append((items[i], items[i + 1]))
            i += 2
        }
    }

    /// What an opcode outside the accepted set is, as a refusal.
    static func refusal(_ op: UInt8, at: Int) -> String {
        let named: [UInt8: String] = [0x69: "INST", 0x6F: "OBJ", 0x92: "NEWOBJ_EX", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                                      0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER", 0x50: "PERSID", 0x49: "INT", 0x4C: "LONG",
                                      0x46: "FLOAT", 0x53: "STRING", 0x56: "UNICODE", 0x67: "GET", 0x70: "PUT"]
        let hex = String(op, radix: 16)
        if let name = named[op] {
            return "refused: pickle opcode \(name) (0x\(hex)) at byte \(at) is not one torch.save writes for a state_dict; nothing was run"
        }
        return "corrupt pickle: unknown opcode 0x\(hex) at byte \(at)"
    }

    /// REDUCE: a call of one of the known globals on a tuple of arguments.
    private func reduce(_ callable: PickleValue, _ arguments: PickleValue, at: Int) throws -> PickleValue {
        guard case .global(let function) = callable, case .tuple(let tuple) = arguments else {
            throw fail("corrupt pickle: REDUCE at byte \(at) calls a \(callable.kindName) on a \(arguments.kindName)")
        }
        let args = tuple.items
        switch function {
        case .orderedDict:
            guard args.isEmpty else { throw fail("refused: REDUCE at byte \(at) calls OrderedDict with arguments") }
            return newObject(.dict)
        case .rebuildTensorV2, .rebuildTensor:
            guard args.count >= 4 else { throw fail("corrupt pickle: \(function.name) at byte \(at) with \(args.count) arguments") }
            return .tensor(try TorchTensorRef(storage: args[0], offset: args[1], size: args[2], stride: args[3],
                                              fail: { self.fail("\(function.name) at byte \(at): \($0)") }))
        case .rebuildParameter, .rebuildParameterWithState:
            guard let data = args.first, case .tensor = data else {
                throw fail("corrupt pickle: \(function.name) at byte \(at) without a tensor")
            }
            return data
        case .storage:
            throw fail("refused: REDUCE at byte \(at) calls \(function.name); a storage is only named by a persistent id")
        }
    }
}

/// A value of a restricted pickle.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int64)
    /// An integer of more than 8 bytes, little-endian two's complement (torch's magic number).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case list(PickleReader.Object)
    case tuple(PickleReader.Object)
    case set(PickleReader.Object)
    case dict(PickleReader.Object)
    case global(TorchGlobal)
    case storage(TorchStorageRef)
    case tensor(TorchTensorRef)

    /// How a message names the kind of value.
    var kindName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .list: return "list"
        case .tuple: return "tuple"
        case .set: return "set"
        case .dict: return "dict"
        case .global(let g): return g.name
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    var integer: Int? {
        if case .int(let v) = self { return Int(v) }
        return nil
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
}
