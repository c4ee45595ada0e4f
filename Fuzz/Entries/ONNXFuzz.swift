import PARTEngine
import PARTNN
import PARTONNX

/// An ONNX file read, folded and turned into a classifier (`ONNXModel.decode`, `ONNXGraph`,
/// `ONNXClassifier`): each step either refuses with an `ONNXError` or gives a model. A model
/// of small images and few parameters then runs a forward and backward pass on two images:
/// the logits must be [2, classes] and the input gradient of the input's shape, split at every
/// CAM layer as well as whole.
enum ONNXFuzz {
    static func run(_ bytes: [UInt8]) throws {
        let model: ONNXClassifier
        do {
            model = try ONNXClassifier(try ONNXGraph(try ONNXModel.decode(bytes, source: "input")))
        } catch {
            try requireRefusal(error, [ONNXError.self], "ONNX loading")
            return
        }
        let pixels = model.inputHeight * model.inputWidth * model.inputChannels
        let parameters = model.state.reduce(0) { $0 + $1.1.tensor.count }
        guard pixels <= 4_096, parameters <= 1 << 20 else { return }
        let x = Tensor(shape: [2, model.inputHeight, model.inputWidth, model.inputChannels],
                       values: (0..<(2 * pixels)).map { Float($0 % 7) / 7 })
        for layer in model.camLayers {
            let tape = Tape(parameterGradients: false)
            let a = try model.features(x, upTo: layer, mode: .eval, tape: tape)
            let logits = try model.head(a, from: layer, mode: .eval, tape: tape)
            guard logits.shape == [2, model.numClasses] else {
                throw FuzzFinding("logits of shape \(logits.shape) for \(model.numClasses) classes (split at \(layer))")
            }
            let gradient = try tape.backward(Tensor(shape: logits.shape, repeating: 1))
            guard gradient.shape == x.shape else {
                throw FuzzFinding("an input gradient of shape \(gradient.shape) for images \(x.shape) (split at \(layer))")
            }
        }
    }
}
