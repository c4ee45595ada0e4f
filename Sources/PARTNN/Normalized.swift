import Foundation
import PARTEngine

/// A classifier whose inputs are normalised per channel before the wrapped model sees them:
/// `logits = model((x - mean) / std)`.
///
/// Models trained on normalised inputs (torchvision's `Normalize`, common in RobustBench-style
/// checkpoints) are wrapped so that attacks still work on images in [0, 1] and budgets keep
/// their meaning in pixel units: normalisation is a layer of the model (docs/method.md#9-pitfalls-the-tests-guard-against), with
/// its backward dL/dx = dL/dz / std. The wrapper adds no state: its `state` is the wrapped
/// model's, under the same names, so checkpoints load and save unchanged.
public final class Normalized: ImageClassifier {
    public let model: ImageClassifier
    public let mean: [Float]
    public let std: [Float]

    /// `mean` and `std` have one value per input channel (or one value for all); every std
    /// must be positive and finite.
    public init(_ model: ImageClassifier, mean: [Float], std: [Float]) throws {
        let c = model.inputChannels
        func expand(_ v: [Float], _ what: String) throws -> [Float] {
            if v.count == c { return v }
            if v.count == 1 { return Array(repeating: v[0], count: c) }
            throw EngineError("normalisation \(what) has \(v.count) values, the model takes \(c) channels")
        }
        self.model = model
        self.mean = try expand(mean, "mean")
        self.std = try expand(std, "std")
        guard self.mean.allSatisfy(\.isFinite) else { throw EngineError("normalisation mean must be finite") }
        guard self.std.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw EngineError("normalisation std must be positive and finite")
        }
    }

    public var architecture: String { model.architecture }
    public var numClasses: Int { model.numClasses }
    public var inputHeight: Int { model.inputHeight }
    public var inputWidth: Int { model.inputWidth }
    public var inputChannels: Int { model.inputChannels }
    public var state: [(String, StateEntry)] { model.state }

    public var camLayers: [String] { model.camLayers }
    public var defaultCAMLayer: String { model.defaultCAMLayer }

    /// Normalises, then runs the wrapped model up to `layer`: every CAM layer of the wrapped
    /// model stays reachable through the wrapper.
    public func features(_ x: Tensor, upTo layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        // Reduced-precision passes hand in bf16 images: normalise in f32, pass on the input's type.
        let z = try ChannelNormalization.forward(try x.converted(to: .f32), mean: mean, std: std).converted(to: x.dtype)
        // Recorded first, so it runs last in the backward pass; a tape that needs no input
        // gradient (a training step) gets nothing, so the wrapped model's first layer still
        // skips its own input gradient.
        if let tape, tape.needsInputGradient {
            let std = self.std
            tape.record { dz in
                try ChannelNormalization.backward(try dz.converted(to: .f32), std: std).converted(to: dz.dtype)
            }
        }
        return try model.features(z, upTo: layer, mode: mode, tape: tape)
    }

    public func head(_ a: Tensor, from layer: String, mode: Mode, tape: Tape?) throws -> Tensor {
        try model.head(a, from: layer, mode: mode, tape: tape)
    }
}

/// The text form of a normalisation, "MEAN/STD" with one decimal per channel on each side
/// ("0.2860/0.3530", "0.4914,0.4822,0.4465/0.2470,0.2435,0.2616"): what `--normalize` takes,
/// the run's record keeps and a trained model's checkpoint carries under `metadataKey`.
extension Normalized {
    /// The checkpoint metadata key of the normalisation a model was trained with.
    public static let metadataKey = "normalize"

    /// What `--normalize` takes, for help and errors.
    public static let syntax = "MEAN/STD with one decimal per channel on each side and every std > 0, e.g. 0.2860/0.3530 "
        + "or 0.4914,0.4822,0.4465/0.2470,0.2435,0.2616"

    /// (mean, std) of a "MEAN/STD" text; nil unless both sides hold as many finite decimals and
    /// every std is positive.
    public static func parse(_ text: String) -> (mean: [Float], std: [Float])? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        func values(_ s: Substring) -> [Float]? {
            let v = s.split(separator: ",", omittingEmptySubsequences: false).map { Float($0.trimmingCharacters(in: .whitespaces)) }
            return v.contains(where: { $0 == nil }) || v.isEmpty ? nil : v.compactMap { $0 }
        }
        guard parts.count == 2, let mean = values(parts[0]), let std = values(parts[1]), mean.count == std.count,
              mean.allSatisfy(\.isFinite), std.allSatisfy({ $0 > 0 && $0.isFinite }) else { return nil }
        return (mean, std)
    }

    /// The canonical text of a normalisation ("0.5/0.25" for "0.50/0.250"), so that two spellings
    /// of the same values compare equal in a run's record.
    public static func canonical(_ text: String) -> String? {
        guard let (mean, std) = parse(text) else { return nil }
        return mean.map { "\($0)" }.joined(separator: ",") + "/" + std.map { "\($0)" }.joined(separator: ",")
    }

    /// `model` wrapped to normalise by `text` ("MEAN/STD"); an `EngineError` for a text that does
    /// not parse or whose channel count is not the model's (one value serves every channel).
    public convenience init(_ model: ImageClassifier, text: String) throws {
        guard let (mean, std) = Normalized.parse(text) else {
            throw EngineError("normalisation takes \(Normalized.syntax); got '\(messageText(text, limit: 80))'")
        }
        try self.init(model, mean: mean, std: std)
    }
}
