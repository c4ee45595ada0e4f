import Foundation
import PARTTraining
import XCTest
@testable import PARTReport

/// `part report`'s chart of accuracy against eps from the files of `part eval --eps A,B,C`.
final class RobustnessCurveTests: XCTestCase {
    /// One results file: 4 points, `robust` of them robust after pgd20, all clean-correct.
    func results(epsilon: String, robust: Int, columns: [String] = ["natural", "pgd20"]) -> String {
        var text = #"{"format":"part-eval-results","checkpoint":"last.safetensors","checkpointSHA256":"0123456789abcdef","#
            + #""architecture":"small-cnn","dataset":"fashion-mnist","split":"test","count":4,"#
            + #""columns":[\#(columns.map { "\"\($0)\"" }.joined(separator: ","))],"epsilon":\#(epsilon),"seed":0}"# + "\n"
        for i in 0..<4 {
            let flags = columns.enumerated().map { "\"\($1)\":\($0 == 0 || i < robust)" }.joined(separator: ",")
            text += #"{"index":\#(i),"label":1,"prediction":1,\#(flags),"unverified":[]}"# + "\n"
        }
        return text
    }

    func testFilesDifferingOnlyInEpsMakeOneCurve() throws {
        let run = try temporaryDirectory().appendingPathComponent("curve-run")
        let eval = run.appendingPathComponent("eval")
        try FileManager.default.createDirectory(at: eval, withIntermediateDirectories: true)
        try RunRecord(config: TrainingConfig(), plan: nil, camLayer: nil, trainImages: 16, heldOut: "test", heldOutImages: 4,
                      data: "fashion-mnist").write(to: run)
        for (name, eps, robust) in [("aa-eps8_255", "0.031372549", 1), ("aa-eps2_255", "0.007843138", 3), ("aa-eps4_255", "0.015686275", 2)] {
            try Data(results(epsilon: eps, robust: robust).utf8).write(to: eval.appendingPathComponent(name + ".jsonl"))
        }
        // Another attack list at one eps: no curve of its own.
        try Data(results(epsilon: "0.1", robust: 0, columns: ["natural", "cw20"]).utf8).write(to: eval.appendingPathComponent("cw.jsonl"))
        let report = try RunReport.read(runDirectory: run)
        let curves = report.robustnessCurves()
        XCTAssertEqual(curves.count, 1)
        let curve = try XCTUnwrap(curves.first)
        XCTAssertEqual(curve.xTicks?.map(\.label), ["2/255", "4/255", "8/255"])
        XCTAssertEqual(curve.series.map(\.name), ["clean", "worst case"])
        XCTAssertEqual(curve.series[1].points.map { $0.1 }, [0.75, 0.5, 0.25])
        XCTAssertEqual(curve.series[0].points.map { $0.1 }, [1, 1, 1])
        let html = report.html()
        XCTAssert(html.contains("Accuracy against eps (natural, pgd20)"), html)
        XCTAssert(html.contains(">8/255</text>"), html)
        XCTAssert(html.contains(">eps</text>"), html)
    }
}
