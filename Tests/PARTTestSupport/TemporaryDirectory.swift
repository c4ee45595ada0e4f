import Foundation
import XCTest

/// A fresh directory `<prefix>-<UUID>` in the system's temporary folder, removed with all it
/// holds when `test` ends. `created: false` only names it, for code that must create it itself.
public func makeTemporaryDirectory(_ test: XCTestCase, _ prefix: String = "part-tests", created: Bool = true) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    if created { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

extension XCTestCase {
    /// `makeTemporaryDirectory` for this test.
    public func temporaryDirectory(_ prefix: String = "part-tests", created: Bool = true) throws -> URL {
        try makeTemporaryDirectory(self, prefix, created: created)
    }
}
