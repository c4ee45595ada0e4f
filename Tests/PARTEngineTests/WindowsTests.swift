import PARTEngine
import XCTest

/// Windows of NHWC tensors (`Windows`): each row's own window out, back in, and settled.
final class WindowsTests: XCTestCase {
    /// x[b, r, c, k] = 1000 b + 100 r + 10 c + k: every element says where it is.
    func positions(_ n: Int, _ h: Int, _ w: Int, _ c: Int) -> Tensor {
        var values = [Float]()
        for b in 0..<n { for r in 0..<h { for col in 0..<w { for k in 0..<c {
            values.append(Float(1000 * b + 100 * r + 10 * col + k))
        } } } }
        return Tensor(shape: [n, h, w, c], values: values)
    }

    func dtypes() -> [DType] { Engine.supportsBF16 ? [.f32, .bf16] : [.f32] }

    func testGatherTakesEachRowsOwnWindow() throws {
        let x = positions(2, 5, 6, 2)
        let tops = [1, 3], lefts = [4, 0]
        let g = Windows.gather(x, tops: tops, lefts: lefts, height: 2, width: 2)
        XCTAssertEqual(g.shape, [2, 2, 2, 2])
        XCTAssertEqual(g.scalars, [140, 141, 150, 151, 240, 241, 250, 251, 1300, 1301, 1310, 1311, 1400, 1401, 1410, 1411])
    }

    func testScatterWritesOnlyTheWindowsInAnyType() throws {
        for dtype in dtypes() {
            var x = try Tensor(shape: [2, 4, 4, 3], repeating: 0).converted(to: dtype)
            let patches = try Tensor(shape: [2, 2, 3, 3], values: (0..<36).map { Float($0 + 1) }).converted(to: dtype)
            Windows.scatter(patches, into: &x, tops: [2, 0], lefts: [0, 1])
            let v = try x.converted(to: .f32).scalars
            XCTAssertEqual(v.filter { $0 != 0 }.count, 36, "\(dtype)")
            XCTAssertEqual(v[((0 * 4 + 2) * 4 + 0) * 3], 1, "\(dtype)")          // row 0's window starts at (2, 0)
            XCTAssertEqual(v[((0 * 4 + 3) * 4 + 2) * 3 + 2], 18, "\(dtype)")     // and ends at (3, 2)
            XCTAssertEqual(v[((1 * 4 + 0) * 4 + 1) * 3], 19, "\(dtype)")         // row 1's starts at (0, 1)
            XCTAssertEqual(Windows.gather(x, tops: [2, 0], lefts: [0, 1], height: 2, width: 3).rawBytes,
                           patches.rawBytes, "\(dtype)")
        }
    }

    func testSettleKeepsAcceptedWindowsAndRestoresTheOthers() throws {
        for dtype in dtypes() {
            let original = try positions(3, 4, 4, 1).scaled(0.01).converted(to: dtype)
            var best = original, candidate = original
            let changed = try Tensor(shape: [3, 2, 2, 1], repeating: -1).converted(to: dtype)
            Windows.scatter(changed, into: &candidate, tops: [0, 1, 2], lefts: [2, 1, 0])
            Windows.settle(candidate: &candidate, best: &best, tops: [0, 1, 2], lefts: [2, 1, 0], height: 2, width: 2,
                           accepted: [true, false, true])
            XCTAssertEqual(candidate.rawBytes, best.rawBytes, "\(dtype)")
            let v = try best.converted(to: .f32).scalars
            XCTAssertEqual(v.filter { $0 == -1 }.count, 8, "\(dtype): rows 0 and 2 keep their windows")
            XCTAssertEqual(Array(v[16..<32]), Array(try original.converted(to: .f32).scalars[16..<32]), "\(dtype): row 1 restored")
        }
    }

    func testRowGatherKeepsTheType() throws {
        for dtype in dtypes() {
            let x = try positions(4, 2, 2, 1).scaled(0.001).converted(to: dtype)
            let g = x.gatherRows([3, 0, 3])
            XCTAssertEqual(g.dtype, dtype)
            XCTAssertEqual(g.rawBytes, x.slice(3..<4).rawBytes + x.slice(0..<1).rawBytes + x.slice(3..<4).rawBytes)
        }
    }
}

extension Tensor {
    /// The storage's bytes.
    var rawBytes: [UInt8] {
        Array(UnsafeRawBufferPointer(start: rawPointer, count: count * dtype.size))
    }

    func scaled(_ factor: Float) -> Tensor {
        var t = self
        t.scale(by: factor)
        return t
    }
}
