import PARTEngine

/// What synchronised batch norm needs from a data-parallel job: sums over the ranks, and this
/// rank's weight in the current step.
public protocol BatchStatisticsReducer: AnyObject {
    /// `values` summed element-wise over the ranks (every rank calls it in the same order).
    func sum(_ values: [Double]) throws -> [Double]
    /// n_local / n_global of the current step: the factor between this rank's loss (a mean over
    /// its own examples) and its share of the global loss (its examples' sum over the global batch).
    var gradientWeight: Double { get }
}

/// A reducer as the task-local value `BatchNorm2d.synchronization` holds it. The reducer is
/// used only by the code that bound it (one training loop, on its own thread), which is why
/// handing it over as Sendable is sound although the reducer itself is not.
public struct SynchronizedStatistics: @unchecked Sendable {
    public let reducer: BatchStatisticsReducer
    public init(_ reducer: BatchStatisticsReducer) { self.reducer = reducer }
}

extension BatchNorm2d {
    /// The reducer of synchronised batch norm (`--sync-bn`): bound with
    /// `BatchNorm2d.$synchronization.withValue(...)` around a training loop (the trainer does),
    /// every training-mode batch norm that loop runs normalises with the statistics of the
    /// global batch. Nil: per-process statistics (PyTorch DDP's default). A task-local value, so
    /// no other code of the process (another test, another model) is switched with it.
    @TaskLocal public static var synchronization: SynchronizedStatistics?

    /// Training-mode forward with global batch statistics, as PyTorch's `SyncBatchNorm`:
    ///
    ///     M = sum over ranks of N*H*W,  mean = sum(x) / M,  var = sum(x^2) / M - mean^2 (biased)
    ///     y = scale * (x - mean) / sqrt(var + eps) + shift
    ///
    /// and the running statistics follow the global mean and unbiased variance. Backward, with
    /// xhat = (x - mean) * r, r = 1 / sqrt(var + eps), and G1 = sum(g), G2 = sum(g * xhat) over the
    /// global batch of the globally normalised upstream gradient g = w * dy (w = gradientWeight):
    ///
    ///     dx = scale * r * (dy - (G1 + xhat * G2) / (w * M))
    ///
    /// which is dx of the global batch divided by w, as every other gradient of this rank
    /// (the trainer multiplies them all by w before summing them over the ranks). The scale and
    /// shift gradients added are this rank's sums, sum(dy * xhat) and sum(dy).
    /// `synchronizedForward` of an f32 or bf16 input: the statistics are summed in Swift over f32
    /// values, so a bf16 input (training in bf16) is widened, normalised in f32 and narrowed back,
    /// and so is its gradient. Batch norm computes in f32 in either type.
    func synchronizedForward(anyType x: Tensor, reducer: BatchStatisticsReducer, tape: Tape?) throws -> Tensor {
        let type = x.dtype
        guard type != .f32 else { return try synchronizedForward(x, reducer: reducer, tape: tape) }
        tape?.record { try $0.converted(to: type) }
        let y = try synchronizedForward(try x.converted(to: .f32), reducer: reducer, tape: tape)
        tape?.record { try $0.converted(to: .f32) }
        return try y.converted(to: type)
    }

    func synchronizedForward(_ x: Tensor, reducer: BatchStatisticsReducer, tape: Tape?) throws -> Tensor {
        let channels = op.channels
        let local = Channels.moments(x)
        let rows = Double(x.count / max(channels, 1))
        let global = try reducer.sum(local.sum + local.productSum + [rows])
        let count = global[2 * channels]
        guard count > 0 else { throw EngineError("synchronised batch norm over an empty global batch") }
        let mean = (0..<channels).map { global[$0] / count }
        let variance = (0..<channels).map { max(0, global[channels + $0] / count - mean[$0] * mean[$0]) }
        let meanTensor = Tensor(shape: [channels], values: mean.map(Float.init))
        let varianceTensor = Tensor(shape: [channels], values: variance.map(Float.init))
        // Normalising with given statistics is the evaluation-mode kernel.
        let (y, record) = try op.forward(x, scale: weight.value, shift: bias.value, training: false,
                                         runningMean: meanTensor, runningVariance: varianceTensor)
        updateRunningStatistics(record, count: Int(count))
        if let tape {
            let params = tape.parameterGradients
            let scale = weight.value
            let epsilon = Double(op.epsilon)
            tape.record { [self] dy in
                let w = reducer.gradientWeight
                guard w > 0 else { throw EngineError("synchronised batch norm on a rank without examples") }
                let r = variance.map { 1 / ($0 + epsilon).squareRoot() }
                let sums = Channels.moments(dy, x)
                // Local sum(dy) and sum(dy * xhat) = r * (sum(dy * x) - mean * sum(dy)).
                let shiftGradient = sums.sum
                let scaleGradient = (0..<channels).map { r[$0] * (sums.productSum[$0] - mean[$0] * sums.sum[$0]) }
                let g = try reducer.sum(shiftGradient.map { $0 * w } + scaleGradient.map { $0 * w })
                var a = [Float](repeating: 0, count: channels), b = a, c = a
                for k in 0..<channels {
                    let s = Double(scale[flat: k]), g1 = g[k] / (w * count), g2 = g[channels + k] / (w * count)
                    // dx = s r dy - s r^2 g2 x + (s r^2 g2 mean - s r g1)
                    a[k] = Float(s * r[k])
                    b[k] = Float(-s * r[k] * r[k] * g2)
                    c[k] = Float(s * r[k] * r[k] * g2 * mean[k] - s * r[k] * g1)
                }
                if params {
                    weight.gradient.add(Tensor(shape: [channels], values: scaleGradient.map(Float.init)))
                    bias.gradient.add(Tensor(shape: [channels], values: shiftGradient.map(Float.init)))
                }
                return Channels.affineCombination(dy, x, a: a, b: b, c: c)
            }
        }
        return y
    }
}
