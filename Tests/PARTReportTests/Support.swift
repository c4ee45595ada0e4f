import Foundation
import XCTest

/// Tests/Fixtures/`name`.
func fixtureURL(_ name: String) -> URL {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(name)
}

extension XCTestCase {
    /// A fresh directory removed after the test.
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("part-report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}

/// What one run of the built `part` printed and returned.
struct PartRun {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// The built `part`, beside the test bundle in the products directory.
var partBinary: URL {
    let candidates = [Bundle.main.bundleURL] + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
    for dir in candidates {
        let url = dir.appendingPathComponent("part")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return Bundle.main.bundleURL.appendingPathComponent("part")
}

/// Runs `executable` (default: the built `part`) with `arguments` and collects its output and
/// exit status.
func runProcess(_ arguments: [String], executable: URL = partBinary, environment: [String: String]? = nil) throws -> PartRun {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Both pipes are drained at once, so a chatty stderr cannot block the process.
    final class Box: @unchecked Sendable { var data = Data() }
    let errData = Box()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData.data = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let o = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return PartRun(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: errData.data, as: UTF8.self))
}
