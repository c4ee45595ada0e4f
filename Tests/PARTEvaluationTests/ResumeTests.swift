import PARTTestSupport
import Foundation
import PARTAttacks
import PARTEngine
import PARTEvaluation
import PARTNN
import XCTest

/// Results files, the adversarial .npy, and resuming an interrupted evaluation.
final class ResumeTests: XCTestCase {
    func files(_ dir: URL, _ name: String) -> (URL, URL) {
        (dir.appendingPathComponent("\(name).jsonl"), dir.appendingPathComponent("\(name).npy"))
    }

    // Safe: XCTest runs the tests of a process one after another on one thread, the only one
    // that touches this cache.
    nonisolated(unsafe) static var cached: (summary: EvaluationSummary, results: String, adversarial: Data)?

    /// The uninterrupted run the resumed ones must equal (run once per test process; its files
    /// are copied into `dir`).
    func reference(_ dir: URL) throws -> (summary: EvaluationSummary, results: String, adversarial: Data) {
        if Self.cached == nil {
            let own = try makeTemporaryDirectory(self)
            var setup = Setup()
            (setup.results, setup.adversarial) = files(own, "reference")
            let summary = try setup.run()
            Self.cached = (summary, try String(contentsOf: setup.results!, encoding: .utf8), try Data(contentsOf: setup.adversarial!))
        }
        let r = Self.cached!
        try r.adversarial.write(to: dir.appendingPathComponent("reference.npy"))
        return r
    }

