import Foundation
import PARTTestSupport
import PARTEngine
import PARTNN
import XCTest

/// The exit-code contract of every command (docs/conventions.md.md section 1): 64 and a reason for a
/// bad argument; 1 and one line naming the file for a missing, unreadable or corrupt file or a
/// non-finite value; never a signal or a trap.
final class ExitCodeTests: XCTestCase {

    /// MNIST-format train and test splits of `count` 28x28 images each.
    func writeDataset(to dir: URL, count: Int = 8) throws {
        for split in ["train", "t10k"] {
            var images: [UInt8] = [0, 0, 8, 3], labels: [UInt8] = [0, 0, 8, 1]
            for d in [count, 28, 28] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
            labels += withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
            images += (0..<(count * 784)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
            labels += (0..<count).map { UInt8($0 % 10) }
            try Data(images).write(to: dir.appendingPathComponent("\(split)-images-idx3-ubyte"))
            try Data(labels).write(to: dir.appendingPathComponent("\(split)-labels-idx1-ubyte"))
        }
    }

    /// A SmallCNN checkpoint as `part train` writes it.
    func checkpointBytes(channels: Int = 1, side: Int = 28, metadata: [String: String] = [:],
                         edit: (inout SafetensorsFile) -> Void = { _ in }) throws -> [UInt8] {
        var rng = RNG(seed: 5)
        let model = try ModelZoo.make("small-cnn", numClasses: 10, inChannels: channels, imageSize: side, rng: &rng)
        var file = Checkpoint.file(of: model, metadata: metadata)
        edit(&file)
        return try file.encode()
    }

    func assertBadArgument(_ arguments: [String], _ reason: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runPart(arguments)
        XCTAssertEqual(r.status, 64, "\(arguments): \(r.stderr)", file: file, line: line)
        let first = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
        XCTAssert(first.hasPrefix("Error: ") && first.contains(reason), "\(arguments): first line \"\(first)\" should give \"\(reason)\"",
                  file: file, line: line)
        XCTAssertEqual(r.stdout, "", file: file, line: line)
    }

    func assertFileError(_ arguments: [String], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try runPart(arguments)
        XCTAssertEqual(r.status, 1, "\(arguments): \(r.stderr)", file: file, line: line)
        // Progress lines may come first; the error is one line, the last.
        let lines = r.stderr.split(separator: "\n")
        let errors = lines.filter { $0.hasPrefix("part: error: ") }
        XCTAssertEqual(errors.count, 1, "one error line: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(lines.last, errors.first, "the error ends the output: \(r.stderr)", file: file, line: line)
        let message = String(errors.first ?? "")
        for f in fragments {
            XCTAssert(message.contains(f), "\"\(message)\" should mention \"\(f)\"", file: file, line: line)
        }
    }

    func testBadArgumentsExit64WithTheReasonFirst() throws {
        try assertBadArgument(["train", "--eps", "nan"], "--eps must be in [0, 1]")
        try assertBadArgument(["train", "--batch-size", "0"], "--batch-size must be at least 1")
        try assertBadArgument(["train", "--epochs", "0"], "--epochs must be at least 1")
        try assertBadArgument(["train", "--lr", "nan"], "--lr")
        try assertBadArgument(["train", "--lr=-1"], "--lr")
        try assertBadArgument(["train", "--arch", "vgg"], "unknown --arch 'vgg'")
        try assertBadArgument(["train", "--no-such-flag"], "Unknown option '--no-such-flag'")
        try assertBadArgument(["train", "--epochs", "many"], "--epochs")
        try assertBadArgument(["eval"], "Missing expected argument '<checkpoint>'")
        try assertBadArgument(["eval", "x.safetensors", "--batch-size", "0"], "--batch-size must be at least 1")
        try assertBadArgument(["eval", "x.safetensors", "--eps", "2"], "--eps")
        try assertBadArgument(["eval", "x.safetensors", "--alpha=-1"], "--alpha")
        try assertBadArgument(["eval", "x.safetensors", "--pgd-steps=-1"], "--pgd-steps")
        try assertBadArgument(["no-such-command"], "no-such-command")
    }

    func testCheckpointsThatAreMissingNotFilesOrCorruptExit1NamingThem() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir)
        func eval(_ checkpoint: URL, _ fragments: [String], line: UInt = #line) throws {
            try assertFileError(["eval", checkpoint.path, "--data", dir.path, "--limit", "4", "--pgd-steps", "1"],
                                [checkpoint.path] + fragments, line: line)
        }
        func write(_ name: String, _ bytes: [UInt8]) throws -> URL {
            let url = dir.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            return url
        }
        try eval(dir.appendingPathComponent("absent.safetensors"), ["no such file"])
        let sub = dir.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: false)
        try eval(sub, ["is a directory, not a regular file"])
        let fifo = dir.appendingPathComponent("pipe.safetensors")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        try eval(fifo, ["FIFO"])
        try eval(URL(fileURLWithPath: "/dev/zero"), ["is a character device"])

