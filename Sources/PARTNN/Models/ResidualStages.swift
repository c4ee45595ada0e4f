import PARTEngine

/// The residual stages of a ResNet-style network: stage g holds `blocks` blocks from
/// `widths[g]` to `widths[g + 1]` channels, the first of stride `strides[g]` and the others of
/// stride 1 and `widths[g + 1]` channels in and out. `block(in, out, stride, &rng)` makes one
/// block; blocks are made (and draw their weights) in order.
func residualStages(widths: [Int], strides: [Int], blocks: Int, rng: inout RNG,
                    block: (_ inPlanes: Int, _ planes: Int, _ stride: Int, _ rng: inout RNG) -> Layer) -> [Sequential] {
    strides.indices.map { g in
        Sequential((0..<blocks).map { i in
            block(i == 0 ? widths[g] : widths[g + 1], widths[g + 1], i == 0 ? strides[g] : 1, &rng)
        })
    }
}

extension StageChain {
    /// The chain of a residual network: the `stem` layers run at the start of the first stage (so
    /// every stage's output, the stem's included in the first, is a CAM layer); stage g ends at
    /// the layer named `names[g]`; `head` maps the last stage's output to logits.
    init(architecture: String, stem: [Layer], stages: [Sequential], names: [String], head: [Layer]) {
        precondition(stages.count == names.count && !stages.isEmpty, "\(names.count) names for \(stages.count) stages")
        let layers = stages.indices.map { g -> Layer in g == 0 ? Sequential(stem + [stages[0]]) : stages[g] }
        self.init(architecture: architecture, stages: Array(zip(names, layers)), head: Sequential(head))
    }
}

/// The state of numbered stages: stage g's entries under the prefix `name(g)` ("layer1",
/// "block1.layer", "layer.0.block").
func stagesState(_ stages: [Sequential], _ name: (Int) -> String) -> [(String, StateEntry)] {
    stages.enumerated().flatMap { prefixed(name($0.offset), $0.element.state) }
}

extension Architecture {
    /// The registry entry of a CIFAR ResNet-18 variant of the reference zoo (ResNet18,
    /// PreActResNet18): CAM layers `layer1` ... `layer4` (default `layer4`), head `linear`, 32x32
    /// RGB input by default, and at least 4x4 images (the image is halved at most three times).
    static func cifarResNet18(
        name: String, torchDefinition: String, signatureTensors: [String],
        builder: @escaping @Sendable (_ classes: Int, _ channels: Int, _ imageSize: Int, _ rng: inout RNG) -> ImageClassifier
    ) -> Architecture {
        Architecture(name: name, torchDefinition: torchDefinition, camLayers: ["layer1", "layer2", "layer3", "layer4"],
                     defaultCAMLayer: "layer4", headTensor: "linear.weight", signatureTensors: signatureTensors,
                     defaultInput: ZooInput(side: 32, channels: 3), minimumImageSize: 4, builder: builder,
                     leastValues: { classes, _ in 512 * classes })
    }
}
