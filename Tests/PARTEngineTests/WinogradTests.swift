import Foundation
import PARTEngine
import XCTest

/// The Winograd path of `Convolution` against its direct kernels: the same values up to rounding,
/// per example independent of the batch, with the fused ReLU and residual sum, in forward and
/// backward-data; and the direct path wherever Winograd does not apply.
final class WinogradTests: XCTestCase {
    var rng = RNG(seed: 11)

    func random(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in (rng.uniform() * 2 - 1) * scale })
    }

    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        let scale = max(b.scalars.map(abs).max() ?? 0, 1e-12)
        return (zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0) / scale
    }

    func testWinogradAgreesWithTheDirectKernels() throws {
        for (inC, outC, side, padding) in [(16, 32, 10, 0), (32, 16, 9, 1), (64, 64, 6, 1)] {
            let conv = Convolution(inChannels: inC, outChannels: outC, kernel: 3, padding: padding, bias: true)
            let x = random([5, side, side, inC])
            let w = random([outC, inC, 3, 3], scale: 1 / Float(inC * 9).squareRoot())
            let b = random([outC], scale: 0.1)
            let residual = random([5, conv.outputSide(side), conv.outputSide(side), outC])
            let what = "\(inC)->\(outC) on \(side)x\(side), pad \(padding)"
            for (relu, sum) in [(false, false), (true, false), (true, true)] {
                let direct = try conv.forward(x, weight: w, bias: b, weightVersion: 1, relu: relu,
                                              accumulate: sum ? residual : nil)
                let fast = try conv.forward(x, weight: w, bias: b, weightVersion: 1, relu: relu,
                                            accumulate: sum ? residual : nil, winograd: true)
                XCTAssertEqual(fast.shape, direct.shape)
                XCTAssertLessThan(relativeError(fast, direct), 1e-5, "\(what), relu \(relu), sum \(sum)")
            }
            let dy = random([5, conv.outputSide(side), conv.outputSide(side), outC])
            let direct = try conv.backward(dy, x: x, weight: w, weightVersion: 1, needInputGradient: true,
                                           needParameterGradients: false).input
            let fast = try conv.backward(dy, x: x, weight: w, weightVersion: 1, needInputGradient: true,
                                         needParameterGradients: false, winograd: true).input
            let d = try XCTUnwrap(direct), f = try XCTUnwrap(fast)
            XCTAssertEqual(f.shape, x.shape)
            XCTAssertLessThan(relativeError(f, d), 1e-5, "\(what) backward-data")
        }
    }

    /// Keyed attacks promise the same result per example at any batch size: the Winograd path
    /// must give an example's output bit for bit whatever else is in its batch.
    func testWinogradOutputsDoNotDependOnTheBatch() throws {
        let conv = Convolution(inChannels: 32, outChannels: 32, kernel: 3, padding: 1, bias: false)
        let w = random([32, 32, 3, 3], scale: 0.06)
        let x = random([7, 8, 8, 32])
        let all = try conv.forward(x, weight: w, bias: nil, weightVersion: 1, winograd: true)
        let per = 8 * 8 * 32
        for row in [0, 3, 6] {
            let one = Tensor(shape: [1, 8, 8, 32], values: Array(x.scalars[row * per..<(row + 1) * per]))
            let alone = try conv.forward(one, weight: w, bias: nil, weightVersion: 1, winograd: true)
            XCTAssertEqual(alone.scalars, Array(all.scalars[row * per..<(row + 1) * per]), "example \(row)")
        }
    }

    /// The same for the layer shapes of SmallCNN on 28x28 images and the batches a training run
    /// makes: a global batch of 128, its halves on 2 ranks, a trailing partial batch (1,000 images
    /// in batches of 128 leave 104, 52 per rank), and one image; forward and backward-data, with
    /// 1 and 2 threads.
    func testSmallCNNLayersGiveEachExampleTheSameResultInEveryBatchSplit() throws {
        for (inC, outC, side) in [(32, 32, 26), (32, 64, 12), (64, 64, 10)] {
            let conv = Convolution(inChannels: inC, outChannels: outC, kernel: 3, bias: true)
            let w = random([outC, inC, 3, 3], scale: 1 / Float(inC * 9).squareRoot())
            let b = random([outC], scale: 0.1)
            let out = conv.outputSide(side)
            let x = random([128, side, side, inC]), dy = random([128, out, out, outC])
            for count in [1, 2] {
                try Engine.withThreads(count) {
                    let what = "\(inC)->\(outC) on \(side)x\(side), \(count) thread(s)"
                    let y = try conv.forward(x, weight: w, bias: b, weightVersion: 1, relu: true, winograd: true)
                    let dx = try XCTUnwrap(try conv.backward(dy, x: x, weight: w, weightVersion: 1, needInputGradient: true,
                                                             needParameterGradients: false, winograd: true).input)
                    // Winograd rounds differently from the direct kernels: proof that it ran here.
                    let direct = try conv.forward(x, weight: w, bias: b, weightVersion: 1, relu: true)
                    let directDx = try XCTUnwrap(try conv.backward(dy, x: x, weight: w, weightVersion: 1,
                                                                   needInputGradient: true,
                                                                   needParameterGradients: false).input)
                    XCTAssertNotEqual(y.scalars, direct.scalars, "\(what): the forward ran the direct kernels")
                    XCTAssertNotEqual(dx.scalars, directDx.scalars, "\(what): backward-data ran the direct kernels")
                    for rows in [0..<64, 64..<128, 0..<104, 52..<104, 77..<78] {
                        let part = try conv.forward(x.slice(rows), weight: w, bias: b, weightVersion: 1, relu: true,
                                                    winograd: true)
                        XCTAssertEqual(part.scalars, y.slice(rows).scalars, "\(what), forward of rows \(rows)")
                        let g = try XCTUnwrap(try conv.backward(dy.slice(rows), x: x.slice(rows), weight: w, weightVersion: 1,
                                                                needInputGradient: true, needParameterGradients: false,
                                                                winograd: true).input)
                        XCTAssertEqual(g.scalars, dx.slice(rows).scalars, "\(what), backward-data of rows \(rows)")
                    }
                }
            }
        }
    }

    /// Near the top of Float's range (a diverged model's weights) the Winograd transforms can
    /// overflow where the direct kernels do not: the result must still be the finite one.
    func testHugeValuesStayFiniteWhereTheDirectKernelsAre() throws {
        let conv = Convolution(inChannels: 16, outChannels: 16, kernel: 3, padding: 1, bias: false)
        let x = Tensor(shape: [2, 8, 8, 16], values: (0..<(2 * 8 * 8 * 16)).map { _ in 3e17 * (0.5 + rng.uniform()) })
        let w = Tensor(shape: [16, 16, 3, 3], values: (0..<(16 * 16 * 9)).map { _ in 3e17 * (0.5 + rng.uniform()) })
        let direct = try conv.forward(x, weight: w, bias: nil, weightVersion: 1)
        XCTAssertTrue(direct.allFinite, "the direct kernels stay finite here")
        let fast = try conv.forward(x, weight: w, bias: nil, weightVersion: 1, winograd: true)
        XCTAssertTrue(fast.allFinite)
        XCTAssertLessThan(relativeError(fast, direct), 1e-5)
        let dy = Tensor(shape: direct.shape, values: (0..<direct.count).map { _ in 3e17 * (0.5 + rng.uniform()) })
        let d = try XCTUnwrap(try conv.backward(dy, x: x, weight: w, weightVersion: 1, needInputGradient: true,
                                                needParameterGradients: false).input)
        let f = try XCTUnwrap(try conv.backward(dy, x: x, weight: w, weightVersion: 1, needInputGradient: true,
                                                needParameterGradients: false, winograd: true).input)
        XCTAssertTrue(d.allFinite && f.allFinite)
        XCTAssertLessThan(relativeError(f, d), 1e-5)
    }

    /// Geometries Winograd does not cover (channels not divisible by 16, stride 2, 1x1) and the
    /// switch `--without winograd` keep the direct kernels: bit-identical results.
    func testOtherGeometriesAndTheSwitchUseTheDirectKernels() throws {
        for (inC, outC, kernel, stride) in [(3, 16, 3, 1), (16, 32, 3, 2), (16, 16, 1, 1)] {
            let conv = Convolution(inChannels: inC, outChannels: outC, kernel: kernel, stride: stride, bias: false)
            let x = random([2, 9, 9, inC]), w = random([outC, inC, kernel, kernel], scale: 0.2)
            XCTAssertEqual(try conv.forward(x, weight: w, bias: nil, weightVersion: 1, winograd: true).scalars,
                           try conv.forward(x, weight: w, bias: nil, weightVersion: 1).scalars)
        }
        let conv = Convolution(inChannels: 16, outChannels: 16, kernel: 3, bias: false)
        let x = random([2, 9, 9, 16]), w = random([16, 16, 3, 3], scale: 0.1)
        let direct = try conv.forward(x, weight: w, bias: nil, weightVersion: 1)
        XCTAssertEqual(try Optimizations.without([.winograd]) {
            try conv.forward(x, weight: w, bias: nil, weightVersion: 1, winograd: true).scalars
        }, direct.scalars)
    }
}
