import PARTEngine
import PARTNN
import XCTest

/// The spatially local prefix of a model (`LocalPrefix`): which activations a change inside a
/// square can alter, and that the window computed from a patch equals the full pass there.
final class LocalPrefixTests: XCTestCase {
    func smallCNN(_ rng: inout RNG, channels: Int = 1, side: Int = 28) throws -> (SmallCNN, LocalPrefix) {
        let model = try XCTUnwrap(try ModelZoo.make("small-cnn", numClasses: 10, inChannels: channels, imageSize: side,
                                                    rng: &rng) as? SmallCNN)
        return (model, try XCTUnwrap(model.localPrefix))
    }

    func images(_ n: Int, side: Int, channels: Int, _ rng: inout RNG) -> Tensor {
        Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
    }

    func testSmallCNNWindowsAreTheReceptiveFieldsOfItsFirstLayers() throws {
        var rng = RNG(seed: 1)
        let (_, prefix) = try smallCNN(&rng)
        XCTAssertEqual(prefix.outputLength(28), 12)
        XCTAssertEqual(prefix.outputLength(16), 6)
        XCTAssertEqual(prefix.outputLength(5), 0)
        // A 3-pixel change at input rows t..<t+3 reaches conv2's outputs t-4..<t+3, which pool into
        // at most 4 rows; they are computed from 2 * 4 + 4 input rows.
        let three = try XCTUnwrap(prefix.axis(inputLength: 28, changed: 3))
        XCTAssertEqual(three.window, 4)
        XCTAssertEqual(three.patch, 12)
        XCTAssertEqual(three.length, 12)
        XCTAssertEqual(three.outputOrigins.count, 26)
        XCTAssertEqual(three.outputOrigins[0], 0)
        XCTAssertEqual(three.outputOrigins[10], 3)   // conv2 rows 6..<13: pooled rows 3..<7
        XCTAssertEqual(three.inputOrigins[10], 6)
        XCTAssertEqual(three.outputOrigins[25], 8)   // the last 4 pooled rows
        // A change of the whole axis changes the whole output.
        let whole = try XCTUnwrap(prefix.axis(inputLength: 28, changed: 28))
        XCTAssertEqual(whole.window, 12)
        XCTAssertEqual(whole.patch, 28)
        XCTAssertNil(prefix.axis(inputLength: 28, changed: 29))
        XCTAssertNil(prefix.axis(inputLength: 5, changed: 2))
    }

    func testPaddedOrStridedConvolutionsAndOtherLayersAreNotLocal() throws {
        var rng = RNG(seed: 2)
        let padded = Conv2d(1, 4, kernel: 3, padding: 1, rng: &rng)
        let strided = Conv2d(1, 4, kernel: 3, stride: 2, rng: &rng)
        XCTAssertNil(LocalPrefix(splitting: [padded, ReLULayer(), Flatten()], after: 2))
        XCTAssertNil(LocalPrefix(splitting: [ReLULayer(), strided, Flatten()], after: 2))
        XCTAssertNil(LocalPrefix(splitting: [ReLULayer(), Flatten(), Flatten()], after: 2))
        XCTAssertNotNil(LocalPrefix(splitting: [ReLULayer(), Flatten()], after: 1))
    }

    /// For squares of every side the Square attack uses on 28x28 images, at the corners, the
    /// edges and inside: activations change only inside the window, the window computed from the
    /// patch alone equals the full pass's, and the rest of the model gives the model's logits.
    func testAWindowHoldsEveryChangeAndMatchesTheFullPass() throws {
        // The same kernels in both passes: equal bits.
        try Optimizations.without([.winograd]) { try aWindowHoldsEveryChangeAndMatchesTheFullPass() }
    }

