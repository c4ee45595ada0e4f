import Foundation
@testable import PARTONNX
import XCTest

/// Forms of the supported ops that the engine cannot run are refused when the graph is read,
/// in one line naming the node and its op (graphs written here, on an input [1, 2, 4, 4]).
final class ONNXRefusalTests: XCTestCase {
    func node(_ op: String, _ inputs: [String], _ name: String, ints: [String: [Int64]] = [:],
              strings: [String: String] = [:]) -> Onnx_NodeProto {
        var n = Onnx_NodeProto()
        n.opType = op
        n.input = inputs
        n.output = [name]
        n.name = name
        for (key, values) in ints {
            var a = Onnx_AttributeProto()
            a.name = key
            a.type = .ints
            a.ints = values
            n.attribute.append(a)
        }
        for (key, value) in strings {
            var a = Onnx_AttributeProto()
            a.name = key
            a.type = .string
            a.s = Data(value.utf8)
            n.attribute.append(a)
        }
        return n
    }

    /// The graph of `nodes` on the image input "x", its output the last node's.
    func graph(_ nodes: [Onnx_NodeProto], constants: [String: ONNXConstant] = [:]) throws -> ONNXGraph {
        var g = Onnx_GraphProto()
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        input.type.tensorType.elemType = 1
        input.type.tensorType.shape.dim = [Int64(1), 2, 4, 4].map { v in
            var d = Onnx_TensorShapeProto.Dimension()
            d.dimValue = v
            return d
        }
        var output = Onnx_ValueInfoProto()
        output.name = nodes.last!.output[0]
        g.input = [input]
        g.output = [output]
        g.node = nodes
        var proto = Onnx_ModelProto()
        proto.graph = g
        return try ONNXGraph(ONNXModel(source: "m.onnx", proto: proto, graph: g, initializers: constants, opset: 17))
    }

    func assertRefused(_ nodes: [Onnx_NodeProto], constants: [String: ONNXConstant] = [:], _ expected: String,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try graph(nodes, constants: constants), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertTrue(error is ONNXError, text, file: file, line: line)
            XCTAssertTrue(text.hasPrefix("m.onnx: node '\(nodes.last!.name)' (\(nodes.last!.opType)): "), text,
                          file: file, line: line)
            XCTAssertTrue(text.contains(expected), text, file: file, line: line)
            XCTAssertFalse(text.contains("\n"), text, file: file, line: line)
        }
    }

    func testTransposeThatMovesDataIsRefused() {
        assertRefused([node("Transpose", ["x"], "t", ints: ["perm": [0, 2, 3, 1]])], "moves the data")
    }

    /// One value per channel ([N, C, 1, 1]) broadcasts over an image; an image of another size does not.
    func testProductOfActivationsOfTwoShapesIsRefused() {
        assertRefused([node("MaxPool", ["x"], "p", ints: ["kernel_shape": [2, 2], "strides": [2, 2]]), node("Mul", ["x", "p"], "m")],
                      "of one shape")
    }

    func testConstantThatDoesNotBroadcastIsRefused() {
        let c = ONNXConstant(shape: [3, 1, 1], values: .float([1, 2, 3]))
        assertRefused([node("Mul", ["x", "c"], "m")], constants: ["c": c], "does not broadcast")
    }

    func testPowerWithAnActivationExponentIsRefused() {
        let c = ONNXConstant(shape: [], values: .float([2]))
        assertRefused([node("Pow", ["c", "x"], "p")], constants: ["c": c], "must be its first")
    }

    func testReflectPaddingIsRefused() {
        let pads = ONNXConstant(shape: [8], values: .integer([0, 0, 1, 1, 0, 0, 1, 1]))
        assertRefused([node("Pad", ["x", "pads"], "p", strings: ["mode": "reflect"])], constants: ["pads": pads],
                      "only constant padding")
    }

    func testRectangularKernelIsRefused() {
        let w = ONNXConstant(shape: [2, 2, 1, 3], values: .float([Float](repeating: 0.1, count: 12)))
        assertRefused([node("Conv", ["x", "w"], "c")], constants: ["w": w], "square kernels")
    }

    func testConcatOfImagesOfTwoSizesIsRefused() {
        assertRefused([node("MaxPool", ["x"], "p", ints: ["kernel_shape": [2, 2], "strides": [2, 2]]),
                       node("Concat", ["x", "p"], "c", ints: [:])], "one size")
    }

    /// A product of two activations and a constant first operand run, for contrast.
    func testSupportedFormsAreRead() throws {
        let c = ONNXConstant(shape: [2, 1, 1], values: .float([0.5, 2]))
        let g = try graph([node("Sub", ["c", "x"], "s"), node("Mul", ["s", "x"], "m"), node("Flatten", ["m"], "f")],
                          constants: ["c": c])
        XCTAssertEqual(g.classes, 32)
    }
}
