import Foundation
import PARTEngine
import XCTest
@testable import PARTFuzzing

/// The fuzz targets run in-process, as the suite's short pass of what scripts/fuzz.sh does at
/// length: building the libFuzzer executables with the sanitizers takes minutes, so the suite
/// calls the same entry points on the committed seed corpus, on every regression input and on
/// a few thousand deterministic mutations of them. A finding fails the test with the input's
/// name; a trap stops the suite, which fails it too.
final class FuzzCorpusTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Files of `directory`, sorted by name (empty when it does not exist).
    func inputs(_ directory: URL) throws -> [(name: String, bytes: [UInt8])] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [] }
        return try names.sorted().filter { !$0.hasPrefix(".") }.map {
            ($0, [UInt8](try Data(contentsOf: directory.appendingPathComponent($0))))
        }
    }

    func corpus(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        try inputs(Self.root.appendingPathComponent("Fuzz/corpus/\(target)"))
    }

    func regressions(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        try inputs(Self.root.appendingPathComponent("Tests/Fixtures/fuzz/\(target)"))
    }

    func testEveryTargetHasAnExecutableACorpusAndAScriptEntry() throws {
        let names = FuzzTargets.all.map(\.name)
        XCTAssertEqual(Set(names).count, names.count, "target names must be unique")
        let manifest = try String(contentsOf: Self.root.appendingPathComponent("Fuzz/LibFuzzer/Package.swift"), encoding: .utf8)
        let listed = manifest.split(separator: "\n").first { $0.hasPrefix("let targets = [") }
            .map { $0.dropFirst("let targets = [".count).dropLast().split(separator: ",")
                .map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\" ")) } }
        XCTAssertEqual(listed, names, "Fuzz/LibFuzzer/Package.swift must list every target of FuzzTargets.all, in order")
        for name in names {
            let main = Self.root.appendingPathComponent("Fuzz/LibFuzzer/Targets/\(name)/main.swift")
            let text = try String(contentsOf: main, encoding: .utf8)
            XCTAssert(text.contains("FuzzTargets.libFuzzerEntry(\"\(name)\""), "\(main.path) must run target \(name)")
            XCTAssertFalse(try corpus(name).isEmpty, "Fuzz/corpus/\(name) needs seed inputs")
        }
        let corpusFolders = try FileManager.default.contentsOfDirectory(
            atPath: Self.root.appendingPathComponent("Fuzz/corpus").path).filter { !$0.hasPrefix(".") }
        XCTAssertEqual(Set(corpusFolders), Set(names), "every corpus folder belongs to a target")
        let regressionFolders = try FileManager.default.contentsOfDirectory(
            atPath: Self.root.appendingPathComponent("Tests/Fixtures/fuzz").path).filter { !$0.hasPrefix(".") }
        XCTAssert(Set(regressionFolders).isSubset(of: Set(names)), "regression folders are named after targets: \(regressionFolders)")
    }

    /// The script's own listing agrees with the targets, and it refuses an unknown one with 64.
    func testTheFuzzScriptListsTheTargetsAndRefusesAnUnknownOne() throws {
        let script = Self.root.appendingPathComponent("scripts/fuzz.sh").path
        func bash(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = arguments
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        XCTAssertEqual(try bash(["-n", script]).status, 0, "scripts/fuzz.sh must parse")
        let list = try bash([script, "--list"])
        XCTAssertEqual(list.status, 0, list.err)
        XCTAssertEqual(list.out.split(separator: "\n").map(String.init), FuzzTargets.all.map(\.name))
        let unknown = try bash([script, "no-such-target", "10"])
        XCTAssertEqual(unknown.status, 64)
        XCTAssert(unknown.err.contains("unknown target 'no-such-target'"), unknown.err)
    }

    func testSeedCorpusAndRegressionInputsPass() throws {
        for target in FuzzTargets.all {
            let all = try corpus(target.name) + regressions(target.name)
            for input in all {
                XCTAssertNoThrow(try target.run(input.bytes), "\(target.name)/\(input.name)")
            }
        }
    }

    /// A few thousand mutated inputs per target, the same on every run; one engine thread, as
    /// scripts/fuzz.sh runs them (tiny inputs, where threads only add synchronisation).
    func testMutationsOfTheCorpusPass() throws {
        try Engine.withThreads(1) {
            for target in FuzzTargets.all {
                let seeds = try corpus(target.name) + regressions(target.name).filter { $0.bytes.count <= 16_384 }
                var mutator = Mutator(seed: 0x5EED, seeds: seeds.map(\.bytes))
                let started = Date()
                defer { print("fuzz target \(target.name): \(target.smokeRuns) mutations in \(String(format: "%.1f", Date().timeIntervalSince(started))) s") }
                for i in 0..<target.smokeRuns {
                    let input = mutator.next()
                    do {
                        try target.run(input)
                    } catch {
                        let hex = input.prefix(64).map { String(format: "%02x", $0) }.joined()
                        XCTFail("\(target.name), mutation \(i) (\(input.count) bytes, starting \(hex)): \(error)")
                        break
                    }
                }
            }
        }
    }

    /// The checks can fail: an unexpected error type or a message of several lines is a finding.
    func testAnUnexpectedRefusalIsAFinding() {
        struct Other: Error {}
        XCTAssertThrowsError(try requireRefusal(Other(), [FuzzFinding.self], "reader")) { error in
            XCTAssert(error is FuzzFinding && "\(error)".contains("Other"), "\(error)")
        }
        XCTAssertThrowsError(try requireRefusal(FuzzFinding("two\nlines"), [FuzzFinding.self], "reader"))
        XCTAssertNoThrow(try requireRefusal(FuzzFinding("one line"), [FuzzFinding.self], "reader"))
    }
}

