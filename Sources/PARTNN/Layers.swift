import Foundation
import PARTEngine

/// PyTorch's default initialisation of a convolution or linear layer: weights and bias uniform
/// in ±1/sqrt(fan_in) (`kaiming_uniform_(a=sqrt(5))` and the bias rule of `nn.Conv2d` /
/// `nn.Linear`).
func defaultInit(shape: [Int], fanIn: Int, rng: inout RNG) -> Tensor {
    let bound = 1 / Float(fanIn).squareRoot()
    let values = (0..<shape.reduce(1, *)).map { _ in (rng.uniform() * 2 - 1) * bound }
    return Tensor(shape: shape, values: values)
}

/// The bias a convolution or linear layer adds in a pass on `x`: rounded to bf16 in training
/// passes in bf16, as PyTorch's autocast rounds every floating argument of those layers (a
/// rounding that changes which way the bf16 outputs round, and so the gradients, well beyond
/// bf16's own step); f32 otherwise (attack and CAM passes add the f32 bias before rounding).
private func passBias(_ bias: Parameter, _ x: Tensor, _ tape: Tape?) throws -> Tensor {
    x.dtype == .bf16 && (tape?.parameterGradients ?? false) ? try bias.value.converted(to: .bf16) : bias.value
}

/// 2-D convolution, NHWC in and out; weight [out, in / groups, k, k] (OIHW), bias [out].
public final class Conv2d: Layer {
    public let op: Convolution
    public let weight: Parameter
    public let bias: Parameter?

    /// `paddingEnd` pads the bottom and right edges when they differ from the top and left
    /// (see `Convolution`).
    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                paddingEnd: Int? = nil, groups: Int = 1, dilation: Int = 1, bias: Bool = true, rng: inout RNG) {
        op = Convolution(inChannels: inChannels, outChannels: outChannels, kernel: kernel, stride: stride,
                         padding: padding, paddingEnd: paddingEnd, groups: groups, dilation: dilation, bias: bias)
        let fanIn = inChannels / groups * kernel * kernel
        weight = Parameter(defaultInit(shape: [outChannels, inChannels / groups, kernel, kernel], fanIn: fanIn,
                                       rng: &rng))
        self.bias = bias ? Parameter(defaultInit(shape: [outChannels], fanIn: fanIn, rng: &rng)) : nil
    }

    /// Batch norm folded into this convolution for evaluation-mode passes (see Fusion.swift).
    let folding = Locked<FoldedConvolution?>(nil)

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try forward(x, relu: false, tape: tape)
    }

    /// The convolution, optionally followed by a ReLU fused into the kernel.
    func forward(_ x: Tensor, relu: Bool, tape: Tape?) throws -> Tensor {
        // Passes without parameter gradients (attacks, CAMs, evaluation) may use Winograd kernels.
        let winograd = !(tape?.parameterGradients ?? false)
        let y = try op.forward(x, weight: weight.value, bias: try bias.map { try passBias($0, x, tape) },
                               weightVersion: weight.version, relu: relu, winograd: winograd)
        if let tape {
            let needInput = tape.needsInputGradient
            let params = tape.parameterGradients
            let version = weight.version
            let w = weight.value
            tape.record { [self] dy in
                let dz = relu ? try ReLU.backward(dy, output: y) : dy
                let g = try op.backward(dz, x: x, weight: w, weightVersion: version, needInputGradient: needInput,
                                    needParameterGradients: params, winograd: winograd)
                if let dw = g.weight { weight.gradient.add(dw) }
                if let db = g.bias { bias?.gradient.add(db) }
                return g.input ?? Tensor(shape: [0])
            }
        }
        return y
    }

    public var state: [(String, StateEntry)] {
        [("weight", .parameter(weight))] + (bias.map { [("bias", .parameter($0))] } ?? [])
    }
}

/// Fully connected layer: [N, in] → [N, out]; weight [out, in], bias [out] (PyTorch layouts), on
/// oneDNN's inner-product kernels.
public final class Linear: Layer {
    public let inFeatures, outFeatures: Int
    public let op: InnerProduct
    public let weight: Parameter
    public let bias: Parameter

    public init(_ inFeatures: Int, _ outFeatures: Int, rng: inout RNG) {
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        op = InnerProduct(inFeatures: inFeatures, outFeatures: outFeatures)
        weight = Parameter(defaultInit(shape: [outFeatures, inFeatures], fanIn: inFeatures, rng: &rng))
        bias = Parameter(defaultInit(shape: [outFeatures], fanIn: inFeatures, rng: &rng))
    }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try forward(x, relu: false, tape: tape)
    }

    /// The layer, optionally followed by a ReLU fused into the kernel.
    func forward(_ x: Tensor, relu: Bool, tape: Tape?) throws -> Tensor {
        guard x.shape.count == 2 && x.shape[1] == inFeatures else {
            throw EngineError("linear layer expects [N, \(inFeatures)], got \(x.shape)")
        }
        let w = weight.value, version = weight.version
        let y = try op.forward(x, weight: w, bias: try passBias(bias, x, tape), weightVersion: version, relu: relu)
        if let tape {
            let needInput = tape.needsInputGradient
            let params = tape.parameterGradients
            tape.record { [self] dy in
                let dz = relu ? try ReLU.backward(dy, output: y) : dy
                let g = try op.backward(dz, x: x, weight: w, weightVersion: version, needInputGradient: needInput,
                                        needParameterGradients: params)
                if let dw = g.weight { weight.gradient.add(dw) }
                if let db = g.bias { bias.gradient.add(db) }
                return g.input ?? Tensor(shape: [0])
            }
        }
        return y
    }

    public var state: [(String, StateEntry)] { [("weight", .parameter(weight)), ("bias", .parameter(bias))] }
}

