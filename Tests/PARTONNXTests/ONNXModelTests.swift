import Foundation
import PARTEngine
import PARTNN
@testable import PARTONNX
import XCTest

/// ONNX files exported by PyTorch (scripts/make_onnx_fixtures.py) run on the engine: logits and
/// input gradients against PyTorch's, the CAM split, and the files the reader refuses.
final class ONNXModelTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/onnx")

    func model(_ name: String) throws -> ONNXClassifier {
        try ONNXClassifier.load(Self.folder.appendingPathComponent("\(name).onnx"))
    }

    /// max |a - e| / max |e|
    func relativeError(_ actual: [Float], _ expected: [Float]) -> Double {
        XCTAssertEqual(actual.count, expected.count)
        var diff = 0.0, scale = 0.0
        for (a, e) in zip(actual, expected) {
            diff = max(diff, Double(abs(a - e)))
            scale = max(scale, Double(abs(e)))
        }
        return scale == 0 ? diff : diff / scale
    }

    /// Logits within 1e-4 and the input gradient of sum(logits * w) within 1e-3 of PyTorch's.
    func checkParity(_ name: String, classes: Int, input: [Int]) throws {
        let golden = try SafetensorsFile.read(from: Self.folder.appendingPathComponent("\(name).safetensors"))
        let model = try model(name)
        XCTAssertEqual(model.numClasses, classes)
        XCTAssertEqual([model.inputHeight, model.inputWidth, model.inputChannels], input)
        let x = Layout.nchwToNHWC(try XCTUnwrap(golden.tensors["input"]))
        let tape = Tape(parameterGradients: false)
        let logits = try model.forward(x, mode: .eval, tape: tape)
        let expected = try XCTUnwrap(golden.tensors["logits"])
        XCTAssertEqual(logits.shape, expected.shape)
        let logitsError = relativeError(try logits.converted(to: .f32).scalars, expected.scalars)
        XCTAssertLessThan(logitsError, 1e-4, "\(name) logits")
        let gradient = Layout.nhwcToNCHW(try tape.backward(try XCTUnwrap(golden.tensors["weights"])).converted(to: .f32))
        let gradientError = relativeError(gradient.scalars, try XCTUnwrap(golden.tensors["input_gradient"]).scalars)
        XCTAssertLessThan(gradientError, 1e-3, "\(name) input gradient")

        print("ONNX \(name) against PyTorch: logits \(logitsError), input gradient \(gradientError)")
        // The default CAM layer: its activations and the head's gradient with respect to them.
        guard golden.tensors["cam_activation"] != nil else { return }
        let camTape = Tape(parameterGradients: false)
        let a = try model.features(x, upTo: model.defaultCAMLayer, mode: .eval, tape: nil)
        let camActivation = try XCTUnwrap(golden.tensors["cam_activation"])
        XCTAssertEqual(a.shape, Layout.nchwToNHWC(camActivation).shape)
        let activationError = relativeError(Layout.nhwcToNCHW(a).scalars, camActivation.scalars)
        XCTAssertLessThan(activationError, 1e-4, "\(name) activations of \(model.defaultCAMLayer)")
        _ = try model.head(a, from: model.defaultCAMLayer, mode: .eval, tape: camTape)
        let da = Layout.nhwcToNCHW(try camTape.backward(try XCTUnwrap(golden.tensors["weights"])))
        let camGradientError = relativeError(da.scalars, try XCTUnwrap(golden.tensors["cam_gradient"]).scalars)
        XCTAssertLessThan(camGradientError, 1e-3, "\(name) gradient at \(model.defaultCAMLayer)")
        print("ONNX \(name) CAM layer \(activationError), its gradient \(camGradientError)")
    }

    func testSmallCNNMatchesPyTorch() throws {
        try checkParity("smallcnn", classes: 10, input: [16, 16, 1])
    }

    func testResNetBlocksMatchPyTorch() throws {
        try checkParity("resnet_blocks", classes: 10, input: [8, 8, 3])
    }

    /// Every CAM layer splits the graph: head(features(x)) is the whole forward, and the cuts
    /// skip the nodes inside a residual block.
    func testCAMLayersSplitTheGraph() throws {
        let model = try model("resnet_blocks")
        XCTAssertEqual(model.defaultCAMLayer, "/layer1/layer1.1/Relu_1")
        XCTAssertTrue(model.camLayers.contains("/layer1/layer1.0/Relu_1"))
        XCTAssertFalse(model.camLayers.contains("/layer1/layer1.0/Relu"), "inside a block, before its Add")
        XCTAssertFalse(model.camLayers.contains("/AveragePool"), "a map of one pixel")
        let golden = try SafetensorsFile.read(from: Self.folder.appendingPathComponent("resnet_blocks.safetensors"))
        let x = Layout.nchwToNHWC(try XCTUnwrap(golden.tensors["input"]))
        let whole = try model.forward(x, mode: .eval).scalars
        for layer in model.camLayers {
            let a = try model.features(x, upTo: layer, mode: .eval, tape: nil)
            XCTAssertEqual(a.shape.count, 4, layer)
            let split = try model.head(a, from: layer, mode: .eval, tape: nil).scalars
            XCTAssertLessThan(relativeError(split, whole), 1e-6, layer)
        }
        XCTAssertThrowsError(try model.features(x, upTo: "nope", mode: .eval, tape: nil))
    }

    /// Every convolution of the training-mode ResNet blocks heads a fused chain, with its batch
    /// norm and, when a ReLU alone reads that, the ReLU (the stem, a block's first); of the
    /// evaluation export (batch norms folded by PyTorch) with its ReLU. A CAM layer inside a
    /// chain runs the chain unfused, so head(features(x)) at every CAM layer against the whole
    /// forward compares fused and unfused runs.
    func testConvBatchNormReluChainsAreFused() throws {
        for (name, middle) in [("resnet_blocks_train", BatchNorm2d.self as Layer.Type), ("resnet_blocks", ReLULayer.self)] {
            let model = try model(name)
            let steps = model.graph.steps
            let chains = fusedChains(model.graph)
            var lengths = [Int: Int]()
            for (i, step) in steps.enumerated() {
                guard case .layer(let layer) = step.op, layer is Conv2d else { continue }
                // In the training export every convolution feeds a batch norm: each heads a chain.
                if middle == BatchNorm2d.self { XCTAssertNotNil(chains[i], "\(name): \(step.name) heads no chain") }
                guard let chain = chains[i] else { continue }
                XCTAssertTrue(type(of: chain.layer.layers[1]) == middle, step.name)
                lengths[chain.count, default: 0] += 1
            }
            XCTAssertEqual(chains.count, lengths.values.reduce(0, +), name)
            XCTAssertGreaterThan(lengths[middle == ReLULayer.self ? 2 : 3] ?? 0, 0, name)
            let inner = chains.flatMap { i, chain in steps[i..<(i + chain.count - 1)].map(\.name) }
            XCTAssertTrue(model.camLayers.contains { inner.contains($0) }, "\(name): a CAM layer inside a chain")
            let x = Tensor(shape: [2, model.inputHeight, model.inputWidth, model.inputChannels],
                           values: (0..<(2 * model.inputHeight * model.inputWidth * model.inputChannels)).map { Float($0 % 7) / 7 })
            let whole = try model.forward(x, mode: .eval).scalars
            for layer in model.camLayers {
                let a = try model.features(x, upTo: layer, mode: .eval, tape: nil)
                let split = try model.head(a, from: layer, mode: .eval, tape: nil).scalars
                XCTAssertLessThan(relativeError(split, whole), 1e-5, "\(name) at \(layer)")
            }
        }
        // The training export: 2 chains of conv, batch norm and ReLU per block and one in the stem.
        let train = try model("resnet_blocks_train")
        XCTAssertEqual(fusedChains(train.graph).values.filter { $0.count == 3 }.count,
                       train.graph.steps.filter { $0.name.hasSuffix("/Relu") }.count)
    }

    /// LeakyRelu, Tanh, Elu, Clip (ReLU6), Softplus and Sigmoid on images and on features.
    func testActivationsMatchPyTorch() throws {
        try checkParity("activations", classes: 5, input: [8, 8, 3])
    }

    /// Dilated and grouped convolutions, overlapping padded pooling, Pad, Concat, Pow, products,
    /// quotients and differences of activations and with constants, a Transpose that moves nothing.
    func testOpsMatchPyTorch() throws {
        try checkParity("ops", classes: 4, input: [8, 8, 4])
    }

    // The bar's architectures (scripts/make_onnx_fixtures.py): random weights at reduced widths,
    // two 32x32 colour images.

    func testResNet18MatchesPyTorch() throws {
        try checkParity("resnet18", classes: 10, input: [32, 32, 3])
    }

    func testPreActResNet18MatchesPyTorch() throws {
        try checkParity("preact_resnet18", classes: 10, input: [32, 32, 3])
    }

    /// Max pooling with stride = kernel, batch norm folded into the convolutions by the exporter.
    func testVGG11BNMatchesPyTorch() throws {
        try checkParity("vgg11_bn", classes: 10, input: [32, 32, 3])
    }

    /// Depthwise (grouped) convolutions and ReLU6 as Clip.
    func testMobileNetV2MatchesPyTorch() throws {
        try checkParity("mobilenet_v2", classes: 10, input: [32, 32, 3])
    }

    /// SiLU as Sigmoid and Mul, the input normalised inside the model (Sub and Div by per-channel
    /// constants), the bottom-right padding of the strided convolutions as Pad.
    func testWRN28SiLUMatchesPyTorch() throws {
        try checkParity("wrn28_silu", classes: 10, input: [32, 32, 3])
        // Each x * Sigmoid(x) runs as one SiLU (25 of them), no Sigmoid left.
        let functions = try model("wrn28_silu").graph.steps.compactMap { step -> Eltwise? in
            if case .layer(let layer) = step.op { return (layer as? EltwiseLayer)?.function }
            return nil
        }
        XCTAssertEqual(functions.filter { $0 == .silu }.count, 25)
        XCTAssertFalse(functions.contains(.sigmoid))
        // Each F.pad before a convolution is the convolution's padding.
        XCTAssertFalse(try model("wrn28_silu").graph.steps.contains { step in
            if case .layer(let layer) = step.op { return layer is ImagePad }
            return false
        })
    }

    /// Concat of activations along the channels, a 2x2 average pooling.
    func testDenseNetBlockMatchesPyTorch() throws {
        try checkParity("densenet_block", classes: 10, input: [32, 32, 3])
    }

    /// HardSwish, and squeeze-and-excitation: channel weights from GlobalAveragePool, 1x1
    /// convolutions, ReLU and HardSigmoid, multiplied into the image ([N, C, 1, 1] broadcast).
    func testMobileNetV3MatchesPyTorch() throws {
        try checkParity("mobilenet_v3", classes: 10, input: [32, 32, 3])
        let broadcasts = try model("mobilenet_v3").graph.steps.filter { step in
            guard case .join(let join) = step.op, (join as? ElementwiseJoin)?.op == .multiply,
                  case .image(_, let h, _) = step.kind else { return false }
            return h > 1
        }
        // Nine squeeze-and-excitation blocks; the last three work on 1x1 images, where nothing broadcasts.
        XCTAssertEqual(broadcasts.count, 6, "a broadcast product per squeeze-and-excitation block on a larger image")
    }

    /// GELU exact and with the tanh approximation (opset 20's Gelu), and Mish as x * tanh(softplus(x)).
    func testGELUMatchesPyTorch() throws {
        try checkParity("gelu", classes: 5, input: [8, 8, 3])
    }

    /// GELU as opset 17 writes it (Div, Erf, Add, Mul), and outputs that are probabilities
    /// (Softmax) or log-probabilities (LogSoftmax) rather than logits.
    func testErfAndSoftmaxOutputsMatchPyTorch() throws {
        try checkParity("probabilities", classes: 4, input: [8, 8, 3])
        try checkParity("log_probabilities", classes: 4, input: [8, 8, 3])
    }

    /// ReduceMean over the height and width (keeping the axes or not, opset 18's axes input) and a
    /// BatchNorm1d of the head's features with its running statistics.
    func testReduceMeanAndFeatureBatchNormMatchPyTorch() throws {
        try checkParity("head", classes: 4, input: [8, 8, 3])
        XCTAssertEqual(try model("head").state.map(\.0).filter { $0.hasPrefix("bn.") },
                       ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"],
                       "the head's batch norm keeps PyTorch's names")
    }

    /// A node the engine does not run is refused in one line naming its op and its name.
    func testUnsupportedOpIsNamed() throws {
        XCTAssertThrowsError(try model("unsupported")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("node '/Cos' (Cos)"), text)
            XCTAssertFalse(text.contains("\n"), text)
        }
    }

    /// A model of two inputs, or of one that is not an image [N, C, H, W], is refused in one line.
    func testNonImageInputIsRefused() throws {
        for (name, expected) in [("two_inputs", "2 inputs"), ("features_input", "is not one float image tensor")] {
            XCTAssertThrowsError(try model(name)) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(expected), text)
                XCTAssertFalse(text.contains("\n"), text)
            }
        }
    }

    /// A truncated file, an empty one and one that is not protobuf are refused in one sentence.
    func testBrokenFilesAreRefused() throws {
        let bytes = [UInt8](try Data(contentsOf: Self.folder.appendingPathComponent("smallcnn.onnx")))
        for (what, data) in [("truncated", Array(bytes.prefix(bytes.count / 2))), ("empty", []),
                             ("text", Array("not a model".utf8)), ("header only", Array(bytes.prefix(40)))] {
            XCTAssertThrowsError(try ONNXGraph(try ONNXModel.decode(data, source: "m.onnx")), what) { error in
                XCTAssertTrue(error is ONNXError, "\(what): \(error)")
                XCTAssertTrue("\(error)".hasPrefix("m.onnx: "), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"), "\(error)")
            }
        }
    }

    /// Initializers: float16 and double read as float32, integer ones kept, data that does not
    /// match its shape and data in another file refused.
    func testTensorDecoding() throws {
        var half = Onnx_TensorProto()
        half.name = "h"
        half.dims = [3]
        half.dataType = 10
        half.rawData = Data([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00])   // 1, -2, the smallest subnormal
        let h = try ONNXModel.constant(half, source: "m")
        XCTAssertEqual(h.floats, [1, -2, Float(sign: .plus, exponent: -24, significand: 1)])

        var double = Onnx_TensorProto()
        double.dims = [2]
        double.dataType = 11
        double.doubleData = [0.5, -3]
        XCTAssertEqual(try ONNXModel.constant(double, source: "m").floats, [0.5, -3])

        var ints = Onnx_TensorProto()
        ints.dims = [2]
        ints.dataType = 7
        ints.int64Data = [-1, 1 << 40]
        XCTAssertEqual(try ONNXModel.constant(ints, source: "m").integers, [-1, 1 << 40])

        // A training-mode export's Dropout flag: one byte per value, or int32_data.
        var flags = Onnx_TensorProto()
        flags.dims = [3]
        flags.dataType = 9
        flags.rawData = Data([1, 0, 2])
        XCTAssertEqual(try ONNXModel.constant(flags, source: "m").integers, [1, 0, 1])
        flags.clearRawData()
        flags.int32Data = [0, 1, 1]
        XCTAssertEqual(try ONNXModel.constant(flags, source: "m").integers, [0, 1, 1])

        var short = Onnx_TensorProto()
        short.name = "w"
        short.dims = [2, 2]
        short.dataType = 1
        short.rawData = Data(count: 12)
        XCTAssertThrowsError(try ONNXModel.constant(short, source: "m")) { XCTAssertTrue("\($0)".contains("'w'"), "\($0)") }

        var huge = short
        huge.dims = [1 << 31, 1 << 31, 1 << 31]
        XCTAssertThrowsError(try ONNXModel.constant(huge, source: "m"))

        var external = short
        external.rawData = Data()
        external.clearRawData()
        external.dataLocation = .external
        XCTAssertThrowsError(try ONNXModel.constant(external, source: "m")) {
            XCTAssertTrue("\($0)".contains("another file"), "\($0)")
        }
    }
}
