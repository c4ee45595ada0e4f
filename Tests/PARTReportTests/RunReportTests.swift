import PARTTestSupport
import Foundation
import PARTEngine
import PARTNN
import PARTTraining
import XCTest
@testable import PARTReport

/// The HTML report of a run directory, read by the project and rendered by headless Chromium.
final class RunReportTests: XCTestCase {
    /// A run directory as `part train` and `part eval --save-results` leave it, with figures
    /// chosen here: three epochs (the first with a constant budget, the second with a NaN
    /// loss), the model's checkpoint and an evaluation file whose last line is still being written.
    func syntheticRun() throws -> URL {
        let run = try temporaryDirectory().appendingPathComponent("part-test")
        try FileManager.default.createDirectory(at: run.appendingPathComponent("eval"), withIntermediateDirectories: true)
        var config = TrainingConfig()
        config.epochs = 3
        config.preset = "<b>not bold</b>"
        try RunRecord(config: config, plan: nil, camLayer: nil, trainImages: 64, heldOut: "test", heldOutImages: 8,
                      data: "fashion-mnist").write(to: run)
        var log = ""
        for (e, budget, loss, clean, pgd) in [(1, "constant", "2.1", "0.5", "0.25"), (2, "gradcam/zscore", "\"nan\"", "0.625", "0.375"),
                                              (3, "gradcam/zscore", "0.9", "0.75", "0.5")] {
            log += #"{"epoch":\#(e),"epochs":3,"budget":"\#(budget)","learningRate":0.01,"loss":\#(loss),"trainAccuracy":0.3,"#
                + #""cleanAccuracy":\#(clean),"robustAccuracy":\#(pgd),"evalCount":8,"fullEpsilonFraction":\#(e == 1 ? 1 : 0.13),"#
                + #""imagesPerSecond":\#(500 + e),"seconds":10,"#
                + (e == 3 ? #""cpuSeconds":17.4,"# : "") + #""checkpoint":"last.safetensors"}"# + "\n"
        }
        try Data(log.utf8).write(to: run.appendingPathComponent("log.jsonl"))
        var rng = RNG(seed: 1)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        try Checkpoint.save(model, to: run.appendingPathComponent("last.safetensors"), metadata: ["epoch": "3", "method": "part"])
        let eval = #"{"format":"part-eval-results","checkpoint":"last.safetensors","checkpointSHA256":"0123456789abcdef0123","#
            + #""dataset":"fashion-mnist","split":"test","count":4,"columns":["natural","pgd20"],"attacks":["natural","pgd(steps=20)"],"#
            + #""epsilon":0.1,"seed":0}"# + "\n"
            + #"{"index":0,"label":1,"prediction":1,"natural":true,"pgd20":true,"brokenBy":null,"unverified":[]}"# + "\n"
            + #"{"index":1,"label":2,"prediction":2,"natural":true,"pgd20":false,"brokenBy":"pgd20","unverified":["pgd20"]}"# + "\n"
            + #"{"index":2,"label":3,"prediction":4,"natural":false,"pgd20":false,"brokenBy":null,"unverified":[]}"# + "\n"
            + #"{"index":3,"label":3,"predic"#
        try Data(eval.utf8).write(to: run.appendingPathComponent("eval/pgd20.jsonl"))
        return run
    }

    func testTheReportHoldsCurvesTablesTheGridAndTheConfiguration() throws {
        var report = try RunReport.read(runDirectory: try syntheticRun())
        XCTAssertEqual(report.epochs.map(\.epoch), [1, 2, 3])
        XCTAssert(report.epochs[1].value("loss").isNaN)
        XCTAssertEqual(report.configurationSource, "config.json")
        XCTAssert(report.configuration.contains { $0 == ("epochs", "3") }, "\(report.configuration)")
        XCTAssert(report.checkpoint.contains { $0 == ("method", "part") })
        let table = try XCTUnwrap(report.evaluations.first)
        XCTAssertEqual([table.count, table.done, table.worstCase, table.unverified], [4, 3, 1, 1])
        XCTAssertEqual(table.robust, [2, 1])

        let grid = RasterImage(width: 2, height: 2, channels: 3, pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
        report.camGrid = (try grid.pngData(), "two by two")
        report.environment = [("machine", "test")]
        let html = report.html()
        XCTAssertEqual(html.components(separatedBy: "<svg").count - 1, 4, "four charts")
        XCTAssert(html.contains("<polyline"))
        XCTAssert(html.contains("constant budget"), "the burn-in band")
        XCTAssert(html.contains("<th>CPU seconds</th>") && html.contains("<td>10</td><td>17</td>")
                  && html.contains("<td>10</td><td></td>"), "CPU seconds where the log has them, blank where not")
        XCTAssert(html.contains("2 / 3</td><td>66.67%"), "natural accuracy over the written points")
        XCTAssert(html.contains("1 / 3</td><td>33.33%"), "worst case")
        XCTAssert(html.contains("Unfinished: 3 of 4 points"))
        XCTAssert(html.contains("PGD-20"))
        XCTAssert(html.contains("data:image/png;base64,\(try grid.pngData().base64EncodedString())"))
        XCTAssert(html.contains("&lt;b&gt;not bold&lt;/b&gt;") && !html.contains("<b>"), "configuration text is escaped")
        // Self-contained: no scripts, no links to other files or hosts.
        XCTAssertFalse(html.contains("<script"))
        XCTAssertFalse(html.contains("src=\"http") || html.contains("href="))
        // The NaN loss leaves a gap, never a NaN coordinate.
        XCTAssertFalse(html.contains("nan,") || html.contains(",nan"))
    }

    func testResultsKeptOutsideTheRunAreAddedOnce() throws {
        let run = try syntheticRun()
        let outside = try temporaryDirectory().appendingPathComponent("at-seed0.eval.jsonl")
        try FileManager.default.moveItem(at: run.appendingPathComponent("eval/pgd20.jsonl"), to: outside)
        var report = try RunReport.read(runDirectory: run)
        XCTAssert(report.evaluations.isEmpty)
        XCTAssert(report.shownNotes.contains { $0.hasPrefix("No evaluation results yet") }, "\(report.shownNotes)")
        try report.addEvaluation(outside)
        // The same file again, and through a link: still one table.
        try report.addEvaluation(outside)
        let link = outside.deletingLastPathComponent().appendingPathComponent("link.jsonl")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: outside)
        try report.addEvaluation(link)
        XCTAssertEqual(report.evaluations.map(\.file), [outside.path])
        XCTAssertEqual(report.evaluations[0].robust, [2, 1])
        XCTAssertFalse(report.shownNotes.contains { $0.hasPrefix("No evaluation results yet") }, "\(report.shownNotes)")
        XCTAssert(report.html().contains("<h3>\(outside.path)</h3>"))
        XCTAssertThrowsError(try report.addEvaluation(outside.deletingLastPathComponent().appendingPathComponent("none.jsonl"))) {
            XCTAssert("\($0)".contains("none.jsonl: no such file"), "\($0)")
        }
        // A FIFO is refused at once, not waited on.
        let fifo = outside.deletingLastPathComponent().appendingPathComponent("fifo.jsonl")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        XCTAssertThrowsError(try report.addEvaluation(fifo)) {
            XCTAssert("\($0)".contains("fifo.jsonl") && "\($0)".contains("not a regular file"), "\($0)")
        }
        let notResults = outside.deletingLastPathComponent().appendingPathComponent("log.jsonl")
        try Data("{\"epoch\": 1}\n".utf8).write(to: notResults)
        XCTAssertThrowsError(try report.addEvaluation(notResults)) {
            XCTAssert("\($0)".contains("is not a results file") && !"\($0)".contains("eval/"), "\($0)")
        }
    }

    func testPercentChartsStayWithinZeroAndOneHundred() {
        let flat = SVGChart(title: "Share", series: [.init(name: "full eps", colour: "#000", points: [(1, 1), (2, 1)])],
                            percent: true)
        XCTAssert(flat.svg.contains(">100%<"), flat.svg)
        XCTAssertFalse(flat.svg.contains("105%") || flat.svg.contains("110%"), "no tick above 100%")
        let zero = SVGChart(title: "Share", series: [.init(name: "full eps", colour: "#000", points: [(1, 0), (2, 0)])],
                            percent: true)
        XCTAssertFalse(zero.svg.contains(">-"), "no negative tick")
        let plain = SVGChart(title: "Loss", series: [.init(name: "loss", colour: "#000", points: [(1, 1), (2, 1)])])
        XCTAssert(plain.svg.contains(">1.10<"), "other charts keep their margin")
    }

    func testDirectoriesWithoutARunAreRefusedByName() throws {
        let empty = try temporaryDirectory()
        XCTAssertThrowsError(try RunReport.read(runDirectory: empty.appendingPathComponent("missing"))) {
            XCTAssert("\($0)".contains("missing: no such directory"), "\($0)")
        }
        XCTAssertThrowsError(try RunReport.read(runDirectory: empty)) {
            XCTAssert("\($0)".contains("holds no run"), "\($0)")
        }
        let run = try syntheticRun()
        try Data("{\"epoch\": 1}\nnot json\n".utf8).write(to: run.appendingPathComponent("log.jsonl"))
        XCTAssertThrowsError(try RunReport.read(runDirectory: run)) {
            XCTAssert("\($0)".contains("log.jsonl: line 2"), "\($0)")
        }
    }

    func testTicksAreRoundNumbersCoveringTheData() {
        func rounded(_ ticks: [Double]) -> [Double] { ticks.map { ($0 * 1e9).rounded() / 1e9 } }
        XCTAssertEqual(rounded(SVGChart.ticks(0.31, 0.72)), [0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
        XCTAssertEqual(rounded(SVGChart.ticks(585, 608)), [585, 590, 595, 600, 605, 610])
        XCTAssertEqual(rounded(SVGChart.ticks(1, 1)), [0.9, 0.95, 1, 1.05, 1.1])
    }

    /// The page opens in headless Chromium without a console message, and the screenshot shows
    /// the curves (the series colours) and the grid (its pixels).
    func testChromiumRendersTheReport() throws {
        let run = try syntheticRun()
        var report = try RunReport.read(runDirectory: run)
        // A grid picture of a colour found nowhere else on the page: 64x64 pixels of (10, 200, 170).
        let grid = RasterImage(width: 64, height: 64, channels: 3, pixels: [UInt8]((0..<(64 * 64)).flatMap { _ in [10, 200, 170] }))
        report.camGrid = (try grid.pngData(), "grid")
        report.environment = Environment.describe(toolVersion: "test")
        let page = run.appendingPathComponent("report.html")
        try report.write(to: page)
        let rendering = try Chromium.render(page, in: run)
        XCTAssertEqual(rendering.console, [], "console messages:\n\(rendering.log)")
        let shot = rendering.screenshot
        XCTAssert(shot.inked > 0.02, "the screenshot is blank (\(shot.inked))")
        XCTAssertGreaterThan(shot.count(0x2c, 0xa0, 0x2c), 50, "the clean-accuracy curve")
        XCTAssertGreaterThan(shot.count(0xd6, 0x27, 0x28), 50, "the PGD curve")
        XCTAssertGreaterThan(shot.count(0x94, 0x67, 0xbd), 50, "the full-eps curve")
        XCTAssertGreaterThanOrEqual(shot.count(10, 200, 170), 60 * 60, "the CAM grid")
    }

    /// The console check can fail: a page with a script error is caught.
    func testChromiumConsoleErrorsAreSeen() throws {
        let dir = try temporaryDirectory()
        let page = dir.appendingPathComponent("broken.html")
        try Data("<!DOCTYPE html><html><body><p>x</p><script>missingFunction();</script></body></html>".utf8).write(to: page)
        let rendering = try Chromium.render(page, width: 200, height: 100, in: dir)
        XCTAssertEqual(rendering.console.count, 1)
        XCTAssert(rendering.console.first?.contains("missingFunction is not defined") == true, rendering.log)
    }
}
