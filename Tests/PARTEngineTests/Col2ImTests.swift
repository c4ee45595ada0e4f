import PARTEngine
import XCTest

/// `Col2Im.fold` against the plain scatter it replaces for stride 1 (same sums, bit for bit).
final class Col2ImTests: XCTestCase {
    /// Every column entry added onto its image pixel, windows in output order.
    func scatter(_ columns: [Float], n: Int, height: Int, width: Int, channels: Int, kernel: Int, stride: Int,
                 padding: Int) -> [Float] {
        let oh = (height + 2 * padding - kernel) / stride + 1, ow = (width + 2 * padding - kernel) / stride + 1
        let kk = kernel * kernel
        var image = [Float](repeating: 0, count: n * height * width * channels)
        for b in 0..<n { for y in 0..<oh { for x in 0..<ow { for kh in 0..<kernel { for kw in 0..<kernel {
            let iy = y * stride - padding + kh, ix = x * stride - padding + kw
            guard iy >= 0 && iy < height && ix >= 0 && ix < width else { continue }
            for c in 0..<channels {
                image[((b * height + iy) * width + ix) * channels + c]
                    += columns[((b * oh + y) * ow + x) * channels * kk + c * kk + kh * kernel + kw]
            }
        } } } } }
        return image
    }

    func testFoldEqualsTheScatterBitForBit() {
        var rng = RNG(seed: 8)
        for (channels, kernel, stride, padding, side) in [(1, 3, 1, 0, 9), (3, 3, 1, 1, 8), (2, 5, 1, 2, 7), (3, 3, 2, 1, 9)] {
            let n = 3
            let oh = (side + 2 * padding - kernel) / stride + 1
            let count = n * oh * oh * channels * kernel * kernel
            let values = (0..<count).map { _ in rng.uniform() * 2 - 1 }
            let columns = Tensor(shape: [n * oh * oh, channels * kernel * kernel], values: values)
            let folded = Col2Im.fold(columns, n: n, height: side, width: side, channels: channels, kernel: kernel,
                                     stride: stride, padding: padding)
            XCTAssertEqual(folded.shape, [n, side, side, channels])
            XCTAssertEqual(folded.scalars, scatter(values, n: n, height: side, width: side, channels: channels,
                                                   kernel: kernel, stride: stride, padding: padding),
                           "channels \(channels), kernel \(kernel), stride \(stride), padding \(padding)")
        }
    }
}
