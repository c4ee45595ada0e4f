import Foundation
import PARTTestSupport
import PARTEngine
import PARTNN
import XCTest

/// `part eval`'s flags, errors and outputs as a user meets them.
final class EvalCLITests: XCTestCase {
    /// A directory with 16 MNIST-format test images (28x28, labels 0-3) and a SmallCNN checkpoint.
    func setUpFiles() throws -> (dir: URL, checkpoint: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("part-eval-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        var rng = RNG(seed: 4)
        var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
        for d in [16, 28, 28] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labels += withUnsafeBytes(of: UInt32(16).bigEndian, Array.init)
        for i in 0..<16 {
            for _ in 0..<(28 * 28) { images.append(UInt8(rng.uniform() * 255)) }
            labels.append(UInt8(i % 4))
        }
        try Data(images).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        return (dir, checkpoint)
    }

    func testHelpDescribesTheAttackList() throws {
        let r = try runPart(["eval", "--help"])
        XCTAssertEqual(r.status, 0)
        for flag in ["--attacks", "--independent", "--save-results", "--save-adversarial", "--normalize", "--quiet", "8/255"] {
            XCTAssert(r.stdout.contains(flag), "help lacks \(flag)")
        }
    }

    func testBadAttackListsAreOneLineErrorsWithExitCode64() throws {
        let cases: [([String], String)] = [
            (["--attacks", "natural,pgd20,foo"], "unknown attack 'foo' (known: natural, fgsm, pgd, pgdN"),
            (["--attacks", "pgd:stepz=3"], "unknown key 'stepz' for pgd (known: steps, alpha, random)"),
            (["--attacks", "pgd:steps=-1"], "steps must be an integer >= 0"),
            (["--attacks", "natural,,pgd20"], "empty item"),
            (["--attacks", "pgd:alpha=1/0"], "a fraction such as 2/255"),
            (["--eps", "9/4"], "--eps must be in [0, 1]"),
            (["--eps", "abc"], "--eps"),
            (["--normalize", "0.5"], "--normalize takes MEAN/STD"),
            (["--normalize", "0.5/0"], "every std > 0"),
            (["--pgd-steps", "3", "--attacks", "pgd"], "--pgd-steps"),
        ]
        for (arguments, message) in cases {
            let r = try runPart(["eval", "model.safetensors"] + arguments)
            XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)")
            XCTAssert(r.stderr.contains(message), "\(arguments): \(r.stderr)")
            XCTAssertLessThanOrEqual(r.stderr.split(separator: "\n").filter { !$0.hasPrefix("Usage") && !$0.hasPrefix("  See") && !$0.hasPrefix("Help:") && !$0.hasPrefix("  ") }.count, 1,
                                     r.stderr)
        }
    }

