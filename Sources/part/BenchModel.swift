import Foundation
import PARTEngine
import PARTNN
import PARTONNX

extension Bench {
    /// The benchmarked model, its name and its input: `--model`'s ONNX graph (its own image shape
    /// and classes), else `--arch` at the architecture's usual input with 10 classes.
    func benchedModel(rng: inout RNG) throws -> (model: ImageClassifier, name: String, side: Int, channels: Int) {
        guard let path = model else {
            let input = try ModelZoo.architecture(arch.name).defaultInput
            let made = try ModelZoo.make(arch.name, numClasses: 10, inChannels: input.channels, imageSize: input.side, rng: &rng)
            return (made, arch.name, input.side, input.channels)
        }
        let onnx = try ONNXClassifier.load(URL(fileURLWithPath: path))
        guard onnx.inputHeight == onnx.inputWidth else {
            throw ONNXError("\(path) takes \(onnx.inputHeight)x\(onnx.inputWidth) images; part bench times square ones")
        }
        return (onnx, URL(fileURLWithPath: path).lastPathComponent, onnx.inputHeight, onnx.inputChannels)
    }
}
