import Foundation
import PARTData
import PARTEngine
import PARTNN
import PARTONNX

/// Whether a checkpoint was made for a dataset: its class count and image shape, from the
/// file's metadata (`classes`, `input_shape` as "H,W,C", written by `part train`) or, for a
/// plain PyTorch state_dict, from its tensors (the classifier head's rows, the first
/// convolution's input channels). Only the safetensors header is read.
public enum CheckpointFit {
    /// Tensor names of the classifier heads of the model zoo.
    static var heads: [String] { ModelZoo.headTensors }

    /// What a checkpoint says about its data; nil where it does not say.
    public struct Shape: Equatable, Sendable {
        public var classes: Int?
        /// [height, width, channels]
        public var input: [Int]?
        public var channels: Int?
        /// The dataset `part train` recorded in the metadata (nil for other files).
        public var dataset: String?
    }

    /// Reads the shape from the header of the safetensors file at `url`, from the tensors of a
    /// `torch.save` file (`key` picks its weights' dict), or from the graph of an ONNX model (`.onnx`).
    public static func shape(of url: URL, key: String? = nil) throws -> Shape {
        if ONNXModel.names(url) {   // the graph says it all
            let model = try ONNXClassifier.load(url)
            return Shape(classes: model.numClasses, input: [model.inputHeight, model.inputWidth, model.inputChannels],
                         channels: model.inputChannels)
        }
        // The strict header reader: regular files only (a FIFO would block an open), one
        // sentence naming the file for anything else.
        let format: CheckpointFile.Format
        do {
            format = try CheckpointFile.format(of: url)
        } catch {
            throw DatasetError("\(error)")
        }
        let meta: [String: String]
        let tensors: [(name: String, shape: [Int])]
        do {
            if format == .torch {
                let file = try CheckpointFile.read(from: url, key: key)
                meta = file.metadata
                tensors = file.tensors.keys.sorted().map { ($0, file.tensors[$0]!.shape) }
            } else {
                let header = try SafetensorsHeader.read(from: url)
                meta = header.metadata
                tensors = header.tensors.map { ($0.name, $0.shape) }
            }
        } catch let error as TorchFileError {
            throw DatasetError(error.description)
        } catch {
            let text = "\(error)", prefix = url.path + ": "
            let reason = text.hasPrefix(prefix) ? String(text.dropFirst(prefix.count)) : text
            throw DatasetError("\(url.path): not a safetensors file (\(reason))")
        }
        func tensorShape(_ name: String) -> [Int]? {
            tensors.first { $0.name == name || $0.name == "module." + name }?.shape
        }
        var shape = Shape()
        shape.dataset = meta["dataset"]
        shape.classes = meta["classes"].flatMap { Int($0) }
            ?? heads.lazy.compactMap { tensorShape($0) }.first(where: { $0.count == 2 })?[0]
        if let text = meta["input_shape"] {
            let parts = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            if parts.count == 3 { shape.input = parts }
        }
        shape.channels = shape.input?[2] ?? Set(ModelZoo.named.map(\.inputTensor)).sorted().lazy
            .compactMap { tensorShape($0) }.first(where: { $0.count == 4 })?[1]
        return shape
    }

    /// Throws a one-line error when the checkpoint at `url` was made for another class count
    /// or image shape than `dataset` has.
    public static func check(_ url: URL, fits dataset: ImageDataset, key: String? = nil) throws {
        // Every model takes square images: other data is the data's problem, whatever the checkpoint.
        guard dataset.height == dataset.width else {
            throw DatasetError("\(dataset.name) has \(dataset.height)x\(dataset.width) images, and the models take square "
                               + "images; check --data (resize or crop the images)")
        }
        let s = try shape(of: url, key: key)
        let data = "\(dataset.name) has"
        // The remedy: the dataset the checkpoint says it was trained on, when it says so.
        let trainedOn = s.dataset.map { "use it with the data it was trained on (\($0): --dataset \($0) --data DIR)" }
            ?? "use it with the dataset it was trained on (--dataset, --data)"
        if let classes = s.classes, classes != dataset.classes {
            throw DatasetError("\(url.path): the model has \(classes) classes but \(data) \(dataset.classes); \(trainedOn)\(dataset.classes < classes ? " or pass --classes \(classes) for your own data" : "")")
        }
        let shape = [dataset.height, dataset.width, dataset.channels]
        if let input = s.input, input != shape {
            throw DatasetError("\(url.path): the model takes \(input[0])x\(input[1])x\(input[2]) images but \(data) \(shape[0])x\(shape[1])x\(shape[2]); \(trainedOn)")
        } else if let channels = s.channels, channels != dataset.channels {
            throw DatasetError("\(url.path): the model takes \(channels)-channel images but \(data) \(dataset.channels)-channel ones; \(trainedOn)")
        }
    }
}
