import Foundation
import PARTTestSupport
import PARTEngine
import PARTNN
import XCTest

/// `part eval --attacks aa` end to end: AutoAttack standard (APGD-CE, APGD-T, FAB-T, Square with
/// their standard settings) as a sequence on a tiny model and a few points.
final class AutoAttackCLITests: XCTestCase {
    /// A directory with `count` MNIST-format 16x16 test images and a 10-class SmallCNN
    /// checkpoint; the even points are labelled with the model's prediction (so they are attacked),
    /// the odd ones with another class.
    func setUpFiles(count: Int = 8) throws -> (dir: URL, checkpoint: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("part-aa-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        var rng = RNG(seed: 11)
        let side = 16
        let pixels = (0..<(count * side * side)).map { _ in UInt8(rng.uniform() * 255) }
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: side, rng: &rng)
        let x = Tensor(shape: [count, side, side, 1], values: pixels.map { Float($0) / 255 })
        let predictions = try model.forward(x, mode: .eval).argmaxRows()
        var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
        for d in [count, side, side] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labels += withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
        images += pixels
        labels += predictions.enumerated().map { i, p in UInt8((Int(p) + (i % 2 == 0 ? 0 : 1)) % 10) }
        try Data(images).write(to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labels).write(to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Checkpoint.save(model, to: checkpoint, metadata: Checkpoint.describe(model))
        return (dir, checkpoint)
    }

    func testAutoAttackRunsAsASequenceAndWritesItsTable() throws {
        let (dir, checkpoint) = try setUpFiles()
        let results = dir.appendingPathComponent("aa.jsonl")
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--eps", "0.3", "--attacks", "aa:steps=4:queries=40",
                             "--save-results", results.path, "--seed", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The table: natural, the four components in AutoAttack's order, the worst case.
        let rows = r.stdout.split(separator: "\n").map(String.init)
        let names = rows.compactMap { $0.split(separator: " ").first.map(String.init) }
        XCTAssertEqual(Array(names.suffix(7)), ["attack", "natural", "apgd-ce", "apgd-t", "fab-t", "square", "worst"], r.stdout)
        func robust(_ stage: String) -> Int? {
            rows.first { $0.hasPrefix(stage + " ") }.flatMap { Int($0.split(separator: " ")[stage == "worst" ? 2 : 1]) }
        }
        let counts = ["natural", "apgd-ce", "apgd-t", "fab-t", "square"].compactMap(robust)
        guard counts.count == 5 else { return XCTFail("the table lacks a stage: \(r.stdout)") }
        XCTAssertEqual(counts[0], 4, "the even points are classified correctly")
        // A sequence: each attack works on the points still robust, so the counts never grow.
        XCTAssertEqual(counts, counts.sorted(by: >), r.stdout)
        XCTAssertEqual(robust("worst"), counts.last, r.stdout)
        for stage in ["apgd-ce", "apgd-t", "fab-t", "square"] {
            XCTAssert(r.stderr.contains("robust accuracy after \(stage):"), r.stderr)
        }
        // 10 classes: 9 targets and targeted DLR, as configured, so nothing is substituted.
        XCTAssertFalse(r.stderr.contains("the model has"), r.stderr)
        // The results file records the settings of every component: the given ones, and AutoAttack's for the rest.
        let header = try String(contentsOf: results, encoding: .utf8).split(separator: "\n").first.map(String.init) ?? ""
        for description in ["apgd-ce:steps=4:restarts=1:rho=0.75", "apgd-t:targets=9:steps=4:restarts=1",
                            "fab-t:targets=9:steps=4:restarts=1", "square:queries=40:p=0.8:restarts=1"] {
            XCTAssert(header.contains(description), "the header lacks \(description): \(header)")
        }
    }

    func testAutoAttackComponentsTakeKeysAndRefuseBadOnes() throws {
        let (dir, checkpoint) = try setUpFiles(count: 4)
        let quick = "apgd-ce:steps=2,apgd-dlr:steps=2,apgd-t:steps=2:targets=2,fab-t:steps=2:targets=1,square:queries=10"
        let r = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", quick, "--json", "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let stages = (json?["attacks"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        XCTAssertEqual(stages, ["natural", "apgd-ce:steps=2", "apgd-dlr:steps=2", "apgd-t:steps=2:targets=2",
                                "fab-t:steps=2:targets=1", "square:queries=10"])
        for (list, message) in [("aa:alpha=0.1", "unknown key 'alpha' for aa"), ("square:p=1.5", "p must lie in (0, 1]"),
                                ("apgd-ce:rho=2", "rho must lie in [0, 1]"), ("apgd-t:targets=0", "targets must be an integer >= 1"),
                                ("fab-t:queries=3", "unknown key 'queries' for fab-t")] {
            let bad = try runPart(["eval", checkpoint.path, "--data", dir.path, "--attacks", list])
            XCTAssertEqual(bad.status, 64, list)
            XCTAssert(bad.stderr.contains(message), "\(list): \(bad.stderr)")
        }
        let help = try runPart(["eval", "--help"])
        for name in ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "aa-fast"] {
            XCTAssert(help.stdout.contains(name), "help lacks \(name)")
        }
    }
}
