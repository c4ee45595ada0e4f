import Foundation
import PARTTestSupport
import XCTest

/// `part data inspect` as a user runs it: NumPy's figures on every original format, and a
/// one-line error with exit code 1 for a bad file of each format.
final class DataCommandTests: XCTestCase {
    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
        /// Standard error without warnings.
        var errors: [Substring] { stderr.split(separator: "\n").filter { !$0.hasPrefix("part: warning: ") } }
    }

    func part(_ arguments: [String]) throws -> Run {
        let r = try runPart(arguments)
        return Run(status: r.status, stdout: r.stdout, stderr: r.stderr)
    }

    func testInspectGivesNumPysFigures() throws {
        let cache = try makeTemporaryDirectory(self)
        let cases: [(String, String, [String], [String])] = [
            ("cifar10", "data_cifar10/cifar-10-binary.tar.gz", [], ["cifar10"]),
            ("cifar100", "data_cifar100", ["--label-mode", "coarse"], ["cifar100", "coarse"]),
            ("svhn", "data_svhn", [], ["svhn"]),
            ("tinyimagenet", "data_tinyimagenet", ["--cache", cache.path], ["tinyimagenet"]),
            ("imagefolder", "data_imagefolder", ["--cache", cache.path], ["imagefolder"]),
            ("npy", "data_npy", [], ["npy"]),
        ]
        for (name, path, options, expectedKey) in cases {
            let r = try part(["data", "inspect", "--dataset", name, "--data", Fixtures.url(path).path, "--json"] + options)
            XCTAssertEqual(r.status, 0, r.stderr)
            let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let splits = report?["splits"] as? [[String: Any]] ?? []
            XCTAssertEqual(splits.map { $0["split"] as? String }, ["train", "test"], name)
            for s in splits {
                let split = s["split"] as? String ?? ""
                let expected = expectedKey.count == 2 ? Fixtures.value(expectedKey[0], expectedKey[1], split)
                                                      : Fixtures.value(expectedKey[0], split)
                guard let e = expected as? [String: Any] else { XCTFail("no figures for \(name) \(split)"); continue }
                XCTAssertEqual(s["count"] as? Int, e["count"] as? Int, "\(name) \(split)")
                XCTAssertEqual(s["shape"] as? [Int], e["shape"] as? [Int], "\(name) \(split)")
                XCTAssertEqual(s["histogram"] as? [Int], e["histogram"] as? [Int], "\(name) \(split)")
                for key in ["mean", "std"] {
                    let mine = s[key] as? [Double] ?? [], theirs = e[key] as? [Double] ?? []
                    XCTAssertEqual(mine.count, theirs.count)
                    for (a, b) in zip(mine, theirs) { XCTAssertEqual(a, b, accuracy: 1e-9, "\(name) \(split) \(key)") }
                }
            }
        }
        let text = try part(["data", "inspect", "--dataset", "svhn", "--data", Fixtures.url("data_svhn").path])
        XCTAssertEqual(text.status, 0)
        XCTAssertTrue(text.stdout.contains("train: 7 images of 32x32x3 uint8"), text.stdout)
        XCTAssertTrue(text.stderr.contains("part: warning: ") && text.stderr.contains("train_32x32.mat: MD5"), text.stderr)
    }

    /// One corrupted file per format: exit code 1, one error line naming the file, no crash.
    func testABadFileOfEachFormat() throws {
        let cache = try makeTemporaryDirectory(self)
        func truncate(_ url: URL, keep: Double) throws {
            let content = try bytes(url)
            try write(Array(content.prefix(Int(Double(content.count) * keep))), to: url)
        }
        var cases: [(dataset: String, data: URL, bad: URL)] = []
        let cifar = try Fixtures.copy("data_cifar10/cifar-10-batches-bin", into: self)
        cases.append(("cifar10", cifar, cifar.appendingPathComponent("data_batch_2.bin")))
        let archive = try Fixtures.copy("data_cifar10/cifar-10-binary.tar.gz", into: self)
        cases.append(("cifar10", archive, archive))
        let c100 = try Fixtures.copy("data_cifar100/cifar-100-binary", into: self)
        cases.append(("cifar100", c100, c100.appendingPathComponent("test.bin")))
        let svhn = try Fixtures.copy("data_svhn", into: self)
        cases.append(("svhn", svhn, svhn.appendingPathComponent("train_32x32.mat")))
        let tiny = try Fixtures.copy("data_tinyimagenet/tiny-imagenet-200", into: self)
        cases.append(("tinyimagenet", tiny, tiny.appendingPathComponent("val/images/val_2.JPEG")))
        let folder = try Fixtures.copy("data_imagefolder", into: self)
        cases.append(("imagefolder", folder, folder.appendingPathComponent("train/cat/deep/d.png")))
        let npy = try Fixtures.copy("data_npy", into: self)
        cases.append(("npy", npy, npy.appendingPathComponent("test.npz")))
        cases.append(("npy", npy.appendingPathComponent("pairs"), npy.appendingPathComponent("pairs/val_x.npy")))
        for c in cases {
            // Not at a record boundary: a single-file CIFAR split cut between records is only a
            // warning (its record count differs from the official file's).
            try truncate(c.bad, keep: 0.55)
            let r = try part(["data", "inspect", "--dataset", c.dataset, "--data", c.data.path, "--cache", cache.path]
                             .filter { c.dataset == "tinyimagenet" || c.dataset == "imagefolder" || ($0 != "--cache" && $0 != cache.path) })
            XCTAssertEqual(r.status, 1, "\(c.bad.path): \(r.stderr)")
            XCTAssertEqual(r.errors.count, 1, r.stderr)
            XCTAssertTrue(r.errors.first?.hasPrefix("part: error: \(c.bad.path)") == true, "names the file: \(r.stderr)")
        }
        // And the fashion-mnist default: a truncated IDX file.
        let dir = try makeTemporaryDirectory(self)
        try write(makeIDX(dims: [2, 28, 28]).dropLast(5), to: dir.appendingPathComponent("t10k-images-idx3-ubyte"))
        try write(makeIDX(dims: [2], data: [1, 2]), to: dir.appendingPathComponent("t10k-labels-idx1-ubyte"))
        let r = try part(["data", "inspect", "--data", dir.path, "--split", "test"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.errors, ["part: error: t10k-images-idx3-ubyte: truncated: header says 1568 bytes of data, file has 1563 (dimensions [2, 28, 28])"])
    }

    func testBadArgumentsExit64() throws {
        let r = try part(["data", "inspect", "--dataset", "cifar10"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--dataset cifar10 needs --data"), r.stderr)
        let s = try part(["data", "inspect", "--dataset", "nope"])
        XCTAssertEqual(s.status, 64)
        let t = try part(["train", "--dataset", "cifar100", "--data", "/x", "--svhn-extra"])
        XCTAssertEqual(t.status, 64)
        XCTAssertTrue(t.stderr.contains("--svhn-extra applies to --dataset svhn only"), t.stderr)
    }

    func testBenchRunsOnAFixture() throws {
        let r = try part(["data", "bench", "--dataset", "cifar10", "--data", Fixtures.url("data_cifar10").path,
                          "--batch-size", "8", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["images"] as? Int, 20)
        XCTAssertGreaterThan(report?["dataPathImagesPerSecondOneThread"] as? Double ?? 0, 0)
    }
}
