import PARTEngine

/// An image classifier split at its CAM layer: `logits = head(features(x))`.
///
/// `features` ends at the layer whose activations class activation maps read (SmallCNN `act4`,
/// ResNet-18 `layer4`), so a CAM method needs only the head's backward pass.
public protocol ImageClassifier: AnyObject {
    /// The architecture's name in the model zoo ("small-cnn", "resnet18").
    var architecture: String { get }
    var numClasses: Int { get }
    /// Input images are [N, height, width, channels] in [0, 1].
    var inputHeight: Int { get }
    var inputWidth: Int { get }
    var inputChannels: Int { get }
    /// Activations of the CAM layer, [N, h, w, K].
    func features(_ x: Tensor, mode: Mode, tape: Tape?) throws -> Tensor
    /// Logits [N, classes] from the CAM layer's activations.
    func head(_ a: Tensor, mode: Mode, tape: Tape?) throws -> Tensor
    /// Parameters and buffers under their PyTorch names, in `state_dict` order.
    var state: [(String, StateEntry)] { get }
}

extension ImageClassifier {
    /// Logits [N, classes].
    public func forward(_ x: Tensor, mode: Mode, tape: Tape? = nil) throws -> Tensor {
        guard x.shape.count == 4 && x.shape[1] == inputHeight && x.shape[2] == inputWidth
                && x.shape[3] == inputChannels else {
            throw EngineError("\(architecture) takes images [N, \(inputHeight), \(inputWidth), \(inputChannels)], "
                              + "got \(x.shape)")
        }
        return try head(try features(x, mode: mode, tape: tape), mode: mode, tape: tape)
    }

    /// The trainable parameters in `state_dict` order.
    public var parameters: [(String, Parameter)] {
        state.compactMap { name, entry in
            if case .parameter(let p) = entry { return (name, p) }
            return nil
        }
    }

    /// Batch-norm running statistics and counters, by name.
    public var buffers: [(String, Buffer)] {
        state.compactMap { name, entry in
            if case .buffer(let b) = entry { return (name, b) }
            return nil
        }
    }
}
