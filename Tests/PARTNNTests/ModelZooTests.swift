import Foundation
import PARTEngine
import XCTest
@testable import PARTNN

/// The zoo registry says what the models are: each entry's CAM layers, default layer, head and
/// input tensors, default input and signature agree with the model it builds, and names outside
/// the registry are refused with the known names or the limit they exceed.
final class ModelZooTests: XCTestCase {
    /// Every named architecture and a small member of each pattern.
    var entries: [Architecture] {
        get throws { ModelZoo.named.filter { $0.name != "wrn-34-10" } + [try ModelZoo.architecture("wrn-16-2")] }
    }

    func testEachEntryDescribesTheModelItBuilds() throws {
        for entry in try entries {
            var rng = RNG(seed: 1)
            let side = max(entry.minimumImageSize, 16)
            let model = try entry.make(numClasses: 7, inChannels: 2, imageSize: side, rng: &rng)
            XCTAssertEqual(model.architecture, entry.name)
            XCTAssertEqual(model.camLayers, entry.camLayers, entry.name)
            XCTAssertEqual(model.defaultCAMLayer, entry.defaultCAMLayer, entry.name)
            let shapes = Dictionary(uniqueKeysWithValues: model.state.map { ($0.0, $0.1.tensor.shape) })
            XCTAssertEqual(shapes[entry.headTensor]?.first, 7, "\(entry.name): the head's rows are the classes")
            XCTAssertEqual(shapes[entry.inputTensor]?.dropFirst().first, 2, "\(entry.name): the input tensor's channels")
            XCTAssert(Set(shapes.keys).isSuperset(of: entry.signatureTensors), entry.name)
            XCTAssertEqual(Checkpoint.inferArchitecture(shapes), entry.name, "\(entry.name) is inferred from its state")
            let held = model.state.reduce(0) { $0 + $1.1.tensor.count }
            XCTAssertLessThanOrEqual(entry.leastValues(classes: 7, imageSize: side), held, entry.name)
            XCTAssert(ModelZoo.headTensors.contains(entry.headTensor), entry.name)
            XCTAssertThrowsError(try entry.make(numClasses: 7, inChannels: 2, imageSize: entry.minimumImageSize - 1,
                                                rng: &rng), entry.name)
        }
    }

    func testUnknownNamesAndPatternsOutOfRangeAreRefusedInOneSentence() throws {
        XCTAssertEqual(ModelZoo.architectures, ["small-cnn", "resnet18", "preact-resnet18", "wrn-34-10"])
        XCTAssert(ModelZoo.recognises(ModelZoo.defaultArchitecture) && ModelZoo.recognises(ModelZoo.benchmarkArchitecture))
        let unknown = try XCTUnwrap(ModelZoo.problem("vgg"))
        XCTAssert(unknown.hasPrefix("unknown --arch 'vgg' (known: small-cnn, resnet18, preact-resnet18, wrn-34-10, or "
                                    + "wrn-<depth>-<widen> with depth 6n + 4 in 10...250 and widen 1...32)"), unknown)
        XCTAssert(try XCTUnwrap(ModelZoo.problem("wrn-15-2")).contains("depth must be 6n + 4 between 10 and 250"))
        XCTAssert(try XCTUnwrap(ModelZoo.problem("wrn-16-33")).contains("widen factor must be between 1 and 32, got 33"))
        XCTAssertNil(ModelZoo.problem("wrn-28-4"))
        for problem in ["vgg", "wrn-15-2", "wrn-16-33"].compactMap(ModelZoo.problem) {
            XCTAssertFalse(problem.contains("\n"), problem)
        }
    }
}
