import PARTEngine
import XCTest
@testable import PARTNN

/// The "MEAN/STD" text of `--normalize`, of a run's record and of a checkpoint's metadata.
final class NormalizedTextTests: XCTestCase {
    func testNormalisationText() {
        XCTAssertEqual(Normalized.canonical("0.50/0.250"), "0.5/0.25")
        XCTAssertEqual(Normalized.canonical(" 0.4914, 0.4822,0.4465/0.2470,0.2435,0.2616"),
                       "0.4914,0.4822,0.4465/0.247,0.2435,0.2616")
        for bad in ["0.5", "0.5/0", "0.5/-1", "0.5,0.4/0.2", "a/b", "0.5/0.2/0.1", "/", "nan/1", "0.5/inf"] {
            XCTAssertNil(Normalized.parse(bad), bad)
        }
        var rng = RNG(seed: 1)
        let m = try? ModelZoo.make("small-cnn", numClasses: 10, inChannels: 1, imageSize: 28, rng: &rng)
        XCTAssertThrowsError(try Normalized(m!, text: "0.1,0.2/0.3,0.4")) {
            XCTAssert("\($0)".contains("the model takes 1 channels"), "\($0)")
        }
        XCTAssertEqual((try? Normalized(m!, text: "0.5/0.25"))?.std, [0.25])
    }
}
