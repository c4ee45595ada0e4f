import Foundation
import PARTEngine
import PARTNN
import PARTTraining
import XCTest

/// Parity with PyTorch on a fixed batch (fixtures from scripts/make_golden.py): state names,
/// the named CAM layers (`checkNamedLayers`), logits, loss, input gradient, every parameter
/// gradient, batch-norm running statistics, two SGD steps.
final class GoldenModelTests: XCTestCase {
    // Golden comparisons run on the plain fp32 path; FusionTests checks the fused and folded
    // passes against it.
    override func invokeTest() {
        Optimizations.without(Optimizations.Name.allCases.filter { $0 != .pool }) { super.invokeTest() }
    }

    static let logitTolerance = 1e-4
    static let gradientTolerance = 1e-3

    func testSmallCNN() throws { try checkModel("small-cnn") }

    func testResNet18() throws { try checkModel("resnet18") }

    func testPreActResNet18() throws { try checkModel("preact-resnet18") }

    /// A small WideResNet, every key of the golden file.
    func testWideResNet16x2() throws { try checkModel("wrn-16-2") }

    /// The paper's WRN-34-10 itself (46 M parameters; two 6x6 images, big tensors sampled, one
    /// SGD step).
    func testWideResNet34x10() throws { try checkModel("wrn-34-10") }

    /// The leaderboard's WRN-28-10 at a fifth of its width (the depth and code of the named
    /// wrn-28-10; WRN-34-20 at half width is the wrn-34-10 above).
    func testWideResNet28x2() throws { try checkModel("wrn-28-2") }

    /// The DeepMind form (SiLU, input normalised inside by its mean/std buffers, bottom-right
    /// padding of the strided convolutions) at reduced depth and width: dm-wrn-28-10 and
    /// dm-wrn-70-16 are this code at other sizes.
    func testDMWideResNet16x2() throws { try checkModel("dm-wrn-16-2") }

