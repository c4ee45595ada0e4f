import Foundation
import PARTEngine
import XCTest
@testable import PARTNN

/// The zoo registry says what the models are: each entry's CAM layers, default layer, head and
/// input tensors, default input and signature agree with the model it builds, and names outside
/// the registry are refused with the known names or the limit they exceed.
final class ModelZooTests: XCTestCase {
    /// The named architectures, in help's order.
    static let expectedNames = ["small-cnn", "resnet18", "preact-resnet18", "wrn-34-10", "wrn-28-10", "wrn-34-20",
                                "dm-wrn-28-10", "dm-wrn-70-16"]

    /// Every named architecture outside the WideResNet families (whose named members are large)
    /// and a small member of each pattern.
    var entries: [Architecture] {
        get throws {
            ModelZoo.named.filter { entry in !ModelZoo.patterns.contains { $0.matches(entry.name) } }
                + [try ModelZoo.architecture("wrn-16-2"), try ModelZoo.architecture("dm-wrn-16-2")]
        }
    }

    /// The leaderboard's sizes are registry entries of their family: the entry the pattern
    /// resolves, with the parameter counts of the published networks (WRN-28-10 36.5 M,
    /// WRN-34-20 184.6 M, WRN-70-16 266.9 M, batch-norm statistics included here).
    func testLeaderboardSizesAreNamedMembersOfTheirFamilies() throws {
        for (name, template, millions) in [("wrn-28-10", "wrn-<depth>-<widen>", 36.5), ("wrn-34-20", "wrn-<depth>-<widen>", 184.6),
                                           ("dm-wrn-28-10", "dm-wrn-<depth>-<widen>", 36.5),
                                           ("dm-wrn-70-16", "dm-wrn-<depth>-<widen>", 266.9)] {
            let entry = try XCTUnwrap(ModelZoo.named.first { $0.name == name }, name)
            let pattern = try XCTUnwrap(ModelZoo.patterns.first { $0.matches(name) }, name)
            XCTAssertEqual(pattern.template, template)
            XCTAssertEqual(entry.camLayers, try ModelZoo.architecture(name).camLayers)
            XCTAssertEqual(entry.defaultCAMLayer, pattern.defaultCAMLayer, name)
            let parameters = Double(try XCTUnwrap(ModelZoo.estimatedParameters(name, numClasses: 10, inChannels: 3))) / 1e6
            XCTAssertEqual(parameters, millions, accuracy: 0.01 * millions, name)
        }
        XCTAssertEqual(try ModelZoo.architecture("dm-wrn-70-16").torchDefinition, "DMWideResNet")
        XCTAssertEqual(try ModelZoo.architecture("wrn-34-20").torchDefinition, "WideResNet")
        let layers = ModelZoo.defaultCAMLayers
        XCTAssert(layers.hasSuffix("wrn-<depth>-<widen> block3, dm-wrn-<depth>-<widen> layer.2"), layers)
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
        XCTAssertEqual(ModelZoo.architectures, Self.expectedNames)
        XCTAssert(ModelZoo.recognises(ModelZoo.defaultArchitecture) && ModelZoo.recognises(ModelZoo.benchmarkArchitecture))
        let unknown = try XCTUnwrap(ModelZoo.problem("vgg"))
        XCTAssert(unknown.hasPrefix("unknown --arch 'vgg' (known: small-cnn, resnet18, preact-resnet18, wrn-34-10, wrn-28-10, "
                                    + "wrn-34-20, dm-wrn-28-10, dm-wrn-70-16, or wrn-<depth>-<widen> with depth 6n + 4 in "
                                    + "10...250 and widen 1...32, or dm-wrn-<depth>-<widen> (DeepMind form, SiLU) with the "
                                    + "same limits)"), unknown)
        XCTAssert(try XCTUnwrap(ModelZoo.problem("wrn-15-2")).contains("depth must be 6n + 4 between 10 and 250"))
        XCTAssert(try XCTUnwrap(ModelZoo.problem("wrn-16-33")).contains("widen factor must be between 1 and 32, got 33"))
        XCTAssertNil(ModelZoo.problem("wrn-28-4"))
        for problem in ["vgg", "wrn-15-2", "wrn-16-33"].compactMap(ModelZoo.problem) {
            XCTAssertFalse(problem.contains("\n"), problem)
        }
    }
}
