import PARTEngine
import PARTNN

/// Makes the engine layer of one ONNX node from its attributes and constant inputs (weights),
/// with the kind of activation it outputs.
struct LayerBuilder {
    var folder: ConstantFolder
    /// Layers are made with an initialisation and then given the file's weights.
    private var rng = RNG(seed: 0)

    init(folder: ConstantFolder) { self.folder = folder }

    mutating func layer(_ node: Onnx_NodeProto, kind: ValueKind, inputs: [String],
                        refuse: (String) -> ONNXError) throws -> (Layer, ValueKind) {
        func constant(_ i: Int, _ what: String) throws -> ONNXConstant {
            guard i < inputs.count, let c = folder.constants[inputs[i]] else {
                throw refuse("its \(what) must be a constant (an initializer)")
            }
            return c
        }
        func optionalConstant(_ i: Int, _ what: String) throws -> ONNXConstant? {
            i < inputs.count && !inputs[i].isEmpty ? try constant(i, what) : nil
        }
        func image() throws -> (c: Int, h: Int, w: Int) {
            guard case .image(let c, let h, let w) = kind else { throw refuse("its input is not an image [N, C, H, W]") }
            return (c, h, w)
        }
        func matrix() throws -> Int {
            guard case .matrix(let k) = kind else { throw refuse("its input is not a matrix [N, K]; flatten it first") }
            return k
        }
        switch node.opType {
        case "Conv":
            let (c, h, w) = try image()
            let weight = try constant(1, "weight")
            guard weight.shape.count == 4 else { throw refuse("a weight of shape \(weight.shape); 2-D convolutions are run") }
            let (out, perGroup, k) = (weight.shape[0], weight.shape[1], weight.shape[2])
            let groups = node.int("group") ?? 1
            guard groups > 0, perGroup * groups == c, out % groups == 0, weight.shape[3] == k, k > 0, out > 0 else {
                throw refuse("a weight of shape \(weight.shape) for \(c) input channels in \(groups) groups; square "
                             + "kernels are run")
            }
            let strides = node.ints("strides") ?? [1, 1], dilations = node.ints("dilations") ?? [1, 1]
            let pads = node.ints("pads") ?? [0, 0, 0, 0]
            let autoPad = node.string("auto_pad") ?? "NOTSET"
            guard autoPad == "NOTSET" || (autoPad == "VALID" && pads.allSatisfy { $0 == 0 }) else {
                throw refuse("auto_pad \(autoPad) is not run yet; export with explicit padding")
            }
            guard strides.count == 2, strides[0] == strides[1], strides[0] > 0, strides[0] <= 64 else {
                throw refuse("strides \(strides); equal strides are run")
            }
            guard dilations.count == 2, dilations[0] == dilations[1], dilations[0] > 0, dilations[0] <= 64 else {
                throw refuse("dilations \(dilations); equal dilations are run")
            }
            let extent = (k - 1) * dilations[0] + 1
            guard pads.count == 4, pads[0] == pads[1], pads[2] == pads[3], pads.allSatisfy({ $0 >= 0 && $0 < extent }) else {
                throw refuse("pads \(pads); the same padding at the top and left, and at the bottom and right, are run")
            }
            let stride = strides[0]
            guard h + pads[0] + pads[2] >= extent, w + pads[1] + pads[3] >= extent else {
                throw refuse("a \(extent)x\(extent) window on a \(h)x\(w) image")
            }
            let outH = (h + pads[0] + pads[2] - extent) / stride + 1, outW = (w + pads[1] + pads[3] - extent) / stride + 1
            let bias = try optionalConstant(2, "bias")
            guard bias == nil || bias!.count == out else { throw refuse("a bias of shape \(bias!.shape) for \(out) channels") }
            let conv = Conv2d(c, out, kernel: k, stride: stride, padding: pads[0], paddingEnd: pads[2], groups: groups,
                              dilation: dilations[0], bias: bias != nil, rng: &rng)
            conv.weight.assign(Tensor(shape: weight.shape, values: weight.floats))
            if let bias { conv.bias?.assign(Tensor(shape: [out], values: bias.floats)) }
            return (conv, .image(channels: out, height: outH, width: outW))
        case "BatchNormalization":
            let c: Int
            switch kind {
            case .image(let channels, _, _): c = channels
            case .matrix(let features): c = features
            }
            let parts = try ["scale", "bias", "mean", "variance"].enumerated().map { i, what in
                let t = try constant(i + 1, what)
                guard t.count == c else { throw refuse("its \(what) has \(t.count) values for \(c) channels") }
                return Tensor(shape: [c], values: t.floats)
            }
            // The training form (`training_mode` 1, PyTorch's TrainingMode.TRAINING export) also
            // outputs the updated running statistics; nothing may read them, as every later node
            // must read activations. Either form is the engine's batch norm: batch statistics in
            // training passes, the running ones in evaluation passes.
            let epsilon = node.float("epsilon") ?? 1e-5, momentum = node.float("momentum") ?? 0.9
            guard epsilon > 0, epsilon.isFinite, momentum >= 0, momentum <= 1 else {
                throw refuse("epsilon \(epsilon) and momentum \(momentum)")
            }
            // ONNX keeps `momentum` of the running statistics; PyTorch's momentum is of the batch's.
            let bn = BatchNorm2d(c, momentum: 1 - momentum, epsilon: epsilon)
            bn.weight.assign(parts[0])
            bn.bias.assign(parts[1])
            bn.runningMean.value = parts[2]
            bn.runningVar.value = parts[3]
            if case .matrix = kind { return (FeatureBatchNorm(bn), kind) }
            return (bn, kind)
        case "Relu":
            return (ReLULayer(), kind)
        case "Sigmoid", "Tanh", "Softplus", "LeakyRelu", "Elu", "Clip", "HardSwish", "Gelu":
            return (EltwiseLayer(try eltwise(node, inputs: inputs, refuse: refuse)), kind)
        case "Erf":
            return (ErfLayer(), kind)
        case "Softmax", "LogSoftmax":
            _ = try matrix()
            // Opset 13 on: one axis, default the last; before: the axes from `axis` (default 1) on,
            // which on [N, K] is the same.
            guard [1, -1].contains(node.int("axis") ?? -1) else { throw refuse("only the features axis of [N, K] is run") }
            return (SoftmaxLayer(logarithm: node.opType == "LogSoftmax"), kind)
        case "HardSigmoid":
            // max(0, min(1, alpha x + beta)): a line, then the clip (its gradient passes strictly inside).
            let line = Eltwise.linear(scale: node.float("alpha") ?? 0.2, shift: node.float("beta") ?? 0.5)
            return (Sequential([EltwiseLayer(line), EltwiseLayer(.clip(low: 0, high: 1))]), kind)
        case "MaxPool", "AveragePool":
            let (c, h, w) = try image()
            let kernel = node.ints("kernel_shape") ?? [], strides = node.ints("strides") ?? [1, 1]
            let pads = node.ints("pads") ?? [0, 0, 0, 0]
            guard kernel.count == 2, kernel[0] == kernel[1], kernel[0] > 0, strides.count == 2, strides[0] == strides[1],
                  strides[0] > 0, pads.count == 4, pads[0] == pads[1], pads[2] == pads[3],
                  pads.allSatisfy({ $0 >= 0 && $0 < kernel[0] }), h + pads[0] + pads[2] >= kernel[0],
                  w + pads[1] + pads[3] >= kernel[0] else {
                throw refuse("kernel \(kernel), strides \(strides) and pads \(pads) on a \(h)x\(w) image; square "
                             + "windows with equal strides and the same padding at the top and left, and at the "
                             + "bottom and right, are run")
            }
            let (k, stride) = (kernel[0], strides[0])
            let outH = (h + pads[0] + pads[2] - k) / stride + 1, outW = (w + pads[1] + pads[3] - k) / stride + 1
            // ceil_mode changes nothing when the windows fit exactly.
            let exact = (h + pads[0] + pads[2] - k) % stride == 0 && (w + pads[1] + pads[3] - k) % stride == 0
            guard (node.ints("dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }), (node.string("auto_pad") ?? "NOTSET") == "NOTSET",
                  (node.int("ceil_mode") ?? 0) == 0 || exact, node.output.count == 1 || node.output[1].isEmpty,
                  (node.int("storage_order") ?? 0) == 0 else {
                throw refuse("dilations, auto_pad, ceil_mode that adds a window, or the indices output")
            }
            let outKind = ValueKind.image(channels: c, height: outH, width: outW)
            if node.opType == "MaxPool" {
                if stride == k && pads.allSatisfy({ $0 == 0 }) { return (MaxPool2d(kernel: k, channels: c), outKind) }
                return (WindowPool(Pooling(kernel: k, channels: c, stride: stride, padding: pads[0], paddingEnd: pads[2])),
                        outKind)
            }
            if k == h, k == w, pads.allSatisfy({ $0 == 0 }) { return (ImagePool(), outKind) }
            let including = (node.int("count_include_pad") ?? 0) != 0
            return (WindowPool(Pooling(kernel: k, channels: c, stride: stride, padding: pads[0], paddingEnd: pads[2],
                                       kind: .average(includingPadding: including))), outKind)
        case "ReduceMean":
            // The mean over the height and width (`x.mean((2, 3))`): axes from the attribute, or
            // from the second input since opset 18.
            let (c, _, _) = try image()
            let axes = try node.ints("axes") ?? optionalConstant(1, "axes")?.integers.map { $0.map(Int.init) }
            guard let axes, Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3] else {
                throw refuse("only the mean over the height and width (axes 2 and 3) is run")
            }
            if (node.int("keepdims") ?? 1) != 0 { return (ImagePool(), .image(channels: c, height: 1, width: 1)) }
            return (GlobalAvgPool(), .matrix(features: c))
        case "GlobalAveragePool":
            let (c, _, _) = try image()
            return (ImagePool(), .image(channels: c, height: 1, width: 1))
        case "Add", "Sub", "Mul", "Div", "Pow":
            guard inputs.count == 2 else { throw refuse("\(inputs.count) inputs") }
            let activationFirst = folder.constants[inputs[0]] == nil
            let c = try constant(activationFirst ? 1 : 0, "other operand")
            guard activationFirst || node.opType != "Pow" else { throw refuse("only a power with a constant exponent is run") }
            guard let values = perExample(c, kind) else {
                throw refuse("a constant of shape \(c.shape), which does not broadcast to one example of the activation")
            }
            let op: ConstantOperand.Op = node.opType == "Pow"
                ? .power : .arithmetic(Arithmetic(rawValue: node.opType)!, constantFirst: !activationFirst)
            return (ConstantOperand(op, constant: values), kind)
        case "Pad":
            let (c, h, w) = try image()
            guard (node.string("mode") ?? "constant") == "constant" else { throw refuse("only constant padding is run") }
            var pads = try optionalConstant(1, "pads").map { p -> [Int] in
                guard let v = p.integers else { throw refuse("pads that are not integers") }
                return v.map { Int(clamping: $0) }
            } ?? node.ints("pads") ?? []
            if let axes = try optionalConstant(3, "axes") {   // opset 18: pads of these axes only
                guard let a = axes.integers, pads.count == 2 * a.count,
                      a.allSatisfy({ $0 >= -4 && $0 < 4 }), Set(a.map { ($0 + 4) % 4 }).count == a.count else {
                    throw refuse("axes \(axes.integers ?? []) for pads \(pads)")
                }
                var all = [Int](repeating: 0, count: 8)
                for (i, axis) in a.enumerated() {
                    all[Int(axis + 4) % 4] = pads[i]
                    all[Int(axis + 4) % 4 + 4] = pads[i + a.count]
                }
                pads = all
            }
            guard pads.count == 8, pads[0] == 0, pads[1] == 0, pads[4] == 0, pads[5] == 0,
                  pads.allSatisfy({ $0 >= 0 && $0 <= Limits.imageSide }) else {
                throw refuse("pads \(pads); padding of the height and width by non-negative amounts is run")
            }
            let value = try optionalConstant(2, "value")
            guard value == nil || value!.count == 1 else { throw refuse("a padding value of shape \(value!.shape)") }
            return (ImagePad(top: pads[2], left: pads[3], bottom: pads[6], right: pads[7], value: value?.floats[0] ?? 0),
                    .image(channels: c, height: h + pads[2] + pads[6], width: w + pads[3] + pads[7]))
        case "Transpose":
            let dims: [Int]
            switch kind {
            case .image(let c, let h, let w): dims = [0, c, h, w]
            case .matrix(let k): dims = [0, k]
            }
            let perm = node.ints("perm") ?? Array(dims.indices.reversed())
            // The batch (counted as 0 above) and every axis longer than 1 keep their order.
            let moved = perm.filter { $0 >= 0 && $0 < dims.count && dims[$0] != 1 }
            guard perm.count == dims.count, Set(perm).count == dims.count, perm.map({ $0 >= 0 && $0 < dims.count ? dims[$0] : -1 }) == dims,
                  moved == moved.sorted() else {
                throw refuse("perm \(perm) moves the data; only a transpose that leaves it in place is run")
            }
            return (PassThrough(), kind)
        case "Flatten", "Reshape":
            let features: Int
            switch kind {
            case .image(let c, let h, let w): features = c * h * w
            case .matrix(let k): features = k
            }
            if node.opType == "Flatten" {
                guard (node.int("axis") ?? 1) == 1 else { throw refuse("only flattening at axis 1 is run") }
            } else {
                let target = try constant(1, "shape")
                guard let dims = target.integers, dims.count == 2,
                      [0, -1, ConstantFolder.batchMarker].contains(dims[0]) || dims[0] == folder.batch.map(Int64.init),
                      dims[1] == Int64(features) || (dims[1] == -1 && dims[0] != -1) else {
                    throw refuse("only a reshape to [N, \(features)] is run so far (target \(target.integers ?? []))")
                }
            }
            if case .matrix = kind { return (PassThrough(), kind) }
            return (Flatten(), .matrix(features: features))
        case "Gemm", "MatMul":
            let k = try matrix()
            let b = try constant(1, "weight")
            guard b.shape.count == 2, (node.int("transA") ?? 0) == 0 else { throw refuse("a weight of shape \(b.shape)") }
            let transposed = node.opType == "Gemm" && (node.int("transB") ?? 0) == 1
            let (rows, cols) = transposed ? (b.shape[1], b.shape[0]) : (b.shape[0], b.shape[1])
            guard rows == k, cols > 0 else { throw refuse("a weight of shape \(b.shape) for \(k) features") }
            let alpha = node.float("alpha") ?? 1, beta = node.float("beta") ?? 1
            var weight = b.floats
            if !transposed {   // [in, out] to the layer's [out, in]
                let source = weight
                weight = (0..<(rows * cols)).map { i in source[(i % rows) * cols + i / rows] }
            }
            let c = node.opType == "Gemm" ? try optionalConstant(2, "bias") : nil
            guard c == nil || c!.count == cols || c!.count == 1 else { throw refuse("a bias of shape \(c!.shape)") }
            let bias = c.map { c in (0..<cols).map { beta * c.floats[c.count == 1 ? 0 : $0] } } ?? [Float](repeating: 0, count: cols)
            let linear = Linear(k, cols, rng: &rng)
            linear.weight.assign(Tensor(shape: [cols, k], values: weight.map { alpha * $0 }))
            linear.bias.assign(Tensor(shape: [cols], values: bias))
            return (linear, .matrix(features: cols))
        default:
            throw refuse("the engine does not run this op yet (docs/commands.md#onnx-models lists what it runs)")
        }
    }
}

extension LayerBuilder {
    /// The engine's element-wise function for an activation node: Clip's bounds are constants
    /// (inputs since opset 11, attributes before), an open bound the largest float.
    func eltwise(_ node: Onnx_NodeProto, inputs: [String], refuse: (String) -> ONNXError) throws -> Eltwise {
        switch node.opType {
        case "Sigmoid": return .sigmoid
        case "Tanh": return .tanh
        case "Softplus": return .softplus
        case "LeakyRelu": return .leakyReLU(slope: node.float("alpha") ?? 0.01)
        case "Elu": return .elu(alpha: node.float("alpha") ?? 1)
        case "HardSwish": return .hardswish
        case "Gelu":
            switch node.string("approximate") ?? "none" {
            case "none": return .gelu
            case "tanh": return .geluTanh
            case let other: throw refuse("approximate '\(other)' (none and tanh are run)")
            }
        default:
            func bound(_ i: Int, _ attribute: String, _ open: Float) throws -> Float {
                guard i < inputs.count, !inputs[i].isEmpty else { return node.float(attribute) ?? open }
                guard let c = folder.constants[inputs[i]], c.count == 1 else {
                    throw refuse("its \(attribute) must be a constant scalar")
                }
                return c.floats[0]
            }
            let low = try bound(1, "min", -.greatestFiniteMagnitude), high = try bound(2, "max", .greatestFiniteMagnitude)
            guard low.isFinite, high.isFinite, low <= high else { throw refuse("bounds \(low) and \(high)") }
            return .clip(low: low, high: high)
        }
    }
}

/// The values of a constant broadcast to one example of an activation of `kind` (ONNX's
/// broadcasting, without the batch), in the engine's order (NHWC for images); nil when it
/// does not broadcast so.
func perExample(_ c: ONNXConstant, _ kind: ValueKind) -> [Float]? {
    let target: [Int]
    switch kind {
    case .image(let channels, let h, let w): target = [1, channels, h, w]
    case .matrix(let k): target = [1, k]
    }
    guard c.shape.count <= target.count, c.count > 0 else { return nil }
    let shape = [Int](repeating: 1, count: target.count - c.shape.count) + c.shape
    guard zip(shape, target).allSatisfy({ $0 == 1 || $0 == $1 }) else { return nil }
    // Strides of the constant, 0 along broadcast axes.
    var strides = [Int](repeating: 0, count: shape.count), step = 1
    for i in shape.indices.reversed() {
        strides[i] = shape[i] == 1 ? 0 : step
        step *= shape[i]
    }
    let v = c.floats
    guard case .image(let channels, let h, let w) = kind else { return (0..<target[1]).map { v[$0 * strides[1]] } }
    var out = [Float](repeating: 0, count: channels * h * w)
    for y in 0..<h {
        for x in 0..<w {
            for k in 0..<channels { out[(y * w + x) * channels + k] = v[k * strides[1] + y * strides[2] + x * strides[3]] }
        }
    }
    return out
}

/// The kind of the concatenation of activations of `kinds` along `axis`: images of one size
/// along their channels, or features; nil otherwise.
func concatenated(_ kinds: [ValueKind], axis: Int) -> ValueKind? {
    var images = [Int](), features = [Int](), size: (Int, Int)?
    for kind in kinds {
        switch kind {
        case .image(let c, let h, let w):
            guard size == nil || size! == (h, w) else { return nil }
            size = (h, w)
            images.append(c)
        case .matrix(let k): features.append(k)
        }
    }
    if let size, images.count == kinds.count, axis == 1 || axis == -3 {
        return .image(channels: images.reduce(0, +), height: size.0, width: size.1)
    }
    if features.count == kinds.count, axis == 1 || axis == -1 { return .matrix(features: features.reduce(0, +)) }
    return nil
}

/// Global average pooling that keeps ONNX's [N, C, 1, 1]: NHWC [N, 1, 1, C] in the engine.
final class ImagePool: Layer {
    private let pool = GlobalAvgPool()

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let n = x.shape[0], c = x.shape[3]
        let inner = tape?.branch()
        let y = try pool.forward(x, mode: mode, tape: inner)
        if let tape, let inner {
            tape.record { dy in try inner.backward(dy.reshaped([n, c])) }
        }
        return y.reshaped([n, 1, 1, c])
    }
}

/// A reshape that changes nothing in the engine's layout ([N, K] to [N, K]).
final class PassThrough: Layer {
    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        tape?.record { $0 }
        return x
    }
}

/// Batch norm of features [N, K] (a `BatchNorm1d` in a classifier head): the engine's batch norm
/// of [N, 1, 1, K], which normalises over the batch alike. Its state is the batch norm's.
final class FeatureBatchNorm: Layer {
    let bn: BatchNorm2d

    init(_ bn: BatchNorm2d) { self.bn = bn }

    var state: [(String, StateEntry)] { bn.state }

    func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let (n, k) = (x.shape[0], x.shape[1])
        let inner = tape?.branch()
        let y = try bn.forward(x.reshaped([n, 1, 1, k]), mode: mode, tape: inner)
        if let tape, let inner {
            tape.record { dy in try inner.backward(dy.reshaped([n, 1, 1, k])).reshaped([n, k]) }
        }
        return y.reshaped([n, k])
    }
}
