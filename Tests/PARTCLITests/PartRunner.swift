import Foundation

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

/// Runs `part` with `arguments` as a user would and collects its output and exit status.
func runPart(_ arguments: [String]) throws -> PartRun {
    let process = Process()
    process.executableURL = partBinary
    process.arguments = arguments
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return PartRun(status: process.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                   stderr: String(decoding: e, as: UTF8.self))
}
