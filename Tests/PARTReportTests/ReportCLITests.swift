import Foundation
import PARTTestSupport
import PARTCAM
import PARTData
import PARTEngine
import PARTNN
import XCTest
@testable import PARTReport

/// `part cam`, `part report` and `part train --tensorboard --report` run as a user runs them.
final class ReportCLITests: XCTestCase {
    /// A small MNIST-format dataset: 28x28 images whose class (0-3) is the bright quadrant; the
    /// image bytes of the test split are returned.
    @discardableResult
    func writeDataset(to dir: URL, count: Int) throws -> [UInt8] {
        var seed: UInt32 = 3
        func next() -> UInt8 {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return UInt8(seed >> 25)
        }
        var testPixels = [UInt8]()
        for split in ["train", "t10k"] {
            var images: [UInt8] = [0, 0, 8, 3]
            var labels: [UInt8] = [0, 0, 8, 1]
            for d in [count, 28, 28] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
            labels += withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
            var pixels = [UInt8]()
            for i in 0..<count {
                let label = i % 4
                for r in 0..<28 { for c in 0..<28 {
                    let quadrant = (r < 14 ? 0 : 2) + (c < 14 ? 0 : 1)
                    pixels.append((quadrant == label ? 120 : 10) + next())
                } }
                labels.append(UInt8(label))
            }
            images += pixels
            if split == "t10k" { testPixels = pixels }
            try Data(images).write(to: dir.appendingPathComponent("\(split)-images-idx3-ubyte"))
            try Data(labels).write(to: dir.appendingPathComponent("\(split)-labels-idx1-ubyte"))
        }
        return testPixels
    }

