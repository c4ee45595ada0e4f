import Foundation
import PARTEngine
import PARTNN
import XCTest

/// The committed fixtures (written by scripts/make_golden.py).
func fixture(_ name: String) throws -> SafetensorsFile {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent(name)
    return try SafetensorsFile.read(from: url)
}

/// Relative error of `actual` against `expected`: max |a - e| / max |e|.
func relativeError(_ actual: [Float], _ expected: [Float]) -> Double {
    precondition(actual.count == expected.count)
    var diff = 0.0, scale = 0.0
    for (a, e) in zip(actual, expected) {
        diff = max(diff, Double(abs(a - e)))
        scale = max(scale, Double(abs(e)))
    }
    return scale == 0 ? diff : diff / scale
}

/// The worst relative error seen per kind of value ("grad", "logits_eval", ...), printed by the
/// golden tests so that a run shows how close to PyTorch the engine is, not only that it passed.
enum ParityLog {
    static let worst = Locked([String: Double]())

    static func record(_ what: String, _ error: Double) {
        let kind = String(what.split(separator: ".").first ?? Substring(what))
        worst.withLock { $0[kind] = max($0[kind] ?? 0, error) }
    }

    static func flush(_ title: String) {
        let seen = worst.withLock { w in defer { w = [:] }; return w }
        let line = seen.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1e", $0.value))" }
        print("parity with PyTorch, \(title) (max relative error): " + line.joined(separator: ", "))
    }
}

/// Fails (at the caller's line) unless the relative error is within `tolerance`.
func assertClose(_ actual: [Float], _ expected: [Float], tolerance: Double, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard actual.count == expected.count else {
        XCTFail("\(what): \(actual.count) values, expected \(expected.count)", file: file, line: line)
        return
    }
    let err = relativeError(actual, expected)
    ParityLog.record(what, err)
    XCTAssert(err <= tolerance, "\(what): relative error \(err) > \(tolerance)", file: file, line: line)
    // Element by element too: an entry far smaller than the largest one must still be close to
    // its own value (to `tolerance` of itself, plus half of what the scaled check allows), so
    // that small gradient entries are checked and not hidden by the tensor's largest.
    var scale = 0.0
    for e in expected { scale = max(scale, Double(abs(e))) }
    var worst: Int?
    for k in expected.indices {
        let error = Double(abs(actual[k] - expected[k]))
        let allowed: Double = tolerance * (Double(abs(expected[k])) + 0.5 * scale)
        if error > allowed { worst = k; break }
    }
    if let i = worst {
        XCTFail("\(what): entry \(i) is \(actual[i]), expected \(expected[i]) (tolerance \(tolerance) of the entry "
                + "plus \(0.5 * tolerance * scale))", file: file, line: line)
    }
}

/// Uniform [0, 1) from an integer hash of (element i, parameter t): the formula of
/// scripts/make_golden.py, exact in both languages.
func formulaUniform(_ i: Int, _ t: Int) -> Double {
    var h = (UInt64(i) &* 2_654_435_761 &+ UInt64(t + 1) &* 97_531) & 0xFFFF_FFFF
    h ^= h >> 16
    h = (h &* 73_244_475) & 0xFFFF_FFFF
    h ^= h >> 16
    return Double(h) / 4_294_967_296
}

/// Sets every parameter by the formula of scripts/make_golden.py (index t in state_dict
/// parameter order, element i row-major; computed in Double, stored as Float).
///
/// The loop is written out over a buffer, in parallel chunks, because WRN-34-10 has 46 million
/// parameters and tests run in debug builds.
func setFormulaParameters(_ model: ImageClassifier) {
    for (t, (name, p)) in model.parameters.enumerated() {
        let shape = p.value.shape
        let count = p.value.count
        let matrix = shape.count >= 2
        let root = matrix ? Double(count / shape[0]).squareRoot() : 1
        let offset: Double = name.hasSuffix("weight") ? 1 : 0
        var values = Tensor.uninitialized(shape: shape)
        values.withUnsafeMutableBufferPointer { buffer in
            let out = buffer.baseAddress!
            let chunks = max(1, min(16, count / 65_536))
            Parallel.forEachIndex(chunks, cost: 65_536) { c in
                var i = c * count / chunks
                let end = (c + 1) * count / chunks
                let salt = UInt64(t + 1) &* 97_531
                while i < end {
                    var h = (UInt64(i) &* 2_654_435_761 &+ salt) & 0xFFFF_FFFF
                    h ^= h >> 16
                    h = (h &* 73_244_475) & 0xFFFF_FFFF
                    h ^= h >> 16
                    let s = 2 * (Double(h) / 4_294_967_296) - 1
                    out[i] = Float(matrix ? s / root : offset + 0.1 * s)
                    i += 1
                }
            }
        }
        p.assign(values)
    }
}

/// The flat indices of an S-entry sample of a tensor with `count` entries: floor(j * count / S)
/// (the rule of scripts/make_golden.py).
func sampleIndices(count: Int, samples: Int) -> [Int] {
    (0..<samples).map { $0 * count / samples }
}

/// A golden model (as scripts/make_golden.py builds it) with the formula parameters, for the
/// fixture's `input` images [N, H, W, C] ("wrn-16-2" is the small WideResNet of the fixtures).
func goldenModel(_ arch: String, input: Tensor) throws -> ImageClassifier {
    var rng = RNG(seed: 0)
    let m = try ModelZoo.make(arch, numClasses: 10, inChannels: input.shape[3], imageSize: input.shape[1], rng: &rng)
    setFormulaParameters(m)
    return m
}

/// Values of the fixture's full tensor `prefix.name`, or of its sample `samplePrefix.name`
/// (as many entries as the fixture holds) compared against the same indices of `values`.
func compareFullOrSampled(_ values: Tensor, name: String, full: String, sampled: String, in file: SafetensorsFile,
                          tolerance: Double, file srcFile: StaticString = #filePath, line: UInt = #line) {
    if let ref = file.tensors["\(full).\(name)"] {
        assertClose(values.scalars, ref.scalars, tolerance: tolerance, "\(full).\(name)", file: srcFile, line: line)
    } else if let ref = file.tensors["\(sampled).\(name)"] {
        let picked = sampleIndices(count: values.count, samples: ref.count).map { values[flat: $0] }
        assertClose(picked, ref.scalars, tolerance: tolerance, "\(sampled).\(name)", file: srcFile, line: line)
    } else {
        XCTFail("fixture has neither \(full).\(name) nor \(sampled).\(name)", file: srcFile, line: line)
    }
}
