import Foundation
import PARTTestSupport
import XCTest

/// A `part` process whose standard error is read while it runs (to wait for a line, then
/// signal it).
// Safe: the pipe handlers and the test thread touch `errText` and `outData` only while `lock`
// is held; the other properties are constants.
final class LivePart: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var errText = ""
    private var outData = Data()

    init(_ arguments: [String], environment: [String: String] = [:], directory: URL? = nil) throws {
        process.executableURL = partBinary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        err.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            self.errText += String(decoding: d, as: UTF8.self)
            self.lock.unlock()
        }
        out.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock()
            self.outData += d
            self.lock.unlock()
        }
        try process.run()
    }

    var stderr: String {
        lock.lock()
        defer { lock.unlock() }
        return errText
    }

    /// Waits until standard error contains `text` (false after `seconds` or when the process ended first).
    func waitFor(_ text: String, seconds: Double = 120) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            if !process.isRunning { return stderr.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// Waits for the end; returns what a `runPart` would.
    func finish() -> PartRun {
        process.waitUntilExit()
        usleep(100_000)
        (process.standardError as? Pipe)?.fileHandleForReading.readabilityHandler = nil
        (process.standardOutput as? Pipe)?.fileHandleForReading.readabilityHandler = nil
        lock.lock()
        defer { lock.unlock() }
        return PartRun(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: errText)
    }
}

/// Runs `part` to its end with extra environment variables (the `PART_FAULT` test hook).
func runPart(_ arguments: [String], environment: [String: String], directory: URL? = nil) throws -> (PartRun, Process.TerminationReason) {
    let live = try LivePart(arguments, environment: environment, directory: directory)
    let run = live.finish()
    return (run, live.process.terminationReason)
}

/// Fashion-MNIST-format files of `count` 16x16 images (class = the bright quadrant) for both
/// splits: the smallest data a small-cnn trains on.
func writeTinyDataset(to dir: URL, train: Int = 16, test: Int = 4, side: Int = 16, testSide: Int? = nil) throws {
    var seed: UInt32 = 7
    func next() -> UInt8 {
        seed = seed &* 1_664_525 &+ 1_013_904_223
        return UInt8(seed >> 26)
    }
    for (split, count, s) in [("train", train, side), ("t10k", test, testSide ?? side)] {
        var images: [UInt8] = [0, 0, 8, 3]
        var labels: [UInt8] = [0, 0, 8, 1]
        for d in [count, s, s] { images += withUnsafeBytes(of: UInt32(d).bigEndian, Array.init) }
        labels += withUnsafeBytes(of: UInt32(count).bigEndian, Array.init)
        for i in 0..<count {
            let label = i % 4
            for r in 0..<s { for c in 0..<s {
                let quadrant = (r < s / 2 ? 0 : 2) + (c < s / 2 ? 0 : 1)
                images.append((quadrant == label ? 160 : 40) + next())
            } }
            labels.append(UInt8(label))
        }
        try Data(images).write(to: dir.appendingPathComponent("\(split)-images-idx3-ubyte"))
        try Data(labels).write(to: dir.appendingPathComponent("\(split)-labels-idx1-ubyte"))
    }
}

/// A finished reference run of `part train` on the tiny dataset, in a new temporary folder
/// named `prefix-UUID` holding `data/` and `reference/` (`arguments(data, out)` is the command).
func tinyReferenceRun(_ prefix: String, arguments: (URL, URL) -> [String]) throws -> (data: URL, run: URL) {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    let data = root.appendingPathComponent("data"), run = root.appendingPathComponent("reference")
    try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
    try writeTinyDataset(to: data)
    let r = try runPart(arguments(data, run))
    guard r.status == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: ["stderr": r.stderr]) }
    return (data, run)
}

