import Foundation
import PARTEngine
import PARTNN

/// An ONNX image classifier run on the engine: the graph's steps in file order, each value kept
/// by name, and one backward over the whole run that adds up the gradients where a value feeds
/// several nodes (a residual connection).
///
/// CAM layers are the nodes whose output is an image of more than one pixel and at which the
/// graph can be cut: no later node reads a value made before it (so the head needs nothing but
/// that output). The default is the last of them (before the global pooling of a ResNet).
public final class ONNXClassifier: ImageClassifier {
    public let architecture = "onnx"
    public let numClasses, inputHeight, inputWidth, inputChannels: Int
    public let camLayers: [String]
    public let defaultCAMLayer: String
    let graph: ONNXGraph
    /// The index of the step each CAM layer ends at.
    private let cuts: [String: Int]
    /// Chains of steps run as one `Sequential`, so the engine's fusions apply to them: each by
    /// the index of its first step (see `fusedChains`).
    private let chains: [Int: (layer: Sequential, count: Int)]

    public init(_ graph: ONNXGraph) throws {
        self.graph = graph
        numClasses = graph.classes
        inputHeight = graph.height
        inputWidth = graph.width
        inputChannels = graph.channels
        // For every step, the last step that reads its output (the input counts as step -1).
        var producer = [graph.input: -1]
        var lastReader = [Int](repeating: -1, count: graph.steps.count + 1)   // index + 1
        for (i, step) in graph.steps.enumerated() {
            for name in step.inputs { if let p = producer[name] { lastReader[p + 1] = max(lastReader[p + 1], i) } }
            producer[step.output] = i
        }
        var cuts = [String: Int](), names = [String](), spatial = [String]()
        var reach = lastReader[0]   // the furthest step reading a value made before step i
        for (i, step) in graph.steps.enumerated() {
            if reach <= i, case .image(_, let h, let w) = step.kind, i < graph.steps.count - 1, cuts[step.name] == nil {
                cuts[step.name] = i
                names.append(step.name)
                if h * w > 1 { spatial.append(step.name) }
            }
            reach = max(reach, lastReader[i + 1])
        }
        // A map of one pixel (a global pooling's output) is no map, unless there is nothing else.
        if !spatial.isEmpty { names = spatial }
        guard let last = names.last else {
            throw ONNXError("\(graph.source): the graph has no image layer at which CAMs can read it")
        }
        self.cuts = cuts.filter { names.contains($0.key) }
        camLayers = names
        defaultCAMLayer = last
        chains = fusedChains(graph)
    }

    /// Reads and checks the ONNX file at `url` (docs/commands.md#onnx-models).
    public static func load(_ url: URL) throws -> ONNXClassifier {
        try ONNXClassifier(try ONNXGraph(try ONNXModel.load(url)))
    }

    private func cut(_ layer: String) throws -> Int {
        guard let i = cuts[layer] else { throw UnknownLayerError(architecture: architecture, layer: layer, known: camLayers) }
        return i
    }

    public func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try validateInput(x)
        let end = try cut(layer)
        return try run(graph.steps[...end], from: graph.input, value: x, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        let start = try cut(layer)
        return try run(graph.steps[(start + 1)...], from: graph.steps[start].output, value: a, mode: mode, tape: tape)
    }

