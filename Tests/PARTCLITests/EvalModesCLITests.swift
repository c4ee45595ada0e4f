import Foundation
import PARTEngine
import PARTNN
import PARTTestSupport
import XCTest

/// `part eval`'s checks for a flawed evaluation, transfer attacks, robustness curves (several
/// --eps) and the RobustBench protocol, as a user runs them.
final class EvalModesCLITests: XCTestCase {
    struct Files {
        let dir: URL
        /// A SmallCNN whose predictions are the labels of the images (clean accuracy 100%); its first
        /// layer is scaled by 30 so that its predictions depend on the image more than on the
        /// biases (a fresh network gives most images the same class, out of reach of small budgets).
        let target: URL
        /// The target with every weight moved by up to 20%: close enough for attacks to transfer.
        let source: URL
        /// The target with its last layer (weight and bias) multiplied by 10,000: the same
        /// predictions, a saturated softmax.
        let scaled: URL
    }

    /// 16 MNIST-format test images of noise, labelled with the target's own predictions.
    func setUpFiles() throws -> Files {
        let dir = try makeTemporaryDirectory(self, "part-eval-modes")
        var rng = RNG(seed: 4)
        let fresh = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        var sharp = Checkpoint.file(of: fresh, metadata: Checkpoint.describe(fresh))
        sharp.tensors["conv1.weight"]!.scale(by: 30)
        sharp.tensors["conv1.bias"]!.scale(by: 30)
        let (target, _) = try Checkpoint.loadModel(sharp, source: "target", architecture: nil, numClasses: 10,
                                                   inputShape: (28, 28, 1), rng: &rng)
        var pixels = [UInt8]()
        for _ in 0..<(16 * 28 * 28) { pixels.append(UInt8(rng.uniform() * 255)) }
        let x = Tensor(shape: [16, 28, 28, 1], values: pixels.map { Float($0) / 255 })
        let labels = try target.forward(x, mode: .eval).argmaxRows()
        var images: [UInt8] = [0, 0, 8, 3], labelBytes: [UInt8] = [0, 0, 8, 1]
        for d in [16, 28, 28] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labelBytes += withUnsafeBytes(of: UInt32(16).bigEndian, Array.init)
        try Data(images + pixels).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labelBytes + labels.map { UInt8($0) }).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))

        let files = Files(dir: dir, target: dir.appendingPathComponent("target.safetensors"),
                          source: dir.appendingPathComponent("source.safetensors"),
                          scaled: dir.appendingPathComponent("scaled.safetensors"))
        try Checkpoint.save(target, to: files.target, metadata: Checkpoint.describe(target))
        var moved = Checkpoint.file(of: target, metadata: Checkpoint.describe(target))
        for name in moved.tensors.keys.sorted() where name.hasSuffix("weight") {
            moved.tensors[name]!.withUnsafeMutableBufferPointer { p in
                for i in p.indices { p[i] *= 1 + 0.4 * (rng.uniform() - 0.5) }
            }
        }
        try moved.write(to: files.source)
        var scaled = Checkpoint.file(of: target, metadata: Checkpoint.describe(target))
        scaled.tensors["fc3.weight"]!.scale(by: 10_000)
        scaled.tensors["fc3.bias"]!.scale(by: 10_000)
        try scaled.write(to: files.scaled)
        return files
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    /// The per-point lines of a results file (the header dropped).
    func points(_ url: URL) throws -> [[String: Any]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n").dropFirst().map { try json(String($0)) }
    }

    func testLogitsScaledUpAreReportedAsGradientMaskingAndTheModelItselfIsNot() throws {
        let f = try setUpFiles()
        let arguments = ["--data", f.dir.path, "--attacks", "natural,pgd:steps=2", "--quiet"]
        let masked = try runPart(["eval", f.scaled.path] + arguments)
        XCTAssertEqual(masked.status, 0, masked.stderr)
        let lines = masked.stderr.split(separator: "\n")
        XCTAssert(lines.contains { $0.hasPrefix("warning: gradient masking: ") && $0.contains("saturated") }, masked.stderr)
        let plain = try runPart(["eval", f.target.path] + arguments)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("warning:"), plain.stderr)
        // The JSON carries the warnings too.
        let out = try json(try runPart(["eval", f.scaled.path, "--json"] + arguments).stdout)
        XCTAssert((out["warnings"] as? [String])?.contains { $0.hasPrefix("gradient masking: ") } == true, "\(out)")
    }

    func testSeveralBudgetsWriteOneResultsFileEachAndACurve() throws {
        let f = try setUpFiles()
        let results = f.dir.appendingPathComponent("eval/curve.jsonl")
        let command = ["eval", f.target.path, "--data", f.dir.path, "--attacks", "natural,pgd:steps=3", "--eps", "0,1/255,0.1",
                       "--save-results", results.path, "--json", "--quiet"]
        let r = try runPart(command)
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try json(r.stdout)
        let curve = try XCTUnwrap(out["curve"] as? [[String: Any]])
        XCTAssertEqual(curve.map { ($0["epsilon"] as! NSNumber).floatValue }, [0, Float(1) / 255, 0.1])
        let robust = curve.map { $0["robustAccuracy"] as! Double }
        XCTAssertEqual(robust[0], 1, "eps 0 leaves every correctly classified point robust")
        XCTAssertGreaterThanOrEqual(robust[1], robust[2])
        XCTAssertEqual((out["evaluations"] as? [Any])?.count, 3)
        for (name, eps) in [("curve-eps0.jsonl", Float(0)), ("curve-eps1_255.jsonl", Float(1) / 255), ("curve-eps0.1.jsonl", 0.1)] {
            let file = f.dir.appendingPathComponent("eval/" + name)
            let header = try json(String(try String(contentsOf: file, encoding: .utf8).split(separator: "\n")[0]))
            XCTAssertEqual((header["epsilon"] as! NSNumber).floatValue, eps, name)
            XCTAssertEqual(try points(file).count, 16, name)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: results.path), "no file under the bare name")
        // Run again: every file is finished and read back, with the same figures.
        let again = try runPart(command)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual((try json(again.stdout)["curve"] as? [[String: Any]])?.map { $0["robustAccuracy"] as! Double }, robust)
        for bad in ["0.1,,0.2", "0.1,0.1", "0.1,2"] {
            let e = try runPart(["eval", f.target.path, "--eps", bad])
            XCTAssertEqual(e.status, 64, e.stderr)
            XCTAssert(e.stderr.contains("--eps"), e.stderr)
        }
    }

    /// A transfer evaluation is the source's --save-adversarial examples evaluated on the target,
    /// point by point, and never beats the white-box attack on the target.
    func testTransferEqualsEvaluatingTheSourcesSavedExamplesAndIsWeakerThanWhiteBox() throws {
        let f = try setUpFiles()
        let attack = ["--attacks", "natural,pgd:steps=5", "--eps", "0.15", "--quiet"]
        let transferFile = f.dir.appendingPathComponent("transfer.jsonl")
        let transfer = try runPart(["eval", f.target.path, "--source", f.source.path, "--data", f.dir.path, "--json",
                                    "--save-results", transferFile.path] + attack)
        XCTAssertEqual(transfer.status, 0, transfer.stderr)
        let whiteBox = try runPart(["eval", f.target.path, "--data", f.dir.path, "--json"] + attack)
        XCTAssertEqual(whiteBox.status, 0, whiteBox.stderr)
        let transferAccuracy = try json(transfer.stdout)["robustAccuracy"] as! Double
        let whiteBoxAccuracy = try json(whiteBox.stdout)["robustAccuracy"] as! Double
        XCTAssertGreaterThanOrEqual(transferAccuracy, whiteBoxAccuracy)
        XCTAssertLessThan(transferAccuracy, 1, "some examples of the source fool the target")

        let npy = f.dir.appendingPathComponent("source-adv.npy")
        let saved = try runPart(["eval", f.source.path, "--data", f.dir.path, "--save-adversarial", npy.path] + attack)
        XCTAssertEqual(saved.status, 0, saved.stderr)
        let replayFile = f.dir.appendingPathComponent("replay.jsonl")
        let replay = try runPart(["eval", f.target.path, "--dataset", "npy", "--data", npy.path, "--classes", "10",
                                  "--attacks", "natural", "--save-results", replayFile.path, "--quiet"])
        XCTAssertEqual(replay.status, 0, replay.stderr)
        let a = try points(transferFile), b = try points(replayFile)
        XCTAssertEqual(a.count, 16)
        XCTAssertEqual(b.count, 16)
        for (t, r) in zip(a, b) {
            XCTAssertEqual(t["index"] as? Int, r["index"] as? Int)
            XCTAssertEqual(t["transfer"] as? Bool, (t["natural"] as! Bool) && (r["natural"] as! Bool), "\(t) \(r)")
            if t["brokenBy"] as? String == "transfer" {
                XCTAssertEqual(t["adversarialPrediction"] as? Int, r["prediction"] as? Int, "\(t) \(r)")
            }
        }
        let header = try json(String(try String(contentsOf: transferFile, encoding: .utf8).split(separator: "\n")[0]))
        XCTAssertEqual(header["columns"] as? [String], ["natural", "transfer"])
        XCTAssert((header["attacks"] as? [String])?.last?.hasPrefix("transfer:source=") == true, "\(header)")
    }

    /// AutoAttack standard in full (5,000 Square queries on every point it leaves robust) takes
    /// minutes per point in a debug build, so no point here may survive it (the target as it is
    /// keeps every one of these noise images at 8/255). The L-inf protocol
    /// runs on the target with its last bias moved so that the first point's top two logits
    /// differ by a thousandth of their gap (`nearly`): that point keeps its label (the
    /// prediction) and APGD-CE, AutoAttack's first stage, breaks it; the other points are
    /// labelled one class off. Clean accuracy is 25%, robust accuracy 0, and the later stages are
    /// skipped. The L2 protocol runs on points all labelled one class off (clean accuracy 0).
    /// What is checked is the JSON, its agreement with AutoAttack run by hand, and the flag checks.
    func testRobustBenchProtocolPrintsModelInfoWithTheFiguresOfAutoAttack() throws {
        let f = try setUpFiles()
        let images = f.dir.appendingPathComponent("t10k-images-idx3-ubyte")
        let labels = try Data(contentsOf: f.dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let x = Tensor(shape: [4, 28, 28, 1], values: try Data(contentsOf: images).dropFirst(16).prefix(4 * 784).map { Float($0) / 255 })
        var rng = RNG(seed: 5)
        let load = { (url: URL, rng: inout RNG) in
            try Checkpoint.loadModel(url, architecture: nil, numClasses: 10, inputShape: (28, 28, 1), rng: &rng).0
        }
        let logits = try load(f.target, &rng).forward(x, mode: .eval).scalars
        let firstRow = Array(logits.prefix(10)), top = firstRow.indices.sorted { firstRow[$0] > firstRow[$1] }
        var nearlyFile = try SafetensorsFile.read(from: f.target)
        nearlyFile.tensors["fc3.bias"]!.withUnsafeMutableBufferPointer { $0[top[0]] -= 0.999 * (firstRow[top[0]] - firstRow[top[1]]) }
        let nearly = f.dir.appendingPathComponent("nearly.safetensors")
        try nearlyFile.write(to: nearly)
        let predictions = try load(nearly, &rng).forward(x, mode: .eval).argmaxRows()
        XCTAssertEqual(Int(predictions[0]), top[0])
        let mixed = f.dir.appendingPathComponent("mixed"), wrong = f.dir.appendingPathComponent("wrong")
        for (dir, newLabels) in [(mixed, predictions.enumerated().map { i, p in UInt8(i == 0 ? p : (p + 1) % 10) } + labels.dropFirst(8 + 4)),
                                 (wrong, labels.dropFirst(8).map { ($0 + 1) % 10 })] {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try FileManager.default.copyItem(at: images, to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
            try Data(labels.prefix(8) + newLabels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        }
        let r = try runPart(["eval", nearly.path, "--data", mixed.path, "--protocol", "robustbench", "--dataset-name",
                             "noise-digits", "--limit", "4", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let info = try json(r.stdout)
        XCTAssertEqual(info["dataset"] as? String, "noise-digits")
        XCTAssertEqual(info["eps"] as? String, "8/255")
        XCTAssertEqual(info["threat_model"] as? String, "Linf")
        XCTAssertEqual(info["architecture"] as? String, "small-cnn")
        XCTAssertEqual(info["number_forward_passes"] as? Int, 1)
        XCTAssertEqual(info["n_examples"] as? Int, 4)
        XCTAssertEqual(info["clean_acc"] as? String, "25.00")
        XCTAssertEqual(info["autoattack_acc"] as? String, "0.00")
        XCTAssertEqual(info["unreliable"] as? Bool, false)
        XCTAssertEqual((info["attacks"] as? [String])?.map { String($0.prefix { $0 != ":" }) },
                       ["apgd-ce", "apgd-t", "fab-t", "square"], "\(info)")
        // The same figures as AutoAttack standard run by hand at 8/255.
        let aa = try json(try runPart(["eval", nearly.path, "--data", mixed.path, "--attacks", "aa", "--eps", "8/255",
                                       "--limit", "4", "--json", "--quiet"]).stdout)
        XCTAssertEqual(info["clean_acc"] as? String, String(format: "%.2f", 100 * (aa["cleanAccuracy"] as! Double)))
        XCTAssertEqual(info["autoattack_acc"] as? String, String(format: "%.2f", 100 * (aa["robustAccuracy"] as! Double)))

        // Bad combinations are one-line errors with exit code 64.
        for (arguments, fragment) in [
            (["--protocol", "robustbench"], "--dataset-name"),
            (["--protocol", "robustbench", "--dataset-name", "cifar10", "--attacks", "pgd20"], "drop --attacks"),
            (["--protocol", "robustbench", "--dataset-name", "cifar10", "--eps", "4/255"], "drop --eps"),
            (["--dataset-name", "cifar10"], "--protocol robustbench"),
        ] {
            let e = try runPart(["eval", f.target.path] + arguments)
            XCTAssertEqual(e.status, 64, "\(arguments): \(e.stderr)")
            XCTAssert(e.stderr.contains(fragment), "\(arguments): \(e.stderr)")
        }
        // The L2 threat model: radius 0.5, AutoAttack's L2 standard version.
        let l2 = try runPart(["eval", f.target.path, "--data", wrong.path, "--protocol", "robustbench", "--dataset-name",
                              "noise-digits", "--threat-model", "l2", "--limit", "4", "--quiet"])
        XCTAssertEqual(l2.status, 0, l2.stderr)
        let l2Info = try json(l2.stdout)
        XCTAssertEqual(l2Info["threat_model"] as? String, "L2")
        XCTAssertEqual(l2Info["eps"] as? String, "0.5")
        XCTAssertEqual(l2Info["clean_acc"] as? String, "0.00")
        XCTAssertEqual((l2Info["attacks"] as? [String])?.map { String($0.prefix { $0 != ":" }) },
                       ["apgd-ce", "apgd-t", "fab-t", "square"], "\(l2Info)")
        XCTAssert((l2Info["attacks"] as? [String])?.allSatisfy { $0.hasSuffix(":norm=l2") } == true, "\(l2Info)")
    }
}