    func testJSONNamesEveryFigureAndFractionsAreAccepted() throws {
        let (dir, checkpoint) = try setUpFiles()
        let npy = dir.appendingPathComponent("adv.npy")
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--eps", "8/255", "--alpha", "2/255",
                          "--attacks", "natural,fgsm,pgd:steps=2,mma:steps=1", "--independent", "--json", "--quiet",
                          "--save-adversarial", npy.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "", "--quiet prints nothing on standard error")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["epsilon"] as! Double, Double(Float(8) / 255), accuracy: 1e-7)
        XCTAssertEqual(json["alpha"] as! Double, Double(Float(2) / 255), accuracy: 1e-7)
        for key in ["architecture", "dataset", "split", "count", "seed", "precision", "cleanAccuracy", "robustAccuracy"] {
            XCTAssertNotNil(json[key], "JSON lacks \(key)")
        }
        XCTAssertEqual(json["count"] as? Int, 16)
        XCTAssertEqual(json["independent"] as? Bool, true)
        let stages = json["attacks"] as! [[String: Any]]
        XCTAssertEqual(stages.map { $0["name"] as! String }, ["natural", "fgsm", "pgd:steps=2", "mma:steps=1"])
        XCTAssert(stages.allSatisfy { $0["seconds"] is Double && $0["accuracy"] is Double })
        // The .npy header numpy reads.
        let bytes = try Data(contentsOf: npy)
        XCTAssertEqual(Array(bytes.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let header = String(decoding: bytes[10..<(10 + Int(bytes[8]) + 256 * Int(bytes[9]))], as: UTF8.self)
        XCTAssert(header.contains("'descr': '<f4', 'fortran_order': False, 'shape': (16, 28, 28, 1)"), header)
        XCTAssertEqual(bytes.count, 10 + header.utf8.count + 16 * 28 * 28 * 4)
        XCTAssertEqual((10 + header.utf8.count) % 64, 0)
        // The labels beside them make the pair a dataset: clean accuracy on the worst cases is
        // the robust accuracy (broken rows hold verified adversarial examples, the others the
        // clean images, which the model classifies right).
        let labels = try Data(contentsOf: dir.appendingPathComponent("adv_labels.npy"))
        XCTAssert(String(decoding: labels.prefix(128), as: UTF8.self).contains("'descr': '<i8', 'fortran_order': False, 'shape': (16,)"))
        let again = try runPart(["eval", checkpoint.path, "--dataset", "npy", "--data", npy.path, "--classes", "10", "--attacks", "natural",
                                 "--json", "--quiet"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let reread = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(reread["count"] as? Int, 16)
        XCTAssertEqual(reread["cleanAccuracy"] as! Double, json["robustAccuracy"] as! Double, accuracy: 1e-12)
    }

    /// --balanced takes the first ceil(N/K) images of each class (labels here cycle 0-3 among 10
    /// classes: one of each of 4 classes for --limit 8) and says so in the results header.
    func testBalancedSubsetIsRecorded() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("r.jsonl")
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--limit", "8", "--balanced", "--attacks", "natural",
                             "--save-results", results.path, "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["count"] as? Int, 4)
        let lines = try String(contentsOf: results, encoding: .utf8).split(separator: "\n")
        let header = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(header["balanced"] as? Bool, true)
        XCTAssertEqual(lines.dropFirst().map { (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["label"] as? Int },
                       [0, 1, 2, 3])
        let plain = try runPart(["eval", checkpoint.path, "--data", dir.path, "--balanced"])
        XCTAssertEqual(plain.status, 64, plain.stderr)
        XCTAssert(plain.stderr.contains("--balanced picks a subset of --limit N images"), plain.stderr)
    }

    func testTableOnStandardOutputAndStageLogOnStandardError() throws {
        let (dir, checkpoint) = try setUpFiles()
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural,fgsm", "--seed", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("small-cnn on \(dir.lastPathComponent) test, 16 points, eps 0.1 (alpha 0.025), seed 3, fp32"), r.stdout)
        XCTAssert(r.stdout.contains("worst case"), r.stdout)
        XCTAssert(r.stderr.contains("initial accuracy:") && r.stderr.contains("robust accuracy after fgsm:"), r.stderr)
    }

    /// The progress line names the batch's own robust count after its last finished stage, so
    /// that an evaluation of one long batch shows how it goes (the first line is printed at once).
    func testTheProgressLineCountsTheBatchInProgress() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("r.jsonl")
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural,fgsm", "--batch-size", "8",
                             "--save-results", results.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = try String(contentsOf: results, encoding: .utf8).split(separator: "\n").dropFirst()
        let natural = try lines.prefix(8).filter {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])["natural"] as? Bool == true
        }.count
        XCTAssert(r.stderr.contains("batch 1/2, fgsm; this batch \(natural)/8 after natural"), r.stderr)
    }

    /// A checkpoint that travels without its run still says its training eps (metadata); the
    /// default eps of 0.1 then draws a warning naming both, and --eps silences it.
    func testTheDefaultEpsIsComparedWithTheTrainingEps() throws {
        let (dir, _) = try setUpFiles()
        var rng = RNG(seed: 4)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        let checkpoint = dir.appendingPathComponent("cifar-budget.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model).merging(["eps": "\(Float(8) / 255)"]) { $1 })
        let common = ["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural,fgsm", "--quiet"]
        let bare = try runPart(common)
        XCTAssertEqual(bare.status, 0, bare.stderr)
        XCTAssertEqual(bare.stderr.split(separator: "\n").filter { $0.hasPrefix("warning: ") },
                       ["warning: evaluation: no --eps given: evaluating at the default eps 0.1, but the model was trained at "
                        + "eps 8/255; give --eps 8/255 (or the budget you mean)"], bare.stderr)
        let given = try runPart(common + ["--eps", "0.1"])
        XCTAssertEqual(given.status, 0, given.stderr)
        XCTAssertFalse(given.stderr.contains("warning: "), given.stderr)
    }

    func testAResultsFileOfAnotherCommandIsRefusedWithExitCode1() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("r.jsonl")
        let base = ["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural,fgsm", "--quiet", "--save-results", results.path]
        XCTAssertEqual(try runPart(base).status, 0)
        let other = try runPart(base + ["--seed", "2"])
        XCTAssertEqual(other.status, 1)
        XCTAssert(other.stderr.contains("--seed: the file has 0, this command 2"), other.stderr)
        XCTAssertEqual(other.stderr.split(separator: "\n").count, 1, other.stderr)
    }

    func testNormalizeNeedsOneValuePerChannelAndForeignFilesAreNotOverwritten() throws {
        let (dir, checkpoint) = try setUpFiles()
        let three = try runPart(["eval", checkpoint.path, "--data", dir.path, "--normalize", "0.1,0.2,0.3/1,1,1", "--quiet"])
        XCTAssertEqual(three.status, 64, three.stderr)
        XCTAssert(three.stderr.contains("--normalize") && three.stderr.contains("1 channels"), three.stderr)
        let one = try runPart(["eval", checkpoint.path, "--data", dir.path, "--normalize", "0.5/0.25", "--attacks", "natural",
                            "--json", "--quiet"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssert(one.stdout.contains("\"normalize\":\"0.5\\/0.25\"") || one.stdout.contains("\"normalize\":\"0.5/0.25\""), one.stdout)
        // --save-results never overwrites a file that is not its own.
        let foreign = dir.appendingPathComponent("notes.txt")
        try Data("important".utf8).write(to: foreign)
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", "natural", "--quiet", "--save-results", foreign.path])
        XCTAssertEqual(r.status, 1)
        XCTAssert(r.stderr.contains("is not a results file"), r.stderr)
        XCTAssertEqual(try String(contentsOf: foreign, encoding: .utf8), "important")
    }
}
