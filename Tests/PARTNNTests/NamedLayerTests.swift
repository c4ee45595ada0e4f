import Foundation
import PARTEngine
import PARTNN
import XCTest

/// Named CAM layers: the layer lists, and the errors for a name a model does not have.
///
/// The checks that need a golden model (activations and Grad-CAM gradients at every layer
/// against PyTorch, features/head composing to the forward pass) run inside each
/// `GoldenModelTests` test, so that a big model is built once: see `checkNamedLayers`.
final class NamedLayerTests: XCTestCase {
    static let expectedLayers: [String: [String]] = [
        "small-cnn": ["conv1", "conv2", "conv3", "conv4", "act4"],
        "resnet18": ["layer1", "layer2", "layer3", "layer4"],
        "preact-resnet18": ["layer1", "layer2", "layer3", "layer4"],
        "wrn-16-2": ["block1", "block2", "block3"],
        "wrn-34-10": ["block1", "block2", "block3"],
        "wrn-28-2": ["block1", "block2", "block3"],
        "dm-wrn-16-2": ["layer.0", "layer.1", "layer.2"],
    ]
    /// docs/method.md#3-from-cam-to-epsilon-map.
    static let expectedDefault = ["small-cnn": "act4", "resnet18": "layer4", "preact-resnet18": "layer4",
                                  "wrn-16-2": "block3", "wrn-34-10": "block3", "wrn-28-2": "block3",
                                  "dm-wrn-16-2": "layer.2"]

    func testUnknownLayerIsAnErrorListingTheLayers() throws {
        var rng = RNG(seed: 3)
        let small = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let x = Tensor(shape: [1, 16, 16, 1], repeating: 0.5)
        XCTAssertThrowsError(try small.features(x, upTo: "act2", mode: .eval, tape: nil)) {
            XCTAssertEqual("\($0)", "small-cnn has no layer 'act2'; its CAM layers are conv1, conv2, conv3, conv4, act4")
        }
        let a = try small.features(x, upTo: "conv2", mode: .eval, tape: nil)
        XCTAssertThrowsError(try small.head(a, from: "layer4", mode: .eval, tape: nil)) {
            XCTAssert($0 is UnknownLayerError && "\($0)".contains("conv1, conv2, conv3, conv4, act4"), "\($0)")
        }
        let wrn = try ModelZoo.make("wrn-16-2", numClasses: 10, inChannels: 3, imageSize: 8, rng: &rng)
        XCTAssertThrowsError(try wrn.features(Tensor(shape: [1, 8, 8, 3]), upTo: "layer4", mode: .eval, tape: nil)) {
            XCTAssertEqual("\($0)", "wrn-16-2 has no layer 'layer4'; its CAM layers are block1, block2, block3")
        }
        XCTAssertThrowsError(try wrn.features(Tensor(shape: [1, 8, 8, 1]), upTo: "block1", mode: .eval, tape: nil)) {
            XCTAssert("\($0)".contains("wrn-16-2 takes images [N, 8, 8, 3]"), "\($0)")
        }
    }

    /// The pre-activation models run the reduced-precision (bf16) passes of attacks and CAMs:
    /// logits close to the f32 ones, and an input gradient at every named layer's split.
    func testPreActivationModelsRunInBFloat16() throws {
        try XCTSkipUnless(Engine.supportsBF16, "this CPU has no bfloat16 kernels")
        for arch in ["preact-resnet18", "wrn-16-2", "dm-wrn-16-2"] {
            var rng = RNG(seed: 6)
            let m = try ModelZoo.make(arch, numClasses: 10, inChannels: 3, imageSize: 8, rng: &rng)
            let x = Tensor(shape: [2, 8, 8, 3], values: (0..<384).map { _ in rng.uniform() })
            let f32 = try m.forward(x, mode: .eval)
            for layer in m.camLayers {
                let tape = Tape(parameterGradients: false)
                let a = try m.features(try x.converted(to: .bf16), upTo: layer, mode: .eval, tape: tape)
                XCTAssertEqual(a.dtype, .bf16, "\(arch) \(layer)")
                let logits = try m.head(a, from: layer, mode: .eval, tape: tape)
                XCTAssertLessThan(relativeError(try logits.converted(to: .f32).scalars, f32.scalars), 0.03, "\(arch) \(layer)")
                let g = try tape.backward(try Tensor(shape: logits.shape, repeating: 1).converted(to: logits.dtype))
                XCTAssertEqual(g.shape, x.shape, "\(arch) \(layer)")
                XCTAssert(try g.converted(to: .f32).scalars.allSatisfy(\.isFinite), "\(arch) \(layer)")
            }
        }
    }

