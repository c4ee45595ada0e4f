@testable import PARTEngine
import XCTest

/// The one `.npy` header reader and writer (`NPYFormat`): what it writes reads back, versions
/// 2.0 and 3.0 read, and every kind of damage is a `Problem`, never a trap.
final class NPYFormatTests: XCTestCase {
    func parse(_ bytes: [UInt8], fortranAllowed: Bool = false) throws -> NPYFormat.Header {
        try bytes.withUnsafeBytes { try NPYFormat.header($0, fortranAllowed: fortranAllowed) }
    }

    func problem(_ bytes: [UInt8]) -> NPYFormat.Problem.Kind? {
        do {
            _ = try parse(bytes)
            return nil
        } catch let error as NPYFormat.Problem {
            return error.kind
        } catch {
            XCTFail("\(error)")
            return nil
        }
    }

    /// A header with `dict` as its text, in format `major`.
    func file(_ dict: String, major: UInt8 = 1, data: Int = 0) -> [UInt8] {
        let text = Array(dict.utf8)
        let length = major == 1 ? [UInt8(text.count & 0xFF), UInt8(text.count >> 8)]
            : [UInt8(text.count & 0xFF), UInt8(text.count >> 8 & 0xFF), 0, 0]
        return NPYFormat.magic + [major, 0] + length + text + [UInt8](repeating: 0, count: data)
    }

    func testWhatItWritesReadsBack() throws {
        for (shape, descr) in [([2, 3], "<f4"), ([5], "<i8"), ([], "<f8"), ([0, 4], "|u1")] {
            let data = [UInt8](repeating: 7, count: shape.reduce(1, *) * Int(descr.dropFirst(2))!)
            let bytes = NPYFormat.encode(shape: shape, descr: descr, data: data)
            let header = try parse(bytes)
            XCTAssertEqual(header.shape, shape)
            XCTAssertEqual(header.descr, descr)
            XCTAssertEqual(header.dataOffset % 64, 0, "numpy aligns the data to 64 bytes")
            XCTAssertEqual(Array(bytes[header.dataOffset...]), data)
            XCTAssertEqual(header.byteCount, data.count)
            XCTAssertEqual(bytes.withUnsafeBytes { NPYFormat.describedSize($0) }, bytes.count)
        }
    }

    func testVersionsTwoAndThreeRead() throws {
        for major: UInt8 in [2, 3] {
            let header = try parse(file("{'descr': '>i2', 'fortran_order': False, 'shape': (3L,), }", major: major, data: 6))
            XCTAssertEqual(header.shape, [3])
            XCTAssertEqual(header.elementType.size, 2)
            XCTAssertTrue(header.elementType.bigEndian)
            XCTAssertEqual(header.dataOffset, 12 + 58)
        }
    }

    func testDamageIsAProblem() {
        let dict = { (shape: String) in "{'descr': '<f4', 'fortran_order': False, 'shape': (\(shape)), }" }
        XCTAssertEqual(problem(Array("not numpy".utf8)), .notNPY)
        XCTAssertEqual(problem(NPYFormat.magic + [4, 0, 0, 0]), .unsupportedVersion(major: 4, minor: 0))
        XCTAssertEqual(problem(NPYFormat.magic + [2, 0, 0, 0]), .truncatedHeader)
        XCTAssertEqual(problem(Array(file(dict("1,")).dropLast(5))), .headerBeyondEnd(declared: 57, left: 52))
        XCTAssertEqual(problem(file("{'descr': '<f4'z, }")), .unreadable)
        XCTAssertEqual(problem(file("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }")), .noDescr)
        XCTAssertEqual(problem(file("{'descr': '<f4', 'shape': (2,), }")), .noFortranOrder)
        XCTAssertEqual(problem(file("{'descr': 'f', 'fortran_order': False, 'shape': (2,), }")), .unsupportedType(descr: "f"))
        XCTAssertEqual(problem(file(dict("2, x"))), .shapeNotIntegers(text: "2, x"))
        XCTAssertEqual(problem(file(dict("99999999999999999999,"))), .shapeNotIntegers(text: "99999999999999999999,"))
        XCTAssertEqual(problem(file(dict("2, -1"))), .negativeDimension(shape: [2, -1], text: "2, -1"))
        XCTAssertEqual(problem(file(dict("4294967296, 4294967296, 4"))),
                       .tooLarge(shape: [4294967296, 4294967296], whole: [4294967296, 4294967296, 4]))
        let fortran = file("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", data: 16)
        XCTAssertEqual(problem(fortran), .fortranOrder)
        XCTAssertEqual(try parse(fortran, fortranAllowed: true).fortranOrder, true)
    }

    func testDescribedSizeOfAHeaderAlone() {
        let head = file("{'descr': '<f8', 'fortran_order': False, 'shape': (1000, 3), }")
        XCTAssertEqual(head.withUnsafeBytes { NPYFormat.describedSize($0) }, head.count + 24_000)
        let huge = file("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }")
        XCTAssertEqual(huge.withUnsafeBytes { NPYFormat.describedSize($0) }, Int.max)
        XCTAssertNil(Array("junk".utf8).withUnsafeBytes { NPYFormat.describedSize($0) })
    }
}