    func testCamDrawsTheGridAndSavesTheLibrarysMaps() throws {
        let dir = try temporaryDirectory()
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let pixels = try writeDataset(to: data, count: 12)
        // A SmallCNN initialised by PyTorch: its CAMs are not all zero.
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try FileManager.default.copyItem(at: fixtureURL("smallcnn_torch_init.safetensors"), to: checkpoint)
        let grid = dir.appendingPathComponent("grid.png"), maps = dir.appendingPathComponent("maps.npz")
        let r = try runProcess(["cam", checkpoint.path, "--data", data.path, "--limit", "10", "--grid-rows", "6", "--batch-size", "4",
                         "--out", grid.path, "--save-maps", maps.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssert(r.stdout.contains("gradcam at act4, zscore rule, eps 0.1, eps-low 0.0875"), r.stdout)
        XCTAssertEqual(r.stdout.split(separator: "\n").filter { $0.hasPrefix("  #") }.count, 6, r.stdout)
        XCTAssert(r.stderr.contains("part cam: 10/10 images"), "progress on stderr: \(r.stderr)")
        XCTAssertFalse(r.stdout.contains("images/s"), "no progress on stdout")

        // The maps are the library's, computed here in one batch of all ten images.
        var rng = RNG(seed: 0)
        let (model, _) = try Checkpoint.loadModel(checkpoint, architecture: nil, numClasses: 10, inputShape: (28, 28, 1), rng: &rng)
        let images = Tensor(shape: [10, 28, 28, 1], values: pixels.prefix(10 * 784).map { Float($0) / 255 })
        let budget = CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let (cams, predictions) = try ClassActivation.maps(model, images: images, method: GradCAM())
        let arrays = try NPZ.read(maps)
        XCTAssertEqual(arrays["images"]?.floats, images.scalars)
        XCTAssertEqual(arrays["labels"]?.int64s, (0..<10).map { Int64($0 % 4) })
        XCTAssertEqual(arrays["predictions"]?.int64s, predictions.map(Int64.init))
        XCTAssertEqual(arrays["indices"]?.int64s, (0..<10).map(Int64.init))
        XCTAssertEqual(arrays["cams"]?.shape, cams.shape)
        for (name, expected) in [("cams", cams), ("importance", try budget.importance(model, images: images)),
                                 ("eps_maps", try budget.budgets(model, images: images, epsilon: 0.1, epsilonLow: 0.0875))] {
            let got = try XCTUnwrap(arrays[name]?.floats, name)
            XCTAssertEqual(got.count, expected.count, name)
            let worst = zip(got, expected.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(name): batches of 4 against one batch of 10")
        }
        let epsMaps = try XCTUnwrap(arrays["eps_maps"]?.floats)
        XCTAssertEqual(Set(epsMaps), [0.1, 0.0875], "both budgets occur")

        // The picture: six rows, the image and the epsilon map where they belong.
        let picture = try RasterImage.decodePNG(try Data(contentsOf: grid), source: grid.path)
        let g = CAMGrid.Layout(height: 28, width: 28, subtitle: true)
        XCTAssertEqual([picture.width, picture.height], [g.width, g.height(rows: 6)])
        for i in [0, 5] {
            for (px, py) in [(3, 3), (20, 7), (10, 24), (27, 27)] {
                let q = i * 784 + py * 28 + px
                let image = picture.pixel(x: g.panelX(0) + px * g.scale + 2, y: g.rowY(i) + py * g.scale + 1)
                XCTAssertEqual(image, [pixels[q], pixels[q], pixels[q], 255], "image \(i) at (\(px), \(py))")
                let eps = picture.pixel(x: g.panelX(3) + px * g.scale + 2, y: g.rowY(i) + py * g.scale + 1)
                XCTAssertEqual(eps, epsMaps[q] >= 0.1 ? [255, 255, 255, 255] : [48, 48, 48, 255], "eps map \(i)")
            }
        }

        let quiet = try runProcess(["cam", checkpoint.path, "--data", data.path, "--limit", "2", "--out", grid.path, "--quiet", "--json"])
        XCTAssertEqual(quiet.status, 0, quiet.stderr)
        XCTAssertEqual(quiet.stderr, "", "--quiet leaves standard error empty")
        let object = try JSONSerialization.jsonObject(with: Data(quiet.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["count"] as? Int, 2)

        // --balanced: the images are numbered by their indices in the test split, not by their
        // place in the subset (here labels sorted by class: 0 0 0 1 1 1 2 2 2).
        let sorted = dir.appendingPathComponent("sorted")
        try FileManager.default.createDirectory(at: sorted, withIntermediateDirectories: true)
        var idx: [UInt8] = [0, 0, 8, 3], labelFile: [UInt8] = [0, 0, 8, 1]
        for d in [9, 28, 28] { idx += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labelFile += withUnsafeBytes(of: UInt32(9).bigEndian, Array.init)
        try Data(idx + pixels.prefix(9 * 784)).write(to: sorted.appendingPathComponent("t10k-images-idx3-ubyte"))
        try Data(labelFile + [0, 0, 0, 1, 1, 1, 2, 2, 2]).write(to: sorted.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let balanced = try runProcess(["cam", checkpoint.path, "--data", sorted.path, "--limit", "20", "--balanced", "--out", grid.path,
                                       "--save-maps", maps.path, "--quiet"])
        XCTAssertEqual(balanced.status, 0, balanced.stderr)
        XCTAssert(balanced.stdout.contains("6 class-balanced images"), balanced.stdout)
        XCTAssert(balanced.stdout.contains("  #3 ") && balanced.stdout.contains("  #7 "), balanced.stdout)
        XCTAssertEqual(try NPZ.read(maps)["indices"]?.int64s, [0, 1, 3, 4, 6, 7], "ceil(20/10) = 2 of each class present")
        XCTAssertEqual(try NPZ.read(maps)["labels"]?.int64s, [0, 0, 1, 1, 2, 2])

        // --layer: the CAMs of another named layer, as the library computes them there.
        let other = try runProcess(["cam", checkpoint.path, "--data", data.path, "--limit", "3", "--layer", "conv2",
                                    "--out", grid.path, "--save-maps", maps.path, "--quiet"])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssert(other.stdout.contains("gradcam at conv2"), other.stdout)
        let conv2 = try ClassActivation.maps(model, images: images.slice(0..<3), method: GradCAM(), layer: "conv2").maps
        let otherCams = try XCTUnwrap(try NPZ.read(maps)["cams"])
        XCTAssertEqual(otherCams.shape, conv2.shape)
        XCTAssertNotEqual(Array(conv2.shape.dropFirst()), Array(cams.shape.dropFirst()), "conv2 and act4 maps differ in size")
        let worst = zip(otherCams.floats ?? [], conv2.scalars).map { abs($0 - $1) }.max() ?? 1
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }

    func testCamRefusesBadArgumentsAndMissingFiles() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir, count: 4)
        let checkpoint = fixtureURL("smallcnn_torch_init.safetensors").path
        for (arguments, status, message) in [
            (["cam", checkpoint, "--limit", "0"], Int32(64), "--limit must be at least 1"),
            (["cam", checkpoint, "--out", "grid.jpg"], 64, "--out names a PNG file"),
            (["cam", checkpoint, "--data", dir.path, "--cam-layer", "layer4", "--out", dir.appendingPathComponent("g.png").path],
             64, "--cam-layer layer4 is not a CAM layer of small-cnn (available: "),
            (["cam", checkpoint, "--data", dir.path, "--eps", "0.05", "--eps-low", "0.1"], 64, "must not exceed --eps"),
            (["cam", dir.appendingPathComponent("missing.safetensors").path, "--data", dir.path], 1, "missing.safetensors: no such file"),
            (["report", dir.appendingPathComponent("nothing").path], 1, "no such directory"),
            (["report", dir.path], 1, "holds no run"),
        ] {
            let r = try runProcess(arguments)
            XCTAssertEqual(r.status, status, "\(arguments): \(r.stderr)")
            // The first line names the problem (argument errors add the usage after it).
            XCTAssert(r.stderr.split(separator: "\n").first?.contains(message) == true, "\(arguments): \(r.stderr)")
        }
    }

    /// A tiny run with TensorBoard scalars and the report, an evaluation, then `part report`:
    /// the event files hold log.jsonl's figures, and Chromium renders the page.
    func testTrainEvalAndReport() throws {
        let dir = try temporaryDirectory()
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeDataset(to: data, count: 64)
        let runDir = dir.appendingPathComponent("run"), board = runDir.appendingPathComponent("tb")
        let train = try runProcess(["train", "--data", data.path, "--out", runDir.path, "--epochs", "2", "--burn-in", "1",
                             "--batch-size", "32", "--steps", "2", "--eval-steps", "2", "--eval-limit", "16",
                             "--tensorboard", board.path, "--tensorboard-every", "1", "--report", "--quiet"])
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(train.stderr, "", "--quiet: nothing on standard error")
        XCTAssert(train.stdout.contains("epoch 2/2"), train.stdout)

        // TensorBoard: every epoch figure of log.jsonl, and the loss of all four batches.
        let files = try FileManager.default.contentsOfDirectory(atPath: board.path)
        XCTAssertEqual(files.count, 1)
        XCTAssert(files[0].hasPrefix("events.out.tfevents."))
        let records = try TFRecord.records(Array(try Data(contentsOf: board.appendingPathComponent(files[0]))), source: files[0])
        let log = try String(contentsOf: runDir.appendingPathComponent("log.jsonl"), encoding: .utf8).split(separator: "\n")
            .map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(log.count, 2)
        var expected = Set<[UInt8]>()
        for (e, row) in log.enumerated() {
            for (tag, key) in [("epoch/loss", "loss"), ("epoch/clean_accuracy", "cleanAccuracy"), ("epoch/pgd_accuracy", "robustAccuracy"),
                               ("epoch/full_eps_share", "fullEpsilonFraction"), ("epoch/train_adversarial_accuracy", "trainAccuracy")] {
                let value = try XCTUnwrap(row[key] as? Double, key)
                // Everything but the wall time, which the writer took from the clock.
                expected.insert(TensorBoardEvent.scalar(tag: tag, value: Float(value), step: Int64(e + 1), wallTime: 0))
            }
        }
        let withoutTime = Set(records.dropFirst().map { record -> [UInt8] in
            record.first == 0x09 ? Array(record.dropFirst(9)) : record   // field 1 (double): key + 8 bytes
        })
        XCTAssert(expected.isSubset(of: withoutTime), "epoch scalars missing from the event file")
        XCTAssertEqual(records.count, 1 + 2 * 8 + 4, "file version, 8 figures per epoch, 4 batch losses")

        // part train --report wrote the page; part eval adds a table; part report rewrites it.
        let trainPage = try String(contentsOf: runDir.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssert(trainPage.contains("8 held-out images of the per-epoch check (numbered by their place among its 16)"),
                  "the grid of part train --report")
        let eval = try runProcess(["eval", runDir.appendingPathComponent("last.safetensors").path, "--data", data.path, "--limit", "16",
                            "--attacks", "natural,pgd:steps=2", "--save-results", runDir.appendingPathComponent("eval/pgd2.jsonl").path,
                            "--quiet"])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        // Results kept outside the run directory are added with --results.
        let outside = dir.appendingPathComponent("natural.jsonl")
        let evalOutside = try runProcess(["eval", runDir.appendingPathComponent("last.safetensors").path, "--data", data.path,
                                          "--limit", "16", "--attacks", "natural", "--save-results", outside.path, "--quiet"])
        XCTAssertEqual(evalOutside.status, 0, evalOutside.stderr)
        let missing = try runProcess(["report", runDir.path, "--data", data.path, "--results", dir.appendingPathComponent("none.jsonl").path])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssert(missing.stderr.contains("none.jsonl: no such file"), missing.stderr)
        let report = try runProcess(["report", runDir.path, "--data", data.path, "--results", outside.path])
        XCTAssertEqual(report.status, 0, report.stderr)
        let page = runDir.appendingPathComponent("report.html")
        XCTAssertEqual(report.stdout, page.path + "\n")
        let html = try String(contentsOf: page, encoding: .utf8)
        XCTAssert(html.contains("eval/pgd2.jsonl") && html.contains("worst case"))
        XCTAssert(html.contains("<h3>\(outside.path)</h3>"), "the --results table")
        XCTAssert(html.contains("8 data test images (numbered by their index in the split) taken one class at a time"), "the grid's caption: \(html.components(separatedBy: "<figcaption>").last?.prefix(120) ?? "")")
        XCTAssert(html.contains("data:image/png;base64,"))
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4)

        let rendering = try Chromium.render(page, in: dir)
        XCTAssertEqual(rendering.console, [], rendering.log)
        let shot = rendering.screenshot
        XCTAssert(shot.inked > 0.02, "blank screenshot")
        XCTAssertGreaterThan(shot.count(0x2c, 0xa0, 0x2c), 30, "the clean-accuracy curve")
        XCTAssertGreaterThan(shot.count(0, 0, 128), 200, "the grid's jet colours (0 is dark blue)")
    }
}
