import PARTEngine
import PARTNN

/// A model seen through one of its named CAM layers: the same weights and forward pass, with
/// `layer` as the default CAM layer, so every CAM computed through it (`ClassActivation`,
/// `CAMBudget`) reads that layer's activations.
public final class CAMLayerView: ImageClassifier {
    public let base: ImageClassifier
    public let defaultCAMLayer: String

    /// Throws `UnknownCAMLayer` unless `layer` is one of `base.camLayers`.
    public init(_ base: ImageClassifier, layer: String) throws {
        guard base.camLayers.contains(layer) else {
            throw UnknownCAMLayer(description: "\(base.architecture) has no CAM layer '\(layer)'; its CAM layers are "
                                  + base.camLayers.joined(separator: ", "))
        }
        self.base = base
        self.defaultCAMLayer = layer
    }

    public var architecture: String { base.architecture }
    public var numClasses: Int { base.numClasses }
    public var inputHeight: Int { base.inputHeight }
    public var inputWidth: Int { base.inputWidth }
    public var inputChannels: Int { base.inputChannels }
    public var camLayers: [String] { base.camLayers }
    public var state: [(String, StateEntry)] { base.state }

    public func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try base.features(x, upTo: layer, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try base.head(a, from: layer, mode: mode, tape: tape)
    }
}

/// A CAM layer name the model does not have, with the names it has.
public struct UnknownCAMLayer: Error, CustomStringConvertible {
    public let description: String
}