    /// A classifier that implements only the single split has one CAM layer, "features",
    /// through the protocol's defaults.
    func testASingleSplitClassifierHasOneLayer() throws {
        var rng = RNG(seed: 3)
        let small = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let single = SingleSplit(small)
        XCTAssertEqual(single.camLayers, ["features"])
        XCTAssertEqual(single.defaultCAMLayer, "features")
        let x = Tensor(shape: [1, 16, 16, 1], values: (0..<256).map { Float($0 % 17) / 16 })
        let a = try single.features(x, upTo: "features", mode: .eval, tape: nil)
        XCTAssert(try single.head(a, from: "features", mode: .eval, tape: nil).scalars
                  == (try small.forward(x, mode: .eval)).scalars)
        XCTAssertThrowsError(try single.features(x, upTo: "act4", mode: .eval, tape: nil)) {
            XCTAssertEqual("\($0)", "small-cnn has no layer 'act4'; its CAM layers are features")
        }
    }

    /// The normalising wrapper keeps every CAM layer of the model it wraps: at each layer,
    /// head(features(x, upTo: L), from: L) equals the wrapper's own forward bit for bit, and the
    /// activations are the wrapped model's on the normalised image.
    func testNormalizedKeepsTheWrappedModelsLayers() throws {
        var rng = RNG(seed: 4)
        let small = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let wrapped = try Normalized(small, mean: [0.5], std: [0.25])
        XCTAssertEqual(wrapped.camLayers, small.camLayers)
        XCTAssertEqual(wrapped.defaultCAMLayer, small.defaultCAMLayer)
        let x = Tensor(shape: [1, 16, 16, 1], values: (0..<256).map { Float($0 % 17) / 16 })
        let z = Tensor(shape: x.shape, values: x.scalars.map { ($0 - 0.5) / 0.25 })
        let full = try wrapped.forward(x, mode: .eval).scalars
        for layer in wrapped.camLayers {
            let a = try wrapped.features(x, upTo: layer, mode: .eval, tape: nil)
            XCTAssertEqual(a.scalars, try small.features(z, upTo: layer, mode: .eval, tape: nil).scalars, layer)
            XCTAssertEqual(try wrapped.head(a, from: layer, mode: .eval, tape: nil).scalars, full, layer)
        }
        XCTAssertThrowsError(try wrapped.features(x, upTo: "layer4", mode: .eval, tape: nil))
    }
}

/// A classifier implementing only `features(_:mode:tape:)` and `head(_:mode:tape:)`.
private final class SingleSplit: ImageClassifier {
    let model: ImageClassifier
    init(_ model: ImageClassifier) { self.model = model }
    var architecture: String { model.architecture }
    var numClasses: Int { model.numClasses }
    var inputHeight: Int { model.inputHeight }
    var inputWidth: Int { model.inputWidth }
    var inputChannels: Int { model.inputChannels }
    var state: [(String, StateEntry)] { model.state }
    func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try model.features(x, upTo: model.defaultCAMLayer, mode: mode, tape: tape)
    }
    func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor {
        try model.head(a, from: model.defaultCAMLayer, mode: mode, tape: tape)
    }
}

