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
    nonisolated(unsafe) static var worst: [String: Double] = [:]

    static func record(_ what: String, _ error: Double) {
        let kind = String(what.split(separator: ".").first ?? Substring(what))
        worst[kind] = max(worst[kind] ?? 0, error)
    }

    static func flush(_ title: String) {
        let line = worst.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1e", $0.value))" }
        print("parity with PyTorch, \(title) (max relative error): " + line.joined(separator: ", "))
        worst = [:]
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
func setFormulaParameters(_ model: ImageClassifier) {
    for (t, (name, p)) in model.parameters.enumerated() {
        let shape = p.value.shape
        let fanIn = shape.count >= 2 ? p.value.count / shape[0] : 1
        let values = (0..<p.value.count).map { i -> Float in
            let s = 2 * formulaUniform(i, t) - 1
            if shape.count >= 2 { return Float(s / Double(fanIn).squareRoot()) }
            return Float(name.hasSuffix("weight") ? 1 + 0.1 * s : 0.1 * s)
        }
        p.assign(Tensor(shape: shape, values: values))
    }
}

/// Values of the fixture's full tensor `prefix.name`, or of its 512-entry sample
/// `samplePrefix.name` compared against the same indices of `values`.
func compareFullOrSampled(_ values: Tensor, name: String, full: String, sampled: String, in file: SafetensorsFile,
                          tolerance: Double, file srcFile: StaticString = #filePath, line: UInt = #line) {
    if let ref = file.tensors["\(full).\(name)"] {
        assertClose(values.scalars, ref.scalars, tolerance: tolerance, "\(full).\(name)", file: srcFile, line: line)
    } else if let ref = file.tensors["\(sampled).\(name)"] {
        let n = values.count
        let picked = (0..<512).map { values[flat: $0 * n / 512] }
        assertClose(picked, ref.scalars, tolerance: tolerance, "\(sampled).\(name)", file: srcFile, line: line)
    } else {
        XCTFail("fixture has neither \(full).\(name) nor \(sampled).\(name)", file: srcFile, line: line)
    }
}
