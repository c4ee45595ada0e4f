import PARTTestSupport
import Foundation
import XCTest
@testable import PARTEngine

/// Reading files from outside: regular files only, sizes checked first, sentences for errors.
final class FileInputTests: XCTestCase {

    private func assertRefused(_ url: URL, limit: Int = FileInput.defaultLimit, _ fragments: [String],
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try FileInput.read(url, limit: limit), file: file, line: line) { error in
            guard let e = error as? FileInputError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssert(e.description.hasPrefix(url.path + ": "), e.description, file: file, line: line)
            XCTAssertFalse(e.description.contains("\n") || e.description.contains("NSCocoaErrorDomain"), e.description,
                           file: file, line: line)
            for f in fragments {
                XCTAssert(e.description.contains(f), "\"\(e.description)\" should mention \"\(f)\"", file: file, line: line)
            }
        }
    }

    func testReadsARegularFileAndAnEmptyOne() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("f.bin")
        let bytes = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: url)
        XCTAssertEqual(try FileInput.read(url), bytes)
        let empty = dir.appendingPathComponent("empty")
        try Data().write(to: empty)
        XCTAssertEqual(try FileInput.read(empty), [])
        // Through a symbolic link, too.
        let link = dir.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: url)
        XCTAssertEqual(try FileInput.read(link).count, bytes.count)
    }

    func testRefusesWhatIsNotARegularFile() throws {
        let dir = try temporaryDirectory()
        assertRefused(dir, ["is a directory, not a regular file"])
        let fifo = dir.appendingPathComponent("fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        assertRefused(fifo, ["is a FIFO (named pipe), not a regular file"])
        assertRefused(URL(fileURLWithPath: "/dev/zero"), ["is a character device, not a regular file"])
        assertRefused(URL(fileURLWithPath: "/dev/null"), ["is a character device"])
    }

    func testMissingPathsAndDanglingLinks() throws {
        let dir = try temporaryDirectory()
        assertRefused(dir.appendingPathComponent("absent"), ["no such file"])
        let file = dir.appendingPathComponent("file")
        try Data([1]).write(to: file)
        assertRefused(file.appendingPathComponent("below"), ["not a directory"])
        let dangling = dir.appendingPathComponent("dangling")
        try FileManager.default.createSymbolicLink(atPath: dangling.path, withDestinationPath: dir.appendingPathComponent("gone").path)
        assertRefused(dangling, ["no such file"])
    }

    func testAFileLargerThanTheLimitIsRefusedBeforeReading() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("big")
        try Data(count: 1000).write(to: url)
        assertRefused(url, limit: 999, ["1000 bytes", "more than the 999"])
        // A sparse file of 1 TiB: refused by its size, nothing allocated.
        let sparse = dir.appendingPathComponent("sparse")
        XCTAssert(FileManager.default.createFile(atPath: sparse.path, contents: nil))
        XCTAssertEqual(truncate(sparse.path, 1 << 40), 0)
        assertRefused(sparse, ["1099511627776 bytes"])
    }

    func testReaderReadsInPiecesAndRefusesToReadPastTheEnd() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("f")
        try Data([1, 2, 3, 4, 5]).write(to: url)
        let reader = try FileInput.Reader(url)
        XCTAssertEqual(reader.size, 5)
        XCTAssertEqual(try reader.read(count: 2), [1, 2])
        XCTAssertThrowsError(try reader.read(count: 4)) { error in
            XCTAssert("\(error)".contains("ends after 5 bytes, 6 were needed"), "\(error)")
        }
        XCTAssertEqual(try reader.read(count: 3), [3, 4, 5])
    }
}
