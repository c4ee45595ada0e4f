import ArgumentParser
import Foundation
import PARTEngine
import PARTTraining
import XCTest
@testable import part

/// `--train-precision` of `part train` and `part bench`: parsed into the run's configuration,
/// refused in one sentence (exit 64) on CPUs without bf16 kernels and for unknown values.
final class TrainPrecisionCLITests: XCTestCase {
    func refusal(_ body: () throws -> Void) -> (message: String, code: Int32)? {
        do { try body() } catch {
            return (Train.message(for: error), Train.exitCode(for: error).rawValue)
        }
        return nil
    }

    func testTrainAndBenchTakeTheFlag() throws {
        let bf16 = refusal { _ = try Train.parse(["--train-precision", "bf16"]) }
        let benchBF16 = refusal { _ = try Bench.parse(["--train-precision", "bf16"]) }
        if Engine.supportsBF16 {
            XCTAssertNil(bf16)
            XCTAssertNil(benchBF16)
            XCTAssertEqual(try Train.parse(["--train-precision", "bf16"]).resolvedConfig().trainPrecision, .bf16)
        } else {
            for r in [bf16, benchBF16] {
                XCTAssertEqual(r?.code, 64)
                XCTAssert(r?.message.hasPrefix("--train-precision bf16 needs a CPU with AVX-512 BF16") ?? false, "\(r as Any)")
                XCTAssertFalse(r?.message.contains("\n") ?? true)
            }
        }
        XCTAssertEqual(try Train.parse([]).resolvedConfig().trainPrecision, .fp32)
        XCTAssertEqual(try Train.parse(["--train-precision", "fp32"]).resolvedConfig().trainPrecision, .fp32)
        XCTAssertEqual(refusal { _ = try Train.parse(["--train-precision", "fp16"]) }?.code, 64)
        XCTAssertEqual(refusal { _ = try Bench.parse(["--train-precision", "fp16"]) }?.code, 64)
    }
}
