import PARTEngine

/// The first layers of a model when they are spatially local: convolutions of stride 1 without
/// padding, ReLUs, and max pooling with kernel = stride. An output pixel of such a prefix
/// depends only on a small window of the input, so when an input changes inside a square, only
/// a window of the prefix's activations changes, and that window can be recomputed from a patch
/// of the input alone. The Square attack's queries change one square per image: it keeps each
/// image's prefix activations and, per query, runs the prefix on patches and only the rest of the
/// model on the full activations (`SquareQueries`).
///
/// Evaluation mode, no tape: the prefix serves forward-only passes. The activations of a window
/// equal those of the full pass up to the rounding of the kernel chosen (oneDNN's Winograd kernels
/// tile a patch from its own corner).
public final class LocalPrefix {
    /// The prefix's layers, run as one fused sequence.
    public let prefix: Sequential
    /// The rest of the model: from the prefix's activations to logits.
    public let rest: Sequential
    /// The kernel size of each layer that changes the geometry: (is a convolution, k).
    private let geometry: [(convolution: Bool, k: Int)]

    /// The model's layers in forward order, split after the first `count`; nil when one of those
    /// is not local in this sense (a strided or padded convolution, any other kind of layer).
    public init?(splitting layers: [Layer], after count: Int) {
        guard count >= 1 && count < layers.count else { return nil }
        var geometry = [(convolution: Bool, k: Int)]()
        for layer in layers[..<count] {
            if let conv = layer as? Conv2d {
                guard conv.op.stride == 1 && conv.op.padding == 0 && conv.op.paddingEnd == 0 && conv.op.dilation == 1 else {
                    return nil
                }
                geometry.append((true, conv.op.kernel))
            } else if let pool = layer as? MaxPool2d {
                geometry.append((false, pool.op.kernel))
            } else if !(layer is ReLULayer) {
                return nil
            }
        }
        self.geometry = geometry
        prefix = Sequential(Array(layers[..<count]))
        rest = Sequential(Array(layers[count...]))
    }

    /// The prefix's activations of images (or patches) x.
    public func forward(_ x: Tensor) throws -> Tensor {
        try prefix.forward(x, mode: .eval, tape: nil)
    }

    /// Logits [N, classes] from the prefix's activations.
    public func logits(from activations: Tensor) throws -> Tensor {
        try rest.forward(activations, mode: .eval, tape: nil)
    }

    /// The length of the prefix's output along an axis of input length `n` (0 when too short).
    public func outputLength(_ n: Int) -> Int {
        geometry.reduce(n) { n, g in Swift.max(g.convolution ? n - g.k + 1 : n / g.k, 0) }
    }

    /// The output positions along an axis that change when input positions `range` change.
    func affected(_ range: Range<Int>, inputLength n: Int) -> Range<Int> {
        var lo = range.lowerBound, hi = range.upperBound, length = n
        for g in geometry {
            length = g.convolution ? length - g.k + 1 : length / g.k
            if g.convolution {
                lo = Swift.max(lo - g.k + 1, 0)
            } else {
                lo /= g.k
                hi = (hi + g.k - 1) / g.k
            }
            hi = Swift.min(hi, length)
            lo = Swift.min(lo, hi)
        }
        return lo..<hi
    }

    /// The input positions that output positions `range` are computed from.
    func needed(_ range: Range<Int>) -> Range<Int> {
        var lo = range.lowerBound, hi = range.upperBound
        for g in geometry.reversed() {
            if g.convolution {
                hi += g.k - 1
            } else {
                lo *= g.k
                hi *= g.k
            }
        }
        return lo..<hi
    }

    /// How changes of `changed` consecutive positions along an axis of length `inputLength` map
    /// to windows, or nil when the axis is too short for the prefix.
    public func axis(inputLength: Int, changed: Int) -> WindowAxis? {
        let out = outputLength(inputLength)
        guard out > 0, changed >= 1, changed <= inputLength else { return nil }
        let starts = 0...(inputLength - changed)
        let window = Swift.max(1, starts.map { affected($0..<($0 + changed), inputLength: inputLength).count }.max() ?? 1)
        var inputOrigins = [Int](), outputOrigins = [Int]()
        for t in starts {
            let o = Swift.min(affected(t..<(t + changed), inputLength: inputLength).lowerBound, out - window)
            outputOrigins.append(o)
            inputOrigins.append(needed(o..<(o + window)).lowerBound)
        }
        return WindowAxis(patch: needed(0..<window).count, window: window, length: out, inputOrigins: inputOrigins,
                          outputOrigins: outputOrigins)
    }
}

/// Along one axis, for changes of a fixed length: the window of the prefix's output that a change
/// starting at position t can alter (`window` positions from `outputOrigins[t]`) and the input
/// patch that window is computed from (`patch` positions from `inputOrigins[t]`).
public struct WindowAxis: Sendable {
    public let patch: Int
    public let window: Int
    /// The prefix's output length along the axis.
    public let length: Int
    public let inputOrigins: [Int]
    public let outputOrigins: [Int]
}

/// A model that can say which of its first layers are spatially local (see `LocalPrefix`).
public protocol LocallyComputable: ImageClassifier {
    /// The local prefix and the rest of the model; nil when the model has none.
    var localPrefix: LocalPrefix? { get }
}