        let good = try checkpointBytes()
        try eval(try write("truncated.safetensors", Array(good.prefix(good.count / 2))), ["outside", "truncated file?"])
        try eval(try write("short.safetensors", Array(good.prefix(5))), ["truncated file"])
        try eval(try write("trailing.safetensors", good + [0, 0, 0]), ["3 trailing bytes"])
        var duplicated = good
        // Rename "fc2.bias" to "fc1.bias" in the header: the same key twice.
        let header = Array("\"fc2.bias\"".utf8), replacement = Array("\"fc1.bias\"".utf8)
        let at = try XCTUnwrap((0...(duplicated.count - header.count)).first { Array(duplicated[$0..<($0 + header.count)]) == header })
        duplicated.replaceSubrange(at..<(at + header.count), with: replacement)
        try eval(try write("duplicated.safetensors", duplicated), ["duplicated key \"fc1.bias\""])
    }

    func testNonFiniteWeightsAndCheckpointsOfAnotherDatasetExit1() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir)
        func eval(_ name: String, _ bytes: [UInt8], _ fragments: [String], line: UInt = #line) throws {
            let url = dir.appendingPathComponent(name)
            try Data(bytes).write(to: url)
            try assertFileError(["eval", url.path, "--data", dir.path, "--limit", "4", "--pgd-steps", "1", "--json"],
                                [url.path] + fragments, line: line)
        }
        try eval("one-nan.safetensors", try checkpointBytes { file in
            var t = file.tensors["fc2.weight"]!
            t[flat: 17] = .nan
            file.tensors["fc2.weight"] = t
        }, ["tensor 'fc2.weight' holds nan at element 17"])
        try eval("all-nan.safetensors", try checkpointBytes { file in
            for (name, t) in file.tensors { file.tensors[name] = Tensor(shape: t.shape, repeating: .nan) }
        }, ["tensor 'conv1.weight' holds nan at element 0"])
        try eval("inf.safetensors", try checkpointBytes { file in
            var t = file.tensors["conv3.bias"]!
            t[flat: 0] = -.infinity
            file.tensors["conv3.bias"] = t
        }, ["tensor 'conv3.bias' holds -inf"])
        // Checked against the dataset before loading (CheckpointFit), or by the loader.
        try eval("cifar.safetensors", try checkpointBytes(channels: 3, side: 32), ["32x32x3", "28x28x1"])
        try eval("classes.safetensors", try checkpointBytes(metadata: ["classes": "-1"]), ["classes", "-1"])
    }

    func testDataFilesThatAreMissingNotFilesOrHostileExit1NamingThem() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Data(try checkpointBytes()).write(to: checkpoint)
        let evalArguments = ["eval", checkpoint.path, "--data", dir.path, "--limit", "4", "--pgd-steps", "1"]

        // A gzip bomb in place of the test images: one image declared, 64 MiB inflated.
        let images = dir.appendingPathComponent("t10k-images-idx3-ubyte")
        try FileManager.default.removeItem(at: images)
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/fuzz/idx-gzip/bomb")
        try Data(try Data(contentsOf: fixtures).dropFirst()).write(to: images.appendingPathExtension("gz"))
        try assertFileError(evalArguments, ["t10k-images-idx3-ubyte.gz", "holds more than the 784 bytes of data"])

        // The test labels as a FIFO: refused at once, not waited on.
        try FileManager.default.removeItem(at: images.appendingPathExtension("gz"))
        try writeDataset(to: dir)
        let labels = dir.appendingPathComponent("t10k-labels-idx1-ubyte")
        try FileManager.default.removeItem(at: labels)
        XCTAssertEqual(mkfifo(labels.path, 0o600), 0)
        try assertFileError(evalArguments, [labels.path, "FIFO"])

        // Not an IDX file at all; and --data naming a file.
        try FileManager.default.removeItem(at: labels)
        try Data("label,image\n".utf8).write(to: labels)
        try assertFileError(evalArguments, ["t10k-labels-idx1-ubyte", "bad magic number"])
        try assertFileError(["train", "--data", checkpoint.path, "--epochs", "2", "--burn-in", "1"], ["not found in \(checkpoint.path)"])
    }

    /// A results file damaged between two runs of one `part eval --save-results` command: the
    /// resume refuses it naming the file and the line (a label beyond Int32 used to trap).
    func testACorruptResultsFileIsRefusedOnResume() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir)
        let checkpoint = dir.appendingPathComponent("model.safetensors")
        try Data(try checkpointBytes()).write(to: checkpoint)
        let results = dir.appendingPathComponent("results.jsonl")
        let command = ["eval", checkpoint.path, "--data", dir.path, "--limit", "4", "--pgd-steps", "1", "--batch-size", "2",
                       "--save-results", results.path]
        let first = try runPart(command)
        XCTAssertEqual(first.status, 0, first.stderr)
        var lines = try String(contentsOf: results, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 5)
        lines[1] = lines[1].replacingOccurrences(of: "\"label\":", with: "\"label\":99999999999")
        try (lines.joined(separator: "\n") + "\n").write(to: results, atomically: true, encoding: .utf8)
        try assertFileError(command, [results.path, "line 2 is not the record of point 0"])
    }

    /// `part cam`, `report`, `bench` and `data` run in one process: started by mpirun as several
    /// ranks they stop with 64 before any work, rank 0 saying why and the others silent; one rank
    /// runs as usual.
    func testOneProcessCommandsRefuseSeveralRanks() throws {
        let dir = try temporaryDirectory()
        try writeDataset(to: dir)
        let model = dir.appendingPathComponent("m.safetensors")
        try Data(try checkpointBytes()).write(to: model)
        let commands: [[String]] = [
            ["cam", model.path, "--data", dir.path, "--out", dir.appendingPathComponent("g.png").path],
            ["report", dir.path],
            ["bench", "--arch", "small-cnn"],
            ["data", "inspect", "--data", dir.path],
            ["data", "bench", "--data", dir.path],
        ]
        for command in commands {
            let (root, _) = try runPart(command, environment: ["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"])
            XCTAssertEqual(root.status, 64, "\(command): \(root.stderr)")
            XCTAssert(root.stderr.hasPrefix("part: error: part \(command[0])") && root.stderr.contains("start it without mpirun"),
                      "\(command): \(root.stderr)")
            XCTAssertEqual(root.stdout, "")
            let (other, _) = try runPart(command, environment: ["OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"])
            XCTAssertEqual(other.status, 64, "\(command): \(other.stderr)")
            XCTAssertEqual(other.stderr + other.stdout, "", "\(command)")
        }
        let (one, _) = try runPart(["data", "inspect", "--data", dir.path], environment: ["OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"])
        XCTAssertEqual(one.status, 0, one.stderr)
        XCTAssert(one.stdout.contains("train"), one.stdout)
    }
}
