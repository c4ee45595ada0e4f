import Foundation
import XCTest

/// docs/quickstart.md quotes Examples/Quickstart/main.swift whole: the quote is the file.
final class QuickstartDocTests: XCTestCase {
    func testDocsQuoteTheExampleAsItIs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let program = try String(contentsOf: root.appendingPathComponent("Examples/Quickstart/main.swift"), encoding: .utf8)
        let page = try String(contentsOf: root.appendingPathComponent("docs/quickstart.md"), encoding: .utf8)
        let blocks = page.components(separatedBy: "```swift\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        XCTAssert(blocks.contains(program), "docs/quickstart.md has no ```swift block equal to Examples/Quickstart/main.swift")
    }
}