    /// Runs `steps` with `value` as `input`; returns the last step's output. The steps between
    /// two cuts read only values they make or `input`. A chain of `chains` runs as one layer when
    /// all its steps are in `steps` (a cut inside a chain runs its part unfused).
    private func run(_ steps: ArraySlice<Step>, from input: String, value: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        var values = [input: value]
        /// What ran, in order: a step or a whole chain (its first step's input, its last's output).
        var units = [(inputs: [String], output: String, tape: Tape?, join: ((Tensor) throws -> [Tensor])?)]()
        var i = steps.startIndex
        while i < steps.endIndex {
            let step = steps[i]
            let xs = try step.inputs.map { name -> Tensor in
                guard let v = values[name] else { throw ONNXError("\(graph.source): node '\(step.name)' reads '\(name)' before it is made") }
                return v
            }
            let inner = tape?.branch()
            var output = step.output, join: ((Tensor) throws -> [Tensor])?
            if let chain = chains[i], i + chain.count <= steps.endIndex {
                output = steps[i + chain.count - 1].output
                values[output] = try chain.layer.forward(xs[0], mode: mode, tape: inner)
                i += chain.count
            } else {
                switch step.op {
                case .layer(let layer):
                    values[output] = try layer.forward(xs[0], mode: mode, tape: inner)
                case .join(let j):
                    let (y, backward) = try j.forward(xs)
                    values[output] = y
                    join = backward
                }
                i += 1
            }
            units.append((step.inputs, output, inner, join))
        }
        guard let last = steps.last, let result = values[last.output] else { return value }
        if let tape {
            tape.record { dy in
                var gradients = [last.output: dy]
                func add(_ g: Tensor, to name: String) throws {
                    gradients[name] = try gradients[name].map { try Tensor.sum($0, try g.converted(to: $0.dtype)) } ?? g
                }
                for unit in units.reversed() {
                    guard let g = gradients.removeValue(forKey: unit.output), let inner = unit.tape else { continue }
                    if let backward = unit.join {
                        for (name, gi) in zip(unit.inputs, try backward(g)) { try add(gi, to: name) }
                    } else {
                        try add(try inner.backward(g), to: unit.inputs[0])
                    }
                }
                return gradients[input] ?? Tensor(shape: value.shape)
            }
        }
        return result
    }

    /// The layers' parameters and buffers, each under the name of the initializer it came from
    /// (PyTorch's names in a PyTorch export), else under its node's name (see ONNXExport.swift).
    public var state: [(String, StateEntry)] {
        graph.steps.flatMap { step -> [(String, StateEntry)] in
            if case .layer(let layer) = step.op { return layer.state.map { (graph.stateName(step, entry: $0.0), $0.1) } }
            return []
        }
    }
}

/// The chains Conv -> BatchNormalization [-> Relu] and Conv -> Relu of `graph` whose inner
/// values are read by the chain's next node only, each as a `Sequential` of the steps' own
/// layers by the index of its first step. `Sequential.fusedForward` then runs a convolution and
/// its ReLU as one kernel in every pass, and a convolution with its batch norm folded in the
/// evaluation passes without parameter gradients (the attack's), as in the built-in models
/// (docs/benchmarks.md#onnx-models-in-training). Parameters stay the steps' layers, so their
/// names, the CAM layers and the written-back file do not change.
func fusedChains(_ graph: ONNXGraph) -> [Int: (layer: Sequential, count: Int)] {
    var readers = [graph.output: 1]
    for step in graph.steps { for name in step.inputs { readers[name, default: 0] += 1 } }
    func layer(_ i: Int) -> Layer? {
        guard i < graph.steps.count, case .layer(let layer) = graph.steps[i].op else { return nil }
        return layer
    }
    /// Whether step `i + 1` alone reads step `i`'s output.
    func feeds(_ i: Int) -> Bool {
        i + 1 < graph.steps.count && graph.steps[i + 1].inputs == [graph.steps[i].output]
            && readers[graph.steps[i].output] == 1
    }
    var chains = [Int: (layer: Sequential, count: Int)]()
    var i = 0
    while i < graph.steps.count {
        guard let conv = layer(i) as? Conv2d, feeds(i) else { i += 1; continue }
        var layers: [Layer] = [conv]
        if let bn = layer(i + 1) as? BatchNorm2d {
            layers.append(bn)
            if feeds(i + 1), let relu = layer(i + 2) as? ReLULayer { layers.append(relu) }
        } else if let relu = layer(i + 1) as? ReLULayer {
            layers.append(relu)
        }
        if layers.count > 1 { chains[i] = (Sequential(layers), layers.count) }
        i += layers.count
    }
    return chains
}
