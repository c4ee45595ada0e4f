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
    /// two cuts read only values they make or `input`.
    private func run(_ steps: ArraySlice<Step>, from input: String, value: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        var values = [input: value]
        var tapes = [Tape?]()
        var joins = [((Tensor) throws -> [Tensor])?]()
        for step in steps {
            let xs = try step.inputs.map { name -> Tensor in
                guard let v = values[name] else { throw ONNXError("\(graph.source): node '\(step.name)' reads '\(name)' before it is made") }
                return v
            }
            let inner = tape?.branch()
            switch step.op {
            case .layer(let layer):
                values[step.output] = try layer.forward(xs[0], mode: mode, tape: inner)
                joins.append(nil)
            case .join(let join):
                let (y, backward) = try join.forward(xs)
                values[step.output] = y
                joins.append(backward)
            }
            tapes.append(inner)
        }
        guard let last = steps.last, let result = values[last.output] else { return value }
        if let tape {
            tape.record { dy in
                var gradients = [last.output: dy]
                func add(_ g: Tensor, to name: String) throws {
                    gradients[name] = try gradients[name].map { try Tensor.sum($0, try g.converted(to: $0.dtype)) } ?? g
                }
                for (i, step) in steps.enumerated().reversed() {
                    guard let g = gradients.removeValue(forKey: step.output), let inner = tapes[i] else { continue }
                    if let backward = joins[i] {
                        for (name, gi) in zip(step.inputs, try backward(g)) { try add(gi, to: name) }
                    } else {
                        try add(try inner.backward(g), to: step.inputs[0])
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
