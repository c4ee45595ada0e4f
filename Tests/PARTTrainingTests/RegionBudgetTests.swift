import Foundation
import PARTAttacks
import PARTEngine
import PARTNN
import XCTest
@testable import PARTTraining

/// `--budget regions`: the map it builds, the specs it refuses, and its place in the recipe.
final class RegionBudgetTests: XCTestCase {
    func testTheMapLowersEachNamedRegionAndKeepsEpsElsewhere() throws {
        // A 4 x 6 image: quadrants of 2 x 3; the centre box is 2 x 3 at rows 1..<3, columns 1..<4.
        let budget = try RegionBudget(spec: "top-left=0.01, centre=2/100", epsilon: 0.1)
        let e: Float = 0.1, a: Float = 0.01, c: Float = 0.02
        XCTAssertEqual(budget.pixelMap(height: 4, width: 6), [
            a, a, a, e, e, e,
            a, a, a, c, e, e,   // the centre overlaps the top-left quadrant: the lower value holds
            e, c, c, c, e, e,
            e, e, e, e, e, e,
        ])
        let right = try RegionBudget(spec: "top-right=0,bottom-left=0.05,bottom-right=0.07", epsilon: 0.1)
        XCTAssertEqual(right.pixelMap(height: 2, width: 2), [0.1, 0, 0.05, 0.07])
    }

    func testTheCentreIsTheCentralBoxOfHalfTheSide() {
        XCTAssertEqual(RegionBudget.Region.centre.box(height: 28, width: 28).rows, 7..<21)
        XCTAssertEqual(RegionBudget.Region.centre.box(height: 32, width: 32).columns, 8..<24)
        XCTAssertEqual(RegionBudget.Region.centre.box(height: 5, width: 5).rows, 1..<3)
        XCTAssertEqual(RegionBudget.Region.bottomRight.box(height: 5, width: 5).rows, 2..<5)
    }

    func testEveryImageAndChannelOfABatchGetsThePixelsValue() throws {
        var rng = RNG(seed: 1)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: 3, imageSize: 16, rng: &rng)
        let images = Tensor(shape: [2, 16, 16, 3], values: [Float](repeating: 0.5, count: 2 * 16 * 16 * 3))
        let map = try RegionBudget(spec: "bottom-right=8/255", epsilon: 16 / 255).budget(model, images: images)
        XCTAssertEqual(map.values.shape, [2, 16, 16, 3])
        let values = map.values.withUnsafeBufferPointer(Array.init)
        for n in 0..<2 { for r in 0..<16 { for col in 0..<16 { for k in 0..<3 {
            let expected: Float = r >= 8 && col >= 8 ? 8 / 255 : 16 / 255
            XCTAssertEqual(values[((n * 16 + r) * 16 + col) * 3 + k], expected)
        } } } }
    }

    func testBadSpecsAreOneSentenceEach() {
        let cases: [(String, String)] = [
            ("", "--budget regions needs --regions"),
            ("top-left", "region=eps items"),
            ("middle=0.01", "unknown region 'middle' (known: top-left, top-right, bottom-left, bottom-right, centre)"),
            ("centre=abc", "centre takes a decimal or a fraction"),
            ("centre=0.2", "must lie in [0, eps]"),
            ("centre=-0.01", "must lie in [0, eps]"),
            ("centre=0.01,centre=0.02", "names centre twice"),
            ("centre=0.01,,top-left=0", "region=eps items"),
        ]
        for (spec, fragment) in cases {
            XCTAssertThrowsError(try RegionBudget(spec: spec, epsilon: 0.1), spec) { error in
                let text = "\(error)"
                XCTAssert(text.contains(fragment), "\(spec): \(text)")
                XCTAssertFalse(text.contains("\n"), text)
            }
        }
    }

    func testTheRecipeNamesTheBudgetAndChecksTheSpec() throws {
        var config = TrainingConfig()
        config.budget = .regions
        XCTAssertEqual(config.problem(), "--budget regions needs --regions, e.g. top-left=6/255,centre=4/255 (regions: top-left, "
                       + "top-right, bottom-left, bottom-right, centre)")
        config.regions = "centre=0.05"
        XCTAssertNil(config.problem())
        XCTAssertEqual(config.method, "at-regions")
        XCTAssertEqual(config.resolved.burnIn, 0, "a region budget has no burn-in")
        let schedule = try BudgetSchedule(config)
        XCTAssert(schedule.provider(epoch: 1) is RegionBudget)
        XCTAssert(config.summaryLines(camLayer: nil)[0].contains("region budget eps 0.1 lowered to centre=0.05"))
        config.budget = .cam
        XCTAssert(config.problem()?.contains("--regions lowers eps on regions of a region budget") == true)
        // The record keeps the spec, so a resumed run rebuilds the same map.
        config.budget = .regions
        let decoded = try JSONDecoder().decode(TrainingConfig.self, from: JSONEncoder().encode(config))
        XCTAssertEqual(decoded.regions, "centre=0.05")
    }
}