    func checkModel(_ arch: String) throws {
        defer { ParityLog.flush(arch) }
        let g = try fixture("golden_\(arch).safetensors")
        let x = Layout.nchwToNHWC(g.tensors["input"]!)
        let m = try goldenModel(arch, input: x)
        let labels = g.tensors["labels"]!.scalars.map { Int32($0) }
        checkStateNames(m, arch: arch, golden: g)
        try checkNamedLayers(m, arch: arch, input: x, golden: g)

        // Evaluation mode: logits, loss, input gradient only.
        let evalTape = Tape(parameterGradients: false)
        let logitsEval = try m.forward(x, mode: .eval, tape: evalTape)
        assertClose(logitsEval.scalars, g.tensors["logits_eval"]!.scalars, tolerance: Self.logitTolerance, "logits_eval")
        let (lossEval, dEval) = CrossEntropy.forwardBackward(logits: logitsEval, labels: labels)
        assertClose([lossEval], g.tensors["loss_eval"]!.scalars, tolerance: Self.logitTolerance, "loss_eval")
        let gxEval = Layout.nhwcToNCHW(try evalTape.backward(dEval))
        assertClose(gxEval.scalars, g.tensors["grad_input_eval"]!.scalars, tolerance: Self.gradientTolerance,
                    "grad_input_eval")
        for (name, p) in m.parameters {
            XCTAssertEqual(p.gradient.maxAbs(), 0, "\(name): an input-only backward must not touch parameter gradients")
        }
        for (name, b) in m.buffers where name.hasSuffix("num_batches_tracked") {
            XCTAssertEqual(b.value[flat: 0], 0, "\(name): evaluation must not update running statistics")
        }

        // Training mode: parameter gradients and running statistics.
        let tape = Tape(parameterGradients: true)
        let logits = try m.forward(x, mode: .train, tape: tape)
        assertClose(logits.scalars, g.tensors["logits_train"]!.scalars, tolerance: Self.logitTolerance, "logits_train")
        let (loss, dLogits) = CrossEntropy.forwardBackward(logits: logits, labels: labels)
        assertClose([loss], g.tensors["loss_train"]!.scalars, tolerance: Self.logitTolerance, "loss_train")
        let gx = Layout.nhwcToNCHW(try tape.backward(dLogits))
        assertClose(gx.scalars, g.tensors["grad_input"]!.scalars, tolerance: Self.gradientTolerance, "grad_input")
        for (name, p) in m.parameters {
            compareFullOrSampled(p.gradient, name: name, full: "grad", sampled: "gradsample", in: g,
                                 tolerance: Self.gradientTolerance)
        }
        for (name, b) in m.buffers {
            guard let ref = g.tensors["running.\(name)"] else { XCTFail("fixture lacks running.\(name)"); continue }
            assertClose(b.value.scalars, ref.scalars, tolerance: 1e-5, "running.\(name)")
        }

        // Two SGD steps (the second uses the momentum buffer). Weights are compared tightly and
        // the updates (after - before) loosely, so an error in the update rule cannot hide
        // behind the size of the weights. The WRN-34-10 file stops after the first step (its
        // second-step gradients are discontinuous at that batch, see scripts/make_golden.py):
        // there the loss after one step checks the step.
        let twoSteps = g.tensors.keys.contains { $0.hasPrefix("sgd.") || $0.hasPrefix("sgdsample.") }
        XCTAssert(twoSteps || arch == "wrn-34-10", "\(arch): the fixture lacks the SGD steps")
        let before = m.parameters.map { $0.1.value }
        let sgd = SGD(parameters: m.parameters, learningRate: 0.01, momentum: 0.9, weightDecay: 5e-4)
        sgd.step()
        sgd.zeroGradients()
        let tape2 = Tape(parameterGradients: true, inputGradient: false)
        let logits2 = try m.forward(x, mode: .train, tape: tape2)
        let (loss2, d2) = CrossEntropy.forwardBackward(logits: logits2, labels: labels)
        assertClose([loss2], g.tensors["loss_train2"]!.scalars, tolerance: Self.logitTolerance, "loss_train2")
        guard twoSteps else { return try checkSplitInTrainingMode(m, arch: arch, input: x) }
        try tape2.backward(d2)
        sgd.step()
        for ((name, p), w0) in zip(m.parameters, before) {
            compareFullOrSampled(p.value, name: name, full: "sgd", sampled: "sgdsample", in: g, tolerance: 1e-5)
            var update = p.value
            update.add(w0, scaledBy: -1)
            // The fixture's update: its weights minus the initial (formula) weights, which are
            // exactly `w0`, at the indices the fixture holds.
            var reference = SafetensorsFile()
            if let ref = g.tensors["sgd.\(name)"] {
                reference.tensors["update.\(name)"] = Tensor(shape: [ref.count],
                                                             values: zip(ref.scalars, w0.scalars).map { $0 - $1 })
            } else if let ref = g.tensors["sgdsample.\(name)"] {
                let start = sampleIndices(count: w0.count, samples: ref.count).map { w0[flat: $0] }
                reference.tensors["updatesample.\(name)"] = Tensor(shape: [ref.count],
                                                                   values: zip(ref.scalars, start).map { $0 - $1 })
            }
            compareFullOrSampled(update.reshaped([update.count]), name: name, full: "update", sampled: "updatesample",
                                 in: reference, tolerance: 1e-2)
        }
        try checkSplitInTrainingMode(m, arch: arch, input: x)
    }

    /// The model's parameter and buffer names are exactly PyTorch's: those of the fixture's
    /// `grad.` / `gradsample.` and `running.` keys. (Their order is checked by the formula
    /// parameters, which are numbered in `named_parameters()` order.)
    func checkStateNames(_ m: ImageClassifier, arch: String, golden g: SafetensorsFile) {
        func names(_ prefixes: [String]) -> Set<String> {
            Set(g.tensors.keys.compactMap { key in
                prefixes.first { key.hasPrefix($0 + ".") }.map { String(key.dropFirst($0.count + 1)) }
            })
        }
        XCTAssertEqual(Set(m.parameters.map(\.0)), names(["grad", "gradsample"]), "\(arch) parameters")
        XCTAssertEqual(Set(m.buffers.map(\.0)), names(["running"]), "\(arch) buffers")
        XCTAssertEqual(m.state.count, Set(m.state.map(\.0)).count, "\(arch): duplicate names")
    }

    /// A state_dict written by PyTorch (safetensors.torch.save_file) loads and gives PyTorch's logits.
    func testLoadsPyTorchStateDict() throws {
        var rng = RNG(seed: 5)
        // No metadata in a PyTorch file: the architecture is recognised from the tensor names.
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/smallcnn_torch_init.safetensors")
        let (m, meta) = try Checkpoint.loadModel(url, architecture: nil, numClasses: nil, inputShape: nil, rng: &rng)
        XCTAssertEqual(m.architecture, "small-cnn")
        XCTAssertNil(meta["architecture"])
        let ref = try fixture("smallcnn_torch_init_logits.safetensors")
        let logits = try m.forward(Layout.nchwToNHWC(ref.tensors["input"]!), mode: .eval)
        assertClose(logits.scalars, ref.tensors["logits"]!.scalars, tolerance: Self.logitTolerance, "logits")
    }
}
