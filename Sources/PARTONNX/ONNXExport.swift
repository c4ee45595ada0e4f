import Foundation
import PARTEngine
import PARTNN

/// Naming and writing back the weights of an ONNX graph trained on the engine
/// (docs/commands.md#training-an-onnx-model).
///
/// A parameter or buffer is named after the initializer it was read from when that initializer
/// holds it in the same layout and no other node reads it: a PyTorch export names its
/// initializers as the module's `state_dict` ("conv1.weight", "bn1.running_mean"), so
/// `last.safetensors` of an ONNX run reads like one of the PyTorch model. Anything else is named
/// "NODE.ENTRY".
extension ONNXGraph {
    /// For each state entry of the layer of `step` kept in the same layout as a node input, that
    /// input's index.
    func inputIndex(_ step: Step, entry: String) -> Int? {
        let node = model.graph.node[step.node]
        switch node.opType {
        case "Conv": return ["weight": 1, "bias": 2][entry]
        case "BatchNormalization": return ["weight": 1, "bias": 2, "running_mean": 3, "running_var": 4][entry]
        case "Gemm":
            // The layer keeps [out, in] scaled by alpha, and a bias of every output scaled by beta.
            guard (node.int("transB") ?? 0) == 1, (node.float("alpha") ?? 1) == 1 else { return nil }
            if entry == "weight" { return 1 }
            guard entry == "bias", (node.float("beta") ?? 1) == 1, node.input.count > 2,
                  let bias = model.initializers[node.input[2]], bias.count == bias.shape.last, bias.shape.count == 1 else {
                return nil
            }
            return 2
        default: return nil
        }
    }

    /// How many times each name is read by a node or is an output of the graph.
    var readers: [String: Int] {
        var counts = [String: Int]()
        for node in model.graph.node { for name in node.input where !name.isEmpty { counts[name, default: 0] += 1 } }
        for output in model.graph.output { counts[output.name, default: 0] += 1 }
        return counts
    }

    /// The name of the initializer read at `index` by `step`'s node when the step owns it alone
    /// (an initializer of the file, read once), nil otherwise.
    func ownedInitializer(_ step: Step, index: Int, readers: [String: Int]) -> String? {
        let node = model.graph.node[step.node]
        guard index < node.input.count else { return nil }
        let name = node.input[index]
        guard !name.isEmpty, model.initializers[name] != nil, readers[name] == 1 else { return nil }
        return name
    }

    /// The checkpoint name of the state entry `entry` of `step`'s layer.
    func stateName(_ step: Step, entry: String) -> String {
        let readers = self.readers
        if let index = inputIndex(step, entry: entry), let name = ownedInitializer(step, index: index, readers: readers) {
            return name
        }
        // PyTorch's counter of a batch norm sits beside its running mean.
        if entry == "num_batches_tracked", let mean = ownedInitializer(step, index: 3, readers: readers),
           mean.hasSuffix("running_mean") {
            return String(mean.dropLast("running_mean".count)) + "num_batches_tracked"
        }
        return "\(step.name).\(entry)"
    }
}

extension ONNXClassifier {
    /// Whether the graph has a convolution but no BatchNormalization node: what an export in
    /// evaluation mode leaves of a network with batch norm (folded into the convolutions).
    public var lacksBatchNorm: Bool {
        let ops = Set(graph.model.graph.node.map(\.opType))
        return ops.contains("Conv") && !ops.contains("BatchNormalization")
    }

    /// The Dropout nodes, which the engine runs as the identity.
    public var dropoutNodes: [String] {
        graph.model.graph.node.filter { $0.opType == "Dropout" }.map { $0.name.isEmpty ? ($0.output.first ?? "?") : $0.name }
    }

    /// The CAM layer named `name`: a node name of `camLayers`, or the name of the tensor such a
    /// node outputs.
    public func camLayer(named name: String) -> String {
        if camLayers.contains(name) { return name }
        return graph.steps.first { $0.output == name && camLayers.contains($0.name) }?.name ?? name
    }

    /// Why the graph cannot be trained, nil when it can: two nodes reading one weight would be
    /// trained as two layers, which the file cannot hold.
    public var trainingProblem: String? {
        let readers = graph.readers
        for step in graph.steps {
            guard case .layer(let layer) = step.op else { continue }
            let node = graph.model.graph.node[step.node]
            for (entry, _) in layer.state {
                guard let index = graph.inputIndex(step, entry: entry) ?? (["weight": 1, "bias": 2][entry]),
                      index < node.input.count else { continue }
                let name = node.input[index]
                if graph.model.initializers[name] != nil, (readers[name] ?? 0) > 1 {
                    return "\(graph.source): the weight '\(name)' is read by more than one node, which the engine "
                        + "trains as separate layers; export the model without shared weights"
                }
            }
        }
        return nil
    }

