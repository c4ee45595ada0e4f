import PARTTestSupport
import Foundation
import PARTEngine
import XCTest
@testable import PARTData

/// Sizes a file declares are checked against the format's own header and a per-image bound
/// before anything is allocated for them, and the error names the file.
final class DeclaredSizeTests: XCTestCase {
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF)] }
    func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16((v >> 16) & 0xFFFF) }
    func crc(_ bytes: [UInt8]) -> Int { Int(bytes.withUnsafeBytes { Zip.crc32Of($0) }) }

    /// A zip of deflate members (one stored deflate block each) whose declared uncompressed
    /// sizes are `declared` (nil: the true size).
    func zip(_ members: [(name: String, data: [UInt8], declared: Int?)]) -> [UInt8] {
        var out = [UInt8](), directory = [UInt8]()
        for m in members {
            let deflated = [0x01] + le16(m.data.count) + le16(~m.data.count & 0xFFFF) + m.data
            let fields = le16(8) + le16(0) + le16(0) + le32(crc(m.data)) + le32(deflated.count) + le32(m.declared ?? m.data.count)
                + le16(m.name.utf8.count) + le16(0)
            directory += le32(0x0201_4B50) + le16(20) + le16(20) + le16(0) + fields + le16(0) + le16(0) + le16(0) + le32(0)
                + le32(out.count) + Array(m.name.utf8)
            out += le32(0x0403_4B50) + le16(20) + le16(0) + fields + Array(m.name.utf8) + deflated
        }
        return out + directory + le32(0x0605_4B50) + le16(0) + le16(0) + le16(members.count) + le16(members.count)
            + le32(directory.count) + le32(out.count) + le16(0)
    }

    func testAnNPZMemberLargerThanItsHeaderIsRefusedBeforeItIsAllocated() throws {
        let dir = try makeTemporaryDirectory(self as XCTestCase)
        let x = npy(descr: "|u1", shape: [2, 4, 4, 1], data: [UInt8](repeating: 9, count: 32))
        let y = npy(descr: "<i8", shape: [2], data: le32(1) + le32(0) + le32(0) + le32(0))
        let honest = dir.appendingPathComponent("honest.npz")
        try write(zip([("x.npy", x, nil), ("y.npy", y, nil)]), to: honest)
        XCTAssertEqual(try DatasetRegistry.load(DatasetRequest(name: .npy, location: honest), split: .train).count, 2)
        // The zip claims 100 times the member's size; the .npy header inside says otherwise.
        let lying = dir.appendingPathComponent("lying.npz")
        try write(zip([("x.npy", x, x.count * 100), ("y.npy", y, nil)]), to: lying)
        assertFails(try DatasetRegistry.load(DatasetRequest(name: .npy, location: lying), split: .train),
                    lying.path, "x.npy", "declares \(x.count * 100) bytes", "header describes \(x.count)")
    }

    /// A PNG of 1x1 grey pixels whose header is rewritten to claim `width` x `height`.
    func png(claiming width: Int, _ height: Int) throws -> [UInt8] {
        var bytes = try PNGCodec.encode([128], width: 1, height: 1, channels: 1)
        func be32(_ v: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8((v >> $0) & 0xFF) } }
        bytes.replaceSubrange(16..<24, with: be32(width) + be32(height))
        bytes.replaceSubrange(29..<33, with: be32(crc(Array(bytes[12..<29]))))
        return bytes
    }

    func testAnImageHeaderBeyondTheBoundIsRefusedNamingTheFile() throws {
        let root = try makeTemporaryDirectory(self as XCTestCase)
        for (split, name, bytes) in [("train", "big.png", try png(claiming: 20000, 20000)),
                                     ("train", "small.png", try png(claiming: 1, 1)),
                                     ("test", "small.png", try png(claiming: 1, 1))] {
            let folder = root.appendingPathComponent(split).appendingPathComponent("a")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try write(bytes, to: folder.appendingPathComponent(name))
        }
        var request = DatasetRequest(name: .imagefolder, location: root)
        request.cache = root.appendingPathComponent("cache")
        assertFails(try DatasetRegistry.load(request, split: .train), "big.png", "20000x20000")
    }

    func testALayoutFlagStillNeedsOneOrThreeChannels() throws {
        let dir = try makeTemporaryDirectory(self as XCTestCase)
        try write(npy(descr: "|u1", shape: [2, 4, 4, 5], data: [UInt8](repeating: 1, count: 160)),
                  to: dir.appendingPathComponent("train_x.npy"))
        try write(npy(descr: "<i8", shape: [2], data: [UInt8](repeating: 0, count: 16)), to: dir.appendingPathComponent("train_y.npy"))
        var request = DatasetRequest(name: .npy, location: dir)
        request.layout = .nhwc
        assertFails(try DatasetRegistry.load(request, split: .train), "train_x.npy", "5 channels")
    }
}
