import PARTTestSupport
import Foundation
import XCTest
@testable import PARTReport

/// The event-file writer against PyTorch's `SummaryWriter` (scripts/make_tensorboard_fixture.py):
/// the same scalars, steps and wall times give the same records, byte for byte.
final class TensorBoardTests: XCTestCase {
    func testCRC32CCheckValues() {
        // The check value of CRC-32C (RFC 3720 appendix B.4 lists more).
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
    }

    struct Inputs: Decodable {
        let fileVersionWallTime: Double
        let scalars: [[Item]]

        enum Item: Decodable {
            case text(String), number(Double)
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { self = .text(s) } else { self = .number(try c.decode(Double.self)) }
            }
            var text: String { if case .text(let s) = self { return s }; return "" }
            var number: Double {
                switch self {
                case .number(let v): return v
                case .text(let s): return ["nan": Double.nan, "inf": .infinity, "-inf": -.infinity][s] ?? .nan
                }
            }
        }
    }

    func testTheWriterReproducesSummaryWriterRecordForRecord() throws {
        let inputs = try JSONDecoder().decode(Inputs.self, from: Data(contentsOf: fixtureURL("tb_scalars.json")))
        let expected = try TFRecord.records(Array(Data(contentsOf: fixtureURL("tb_events.tfevents"))), source: "tb_events.tfevents")
        XCTAssertEqual(expected.count, inputs.scalars.count + 1)

        let dir = try temporaryDirectory()
        let writer = try TensorBoardWriter(directory: dir, wallTime: inputs.fileVersionWallTime,
                                           writer: "tensorboard.summary.writer.event_file_writer")
        for item in inputs.scalars {
            try writer.add(item[0].text, item[1].number, step: Int(item[2].number), wallTime: item[3].number)
        }
        XCTAssert(writer.url.lastPathComponent.hasPrefix("events.out.tfevents.1764028800."), writer.url.lastPathComponent)
        let bytes = Array(try Data(contentsOf: writer.url))
        let written = try TFRecord.records(bytes, source: writer.url.path)
        XCTAssertEqual(written.count, expected.count)
        for (i, (mine, theirs)) in zip(written, expected).enumerated() {
            XCTAssertEqual(mine, theirs, "record \(i) differs (\(i == 0 ? "file version" : "scalar \(inputs.scalars[i - 1][0].text)"))")
        }
        XCTAssertEqual(bytes, Array(try Data(contentsOf: fixtureURL("tb_events.tfevents"))), "the files differ")
    }

    func testTheDefaultWriterNameIsThisProject() throws {
        let record = TensorBoardEvent.fileVersion(wallTime: 1, writer: "part")
        XCTAssert(String(decoding: record, as: UTF8.self).contains("brain.Event:2"))
        XCTAssertEqual(Array(record.suffix(8)), [0x52, 0x06, 0x0A, 0x04] + Array("part".utf8))
    }

    func testDamagedRecordsAreNamed() throws {
        var bytes = TFRecord.frame(TensorBoardEvent.scalar(tag: "loss", value: 1, step: 1, wallTime: 2))
        XCTAssertEqual(try TFRecord.records(bytes, source: "f").count, 1)
        bytes[14] ^= 1
        XCTAssertThrowsError(try TFRecord.records(bytes, source: "f")) {
            XCTAssert("\($0)".contains("fails its CRC"), "\($0)")
        }
        XCTAssertThrowsError(try TFRecord.records(Array(bytes.prefix(20)), source: "f")) {
            XCTAssert("\($0)".contains("cut short"), "\($0)")
        }
    }
}
