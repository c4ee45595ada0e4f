import Foundation
import PARTCAM
import PARTEngine
import PARTNN
import XCTest

/// The four CAM methods against PyTorch on weights whose maps are not degenerate (SmallCNN with
/// PyTorch's initialisation, ResNet-18 with the formula parameters), and the `official` map rule
/// against NumPy + matplotlib (fixtures from scripts/make_golden_family.py).
final class FamilyCAMTests: XCTestCase {
    static let methods: [CAMMethodName] = [.gradcam, .xgradcam, .layercam, .gradcamPlusPlus]

    func model(_ arch: String) throws -> ImageClassifier {
        var rng = RNG(seed: 0)
        if arch == "small-cnn" {
            let m = try ModelZoo.make(arch, numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
            try Checkpoint.apply(try fixture("smallcnn_torch_init.safetensors"), to: m, source: "smallcnn_torch_init")
            return m
        }
        let m = try ModelZoo.make(arch, numClasses: 10, inChannels: 3, imageSize: 32, rng: &rng)
        setFormulaParameters(m)
        return m
    }

    func testSmallCNN() throws { try check("small-cnn") }

    func testResNet18() throws { try check("resnet18") }

    func check(_ arch: String) throws {
        defer { ParityLog.flush("\(arch) CAM methods") }
        let g = try fixture("family_cam_\(arch).safetensors")
        let m = try model(arch)
        let x = Layout.nchwToNHWC(g.tensors["input"]!)
        let before = m.state.map { $0.1.tensor.scalars }
        for name in Self.methods {
            let method = name.method
            XCTAssertEqual(method.name, name.rawValue)
            let (maps, predictions) = try ClassActivation.maps(m, images: x, method: method)
            XCTAssertEqual(predictions.map(Int.init), g.tensors["pred"]!.scalars.map { Int($0) }, name.rawValue)
            let expected = g.tensors["\(name.rawValue).cam"]!
            XCTAssertGreaterThan(expected.maxAbs(), 0.5, "\(name.rawValue): the reference maps are not degenerate")
            assertClose(maps.scalars, expected.scalars, tolerance: 1e-4, "cam.\(name.rawValue)")
            // CAMBudget's path (upsampling, squaring, the rule) on these maps, without another forward.
            let up = Bicubic.resize(maps, height: x.shape[1], width: x.shape[2]).squared()
            let expectedUp = g.tensors["\(name.rawValue).up"]!.scalars
            assertClose(up.scalars, expectedUp, tolerance: 1e-4, "up.\(name.rawValue)")
            // The zscore rule: only a pixel whose z-score sits on the threshold may fall either way.
            let eps = try ZScoreRule().budgets(up, channels: x.shape[3], epsilon: 0.1, epsilonLow: 0.0875)
            let expectedEps = g.tensors["\(name.rawValue).epsmap"]!.scalars
            let (n, hw, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
            XCTAssert(expectedEps.contains(0.1) && expectedEps.contains(0.0875), "both budgets occur")
            for b in 0..<n {
                let u = expectedUp[(b * hw)..<((b + 1) * hw)].map(Double.init)
                let mean = u.reduce(0, +) / Double(hw)
                let std = (u.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(hw)).squareRoot()
                for p in 0..<hw where eps[flat: (b * hw + p) * c] != expectedEps[b * hw + p] {
                    XCTAssertLessThan(abs((u[p] - mean) / std - 1), 1e-4,
                                      "\(name.rawValue) image \(b) pixel \(p) differs away from the threshold")
                }
            }
        }
        XCTAssertEqual(m.state.map { $0.1.tensor.scalars }, before, "CAMs leave the model untouched")
        for (name, p) in m.parameters { XCTAssertEqual(p.gradient.maxAbs(), 0, name) }
    }

    /// Every method's map of an image is the same alone and inside a batch.
    func testMapsDoNotDependOnTheBatch() throws {
        var rng = RNG(seed: 3)
        let m = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 20, rng: &rng)
        let x = Tensor(shape: [3, 20, 20, 1], values: (0..<(3 * 400)).map { _ in rng.uniform() })
        for name in Self.methods {
            let all = try ClassActivation.maps(m, images: x, method: name.method).maps
            for i in 0..<3 {
                let alone = try ClassActivation.maps(m, images: x.slice(i..<(i + 1)), method: name.method).maps
                XCTAssertLessThan(relativeError(alone.scalars, all.slice(i..<(i + 1)).scalars), 1e-4, "\(name) image \(i)")
            }
        }
    }

    /// Zero activations or gradients (a dead layer, a constant image) give all-zero maps, never NaN.
    func testDegenerateInputsGiveZeroMaps() throws {
        let zeros = Tensor(shape: [2, 3, 3, 4])
        var ones = Tensor(shape: [2, 3, 3, 4], repeating: 1)
        for name in Self.methods {
            for (a, g) in [(zeros, zeros), (ones, zeros), (zeros, ones), (ones, ones)] {
                let maps = ClassActivation.normalise(name.method.combine(activations: a, gradients: g))
                XCTAssertNil(maps.firstNonFinite(), "\(name)")
                XCTAssertEqual(maps.maxAbs(), 0, "\(name): a constant map normalises to zeros")
            }
        }
        ones[flat: 0] = -1   // negative gradients only: Grad-CAM++ and Layer-CAM weights vanish
        let negative = ones.map { -$0 }
        for name in Self.methods {
            XCTAssertNil(ClassActivation.normalise(name.method.combine(activations: ones, gradients: negative))
                .firstNonFinite(), "\(name)")
        }
    }

    func testCAMLayerNames() throws {
        var rng = RNG(seed: 0)
        let m = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 16, rng: &rng)
        let r = try ModelZoo.make("resnet18", numClasses: 10, inChannels: 3, imageSize: 8, rng: &rng)
        XCTAssertEqual(try CAMLayer.resolve(nil, model: m), "act4")
        XCTAssertEqual(try CAMLayer.resolve(nil, model: r), "layer4")
        XCTAssertEqual(try CAMLayer.resolve("layer2", model: r), "layer2")
        XCTAssertThrowsError(try CAMLayer.resolve("fc", model: r)) {
            XCTAssert("\($0)".contains("--cam-layer fc") && "\($0)".contains("layer1, layer2, layer3, layer4"), "\($0)")
        }
        XCTAssertThrowsError(try ClassActivation.maps(m, images: Tensor(shape: [1, 16, 16, 1]), method: GradCAM(),
                                                      layer: "fc1"))
    }

