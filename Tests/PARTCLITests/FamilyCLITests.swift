import PARTTestSupport
import Foundation
import PARTEngine
import XCTest

/// `part train`'s recipe flags, presets and seed sweeps, and `part presets`, as a user runs them.
extension CLITests {
    func testFamilyFlagsAreValidatedWithExitCode64() throws {
        let cases: [([String], String)] = [
            (["--lr", "nan"], "--lr"),
            (["--lr", "inf"], "--lr"),
            (["--beta", "inf"], "--beta"),
            (["--epochs", "10", "--lr-milestones", "6", "3"], "increasing"),
            (["--epochs", "5", "--lr-milestones", "5"], "--lr-milestones"),
            (["--schedule", "cosine", "--lr-milestones", "2"], "--schedule piecewise"),
            (["--preset", "nope"], "part presets"),
            (["--preset", "cifar10-wrn-34-10-part"], "preset cifar10-wrn-34-10-part: --dataset cifar10 needs --data"),
            (["--preset", "cifar10-resnet18-part"], "preset cifar10-resnet18-part: --dataset cifar10 needs --data"),
            (["--cam-layer", "fc1"], "--cam-layer fc1"),
            (["--generation", "pgd-l2"], "pgd-l2"),
            (["--schedule", "onecycle", "--warmup-epochs", "1"], "--warmup-epochs"),
            (["--seeds", "0,0"], "--seeds"),
            (["--seeds", "a"], "--seeds"),
            (["--method", "part", "--eps", "0.05"], "--eps-low"),
            (["--objective", "dpo"], "dpo"),
        ]
        for (arguments, expected) in cases {
            let r = try part(["train"] + arguments)
            XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)")
            XCTAssert(r.stderr.contains(expected), "\(arguments): \(r.stderr)")
        }
    }

    /// Settings that are valid get past validation (and then stop at the missing data: exit 1).
    func testValidRecipesPassValidation() throws {
        let missing = try temporaryDirectory().appendingPathComponent("absent").path
        for arguments in [["--method", "at", "--eps", "0.05"], ["--eps", "8/255", "--eps-low", "7/255", "--alpha", "2/255"],
                          ["--method", "part-m", "--cam", "gradcam++", "--map-rule", "zscore", "--beta", "3"],
                          ["--preset", "fashion-mnist-small-cnn-trades", "--epochs", "3", "--schedule", "cosine"],
                          ["--objective", "mart", "--budget", "cam", "--burn-in", "0", "--val-split", "100"],
                          ["--method", "part", "--generation", "mma"], ["--generation", "fgsm", "--schedule", "onecycle"],
                          ["--preset", "cifar10-fast-part", "--dataset", "fashion-mnist", "--arch", "small-cnn"]] {
            let r = try part(["train", "--data", missing] + arguments)
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)")
            XCTAssert(r.stderr.contains("train-images-idx3-ubyte"), "\(arguments): \(r.stderr)")
        }
    }

    func testOfficialMapRuleOnGreyImagesIsABadArgument() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 8)
        let r = try part(["train", "--data", dir.path, "--map-rule", "official", "--out", dir.appendingPathComponent("run").path])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssert(r.stderr.contains("--map-rule zscore"), r.stderr)
        let split = try part(["train", "--data", dir.path, "--val-split", "8", "--out", dir.appendingPathComponent("run").path])
        XCTAssertEqual(split.status, 64, split.stderr)
        XCTAssert(split.stderr.contains("--val-split 8 must be smaller than the 8 training images"), split.stderr)
    }

    /// The fast preset on the generated CIFAR-10 files: FGSM-RS (alpha 10/255), one-cycle, a
    /// class-balanced check and bf16 attack passes recorded; without --alpha, FGSM's step is
    /// 1.25 eps and the check's eps/4.
    func testFastPresetRunsOnGeneratedCIFARFiles() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/data_cifar10")
        let out = try temporaryDirectory().appendingPathComponent("run")
        let r = try part(["train", "--preset", "cifar10-fast-part", "--data", fixtures.path, "--epochs", "2",
                          "--burn-in", "1", "--train-limit", "8", "--eval-limit", "4", "--batch-size", "8",
                          "--eval-steps", "1", "--eps", "16/255", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("generation fgsm with a random start (alpha 0.078431375)"), r.stdout)
        XCTAssert(r.stdout.contains("one-cycle schedule"), r.stdout)
        XCTAssert(r.stdout.contains("check pgd-1 (alpha 0.015686275) on class-balanced test images"), r.stdout)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json")))
            as! [String: Any]
        let recorded = config["config"] as! [String: Any]
        XCTAssertEqual(recorded["generation"] as? String, "fgsm")
        XCTAssertEqual(recorded["schedule"] as? String, "onecycle")
        XCTAssertEqual(recorded["balancedCheck"] as? Bool, true)
        XCTAssertEqual(recorded["precision"] as? String, "bf16")
        XCTAssertEqual(recorded["stepSize"] as? Double ?? 0, 1.25 * 16 / 255, accuracy: 1e-7)
        if !Engine.supportsBF16 { XCTAssert(r.stderr.contains("warning: preset cifar10-fast-part asks for bf16"), r.stderr) }
    }

    /// A paper preset on the generated CIFAR-10 files of the dataset fixtures, its fields overridden
    /// to a few images and steps; the official schedule's milestone follows the shorter run.
    func testPaperPresetRunsOnGeneratedCIFARFiles() throws {
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/data_cifar10")
        let out = try temporaryDirectory().appendingPathComponent("run")
        let r = try part(["train", "--preset", "cifar10-resnet18-part-t", "--data", fixtures.path, "--epochs", "1",
                          "--burn-in", "0", "--train-limit", "8", "--eval-limit", "4", "--batch-size", "8", "--steps", "1",
                          "--eval-steps", "1", "--out", out.path, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stderr.contains("preset cifar10-resnet18-part-t, resnet18 on cifar10"), r.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("config.json")))
            as! [String: Any]
        let recorded = config["config"] as! [String: Any]
        XCTAssertEqual(recorded["preset"] as? String, "cifar10-resnet18-part-t")
        XCTAssertEqual(recorded["dataset"] as? String, "cifar10")
        XCTAssertEqual(recorded["milestones"] as? [Int], [])
        XCTAssertEqual(recorded["stepSize"] as? Double ?? 0, 2.0 / 255, accuracy: 1e-7)
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(report["method"] as? String, "part-t")
        XCTAssertEqual(report["budget"] as? String, "gradcam/zscore")
        // part eval of the run's checkpoint reads the data the run recorded (without --dataset,
        // also with --data naming the folder anew); a copy away from its run, the dataset its
        // metadata names, in the folder --data names.
        let away = try temporaryDirectory().appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: out.appendingPathComponent("last.safetensors"), to: away)
        for (checkpoint, data) in [(out.appendingPathComponent("last.safetensors"), [String]()),
                                   (out.appendingPathComponent("last.safetensors"), ["--data", fixtures.path]),
                                   (away, ["--data", fixtures.path])] {
            let e = try part(["eval", checkpoint.path, "--limit", "4", "--attacks", "natural", "--json", "--quiet"] + data)
            XCTAssertEqual(e.status, 0, "\(data): \(e.stderr)")
            let summary = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
            XCTAssertEqual(summary["count"] as? Int, 4, e.stdout)
            XCTAssert(e.stdout.contains("cifar10"), e.stdout)
        }
    }

    func testPresetsListsEveryPreset() throws {
        let r = try part(["presets"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for name in ["cifar10-resnet18-at", "cifar10-wrn-34-10-part-t", "svhn-resnet18-part-m", "tinyimagenet-resnet18-mart",
                     "fashion-mnist-small-cnn-part", "cifar10-fast-at", "cifar10-fast-part"] {
            XCTAssert(r.stdout.contains(name), name)
        }
        let json = try part(["presets", "--json"])
        XCTAssertEqual(json.stdout.split(separator: "\n").count, 32)
    }

    /// `--seeds` runs one sub-run per seed and summarises them; the run prints its resolved recipe.
    func testSeedSweepWritesSubRunsAndSummary() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 24)
        let out = dir.appendingPathComponent("sweep")
        let r = try part(["train", "--data", dir.path, "--method", "part-t", "--epochs", "1", "--burn-in", "0",
                          "--batch-size", "12", "--steps", "1", "--eval-steps", "1", "--eval-limit", "8",
                          "--seeds", "0,1", "--out", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("part-t: objective trades (beta 6.0), budget gradcam at act4"), r.stdout)
        XCTAssert(r.stdout.contains("part-t over seeds 0,1: clean"), r.stdout)
        XCTAssert(r.stdout.contains("±"), r.stdout)
        for sub in ["seed-0", "seed-1"] {
            for file in ["config.json", "last.safetensors", "log.jsonl"] {
                XCTAssert(FileManager.default.fileExists(atPath: out.appendingPathComponent("\(sub)/\(file)").path), "\(sub)/\(file)")
            }
        }
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("summary.json")))
            as! [String: Any]
        XCTAssertEqual((summary["seeds"] as? [Any])?.count, 2)
        XCTAssertEqual(summary["method"] as? String, "part-t")
        let again = try part(["train", "--data", dir.path, "--seeds", "0", "--out", out.path])
        XCTAssertEqual(again.status, 64, "an --out that holds a run is a bad argument")
        XCTAssert(again.stderr.contains("already holds a run"), again.stderr)
    }

    /// Seed K of a sweep is the run `--seed K` makes on its own (the family table's 3-seed rows
    /// are made that way): the same weights bit for bit and the same held-out figures.
    func testASweepSeedIsTheRunOfThatSeedAlone() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 24)
        let recipe = ["train", "--data", dir.path, "--method", "part", "--epochs", "2", "--burn-in", "1",
                      "--batch-size", "12", "--steps", "1", "--eval-steps", "1", "--eval-limit", "8", "--json"]
        let sweep = dir.appendingPathComponent("sweep"), alone = dir.appendingPathComponent("alone")
        let a = try part(recipe + ["--seeds", "0,1", "--out", sweep.path])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try part(recipe + ["--seed", "1", "--out", alone.path])
        XCTAssertEqual(b.status, 0, b.stderr)
        let swept = try SafetensorsFile.read(from: sweep.appendingPathComponent("seed-1/last.safetensors"))
        let single = try SafetensorsFile.read(from: alone.appendingPathComponent("last.safetensors"))
        XCTAssertEqual(Set(swept.tensors.keys), Set(single.tensors.keys))
        for (name, tensor) in single.tensors {
            XCTAssertEqual(swept.tensors[name]?.scalars, tensor.scalars, name)
        }
        func figures(_ run: URL) throws -> [[Double]] {
            try String(contentsOf: run.appendingPathComponent("log.jsonl"), encoding: .utf8).split(separator: "\n").map { line in
                let epoch = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] ?? [:]
                return ["loss", "cleanAccuracy", "robustAccuracy"].compactMap { epoch[$0] as? Double }
            }
        }
        let sweptFigures = try figures(sweep.appendingPathComponent("seed-1"))
        XCTAssertEqual(sweptFigures.count, 2)
        XCTAssertEqual(sweptFigures.map(\.count), [3, 3], "the log's field names")
        XCTAssertEqual(sweptFigures, try figures(alone))
    }
}
