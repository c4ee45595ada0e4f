import Foundation
import XCTest
@testable import PARTEngine

/// The strict JSON reader of file headers: RFC 8259 grammar, exact integers, and refusals
/// where a lenient parser would choose silently.
final class StrictJSONTests: XCTestCase {
    private func parse(_ text: String) throws -> StrictJSON.Value { try StrictJSON.parse(Array(text.utf8)) }

    private func assertSyntaxError(_ text: String, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try parse(text), file: file, line: line) { error in
            guard let e = error as? StrictJSON.SyntaxError else {
                return XCTFail("expected a SyntaxError, got \(error)", file: file, line: line)
            }
            XCTAssert(e.description.contains(fragment), "\"\(e.description)\" should mention \"\(fragment)\"", file: file, line: line)
        }
    }

    func testValuesOfEveryKind() throws {
        let value = try parse(#" { "a" : [1, -2.5e+3, 0, true, false, null], "b": {"c": "x\ty"} , "": [] } "#)
        guard case .object(let members) = value else { return XCTFail("not an object") }
        XCTAssertEqual(members.map(\.key), ["a", "b", ""], "members keep file order")
        XCTAssertEqual(value["a"], .array([.number("1"), .number("-2.5e+3"), .number("0"), .bool(true), .bool(false), .null]))
        XCTAssertEqual(value["b"]?["c"], .string("x\ty"))
        XCTAssertEqual(value["a"].map { if case .array(let a) = $0 { return a.count } else { return -1 } }, 6)
    }

    func testEscapesAndUnicode() throws {
        XCTAssertEqual(try parse(#""\"\\\/\b\f\n\r\t""#), .string("\"\\/\u{08}\u{0C}\n\r\t"))
        XCTAssertEqual(try parse(#""\u00e9\u4e2d\ud83d\ude00""#), .string("é中😀"))
        XCTAssertEqual(try parse("\"é中😀\""), .string("é中😀"))
    }

    func testIntegersAreExact() throws {
        XCTAssertEqual(try parse("9007199254740993").nonNegativeInteger, 9_007_199_254_740_993)
        XCTAssertNil(try parse("1.0").nonNegativeInteger)
        XCTAssertNil(try parse("1e2").nonNegativeInteger)
        XCTAssertNil(try parse("-1").nonNegativeInteger)
        XCTAssertNil(try parse("99999999999999999999").nonNegativeInteger, "beyond Int")
        XCTAssertNil(try parse("\"7\"").nonNegativeInteger)
    }

    func testRefusals() {
        assertSyntaxError(#"{"k":1,"k":2}"#, "duplicated key \"k\"")
        assertSyntaxError(#"{"k":1} {"#, "after the JSON value")
        assertSyntaxError("[1,]", "a value was expected")
        assertSyntaxError("[01]", "',' or ']' was expected")
        assertSyntaxError("-", "sign")
        assertSyntaxError("1.", "fraction")
        assertSyntaxError("1e", "exponent")
        assertSyntaxError("tru", "\"true\" was expected")
        assertSyntaxError("\"abc", "end of text inside a string")
        assertSyntaxError(#""\ud800""#, "lone UTF-16 surrogate")
        assertSyntaxError(#""\udc00""#, "lone UTF-16 surrogate")
        assertSyntaxError(#""\ud800\u0041""#, "not followed by a low one")
        assertSyntaxError(#""\u12""#, "four hex digits")
        assertSyntaxError("\"a\nb\"", "control character")
        assertSyntaxError(String(repeating: "[", count: 65) + String(repeating: "]", count: 65), "nesting deeper than 64")
        assertSyntaxError("", "end of text")
        assertSyntaxError("{\"a\" 1}", "':' was expected")
        assertSyntaxError("{1:2}", "a string key was expected")
        XCTAssertNoThrow(try parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)))
    }

    func testInvalidUTF8IsRefused() {
        for bytes: [UInt8] in [[0x22, 0xC0, 0x80, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],
                               [0x22, 0xE4, 0xB8, 0x22], [0x22, 0x80, 0x22]] {
            XCTAssertThrowsError(try StrictJSON.parse(bytes), "\(bytes)") { error in
                XCTAssert("\(error)".contains("UTF-8"), "\(error)")
            }
        }
    }

    func testErrorsCarryTheOffset() {
        XCTAssertThrowsError(try parse("[1, 2, x]")) { error in
            XCTAssertEqual((error as? StrictJSON.SyntaxError)?.offset, 7)
        }
    }
}

/// File text quoted in messages stays on one line.
final class MessageTextTests: XCTestCase {
    func testControlCharactersAreEscapedAndLongTextIsCut() {
        XCTAssertEqual(messageText("conv1.weight"), "conv1.weight")
        XCTAssertEqual(messageText("a\nb\tc\\d\r"), "a\\nb\\tc\\\\d\\r")
        XCTAssertEqual(messageText("x\u{1B}[31my\u{7F}\u{202E}"), "x\\u{1B}[31my\\u{7F}\\u{202E}")
        XCTAssertEqual(messageText("ünïcödé 中"), "ünïcödé 中")
        XCTAssertEqual(messageText(String(repeating: "a", count: 100), limit: 5), "aaaaa...")
        XCTAssertEqual(messageText("a\nbcd", limit: 5), "a\\nbcd", "exactly the limit: nothing cut")
        XCTAssertEqual(messageText("\u{1B}\u{1B}\u{1B}", limit: 2), "\\u{1B}\\u{1B}...", "the limit counts the file's scalars")
    }

    /// The one JSON string writer (safetensors headers, results lines) reads back as the same
    /// string with the strict reader, for quotes, backslashes, every control character, slashes
    /// and non-ASCII text.
    func testJSONLiteralsReadBackAndHTMLIsEscaped() throws {
        let hostile = "a\"b\\c/d" + String(String.UnicodeScalarView((0..<0x20).map { Unicode.Scalar($0)! })) + "é中😀"
        let literal = jsonStringLiteral(hostile)
        XCTAssertEqual(try StrictJSON.parse(Array(literal.utf8)), .string(hostile))
        XCTAssertFalse(literal.unicodeScalars.contains { $0.value < 0x20 }, literal)
        XCTAssertEqual(jsonStringLiteral("layer4/x"), "\"layer4/x\"", "slashes stay as they are")
    }

    func testAHostileTensorNameCannotSplitAnError() throws {
        let text = "{\"a\\nb\":{\"dtype\":\"X\\u001b\",\"shape\":[1],\"data_offsets\":[0,1]}}"
        var bytes = [UInt8]()
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: text.utf8.count >> (8 * i))) }
        bytes += Array(text.utf8) + [0]
        XCTAssertThrowsError(try SafetensorsFile.decode(bytes, source: "f")) { error in
            XCTAssertEqual("\(error)".split(separator: "\n").count, 1, "\(error)")
            XCTAssert("\(error)".contains("tensor \"a\\nb\": unknown dtype \"X\\u{1B}\""), "\(error)")
        }
    }
}
