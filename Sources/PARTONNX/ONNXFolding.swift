import PARTEngine

/// Constant folding at load time: Constant nodes, the shape arithmetic exporters write
/// (Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape, ConstantOfShape and
/// Transpose of constants: `F.pad` exports its padding as such a chain) and
/// elementwise Add/Sub/Mul/Div of constants. The graph's activations keep a fixed shape except
/// their batch, so every shape is known here.
struct ConstantFolder {
    var constants: [String: ONNXConstant]
    let source: String
    /// The input's batch size when the file fixes it.
    var batch: Int?

    /// Stands for the input's batch size in folded shapes when the file leaves it open; any
    /// arithmetic on it is refused.
    static let batchMarker: Int64 = -(1 << 40)

    init(constants: [String: ONNXConstant], source: String) {
        self.constants = constants
        self.source = source
    }

    /// The node's outputs when they are known at load time, nil when the node is to be run.
    func fold(_ node: Onnx_NodeProto, inputs: [String], kinds: [String: ValueKind],
              refuse: (String) -> ONNXError) throws -> [ONNXConstant]? {
        func constant(_ i: Int) -> ONNXConstant? { i < inputs.count && !inputs[i].isEmpty ? constants[inputs[i]] : nil }
        func ints(_ i: Int) throws -> [Int64] {
            guard let c = constant(i), let v = c.integers else { throw refuse("its input \(i) must be a constant integer tensor") }
            return v
        }
        func vector(_ values: [Int64]) -> ONNXConstant {
            ONNXConstant(shape: [values.count], values: .integer(values))
        }
        switch node.opType {
        case "Constant":
            if let t = node.attribute.first(where: { $0.name == "value" && $0.hasT })?.t {
                return [try ONNXModel.constant(t, source: source)]
            }
            if let f = node.float("value_float") { return [ONNXConstant(shape: [], values: .float([f]))] }
            if let fs = node.attribute.first(where: { $0.name == "value_floats" })?.floats {
                return [ONNXConstant(shape: [fs.count], values: .float(fs))]
            }
            if let i = node.attribute.first(where: { $0.name == "value_int" && $0.hasI })?.i {
                return [ONNXConstant(shape: [], values: .integer([i]))]
            }
            if let v = node.attribute.first(where: { $0.name == "value_ints" })?.ints {
                return [ONNXConstant(shape: [v.count], values: .integer(v))]
            }
            throw refuse("a Constant without a tensor, float or int value")
        case "Identity", "Dropout":
            return constant(0).map { [$0] }
        case "Shape":
            var dims: [Int64]
            if let kind = inputs.first.flatMap({ kinds[$0] }) {
                let n = batch.map(Int64.init) ?? ConstantFolder.batchMarker
                switch kind {
                case .image(let c, let h, let w): dims = [n, Int64(c), Int64(h), Int64(w)]
                case .matrix(let k): dims = [n, Int64(k)]
                }
            } else if let c = constant(0) {
                dims = c.shape.map(Int64.init)
            } else {
                return nil
            }
            let rank = dims.count
            func clamp(_ v: Int) -> Int { min(max(v < 0 ? v + rank : v, 0), rank) }
            let start = clamp(node.int("start") ?? 0), end = clamp(node.int("end") ?? rank)
            dims = start < end ? Array(dims[start..<end]) : []
            return [ONNXConstant(shape: [dims.count], values: .integer(dims))]
        case "Gather":
            guard let data = constant(0), data.shape.count == 1, (node.int("axis") ?? 0) == 0 else { return nil }
            let indices = try ints(1), n = data.count
            let values: [Int64]
            switch data.values {
            case .integer(let v):
                values = try indices.map { i in
                    guard i >= -Int64(n) && i < Int64(n) else { throw refuse("index \(i) out of range for \(n) values") }
                    return v[Int(i < 0 ? i + Int64(n) : i)]
                }
            case .float: return nil
            }
            return [ONNXConstant(shape: constant(1)!.shape, values: .integer(values))]
        case "Unsqueeze", "Squeeze":
            guard let data = constant(0) else { return nil }
            let axes = try node.ints("axes") ?? (constant(1) == nil ? [] : ints(1).map(Int.init))
            var shape = data.shape
            if node.opType == "Unsqueeze" {
                let rank = shape.count + axes.count
                for a in axes.map({ $0 < 0 ? $0 + rank : $0 }).sorted() {
                    guard a >= 0 && a <= shape.count else { throw refuse("axis \(a) out of range") }
                    shape.insert(1, at: a)
                }
            } else {
                let rank = shape.count
                let drop = Set(axes.map { $0 < 0 ? $0 + rank : $0 })
                guard drop.allSatisfy({ $0 >= 0 && $0 < rank && shape[$0] == 1 }) else {
                    throw refuse("axes \(axes) of a tensor of shape \(shape), not all of size 1")
                }
                shape = shape.enumerated().filter { axes.isEmpty ? $0.element != 1 : !drop.contains($0.offset) }.map(\.element)
            }
            return [ONNXConstant(shape: shape, values: data.values)]
        case "Concat":
            var values = [Int64]()
            for i in inputs.indices {
                guard let c = constant(i), c.shape.count <= 1, let v = c.integers else { return nil }
                values += v
            }
            return [vector(values)]
        case "Slice":
            guard let data = constant(0), !data.shape.isEmpty else { return nil }
            let starts = try ints(1), ends = try ints(2), rank = data.shape.count
            let axes = constant(3) == nil ? (0..<Int64(starts.count)).map { $0 } : try ints(3)
            let steps = constant(4) == nil ? [Int64](repeating: 1, count: starts.count) : try ints(4)
            guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count,
                  axes.allSatisfy({ $0 >= -Int64(rank) && $0 < Int64(rank) }), !steps.contains(0) else {
                throw refuse("a slice of a constant of shape \(data.shape) by \(starts), \(ends), \(axes), \(steps)")
            }
            // The indices kept along each axis (ONNX's clamping, negative steps included).
            var kept = data.shape.map { Array(0..<$0) }
            for (i, axis) in axes.enumerated() {
                let a = Int(axis < 0 ? axis + Int64(rank) : axis), n = Int64(data.shape[a]), step = steps[i]
                func clamp(_ x: Int64, _ low: Int64, _ high: Int64) -> Int64 { min(max(x < 0 ? x + n : x, low), high) }
                var index = step > 0 ? clamp(starts[i], 0, n) : clamp(starts[i], -1, n - 1)
                let end = step > 0 ? clamp(ends[i], 0, n) : clamp(ends[i], -1, n - 1)
                var indices = [Int]()
                while step > 0 ? index < end : index > end {
                    indices.append(Int(index))
                    index += step
                }
                kept[a] = indices
            }
            return [data.gathered(kept)]
        case "Transpose":
            guard let data = constant(0) else { return nil }
            let rank = data.shape.count
            let perm = node.ints("perm") ?? Array((0..<rank).reversed())
            guard perm.count == rank, Set(perm) == Set(0..<rank) else { throw refuse("perm \(perm) for rank \(rank)") }
            return [data.transposed(perm)]
        case "ConstantOfShape":
            let shape = try ints(0)
            guard shape.allSatisfy({ $0 >= 0 }), let n = product(shape.map(Int.init)), n <= 1 << 24 else {
                throw refuse("a shape of \(shape)")
            }
            let fill = try node.attribute.first(where: { $0.name == "value" && $0.hasT })
                .map { try ONNXModel.constant($0.t, source: source) } ?? ONNXConstant(shape: [1], values: .float([0]))
            guard fill.count == 1 else { throw refuse("a value of shape \(fill.shape)") }
            let values: ONNXConstant.Values
            switch fill.values {
            case .float(let v): values = .float([Float](repeating: v[0], count: n))
            case .integer(let v): values = .integer([Int64](repeating: v[0], count: n))
            }
            return [ONNXConstant(shape: shape.map(Int.init), values: values)]
        case "Cast":
            guard let data = constant(0) else { return nil }
            switch node.int("to") {
            case 6, 7:
                let values = try data.integers ?? data.floats.map { f in
                    guard let i = Int64(exactly: f.rounded(.towardZero)) else { throw refuse("a cast of \(f) to an integer") }
                    return i
                }
                return [ONNXConstant(shape: data.shape, values: .integer(values))]
            case 1, 10, 11: return [ONNXConstant(shape: data.shape, values: .float(data.floats))]
            default: throw refuse("a cast to ONNX type \(node.int("to") ?? 0), which is not folded")
            }
        case "Reshape":
            guard let data = constant(0) else { return nil }
            let target = try ints(1)
            var shape = target.enumerated().map { i, d in d == 0 && i < data.shape.count ? data.shape[i] : Int(d) }
            if let unknown = shape.firstIndex(of: -1) {
                let known = product(shape.enumerated().filter { $0.offset != unknown }.map(\.element))
                guard let known, known > 0 else { throw refuse("a reshape of \(data.shape) to \(target)") }
                shape[unknown] = data.count / known
            }
            guard shape.allSatisfy({ $0 >= 0 }), product(shape) == data.count else {
                throw refuse("a reshape of \(data.shape) to \(target)")
            }
            return [ONNXConstant(shape: shape, values: data.values)]
        case "Add", "Sub", "Mul", "Div":
            guard let a = constant(0), let b = constant(1) else { return nil }
            guard a.shape == b.shape || a.count == 1 || b.count == 1 else {
                throw refuse("constants of shapes \(a.shape) and \(b.shape), which are not folded")
            }
            let shape = a.count >= b.count ? a.shape : b.shape
            let n = max(a.count, b.count)
            if let x = a.integers, let y = b.integers {
                guard !(x + y).contains(ConstantFolder.batchMarker) else {
                    throw refuse("arithmetic on the batch size, which the file leaves open; export the model with "
                                 + "`flatten(1)` or a fixed batch size")
                }
                let values: [Int64] = try (0..<n).map { i in
                    let p = x[x.count == 1 ? 0 : i], q = y[y.count == 1 ? 0 : i]
                    switch node.opType {
                    case "Add": return p &+ q
                    case "Sub": return p &- q
                    case "Mul": return p &* q
                    default:
                        let (r, overflow) = p.dividedReportingOverflow(by: q)
                        guard !overflow else { throw refuse("a division of \(p) by \(q)") }
                        return r
                    }
                }
                return [ONNXConstant(shape: shape, values: .integer(values))]
            }
            let x = a.floats, y = b.floats
            let values: [Float] = (0..<n).map { i in
                let p = x[x.count == 1 ? 0 : i], q = y[y.count == 1 ? 0 : i]
                switch node.opType {
                case "Add": return p + q
                case "Sub": return p - q
                case "Mul": return p * q
                default: return p / q
                }
            }
            return [ONNXConstant(shape: shape, values: .float(values))]
        default:
            return nil
        }
    }
}