/// Batch normalisation of NHWC activations with PyTorch's semantics: momentum 0.1, eps 1e-5,
/// running variance updated with the unbiased batch variance, `num_batches_tracked` counted.
public final class BatchNorm2d: Layer {
    public let op: BatchNorm
    public let weight: Parameter
    public let bias: Parameter
    public let runningMean: Buffer
    public let runningVar: Buffer
    public let numBatchesTracked: Buffer
    public let momentum: Float

    public init(_ channels: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        op = BatchNorm(channels: channels, epsilon: epsilon)
        weight = Parameter(Tensor(shape: [channels], repeating: 1))
        bias = Parameter(Tensor(shape: [channels]))
        runningMean = Buffer(Tensor(shape: [channels]))
        runningVar = Buffer(Tensor(shape: [channels], repeating: 1))
        numBatchesTracked = Buffer(Tensor(shape: []), isInteger: true)
        self.momentum = momentum
    }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let training = mode == .train
        if training, let reducer = BatchNorm2d.synchronization?.reducer {
            return try synchronizedForward(anyType: x, reducer: reducer, tape: tape)
        }
        let (y, record) = try op.forward(x, scale: weight.value, shift: bias.value, training: training,
                                     runningMean: runningMean.value, runningVariance: runningVar.value)
        if training { updateRunningStatistics(record, count: x.shape[0] * x.shape[1] * x.shape[2]) }
        if let tape {
            let params = tape.parameterGradients
            let scale = weight.value, shift = bias.value
            tape.record { [self] dy in
                let g = try op.backward(dy, x: x, scale: scale, shift: shift, record: record, needParameterGradients: params && training)
                if let ds = g.scale { weight.gradient.add(ds) }
                if let dt = g.shift { bias.gradient.add(dt) }
                return g.input
            }
        }
        return y
    }

    func updateRunningStatistics(_ record: BatchNorm.Record, count: Int) {
        let unbias = count > 1 ? Float(count) / Float(count - 1) : 1
        runningMean.value.blend(toward: record.mean, weight: momentum)
        runningVar.value.blend(toward: record.variance, weight: momentum, factor: unbias)
        numBatchesTracked.value[flat: 0] += 1
    }

    public var state: [(String, StateEntry)] {
        [("weight", .parameter(weight)), ("bias", .parameter(bias)), ("running_mean", .buffer(runningMean)),
         ("running_var", .buffer(runningVar)), ("num_batches_tracked", .buffer(numBatchesTracked))]
    }
}

/// ReLU as a layer.
public final class ReLULayer: Layer {
    public init() {}

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let y = try ReLU.forward(x)
        tape?.record { dy in try ReLU.backward(dy, output: y) }
        return y
    }
}

/// SiLU (swish), x * sigmoid(x), as a layer; its backward keeps the input.
public final class SiLULayer: Layer {
    public init() {}

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        tape?.record { dy in try SiLU.backward(dy, input: x) }
        return try SiLU.forward(x)
    }
}

/// Max pooling with kernel = stride (`F.max_pool2d(x, k)`).
public final class MaxPool2d: Layer {
    public let op: MaxPool

    public init(kernel: Int, channels: Int) { op = MaxPool(kernel: kernel, channels: channels) }

    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        let (y, record) = try op.forward(x, backward: tape != nil)
        tape?.record { [op] dy in try op.backward(dy, record: record) }
        return y
    }
}

/// [N, H, W, C] → [N, C] mean over positions.
public final class GlobalAvgPool: Layer {
    public init() {}

    /// Computed in f32. A bf16 input gives a bf16 output in training passes (the classifier head
    /// then runs in bf16, as under PyTorch's autocast) and an f32 one in passes without parameter
    /// gradients (attacks and CAMs: what follows is small, and its gradient is narrowed back on
    /// the way down).
    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try headReshape(x, tape: tape, forward: GlobalAveragePool.forward, backward: GlobalAveragePool.backward)
    }
}

/// [N, H, W, C] → [N, C*H*W] in PyTorch's flatten order.
public final class Flatten: Layer {
    public init() {}

    /// The output's type follows the rule of `GlobalAvgPool` (the reordering itself is exact).
    public func forward(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try headReshape(x, tape: tape, forward: FlattenCHW.forward, backward: FlattenCHW.backward)
    }
}

/// An f32 op of the head's input (pooling, flattening) on x of any type: the output's type by
/// `headType`, the gradient back in x's type.
private func headReshape(_ x: Tensor, tape: Tape?, forward: (Tensor) -> Tensor,
                         backward: @escaping (Tensor, [Int]) -> Tensor) throws -> Tensor {
    let shape = x.shape, dtype = x.dtype
    tape?.record { dy in try backward(try dy.converted(to: .f32), shape).converted(to: dtype) }
    return try forward(try x.converted(to: .f32)).converted(to: headType(dtype, tape))
}

/// The type of the classifier head's input for features of type `dtype`: kept in training
/// passes (parameter gradients), f32 otherwise.
private func headType(_ dtype: DType, _ tape: Tape?) -> DType {
    (tape?.parameterGradients ?? false) ? dtype : .f32
}