    /// The file's model with the layers' current weights and running statistics, in inference
    /// form: every BatchNormalization node without `training_mode` and its running-statistics
    /// outputs (the statistics are in its inputs), Dropout without its `training_mode` input,
    /// and every Gemm or MatMul written as Gemm with transB 1, alpha 1, beta 1 and a bias.
    /// An initializer read by this node alone takes the new values in place; otherwise the node
    /// reads a new initializer named "NODE.ENTRY".
    public func trainedModel() throws -> Onnx_ModelProto {
        var proto = graph.model.proto
        let readers = graph.readers
        var initializerIndex = [String: Int]()
        for (i, t) in proto.graph.initializer.enumerated() { initializerIndex[t.name] = i }
        var taken = Set(proto.graph.initializer.map(\.name))
        for node in proto.graph.node { taken.formUnion(node.output) }
        for input in proto.graph.input { taken.insert(input.name) }

        func put(_ values: Tensor, node: Int, input: Int, name fallback: String) throws {
            var tensor = Onnx_TensorProto()
            tensor.dataType = 1
            tensor.dims = values.shape.map(Int64.init)
            let floats = try values.converted(to: .f32).scalars
            var raw = Data(capacity: floats.count * 4)
            for f in floats { withUnsafeBytes(of: f.bitPattern.littleEndian) { raw.append(contentsOf: $0) } }
            tensor.rawData = raw
            var inputs = proto.graph.node[node].input
            while inputs.count <= input { inputs.append("") }
            let current = inputs[input]
            if !current.isEmpty, let i = initializerIndex[current], readers[current] == 1 {
                tensor.name = current
                proto.graph.initializer[i] = tensor
                return
            }
            var name = fallback, n = 1
            while taken.contains(name) { n += 1; name = "\(fallback)_\(n)" }
            taken.insert(name)
            tensor.name = name
            initializerIndex[name] = proto.graph.initializer.count
            proto.graph.initializer.append(tensor)
            inputs[input] = name
            proto.graph.node[node].input = inputs
        }

        for step in graph.steps {
            guard case .layer(let stepLayer) = step.op else { continue }
            let i = step.node
            // A batch norm of features is the engine's batch norm inside.
            let layer = (stepLayer as? FeatureBatchNorm)?.bn ?? stepLayer
            switch layer {
            case let conv as Conv2d:
                try put(conv.weight.value, node: i, input: 1, name: "\(step.name).weight")
                if let bias = conv.bias { try put(bias.value, node: i, input: 2, name: "\(step.name).bias") }
            case let bn as BatchNorm2d:
                for (index, (entry, value)) in [("weight", bn.weight.value), ("bias", bn.bias.value),
                                                ("running_mean", bn.runningMean.value),
                                                ("running_var", bn.runningVar.value)].enumerated() {
                    try put(value, node: i, input: index + 1, name: "\(step.name).\(entry)")
                }
                proto.graph.node[i].attribute.removeAll { $0.name == "training_mode" }
                proto.graph.node[i].output = [proto.graph.node[i].output[0]]
            case let linear as Linear:
                var node = proto.graph.node[i]
                node.opType = "Gemm"
                var transB = Onnx_AttributeProto()
                transB.name = "transB"
                transB.type = .int
                transB.i = 1
                node.attribute = [transB]
                proto.graph.node[i] = node
                try put(linear.weight.value, node: i, input: 1, name: "\(step.name).weight")
                try put(linear.bias.value, node: i, input: 2, name: "\(step.name).bias")
            default:
                continue
            }
        }
        for i in proto.graph.node.indices where proto.graph.node[i].opType == "Dropout" && proto.graph.node[i].input.count > 2 {
            proto.graph.node[i].input = Array(proto.graph.node[i].input.prefix(2))
        }
        // Shapes recorded for the training form's extra outputs no longer name anything.
        let outputs = Set(proto.graph.node.flatMap(\.output))
        proto.graph.valueInfo.removeAll { !outputs.contains($0.name) }
        return proto
    }

    /// `trainedModel()` as the bytes of an ONNX file.
    public func trainedModelBytes() throws -> [UInt8] {
        try trainedModel().serializedBytes()
    }
}
