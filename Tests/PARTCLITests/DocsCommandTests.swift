import Foundation
import PARTTestSupport
import XCTest

/// Every `part SUBCOMMAND ...` the docs, README.md and the scripts show uses options that
/// subcommand has: a renamed or removed flag cannot stay in a page a user copies from.
final class DocsCommandTests: XCTestCase {
    func testEveryFlagTheDocsShowIsInItsSubcommandsHelp() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let fm = FileManager.default
        var pages = [root.appendingPathComponent("README.md")]
        for folder in ["docs", "scripts"] {
            let dir = root.appendingPathComponent(folder)
            for name in try fm.contentsOfDirectory(atPath: dir.path).sorted()
            where name.hasSuffix(".md") || name.hasSuffix(".sh") || name.hasSuffix(".py") {
                pages.append(dir.appendingPathComponent(name))
            }
        }
        // Nested subcommands first, so that `part data inspect` is not read as `part data`.
        let subcommands = ["data inspect", "data bench", "train", "eval", "cam", "convert", "report", "bench", "presets", "mpi"]
        let flag = try NSRegularExpression(pattern: "(?<![\\w-])--[a-z0-9][a-z0-9-]*")
        func flags(in text: String) -> Set<String> {
            Set(flag.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap { Range($0.range, in: text).map { String(text[$0]) } })
        }
        var known = [String: Set<String>]()
        for subcommand in subcommands {
            let help = try runPart(subcommand.split(separator: " ").map(String.init) + ["--help"])
            XCTAssertEqual(help.status, 0, "\(subcommand): \(help.stderr)")
            known[subcommand] = flags(in: help.stdout).union(["--help"])
        }
        let alternatives = subcommands.map { NSRegularExpression.escapedPattern(for: $0) }.joined(separator: "|")
        let command = try NSRegularExpression(pattern: "\\bpart (\(alternatives))\\b([^\\n`|]*)")
        var commands = 0, unknown = [String]()
        for page in pages {
            // A shell line continued with a backslash is one command.
            let text = try String(contentsOf: page, encoding: .utf8).replacingOccurrences(of: "\\\n", with: " ")
            for match in command.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                guard let name = Range(match.range(at: 1), in: text).map({ String(text[$0]) }),
                      let rest = Range(match.range(at: 2), in: text).map({ String(text[$0]) }) else { continue }
                commands += 1
                for option in flags(in: rest).subtracting(known[name] ?? []).sorted() {
                    unknown.append("\(page.lastPathComponent): part \(name) has no \(option) (in `part \(name)\(rest.prefix(80))`)")
                }
            }
        }
        XCTAssertGreaterThan(commands, 100, "the pages show fewer commands than expected: is the pattern still right?")
        XCTAssert(unknown.isEmpty, unknown.joined(separator: "\n"))
    }
}
