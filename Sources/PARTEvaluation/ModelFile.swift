import Foundation
import PARTEngine
import PARTNN
import PARTONNX

/// Opens the model file handed to `part eval` and `part cam`: an ONNX model, named by its `.onnx` extension and
/// run on the engine (docs/commands.md#onnx-models), or a checkpoint (safetensors or `torch.save`, `key` picking the weights' dict of the latter).
public enum ModelFile {
    public static func load(_ url: URL, architecture: String?, numClasses: Int?, inputShape: (Int, Int, Int)?,
                            key: String? = nil, rng: inout RNG) throws -> (ImageClassifier, [String: String]) {
        guard ONNXModel.names(url) else {
            return try Checkpoint.loadModel(url, architecture: architecture, numClasses: numClasses, inputShape: inputShape,
                                            key: key, rng: &rng)
        }
        if let architecture {
            throw CheckpointError("\(url.path): an ONNX model brings its own architecture; drop --arch \(architecture)")
        }
        return (try ONNXClassifier.load(url), [:])
    }
}
