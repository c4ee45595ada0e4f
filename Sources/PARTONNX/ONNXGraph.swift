import PARTEngine
import PARTNN

/// What an activation of the graph is: ONNX's [N, C, H, W] (NHWC in the engine) or [N, K].
/// The batch N is whatever the input has.
public enum ValueKind: Equatable, Sendable {
    case image(channels: Int, height: Int, width: Int)
    case matrix(features: Int)
}

/// One node of the graph as the engine runs it.
struct Step {
    enum Op {
        /// One activation in, one out.
        case layer(Layer)
        /// Several activations in (a sum, a product, a concatenation), one out.
        case join(Join)
    }

    /// The node's name (its first output's when it has none), as CAM layers are named.
    let name: String
    let op: Op
    let inputs: [String]
    let output: String
    let kind: ValueKind
    /// The index of its node in the graph's node list.
    var node = 0
}

/// An ONNX graph turned into engine steps: Constant nodes and shape arithmetic folded, Identity
/// and Dropout made aliases, every other node a layer of PARTNN with its weights from the
/// initializers. A graph it cannot run is refused with one line naming the op and the node.
public struct ONNXGraph {
    public let source: String
    /// The file as read.
    public let model: ONNXModel
    /// The graph's input, [N, C, H, W] with C, H, W fixed.
    let input: String
    public let channels, height, width: Int
    /// The logits, [N, classes].
    let output: String
    public let classes: Int
    let steps: [Step]

    public init(_ model: ONNXModel) throws {
        source = model.source
        self.model = model
        let graph = model.graph
        var folder = ConstantFolder(constants: model.initializers, source: model.source)
        let inputs = graph.input.filter { folder.constants[$0.name] == nil }
        guard inputs.count == 1, graph.output.count == 1 else {
            throw ONNXError("\(source): the graph has \(inputs.count) inputs and \(graph.output.count) outputs; "
                            + "one image input and one output of logits are run")
        }
        let image = inputs[0]
        let dims = image.type.tensorType.shape.dim.map { d -> Int? in
            if case .dimValue(let v)? = d.value, v > 0, v <= Int64(Int32.max) { return Int(v) }
            return nil
        }
        guard image.type.tensorType.elemType == 1, dims.count == 4, let c = dims[1], let h = dims[2], let w = dims[3],
              c > 0, h > 0, w > 0, c <= 4096, h <= Limits.imageSide, w <= Limits.imageSide else {
            throw ONNXError("\(source): the input '\(image.name)' is not one float image tensor [N, C, H, W] with a fixed "
                            + "channel count and size (its shape is \(dims.map { $0.map(String.init) ?? "?" }))")
        }
        input = image.name
        channels = c
        height = h
        width = w
        folder.batch = dims[0]
        var kinds = [image.name: ValueKind.image(channels: c, height: h, width: w)]
        var aliases = [String: String]()
        var steps = [Step]()
        var builder = LayerBuilder(folder: folder)
        var readers = [String: Int]()
        for name in graph.node.flatMap(\.input) + graph.output.map(\.name) { readers[name, default: 0] += 1 }
        for (index, node) in graph.node.enumerated() {
            let name = node.name.isEmpty ? (node.output.first ?? "?") : node.name
            let refuse = { (why: String) in ONNXError("\(model.source): node '\(name)' (\(node.opType)): \(why)") }
            guard node.domain.isEmpty || node.domain == "ai.onnx" else {
                throw refuse("an op of the domain '\(node.domain)', which the engine does not run")
            }
            let ins = node.input.map { aliases[$0] ?? $0 }
            // Everything known at load time is folded, whatever the op.
            if ins.allSatisfy({ $0.isEmpty || builder.folder.constants[$0] != nil }) || node.opType == "Shape" {
                if let folded = try builder.folder.fold(node, inputs: ins, kinds: kinds, refuse: refuse) {
                    for (out, value) in zip(node.output, folded) { builder.folder.constants[out] = value }
                    continue
                }
            }
            guard let out = node.output.first, !out.isEmpty else { throw refuse("a node without an output") }
            let activations = ins.filter { kinds[$0] != nil }
            guard let first = activations.first, let kind = kinds[first] else {
                throw refuse("none of its inputs is known (\(ins.joined(separator: ", ")))")
            }
            switch node.opType {
            case "Identity", "Dropout":
                aliases[out] = first
                continue
            case let op where ["Add", "Sub", "Mul", "Div"].contains(op) && activations.count > 1:
                guard activations.count == 2, ins.count == 2, let other = kinds[ins[1]],
                      let outKind = broadcast(kind, other) else {
                    throw refuse("only \(node.opType) of two activations of one shape, of an image and one value per "
                                 + "channel ([N, C, 1, 1]), or of one and a constant, is run")
                }
                if op == "Mul", other == kind, let silu = sigmoidFactor(ins, steps: steps, readers: readers, aliases: aliases) {
                    // x * Sigmoid(x), SiLU as exporters write it, runs as the engine's one SiLU kernel.
                    kinds[steps[silu.index].output] = nil
                    steps.remove(at: silu.index)
                    steps.append(Step(name: name, op: .layer(EltwiseLayer(.silu)), inputs: [silu.x], output: out, kind: kind, node: index))
                    kinds[out] = kind
                    continue
                }
                steps.append(Step(name: name, op: .join(ElementwiseJoin(op: Arithmetic(rawValue: node.opType)!)),
                                  inputs: ins, output: out, kind: outKind, node: index))
                kinds[out] = outKind
            case "Concat":
                let parts = ins.compactMap { kinds[$0] }
                guard parts.count == ins.count, let outKind = concatenated(parts, axis: node.int("axis") ?? 1) else {
                    throw refuse("only activations of one size joined along their channels are run")
                }
                steps.append(Step(name: name, op: .join(ChannelConcat()), inputs: ins, output: out, kind: outKind, node: index))
                kinds[out] = outKind
            default:
                // Add, Sub, Mul and Div may have the constant first.
                guard activations.count == 1, ins.first == first || ["Add", "Sub", "Mul", "Div"].contains(node.opType) else {
                    throw refuse("the activation must be its first and only non-constant input")
                }
                if node.opType == "Conv", let pad = zeroPadding(first, steps: steps, readers: readers, aliases: aliases),
                   let source = steps[pad.index].inputs.first, let sourceKind = kinds[source],
                   let (layer, outKind) = try? builder.layer(node.padded(by: pad.amounts), kind: sourceKind,
                                                            inputs: [source] + ins.dropFirst(), refuse: refuse) {
                    // A zero Pad read only by a convolution (`F.pad` before a convolution, as the
                    // DeepMind WideResNets write TensorFlow's SAME) becomes the convolution's padding.
                    kinds[first] = nil
                    steps.remove(at: pad.index)
                    steps.append(Step(name: name, op: .layer(layer), inputs: [source], output: out, kind: outKind, node: index))
                    kinds[out] = outKind
                    continue
                }
                let (layer, outKind) = try builder.layer(node, kind: kind, inputs: ins, refuse: refuse)
                steps.append(Step(name: name, op: .layer(layer), inputs: [first], output: out, kind: outKind, node: index))
                kinds[out] = outKind
            }
        }
        let result = aliases[graph.output[0].name] ?? graph.output[0].name
        guard case .matrix(let k)? = kinds[result], k > 0 else {
            throw ONNXError("\(source): the output '\(graph.output[0].name)' is not logits [N, classes] computed from "
                            + "the input")
        }
        guard steps.last?.output == result else {
            throw ONNXError("\(source): the output '\(graph.output[0].name)' is not made by the graph's last node")
        }
        output = result
        classes = k
        self.steps = steps
    }
}