    func aWindowHoldsEveryChangeAndMatchesTheFullPass() throws {
        for channels in [1, 3] {
            var rng = RNG(seed: 3)
            let (model, prefix) = try smallCNN(&rng, channels: channels)
            let x = images(2, side: 28, channels: channels, &rng)
            let full = try prefix.forward(x)
            XCTAssertEqual(full.shape, [2, 12, 12, 32])
            for side in [1, 2, 3, 4, 6, 9, 13, 25] {
                let rows = try XCTUnwrap(prefix.axis(inputLength: 28, changed: side))
                let last = 28 - side
                for (top, left) in [(0, 0), (last, last), (min(1, last), last), (min(11, last), min(5, last)),
                                    (last, min(2, last))] {
                    var changed = x
                    changed.withUnsafeMutableBufferPointer { p in
                        for b in 0..<2 {
                            for r in top..<(top + side) {
                                for c in left..<(left + side) {
                                    for k in 0..<channels { p[((b * 28 + r) * 28 + c) * channels + k] = rng.uniform() }
                                }
                            }
                        }
                    }
                    let after = try prefix.forward(changed)
                    let (oy, ox) = (rows.outputOrigins[top], rows.outputOrigins[left])
                    let window = oy..<(oy + rows.window), windowColumns = ox..<(ox + rows.window)
                    let a = full.scalars, c = after.scalars
                    var outside = 0
                    for i in a.indices where a[i] != c[i] {
                        let r = i / (12 * 32) % 12, col = i / 32 % 12
                        if !window.contains(r) || !windowColumns.contains(col) { outside += 1 }
                    }
                    XCTAssertEqual(outside, 0, "side \(side) at (\(top), \(left)): changes outside the window")

                    let patch = Windows.gather(changed, tops: [rows.inputOrigins[top], rows.inputOrigins[top]],
                                               lefts: [rows.inputOrigins[left], rows.inputOrigins[left]],
                                               height: rows.patch, width: rows.patch)
                    let local = try prefix.forward(patch)
                    let expected = Windows.gather(after, tops: [oy, oy], lefts: [ox, ox], height: rows.window,
                                                  width: rows.window)
                    XCTAssertEqual(local.shape, expected.shape)
                    XCTAssertEqual(local.scalars, expected.scalars, "side \(side) at (\(top), \(left))")

                    var assembled = full
                    Windows.scatter(local, into: &assembled, tops: [oy, oy], lefts: [ox, ox])
                    XCTAssertEqual(assembled.scalars, c)
                    let logits = try prefix.logits(from: assembled).scalars
                    let reference = try model.forward(changed, mode: .eval).scalars
                    for (l, e) in zip(logits, reference) { XCTAssertEqual(l, e, accuracy: 1e-5 * max(1, abs(e))) }
                }
            }
        }
    }

    /// In bf16 and with the default kernels the window agrees with the full pass to rounding.
    func testTheWindowInBF16AndWithDefaultKernels() throws {
        var rng = RNG(seed: 4)
        let (_, prefix) = try smallCNN(&rng, side: 16)
        let x = images(3, side: 16, channels: 1, &rng)
        let rows = try XCTUnwrap(prefix.axis(inputLength: 16, changed: 2))
        let tops = [0, 7, 14], lefts = [14, 3, 0]
        var dtypes: [DType] = [.f32]
        if Engine.supportsBF16 { dtypes.append(.bf16) }
        for dtype in dtypes {
            let full = try prefix.forward(try x.converted(to: dtype))
            let patches = Windows.gather(x, tops: tops.map { rows.inputOrigins[$0] }, lefts: lefts.map { rows.inputOrigins[$0] },
                                         height: rows.patch, width: rows.patch)
            let local = try prefix.forward(try patches.converted(to: dtype))
            XCTAssertEqual(local.dtype, dtype)
            let expected = Windows.gather(full, tops: tops.map { rows.outputOrigins[$0] },
                                          lefts: lefts.map { rows.outputOrigins[$0] }, height: rows.window,
                                          width: rows.window)
            let a = try local.converted(to: .f32).scalars, e = try expected.converted(to: .f32).scalars
            let tolerance: Float = dtype == .f32 ? 1e-5 : 1e-2
            for (u, v) in zip(a, e) { XCTAssertEqual(u, v, accuracy: tolerance * max(1, abs(v)), "\(dtype)") }
        }
    }
}