extension GoldenModelTests {
    /// At every named layer L of the golden model `m` (eval mode, nothing changes the model):
    /// - the activations match PyTorch's forward hook on the module L (sampled),
    /// - head(features(x, upTo: L), from: L) gives forward(x)'s logits bit for bit,
    /// - a head-only backward of the predicted classes' logits gives the gradient at L, and the
    ///   raw Grad-CAM map sum_k mean_ij(G_k) A_k from it matches PyTorch's,
    /// - continuing that backward through the features gives forward(x)'s input gradient, bit for bit.
    /// Fixture: golden_layers.safetensors (scripts/make_golden.py).
    /// The reference values are those of golden_layers.safetensors, or for the models added
    /// after it the "layers." keys of their own golden file (`golden`).
    func checkNamedLayers(_ m: ImageClassifier, arch: String, input x: Tensor, golden own: SafetensorsFile? = nil) throws {
        XCTAssertEqual(m.camLayers, NamedLayerTests.expectedLayers[arch], arch)
        XCTAssertEqual(m.defaultCAMLayer, NamedLayerTests.expectedDefault[arch], arch)
        let g = try fixture("golden_layers.safetensors")
        let fullTape = Tape(parameterGradients: false)
        let logits = try m.forward(x, mode: .eval, tape: fullTape)
        var seed = Tensor(shape: logits.shape)
        for (b, c) in logits.argmaxRows().enumerated() { seed[flat: b * m.numClasses + Int(c)] = 1 }
        let inputGradient = try fullTape.backward(seed)

        for layer in m.camLayers {
            guard let features = g.tensors["\(arch).features.\(layer)"] ?? own?.tensors["layers.features.\(layer)"],
                  let raw = g.tensors["\(arch).cam_raw.\(layer)"] ?? own?.tensors["layers.cam_raw.\(layer)"] else {
                XCTFail("golden_layers.safetensors lacks \(arch) \(layer)")
                continue
            }
            let featureTape = Tape(parameterGradients: false), headTape = Tape(parameterGradients: false)
            let a = try m.features(x, upTo: layer, mode: .eval, tape: featureTape)
            let nchw = Layout.nhwcToNCHW(a)
            let picked = sampleIndices(count: nchw.count, samples: features.count).map { nchw[flat: $0] }
            assertClose(picked, features.scalars, tolerance: Self.logitTolerance, "features.\(layer)")
            XCTAssert(try m.head(a, from: layer, mode: .eval, tape: headTape).scalars == logits.scalars,
                      "\(arch): head(features(x, upTo: \(layer)), from: \(layer)) differs from forward(x)")

            let gradients = try headTape.backward(seed)
            XCTAssertEqual(gradients.shape, a.shape, "\(arch) \(layer)")
            var weights = Channels.sums(gradients)
            weights.scale(by: 1 / Float(a.shape[1] * a.shape[2]))
            let map = Channels.weightedSum(a, weights: weights)
            XCTAssertEqual(map.shape, raw.shape, "\(arch) \(layer)")
            assertClose(map.scalars, raw.scalars, tolerance: Self.gradientTolerance, "cam_raw.\(layer)")
            XCTAssert(try featureTape.backward(gradients).scalars == inputGradient.scalars,
                      "\(arch): the input gradient through the split at \(layer) differs from forward(x)'s")
        }
        // The default split is the default layer's.
        let a = try m.features(x, mode: .eval, tape: nil)
        XCTAssert(a.scalars == (try m.features(x, upTo: m.defaultCAMLayer, mode: .eval, tape: nil)).scalars, arch)
        XCTAssert(try m.head(a, mode: .eval, tape: nil).scalars == logits.scalars, arch)
        for (name, p) in m.parameters where p.gradient.maxAbs() != 0 {
            XCTFail("\(arch) \(name): input-only backward passes touched a parameter gradient")
        }
    }

    /// In training mode (batch statistics) the split at the first named layer composes to the
    /// forward pass too. It updates the running statistics, so it runs last.
    func checkSplitInTrainingMode(_ m: ImageClassifier, arch: String, input x: Tensor) throws {
        let layer = m.camLayers[0]
        let logits = try m.forward(x, mode: .train)
        let split = try m.head(try m.features(x, upTo: layer, mode: .train, tape: nil), from: layer, mode: .train, tape: nil)
        XCTAssert(split.scalars == logits.scalars, "\(arch) \(layer): train mode")
    }
}
