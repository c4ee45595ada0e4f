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
            guard (node.int("group") ?? 1) == 1 else { throw refuse("grouped convolutions are not run yet") }
            guard perGroup == c, weight.shape[3] == k, k > 0, out > 0 else {
                throw refuse("a weight of shape \(weight.shape) for \(c) input channels; square kernels are run")
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
            guard dilations.allSatisfy({ $0 == 1 }) else { throw refuse("dilated convolutions are not run yet") }
            guard pads.count == 4, pads[0] == pads[1], pads[2] == pads[3], pads.allSatisfy({ $0 >= 0 && $0 < k }) else {
                throw refuse("pads \(pads); the same padding at the top and left, and at the bottom and right, are run")
            }
            let stride = strides[0]
            let outH = (h + pads[0] + pads[2] - k) / stride + 1, outW = (w + pads[1] + pads[3] - k) / stride + 1
            guard h + pads[0] + pads[2] >= k, w + pads[1] + pads[3] >= k else {
                throw refuse("a \(k)x\(k) kernel on a \(h)x\(w) image")
            }
            let bias = try optionalConstant(2, "bias")
            guard bias == nil || bias!.count == out else { throw refuse("a bias of shape \(bias!.shape) for \(out) channels") }
            let conv = Conv2d(c, out, kernel: k, stride: stride, padding: pads[0], paddingEnd: pads[2], bias: bias != nil,
                              rng: &rng)
            conv.weight.assign(Tensor(shape: weight.shape, values: weight.floats))
            if let bias { conv.bias?.assign(Tensor(shape: [out], values: bias.floats)) }
            return (conv, .image(channels: out, height: outH, width: outW))
        case "BatchNormalization":
            let (c, _, _) = try image()
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
            return (bn, kind)
        case "Relu":
            return (ReLULayer(), kind)
        case "MaxPool":
            let (c, h, w) = try image()
            let kernel = node.ints("kernel_shape") ?? []
            guard kernel.count == 2, kernel[0] == kernel[1], kernel[0] > 0, kernel[0] <= min(h, w),
                  (node.ints("strides") ?? [1, 1]) == kernel, (node.ints("pads") ?? [0, 0, 0, 0]).allSatisfy({ $0 == 0 }),
                  (node.ints("dilations") ?? [1, 1]).allSatisfy({ $0 == 1 }), (node.string("auto_pad") ?? "NOTSET") == "NOTSET",
                  (node.int("ceil_mode") ?? 0) == 0 || (h % kernel[0] == 0 && w % kernel[0] == 0),
                  node.output.count == 1 || node.output[1].isEmpty else {
                throw refuse("only max pooling with stride = kernel and no padding is run so far")
            }
            let k = kernel[0]
            return (MaxPool2d(kernel: k, channels: c), .image(channels: c, height: h / k, width: w / k))
        case "GlobalAveragePool", "AveragePool":
            let (c, h, w) = try image()
            if node.opType == "AveragePool" {
                let strides = node.ints("strides") ?? [1, 1]
                guard node.ints("kernel_shape") == [h, w], (node.ints("pads") ?? [0, 0, 0, 0]).allSatisfy({ $0 == 0 }),
                      strides.count == 2, strides[0] >= h || h == 1, strides[1] >= w || w == 1 else {
                    throw refuse("only average pooling over the whole image is run so far")
                }
            }
            return (ImagePool(), .image(channels: c, height: 1, width: 1))
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
