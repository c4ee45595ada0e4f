import PARTTestSupport
import Foundation
import XCTest
@testable import PARTData

/// The committed fixtures (scripts/make_dataset_fixtures.py) and what NumPy read from them.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ path: String) -> URL { directory.appendingPathComponent(path) }

    /// data_expected.json.
    // Safe: parsed once (a static's initialisation is atomic) and only read afterwards.
    nonisolated(unsafe) static let expected: [String: Any] = {
        guard let data = try? Data(contentsOf: url("data_expected.json")),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
        return object
    }()

    /// expected[path[0]][path[1]]...
    static func value(_ path: String...) -> Any? {
        var node: Any? = expected
        for key in path { node = (node as? [String: Any])?[key] }
        return node
    }

    /// Copies a fixture folder or file into a fresh temporary directory (to corrupt it there).
    static func copy(_ path: String, into test: XCTestCase) throws -> URL {
        let dir = try makeTemporaryDirectory(test)
        let target = dir.appendingPathComponent(url(path).lastPathComponent)
        try FileManager.default.copyItem(at: url(path), to: target)
        return target
    }
}

/// Collects warnings.
final class Warnings {
    var lines: [String] = []
    func callAsFunction(_ line: String) { lines.append(line) }
}

extension XCTestCase {
    /// Asserts that `body` throws one error whose one-line message contains every fragment.
    func assertFails<T>(_ body: @autoclosure () throws -> T, _ fragments: String..., file: StaticString = #filePath,
                        line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "one line: \(text)", file: file, line: line)
            for f in fragments {
                XCTAssertTrue(text.contains(f), "\"\(text)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    /// Compares a loaded split with NumPy's figures and probes (labels, some pixels) for it.
    func assertMatches(_ dataset: ImageDataset, _ expected: Any?, exactPixels: Bool = true, file: StaticString = #filePath,
                       line: UInt = #line) {
        guard let e = expected as? [String: Any] else { return XCTFail("no expected figures", file: file, line: line) }
        let stats = SplitStatistics(dataset, split: .train)
        XCTAssertEqual(stats.count, e["count"] as? Int, "count", file: file, line: line)
        XCTAssertEqual(stats.shape, e["shape"] as? [Int], "shape", file: file, line: line)
        XCTAssertEqual(stats.histogram, e["histogram"] as? [Int], "class histogram", file: file, line: line)
        for (name, mine, theirs) in [("mean", stats.mean, e["mean"]), ("std", stats.std, e["std"])] {
            let reference = theirs as? [Double] ?? []
            XCTAssertEqual(mine.count, reference.count, name, file: file, line: line)
            for (a, b) in zip(mine, reference) {
                XCTAssertEqual(a, b, accuracy: 1e-9 * max(1, abs(b)), "\(name) \(mine) vs NumPy \(reference)", file: file, line: line)
            }
        }
        if let labels = e["labels"] as? [Int] {
            XCTAssertEqual(dataset.labels.map(Int.init), labels, "labels", file: file, line: line)
        }
        // Every fixture lists labels and pixel probes: a missing list would make the checks vacuous.
        XCTAssertNotNil(e["labels"] as? [Int], "the expected figures list no labels", file: file, line: line)
        let probes = e["pixels"] as? [[Double]] ?? []
        XCTAssertFalse(probes.isEmpty, "the expected figures list no pixel probes", file: file, line: line)
        let batch = dataset.batch(Array(0..<dataset.count)).images
        for p in probes {
            let (n, y, x, c) = (Int(p[0]), Int(p[1]), Int(p[2]), Int(p[3]))
            let flat = ((n * dataset.height + y) * dataset.width + x) * dataset.channels + c
            let expectedValue = dataset.pixelType == .uint8 ? Float(p[4]) / 255 : Float(p[4])
            if exactPixels {
                XCTAssertEqual(batch[flat: flat], expectedValue, "pixel \(n),\(y),\(x),\(c)", file: file, line: line)
            } else {
                XCTAssertEqual(batch[flat: flat], expectedValue, accuracy: 2.5 / 255, "pixel \(n),\(y),\(x),\(c)", file: file, line: line)
            }
        }
    }
}

/// Reads a file as bytes.
func bytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }

/// Writes bytes to a file.
func write(_ bytes: [UInt8], to url: URL) throws { try Data(bytes).write(to: url) }
