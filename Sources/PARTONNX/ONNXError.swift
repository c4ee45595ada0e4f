import PARTEngine

/// A file that is not an ONNX model the engine can run: one sentence naming the file and, for a
/// graph it refuses, the op and the node.
public struct ONNXError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }
}
