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
