import Foundation

/// What one run of a command printed and returned.
public struct PartRun: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// The built `part`, beside the test bundle in the products directory.
public var partBinary: URL {
    let candidates = [Bundle.main.bundleURL] + Bundle.allBundles.map { $0.bundleURL.deletingLastPathComponent() }
    for dir in candidates {
        let url = dir.appendingPathComponent("part")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return Bundle.main.bundleURL.appendingPathComponent("part")
}

/// Runs `executable` (default: the built `part`) with `arguments` as a user would, and collects
/// its output and exit status. Both pipes are drained at once, so a chatty standard error cannot
/// block the process while standard output is read.
public func runProcess(_ arguments: [String], executable: URL = partBinary,
                       environment: [String: String]? = nil, currentDirectory: URL? = nil) throws -> PartRun {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if let environment { process.environment = environment }
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Safe: the background block writes `data` once, before `group.leave()`; this thread reads it
    // only after `group.wait()`.
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

/// Runs the built `part` with `arguments`.
public func runPart(_ arguments: [String]) throws -> PartRun {
    try runProcess(arguments)
}