/// Deterministic mutations in the manner of libFuzzer's: bit flips, byte changes, interesting
/// values (also as 8-byte little-endian lengths), insertions, deletions, duplicated runs,
/// truncation and crossing two seeds.
struct Mutator {
    private var state: UInt64
    private let seeds: [[UInt8]]

    init(seed: UInt64, seeds: [[UInt8]]) {
        state = seed | 1
        self.seeds = seeds.isEmpty ? [[]] : seeds
    }

    private mutating func random(_ n: Int) -> Int {
        // xorshift64*
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return n <= 1 ? 0 : Int((state &* 0x2545_F491_4F6C_DD1D) >> 1) % n
    }

    mutating func next() -> [UInt8] {
        var bytes = seeds[random(seeds.count)]
        for _ in 0..<(1 + random(4)) { mutate(&bytes) }
        return bytes
    }

    private mutating func mutate(_ bytes: inout [UInt8]) {
        let interesting: [UInt8] = [0, 1, 0x7F, 0x80, 0xFF, UInt8(ascii: "\""), UInt8(ascii: "{"), UInt8(ascii: "["),
                                    UInt8(ascii: ","), UInt8(ascii: "-"), UInt8(ascii: "9"), UInt8(ascii: "\\")]
        let n = bytes.count
        switch random(9) {
        case 0 where n > 0:
            bytes[random(n)] ^= UInt8(1 << random(8))
        case 1 where n > 0:
            bytes[random(n)] = UInt8(truncatingIfNeeded: random(256))
        case 2 where n > 0:
            bytes[random(n)] = interesting[random(interesting.count)]
        case 3:
            let at = random(n + 1)
            bytes.insert(contentsOf: (0..<(1 + random(8))).map { _ in interesting[random(interesting.count)] }, at: at)
        case 4 where n > 0:
            let at = random(n)
            bytes.removeSubrange(at..<min(n, at + 1 + random(16)))
        case 5 where n > 0:
            let at = random(n)
            let run = bytes[at..<min(n, at + 1 + random(32))]
            bytes.insert(contentsOf: run, at: random(n + 1))
        case 6 where n > 0:
            bytes.removeLast(random(n) + 1)
        case 7 where n >= 8:
            let values: [UInt64] = [0, 1, 7, 8, UInt64(n), UInt64(n - 8), UInt64(n + 1), 1 << 31, 1 << 32, UInt64.max]
            let v = values[random(values.count)]
            let at = random(n - 7)
            for k in 0..<8 { bytes[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
        default:
            let other = seeds[random(seeds.count)]
            let cut = random(n + 1), from = random(other.count + 1)
            bytes = Array(bytes[..<cut]) + other[from...]
        }
    }
}