    /// Each method at a shallower named layer (SmallCNN conv3, ResNet-18 layer3) against PyTorch
    /// hooks on that module.
    func testNamedLayers() throws {
        for (arch, layer) in [("small-cnn", "conv3"), ("resnet18", "layer3")] {
            let g = try fixture("family_cam_\(arch).safetensors")
            let m = try model(arch)
            let x = Layout.nchwToNHWC(g.tensors["input"]!)
            for name in Self.methods {
                let maps = try ClassActivation.maps(m, images: x, method: name.method, layer: layer).maps
                let expected = try XCTUnwrap(g.tensors["\(layer).\(name.rawValue).cam"], "\(arch) \(layer)")
                XCTAssertEqual(maps.shape, expected.shape, "\(arch) \(layer) \(name.rawValue)")
                XCTAssertGreaterThan(expected.maxAbs(), 0.5, "\(arch) \(layer) \(name.rawValue): not degenerate")
                assertClose(maps.scalars, expected.scalars, tolerance: 1e-4, "\(arch).\(layer).\(name.rawValue)")
                let atDefault = try ClassActivation.maps(m, images: x, method: name.method).maps
                XCTAssertNotEqual(atDefault.shape, maps.shape, "\(arch): \(layer) is not the default layer")
            }
        }
    }

    /// The official rule against NumPy + matplotlib + PIL: jet's table, then the budgets.
    func testOfficialRuleMatchesMatplotlib() throws {
        let g = try fixture("family_official_rule.safetensors")
        let lut = g.tensors["jet_lut"]!.scalars
        XCTAssertEqual(lut.count, 256 * 3)
        XCTAssertLessThan(zip(JetColormap.table.map(Float.init), lut).map { abs($0 - $1) }.max()!, 1e-7)
        let up = g.tensors["up"]!
        let eps = try OfficialRule().budgets(up, channels: 3, epsilon: 8 / 255, epsilonLow: 7 / 255)
        XCTAssertEqual(eps.shape, [up.shape[0], 32, 32, 3])
        let expected = g.tensors["epsmap"]!.scalars, z = g.tensors["z"]!.scalars
        var mismatches = 0
        for (i, e) in expected.enumerated() where eps[flat: i] != e {
            mismatches += 1
            XCTAssertLessThan(abs(z[i] - 1), 1e-6, "entry \(i): \(eps[flat: i]) vs \(e) away from the threshold")
        }
        XCTAssertLessThanOrEqual(mismatches, 0)
        // The quirk is kept: blue (low importance in jet) is marked important more often than red.
        let n = up.shape[0] - 2, hw = 32 * 32
        let share = (0..<3).map { c in
            (0..<(n * hw)).filter { eps[flat: $0 * 3 + c] == 8 / 255 }.count
        }
        XCTAssertGreaterThan(share[2], share[0])
        // A constant map (image n) is one colour, jet(0) = (0, 0, 0.5): its blue channel stands out
        // (z = sqrt 2) and gets eps everywhere, red and green get eps-low. No NaN either way.
        XCTAssert((0..<hw).allSatisfy {
            eps[flat: (n * hw + $0) * 3] == 7 / 255 && eps[flat: (n * hw + $0) * 3 + 1] == 7 / 255
                && eps[flat: (n * hw + $0) * 3 + 2] == 8 / 255
        })
    }

    func testOfficialRuleRefusesOtherChannelCounts() throws {
        XCTAssertThrowsError(try OfficialRule().budgets(Tensor(shape: [1, 4, 4]), channels: 1, epsilon: 0.1,
                                                        epsilonLow: 0.05)) {
            XCTAssert("\($0)".contains("3-channel") && "\($0)".contains("--map-rule zscore"), "\($0)")
        }
    }
}