    func testResultsFileHasAHeaderAndOneLinePerPoint() throws {
        let dir = try makeTemporaryDirectory(self)
        let (summary, text, _) = try reference(dir)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1 + 32)
        let header = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        XCTAssertEqual(header["format"] as? String, "part-eval-results")
        XCTAssertEqual(header["columns"] as? [String], ["natural", "fgsm", "pgd:steps=4", "cw:steps=4"])
        XCTAssertEqual(header["seed"] as? Int, 0)
        let record = try JSONSerialization.jsonObject(with: Data(lines[5].utf8)) as! [String: Any]
        XCTAssertEqual(record["index"] as? Int, 4)
        XCTAssertEqual(record["label"] as? Int, Int(summary.outcomes[4].label))
        XCTAssertEqual(record["pgd:steps=4"] as? Bool, summary.outcomes[4].robust[2])
    }

    func testAdversarialFileHoldsTheWorstCaseExamples() throws {
        let dir = try makeTemporaryDirectory(self)
        let (summary, _, _) = try reference(dir)
        let adversarial = try NPYFile.read(dir.appendingPathComponent("reference.npy"))
        let (model, data) = try Quadrants.model()
        let (x, y) = data.batch(Array(0..<32))
        XCTAssertEqual(adversarial.shape, [32, 20, 20, 1])
        let predictions = try model.forward(adversarial, mode: .eval).argmaxRows()
        let inside = Perturbation.rowsInside(adversarial, origin: x, map: Tensor(shape: x.shape, repeating: 0.15))
        var broken = 0
        for o in summary.outcomes {
            XCTAssert(inside[o.index], "row \(o.index) leaves the budget")
            if o.brokenBy != nil {
                broken += 1
                XCTAssertNotEqual(predictions[o.index], y[o.index], "the saved example of point \(o.index) must be misclassified")
                XCTAssertEqual(predictions[o.index], o.adversarialPrediction)
            } else {
                XCTAssertEqual(adversarial.slice(o.index..<(o.index + 1)).scalars, x.slice(o.index..<(o.index + 1)).scalars,
                               "a point never broken keeps its clean image")
            }
        }
        XCTAssertGreaterThan(broken, 0)
    }

    /// A file cut anywhere (mid-line, after the header, inside the header) continues to the same
    /// per-example results.
    func testTruncatedResultsFileResumesToTheSameFlags() throws {
        let dir = try makeTemporaryDirectory(self)
        let (_, text, adversarial) = try reference(dir)
        let bytes = Data(text.utf8)
        let headerEnd = bytes.firstIndex(of: UInt8(ascii: "\n"))! + 1
        // Batches are 16 points: cut inside batch 2's lines, right after the header, inside it.
        let secondBatch = bytes.indices.filter { bytes[$0] == UInt8(ascii: "\n") }[16 + 3] - 5
        for cut in [secondBatch, headerEnd / 2] {
            var setup = Setup()
            (setup.results, setup.adversarial) = files(dir, "cut\(cut)")
            // The interrupted run wrote its rows before its records.
            try adversarial.write(to: setup.adversarial!)
            try bytes.prefix(cut).write(to: setup.results!)
            let summary = try setup.run()
            XCTAssertEqual(try String(contentsOf: setup.results!, encoding: .utf8), text, "cut at byte \(cut)")
            XCTAssertEqual(try Data(contentsOf: setup.adversarial!), adversarial, "cut at byte \(cut)")
            XCTAssertEqual(summary.resumed, cut == secondBatch ? 16 : 0)
        }
    }

    /// A run that dies after some stages of a batch continues from the next stage.
    func testCrashMidBatchResumesFromTheNextStage() throws {
        struct Crash: Error {}
        /// Delegates to `attack` and fails on call number `failOn` (counting from 1).
        final class Failing: Attack {
            let attack: Attack
            let failOn: Int
            var calls = 0
            init(_ attack: Attack, failOn: Int) { self.attack = attack; self.failOn = failOn }
            var name: String { attack.name }
            func perturb(_ model: ImageClassifier, _ batch: AttackBatch, seed: UInt64) throws -> Tensor {
                calls += 1
                if calls == failOn { throw Crash() }
                return try attack.perturb(model, batch, seed: seed)
            }
        }
        let dir = try makeTemporaryDirectory(self)
        let (_, text, adversarial) = try reference(dir)
        var setup = Setup()
        (setup.results, setup.adversarial) = files(dir, "crash")
        let cw = try setup.stages().first { $0.name == "cw:steps=4" }!.attack
        setup.replace = ["cw:steps=4": Failing(cw, failOn: 2)]   // dies in batch 2, after natural, fgsm and pgd
        XCTAssertThrowsError(try setup.run())
        let progress = try String(contentsOf: URL(fileURLWithPath: setup.results!.path + ".progress.json"), encoding: .utf8)
        XCTAssert(progress.contains("\"stagesDone\":3"), progress)
        setup.replace = [:]
        let summary = try setup.run()
        XCTAssertEqual(summary.resumed, 16)
        XCTAssertEqual(try String(contentsOf: setup.results!, encoding: .utf8), text)
        XCTAssertEqual(try Data(contentsOf: setup.adversarial!), adversarial)
    }

    func testAResultsFileOfAnotherEvaluationIsRefusedNamingTheDifference() throws {
        let dir = try makeTemporaryDirectory(self)
        var setup = Setup()
        setup.count = 16
        setup.list = "natural,fgsm"
        setup.results = dir.appendingPathComponent("r.jsonl")
        _ = try setup.run()
        var other = setup
        other.seed = 1
        XCTAssertThrowsError(try other.run()) { XCTAssert("\($0)".contains("--seed: the file has 0, this command 1"), "\($0)") }
        other = setup
        other.list = "natural,fgsm,pgd:steps=2"
        XCTAssertThrowsError(try other.run()) { XCTAssert("\($0)".contains("--attacks"), "\($0)") }
        other = setup
        other.epsilon = 0.05
        XCTAssertThrowsError(try other.run()) { XCTAssert("\($0)".contains("--eps"), "\($0)") }
        // As many other points (a subset, as --balanced takes) make another evaluation.
        other = setup
        other.subset = Array(stride(from: 0, to: 32, by: 2))
        XCTAssertThrowsError(try other.run()) {
            XCTAssert("\($0)".contains("the points' indices in the split: the file has the first 16 of the split, this command 0, 2, 4, 6, 8, 10, ..."), "\($0)")
        }
        // The same command reads the finished file back.
        let again = try setup.run()
        XCTAssertEqual(again.resumed, 16)
    }

    /// A --balanced results file of an older part eval (no split indices: its draws were keyed by
    /// the place in the subset) is not resumed with draws keyed otherwise.
    func testAnOlderBalancedResultsFileIsNotResumed() throws {
        func header(_ splitIndices: [Int]?) -> EvaluationHeader {
            EvaluationHeader(checkpoint: "m", checkpointSHA256: "h", architecture: "small-cnn", normalize: nil, dataset: "d",
                             split: "test", count: 4, attacks: ["natural"], columns: ["natural"], independent: false, epsilon: 0.1,
                             alpha: 0.025, seed: 0, precision: "fp32", batchSize: 4, balanced: true, splitIndices: splitIndices)
        }
        XCTAssertEqual(header(nil).differences(from: header([0, 5, 9, 12])).count, 1)
        XCTAssert(header(nil).differences(from: header([0, 5, 9, 12]))[0].contains("start a new --save-results file"))
        XCTAssertEqual(header([0, 5, 9, 12]).differences(from: header([0, 5, 9, 12])), [])
    }
}
