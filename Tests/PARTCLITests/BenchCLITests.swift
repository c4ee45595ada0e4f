import Foundation
import PARTTestSupport
import XCTest

/// `part bench` runs its workloads and prints the keys of the PyTorch reference script.
final class BenchCLITests: XCTestCase {
    func testJSONHasTheReferenceKeysAndPlausibleFigures() throws {
        let run = try runPart(["bench", "--arch", "small-cnn", "--batch-size", "4", "--reps", "1",
                                       "--cam-images", "2", "--json", "--without", "pool"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        let result = try XCTUnwrap(object)
        for key in ["pgd10_s_per_batch", "train_step_s_per_batch", "at_images_per_s", "cam_official_s_per_image",
                    "cam_batched_s_per_image", "peak_rss_mb", "part_step_s_per_batch", "peak_gflops",
                    "pgd10_fraction_of_peak", "data_images_per_s", "train_step_limit_gflops",
                    "train_step_fraction_of_limit"] {
            let value = try XCTUnwrap(result[key] as? Double, key)
            XCTAssert(value > 0 && value.isFinite, "\(key) = \(value)")
        }
        XCTAssertEqual(result["model"] as? String, "small-cnn")
        XCTAssertEqual(result["without"] as? [String], ["pool"])
    }

    /// Fast AT: the keys of torch_reference.py --generation fgsm, and no PGD-10 keys.
    func testFGSMGenerationHasTheFastKeys() throws {
        let run = try runPart(["bench", "--arch", "small-cnn", "--batch-size", "4", "--reps", "1",
                               "--cam-images", "1", "--json", "--generation", "fgsm"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let result = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
        for key in ["fgsm_s_per_batch", "fast_at_images_per_s", "fast_part_images_per_s", "train_step_s_per_batch"] {
            let value = try XCTUnwrap(result[key] as? Double, key)
            XCTAssert(value > 0 && value.isFinite, "\(key) = \(value)")
        }
        for key in ["pgd10_s_per_batch", "at_images_per_s", "part_images_per_s"] { XCTAssertNil(result[key], key) }
        XCTAssertEqual(result["generation"] as? String, "fgsm")
    }

    func testRejectsAnUnknownOptimisation() throws {
        let run = try runPart(["bench", "--without", "turbo"])
        XCTAssertEqual(run.status, 64)
        XCTAssert(run.stderr.contains("unknown optimisation 'turbo'"), run.stderr)
    }
}
