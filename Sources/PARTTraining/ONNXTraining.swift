import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTONNX

/// Training a user's ONNX graph instead of a zoo architecture (`part train --model FILE.onnx`,
/// docs/commands.md#training-an-onnx-model): the configuration records the file's path and MD5,
/// the model is the graph run on the engine (`ONNXClassifier`), and every checkpoint writes the
/// trained graph as `RUN/last.onnx` beside `RUN/last.safetensors`.
public enum ONNXTraining {
    /// The `architecture` a configuration of an ONNX model records.
    public static let architecture = "onnx"
    /// The trained graph beside `last.safetensors`.
    public static let fileName = "last.onnx"

    /// The MD5 of the file at `path` (hex).
    static func digest(_ path: String) throws -> String {
        let bytes = try FileInput.read(URL(fileURLWithPath: path), limit: min(FileInput.defaultLimit, ONNXModel.sizeLimit))
        return bytes.withUnsafeBytes { MD5.hex($0) }
    }

    /// Sets `config` to train the ONNX model at `path`: its absolute path, its MD5 and the
    /// architecture "onnx". A file that cannot be read is a `TrainingArgumentError`.
    public static func use(_ path: String, in config: inout TrainingConfig) throws {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        guard ONNXModel.names(URL(fileURLWithPath: absolute)) else {
            throw TrainingArgumentError("--model \(path): an ONNX model (a .onnx file) is expected")
        }
        do {
            config.modelMD5 = try digest(absolute)
        } catch {
            throw TrainingArgumentError("--model \(error)")
        }
        config.model = absolute
        config.architecture = architecture
    }

    /// Why a configuration with `model` set cannot run, nil when it can.
    static func problem(_ config: TrainingConfig) -> String? {
        if config.architecture != architecture {
            return "--model brings its own architecture; drop --arch \(config.architecture)"
        }
        if config.normalize != nil {
            return "--normalize is not applied to an ONNX model: export the normalisation inside the graph and drop --normalize"
        }
        return nil
    }

    /// Loads the model of `config` (which has `model` set) for `data`: the file must be the one
    /// the run started with (its MD5), take the data's images and give its classes.
    static func model(_ config: TrainingConfig, data: ImageDataset) throws -> ONNXClassifier {
        guard let path = config.model else { throw TrainingError("no ONNX model in the configuration") }
        if let recorded = config.modelMD5 {
            let now: String
            do { now = try digest(path) } catch { throw TrainingError("--model \(error)") }
            guard now == recorded else {
                throw TrainingError("--model \(path) changed since the run started (MD5 \(recorded), now \(now)): "
                                    + "the run cannot continue with another model; put the original file back or start a new run")
            }
        }
        let model: ONNXClassifier
        do { model = try ONNXClassifier.load(URL(fileURLWithPath: path)) } catch { throw TrainingError("--model \(error)") }
        guard model.inputChannels == data.channels, model.inputHeight == data.height, model.inputWidth == data.width else {
            throw TrainingArgumentError("--model \(path) takes \(model.inputHeight)x\(model.inputWidth) images of "
                                        + "\(model.inputChannels) channel\(model.inputChannels == 1 ? "" : "s"); \(data.name) "
                                        + "has \(data.height)x\(data.width)x\(data.channels)")
        }
        guard model.numClasses == data.classes else {
            throw TrainingArgumentError("--model \(path) gives \(model.numClasses) logits; \(data.name) has \(data.classes) classes")
        }
        if let problem = model.trainingProblem { throw TrainingError(problem) }
        return model
    }

    /// The warnings of training `model` (each to be printed after "warning: ").
    public static func warnings(_ model: ONNXClassifier, path: String) -> [String] {
        var lines = [String]()
        if model.lacksBatchNorm {
            lines.append("\(path) has convolutions but no BatchNormalization node: an export in evaluation mode folds batch "
                         + "norm into the convolutions, and training it trains a network without batch norm; export with "
                         + "torch.onnx.export(..., training=torch.onnx.TrainingMode.TRAINING) to train it with batch norm")
        }
        let dropouts = model.dropoutNodes
        if !dropouts.isEmpty {
            lines.append("\(path): the engine runs \(dropouts.count) Dropout node\(dropouts.count == 1 ? "" : "s") "
                         + "(\(dropouts.prefix(3).joined(separator: ", "))) as the identity: the graph trains without dropout")
        }
        return lines
    }

    /// The CAM layer `name` of `config`'s model as a node name (an ONNX node or the tensor it
    /// outputs may be given).
    static func camLayer(_ name: String?, model: ONNXClassifier) -> String? {
        name.map { model.camLayer(named: $0) }
    }

    /// The checkpoint files of `model` besides its safetensors: for an ONNX model `last.onnx`,
    /// and `best.onnx` beside `best.safetensors` when this epoch is the best one (`--val-split`).
    static func checkpointFiles(_ model: ImageClassifier, best: Bool) throws -> [(String, [UInt8])] {
        guard let onnx = model as? ONNXClassifier else { return [] }
        let bytes = try onnx.trainedModelBytes()
        return [(fileName, bytes)] + (best ? [("best.onnx", bytes)] : [])
    }
}