extension ONNXConstant {
    /// The elements at `indices[axis]` along each axis, in row-major order.
    func gathered(_ indices: [[Int]]) -> ONNXConstant {
        var strides = [Int](repeating: 1, count: shape.count)
        for i in shape.indices.dropLast().reversed() { strides[i] = strides[i + 1] * shape[i + 1] }
        var offsets = [0]
        for (axis, kept) in indices.enumerated() {
            offsets = offsets.flatMap { o in kept.map { o + $0 * strides[axis] } }
        }
        let newShape = indices.map(\.count)
        switch values {
        case .float(let v): return ONNXConstant(shape: newShape, values: .float(offsets.map { v[$0] }))
        case .integer(let v): return ONNXConstant(shape: newShape, values: .integer(offsets.map { v[$0] }))
        }
    }

    /// The tensor with its axes in the order `perm`.
    func transposed(_ perm: [Int]) -> ONNXConstant {
        var strides = [Int](repeating: 1, count: shape.count)
        for i in shape.indices.dropLast().reversed() { strides[i] = strides[i + 1] * shape[i + 1] }
        var offsets = [0]
        for axis in perm {
            offsets = offsets.flatMap { o in (0..<shape[axis]).map { o + $0 * strides[axis] } }
        }
        let newShape = perm.map { shape[$0] }
        switch values {
        case .float(let v): return ONNXConstant(shape: newShape, values: .float(offsets.map { v[$0] }))
        case .integer(let v): return ONNXConstant(shape: newShape, values: .integer(offsets.map { v[$0] }))
        }
    }
}

/// The product of non-negative sizes, nil when one is negative or it overflows.
func product(_ sizes: [Int]) -> Int? {
    var result = 1
    for s in sizes {
        guard s >= 0 else { return nil }
        let (p, overflow) = result.multipliedReportingOverflow(by: s)
        if overflow { return nil }
        result = p
    }
    return result
}

extension Onnx_NodeProto {
    func attribute(_ name: String) -> Onnx_AttributeProto? { attribute.first { $0.name == name } }

    func int(_ name: String) -> Int? {
        attribute(name).flatMap { $0.hasI ? Int(clamping: $0.i) : nil }
    }

    func ints(_ name: String) -> [Int]? {
        attribute(name).map { $0.ints.map { Int(clamping: $0) } }
    }

    func float(_ name: String) -> Float? {
        attribute(name).flatMap { $0.hasF ? $0.f : nil }
    }

    func string(_ name: String) -> String? {
        attribute(name).flatMap { $0.hasS ? String(decoding: $0.s, as: UTF8.self) : nil }
    }
}
