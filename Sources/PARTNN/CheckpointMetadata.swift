import Foundation
import PARTEngine

extension Checkpoint {
    /// Makes a model of `architecture` for `classes` classes and square images of `imageSize`
    /// pixels with `channels` channels (`ModelZoo.make`'s signature).
    public typealias ModelBuilder = (_ architecture: String, _ classes: Int, _ channels: Int, _ imageSize: Int,
                                     _ rng: inout RNG) throws -> ImageClassifier

    /// What a checkpoint's metadata says about the data it was made for.
    public struct DeclaredShape: Sendable {
        public var classes: Int?
        /// (height, width, channels)
        public var input: (Int, Int, Int)?
    }

    /// Largest class count accepted from a file's metadata (ImageNet-21k has 21,841).
    public static let maximumClasses = 100_000
    /// Largest image side accepted from a file's metadata.
    public static let maximumImageSide = 1024
    /// Most image channels accepted from a file's metadata.
    public static let maximumChannels = 64

    /// Reads `classes` and `input_shape` ("H,W,C") from a checkpoint's metadata. A key that is
    /// absent gives nil; a value that is not a sensible number is an error naming the file and
    /// the key, because a model built from it would be wrong or would not fit in memory.
    public static func declaredShape(_ metadata: [String: String], source: String) throws -> DeclaredShape {
        var declared = DeclaredShape()
        if let text = metadata[Key.classes] {
            guard let classes = Int(text.trimmingCharacters(in: .whitespaces)), classes >= 1, classes <= maximumClasses else {
                throw CheckpointError("\(source): metadata \"\(Key.classes)\" is \"\(abbreviated(text))\"; it must be a "
                                      + "whole number from 1 to \(maximumClasses)")
            }
            declared.classes = classes
        }
        if let text = metadata[Key.inputShape] {
            let parts = text.split(separator: ",", omittingEmptySubsequences: false)
                .map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 3, let h = parts[0], let w = parts[1], let c = parts[2],
                  (1...maximumImageSide).contains(h), (1...maximumImageSide).contains(w), (1...maximumChannels).contains(c)
            else {
                throw CheckpointError("\(source): metadata \"\(Key.inputShape)\" is \"\(abbreviated(text))\"; it must be "
                                      + "\"H,W,C\" with sides from 1 to \(maximumImageSide) and 1 to \(maximumChannels) channels")
            }
            declared.input = (h, w, c)
        }
        return declared
    }

    /// A clause for a loading error when the data a model is built for differs from what the
    /// file's metadata declares (a checkpoint of another dataset); empty otherwise.
    static func fitHint(_ declared: DeclaredShape, classes: Int, input: (Int, Int, Int)) -> String {
        var made = [String](), asked = [String]()
        if let d = declared.input, d != input {
            made.append("\(d.0)x\(d.1)x\(d.2) images")
            asked.append("\(input.0)x\(input.1)x\(input.2) images")
        }
        if let d = declared.classes, d != classes {
            made.append("\(d) classes")
            asked.append("\(classes) classes")
        }
        guard !made.isEmpty else { return "" }
        return " (the file says it was made for \(made.joined(separator: " and ")), the data has "
            + "\(asked.joined(separator: " and ")): is it a checkpoint of another dataset?)"
    }

    /// A lower bound on the values a model of `architecture` holds: its largest weights (a
    /// WideResNet's second convolution of every block, SmallCNN's fc1, the residual networks'
    /// last linear layer). `apply` needs every one of them in the file, so a file holding fewer
    /// values cannot fit; `loadModel` checks this before building, so that a small file naming a
    /// huge model (a "wrn-250-32", 1024x1024 images) is refused instead of exhausting memory.
    static func leastValues(_ architecture: String, classes: Int, imageSize: Int) -> Int {
        (try? ModelZoo.architecture(architecture))?.leastValues(classes: classes, imageSize: imageSize) ?? 0
    }

    /// Refuses dimensions read off a file's tensor shapes that no model of the zoo has, before
    /// they size a model (a zero-element tensor may claim any shape).
    static func checkInferred(_ inferred: (classes: Int?, channels: Int?), source: String) throws {
        if let c = inferred.classes, !(1...maximumClasses).contains(c) {
            throw CheckpointError("\(source): its last linear layer has \(c) rows; a model of 1 to \(maximumClasses) "
                                  + "classes was expected")
        }
        if let c = inferred.channels, !(1...maximumChannels).contains(c) {
            throw CheckpointError("\(source): its first convolution takes \(c) input channels; 1 to \(maximumChannels) "
                                  + "were expected")
        }
    }

    private static func abbreviated(_ text: String) -> String { messageText(text, limit: 40) }
}
