import Foundation
import PARTEngine
import XCTest
@testable import PARTNN

/// Checkpoints of RobustBench's DeepMind WideResNet (`DMWideResNet`) load with strict names: a
/// state_dict written by scripts/make_golden.py from a class with RobustBench's module tree
/// (a WRN-10-1 with CIFAR-100's mean and std in its buffers) is recognised from its names,
/// loads every tensor, `mean` and `std` included, and gives PyTorch's logits.
final class LeaderboardCheckpointTests: XCTestCase {
    func url(_ name: String) -> URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent(name)
    }

    func testRobustBenchDMStateDictLoadsWithStrictNames() throws {
        var rng = RNG(seed: 2)
        let file = try SafetensorsFile.read(from: url("dm_wrn_state_dict.safetensors"))
        let (m, meta) = try Checkpoint.loadModel(url("dm_wrn_state_dict.safetensors"), architecture: nil, numClasses: nil,
                                                 inputShape: nil, rng: &rng)
        XCTAssertNil(meta[Checkpoint.Key.architecture], "a plain state_dict says nothing of its architecture")
        XCTAssertEqual(m.architecture, "dm-wrn-10-1")
        XCTAssertEqual(Set(m.state.map(\.0)), Set(file.tensors.keys), "the names are exactly RobustBench's")
        XCTAssertEqual(Set(Checkpoint.file(of: m).tensors.keys), Set(file.tensors.keys), "and saving writes them back")
        let state = Dictionary(uniqueKeysWithValues: m.state.map { ($0.0, $0.1.tensor) })
        XCTAssertEqual(state["mean"]?.shape, [3, 1, 1])
        XCTAssertEqual(state["mean"]?.scalars, [0.5071, 0.4865, 0.4409], "the buffers are read, not the defaults")
        XCTAssertEqual(state["std"]?.scalars, [0.2673, 0.2564, 0.2762])

        let ref = try fixture("dm_wrn_state_dict_logits.safetensors")
        let logits = try m.forward(Layout.nchwToNHWC(ref.tensors["input"]!), mode: .eval)
        assertClose(logits.scalars, ref.tensors["logits"]!.scalars, tolerance: 1e-4, "logits")
    }

    func testAMissingOrForeignTensorIsRefused() throws {
        var rng = RNG(seed: 2)
        let model = try ModelZoo.make("dm-wrn-10-1", numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)
        let file = try SafetensorsFile.read(from: url("dm_wrn_state_dict.safetensors"))
        var missing = file
        missing.tensors["std"] = nil
        XCTAssertThrowsError(try Checkpoint.apply(missing, to: model, source: "dm.safetensors")) {
            XCTAssertEqual("\($0)", "dm.safetensors: tensor 'std' of dm-wrn-10-1 is missing")
        }
        var foreign = file
        foreign.tensors["layer.0.block.0.bn1.weight"] = foreign.tensors["layer.0.block.0.batchnorm_0.weight"]
        XCTAssertThrowsError(try Checkpoint.apply(foreign, to: model, source: "dm.safetensors")) {
            XCTAssertEqual("\($0)", "dm.safetensors: tensor 'layer.0.block.0.bn1.weight' is not part of dm-wrn-10-1")
        }
        // A std of zero loads (it is finite) but the first pass refuses it in one line.
        var zero = file
        zero.tensors["std"] = Tensor(shape: [3, 1, 1], values: [0.2, 0, 0.2])
        try Checkpoint.apply(zero, to: model, source: "dm.safetensors")
        XCTAssertThrowsError(try model.forward(Tensor(shape: [1, 32, 32, 3]), mode: .eval)) {
            XCTAssert("\($0)".contains("normalisation std") && !"\($0)".contains("\n"), "\($0)")
        }
    }

    /// The DeepMind form is its own family: a TRADES WideResNet's state_dict is not taken for
    /// it, nor the other way round, and the depth and width are read off the names and shapes.
    func testFamiliesAreToldApartByTheirNames() throws {
        var rng = RNG(seed: 4)
        for (arch, channels) in [("dm-wrn-16-2", 3), ("dm-wrn-28-1", 1), ("wrn-16-2", 3)] {
            let m = try ModelZoo.make(arch, numClasses: 10, inChannels: channels, imageSize: 8, rng: &rng)
            XCTAssertEqual(Checkpoint.inferArchitecture(Checkpoint.file(of: m).tensors.mapValues(\.shape)), arch)
        }
        let gray = try ModelZoo.make("dm-wrn-16-1", numClasses: 10, inChannels: 1, imageSize: 8, rng: &rng)
        let state = Dictionary(uniqueKeysWithValues: gray.state.map { ($0.0, $0.1.tensor.scalars) })
        XCTAssertEqual(state["mean"], [0], "no CIFAR-10 constants for a one-channel input")
        XCTAssertEqual(state["std"], [1])
    }
}