/// When the factors `ins` of a product are x and Sigmoid(x), and nothing else reads the
/// sigmoid: the index of its step and x.
func sigmoidFactor(_ ins: [String], steps: [Step], readers: [String: Int],
                   aliases: [String: String]) -> (index: Int, x: String)? {
    guard ins.count == 2 else { return nil }
    for (s, x) in [(ins[1], ins[0]), (ins[0], ins[1])] {
        guard readers[s] == 1, !aliases.values.contains(s), let i = steps.lastIndex(where: { $0.output == s }),
              steps[i].inputs == [x], case .layer(let layer) = steps[i].op,
              (layer as? EltwiseLayer)?.function == .sigmoid else { continue }
        return (i, x)
    }
    return nil
}

/// When `value` is made by a zero padding of an image that nothing else reads: the index of
/// its step and its amounts (top, left, bottom, right).
func zeroPadding(_ value: String, steps: [Step], readers: [String: Int],
                 aliases: [String: String]) -> (index: Int, amounts: [Int])? {
    guard readers[value] == 1, !aliases.values.contains(value), let i = steps.lastIndex(where: { $0.output == value }),
          case .layer(let layer) = steps[i].op, let pad = layer as? ImagePad, pad.value == 0 else { return nil }
    return (i, [pad.top, pad.left, pad.bottom, pad.right])
}

extension Onnx_NodeProto {
    /// The node with `amounts` (top, left, bottom, right) added to its `pads`.
    func padded(by amounts: [Int]) -> Onnx_NodeProto {
        var node = self
        let pads = zip(ints("pads") ?? [0, 0, 0, 0], amounts).map { Int64($0 + $1) }
        node.attribute.removeAll { $0.name == "pads" }
        var attribute = Onnx_AttributeProto()
        attribute.name = "pads"
        attribute.type = .ints
        attribute.ints = pads
        node.attribute.append(attribute)
        return node
    }
}

/// The kind of `a op b` for element-wise arithmetic of two activations: their common kind, or the
/// image's when the other is one value per channel of it ([N, C, 1, 1]); nil for anything else.
func broadcast(_ a: ValueKind, _ b: ValueKind) -> ValueKind? {
    if a == b { return a }
    guard case .image(let c, let h, let w) = a, case .image(let d, let p, let q) = b, c == d else { return nil }
    if p == 1 && q == 1 { return a }
    if h == 1 && w == 1 { return b }
    return nil
}
