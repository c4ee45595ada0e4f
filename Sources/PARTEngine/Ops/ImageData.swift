import Foundation

// The loops of the data path: assembling a float batch from stored pixels (with a crop window
// and a horizontal flip per image), reordering planar or column-major pixel arrays into NHWC,
// per-channel moments and a range check. Every op has a `threaded` switch: the prefetching
// batcher calls them single-threaded on its own thread so that they never compete with the
// engine's workers, and callers on the main thread spread them with `Parallel`.

/// Where an image is cut from its source and whether it is mirrored, for one image of a batch.
///
/// Output pixel (y, x) is source pixel (top + y, left + x') with x' = width - 1 - x when
/// `flip` (the crop comes first, then the flip, as torchvision's RandomCrop followed by
/// RandomHorizontalFlip); source pixels outside the image are zero (zero padding).
public struct CropFlip: Sendable, Equatable {
    public var top: Int
    public var left: Int
    public var flip: Bool

    public init(top: Int = 0, left: Int = 0, flip: Bool = false) {
        self.top = top
        self.left = left
        self.flip = flip
    }

    /// The image unchanged.
    public static let identity = CropFlip()
}

/// Stored pixel types and their value in [0, 1].
public protocol StoredPixel: Sendable {
    /// The pixel as a Float in [0, 1]: uint8 / 255 (a division, as torchvision's ToTensor),
    /// Float as it is.
    static func unit(_ value: Self) -> Float
}

extension UInt8: StoredPixel {
    @inline(__always) public static func unit(_ value: UInt8) -> Float { Float(value) / 255 }
}

extension Float: StoredPixel {
    @inline(__always) public static func unit(_ value: Float) -> Float { value }
}

public enum ImageData {
    /// A batch `[rows.count, height, width, channels]` of Floats in [0, 1] made of the source's
    /// images `rows` (NHWC, `height * width * channels` values per image), each cut and
    /// mirrored by its `transforms` entry (nil: all unchanged).
    public static func gather(bytes source: UnsafePointer<UInt8>, rows: [Int], height: Int, width: Int,
                              channels: Int, transforms: [CropFlip]?, threaded: Bool) -> Tensor {
        gatherImpl(source, rows: rows, height: height, width: width, channels: channels,
                   transforms: transforms, threaded: threaded)
    }

    /// The same for Float pixels (already in [0, 1]).
    public static func gather(floats source: UnsafePointer<Float>, rows: [Int], height: Int, width: Int,
                              channels: Int, transforms: [CropFlip]?, threaded: Bool) -> Tensor {
        gatherImpl(source, rows: rows, height: height, width: width, channels: channels,
                   transforms: transforms, threaded: threaded)
    }

    static func gatherImpl<T: StoredPixel>(_ source: UnsafePointer<T>, rows: [Int], height: Int, width: Int,
                                           channels: Int, transforms: [CropFlip]?, threaded: Bool) -> Tensor {
        precondition(transforms == nil || transforms!.count == rows.count,
                     "\(transforms?.count ?? 0) transforms for \(rows.count) images")
        let size = height * width * channels, rowLength = width * channels
        var out = Tensor.uninitialized(shape: [rows.count, height, width, channels])
        let dst = out.uniquePointer()
        rows.withUnsafeBufferPointer { rowBuffer in
            let rowIndex = rowBuffer.baseAddress
            let body: (Int) -> Void = { b in
                let src = source + rowIndex![b] * size
                let to = dst + b * size
                let t = transforms?[b] ?? .identity
                if t == .identity {
                    for k in 0..<size { to[k] = T.unit(src[k]) }
                    return
                }
                for y in 0..<height {
                    let line = to + y * rowLength
                    let sy = y + t.top
                    guard sy >= 0 && sy < height else {
                        line.update(repeating: 0, count: rowLength)
                        continue
                    }
                    let srcLine = src + sy * rowLength
                    // Output columns x whose source column lies inside the image.
                    // Without flip the source column is left + x; with flip, left + width - 1 - x.
                    let lo = Swift.max(0, -t.left), hi = Swift.min(width, width - t.left)
                    if lo >= hi {
                        line.update(repeating: 0, count: rowLength)
                        continue
                    }
                    let (xFrom, xTo) = t.flip ? (width - hi, width - lo) : (lo, hi)
                    if xFrom > 0 { line.update(repeating: 0, count: xFrom * channels) }
                    if xTo < width { (line + xTo * channels).update(repeating: 0, count: (width - xTo) * channels) }
                    if !t.flip {
                        let from = srcLine + (xFrom + t.left) * channels
                        let into = line + xFrom * channels
                        for k in 0..<((xTo - xFrom) * channels) { into[k] = T.unit(from[k]) }
                    } else {
                        for x in xFrom..<xTo {
                            let from = srcLine + (t.left + width - 1 - x) * channels
                            let into = line + x * channels
                            for c in 0..<channels { into[c] = T.unit(from[c]) }
                        }
                    }
                }
            }
            if threaded {
                Parallel.forEachIndex(rows.count, cost: size, body)
            } else {
                for b in 0..<rows.count { body(b) }
            }
        }
        return out
    }

    /// Reorders `count` images into NHWC: output (n, y, x, c) is
    /// `source[n * strides.image + y * strides.y + x * strides.x + c * strides.c]`. CIFAR's
    /// planar records are strides (3073 or 3074 per record, width, 1, height * width) from the
    /// first pixel; SVHN's column-major [H, W, C, N] array is (H * W * C, 1, H, H * W).
    public static func interleave(bytes source: UnsafePointer<UInt8>, into destination: UnsafeMutablePointer<UInt8>,
                                  count: Int, height: Int, width: Int, channels: Int,
                                  strides: (image: Int, y: Int, x: Int, c: Int), threaded: Bool = true) {
        interleaveImpl(source, destination, count: count, height: height, width: width, channels: channels,
                       strides: strides, threaded: threaded)
    }

    /// The same for Float pixels.
    public static func interleave(floats source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
                                  count: Int, height: Int, width: Int, channels: Int,
                                  strides: (image: Int, y: Int, x: Int, c: Int), threaded: Bool = true) {
        interleaveImpl(source, destination, count: count, height: height, width: width, channels: channels,
                       strides: strides, threaded: threaded)
    }

    static func interleaveImpl<T>(_ source: UnsafePointer<T>, _ destination: UnsafeMutablePointer<T>,
                                  count: Int, height: Int, width: Int, channels: Int,
                                  strides: (image: Int, y: Int, x: Int, c: Int), threaded: Bool) {
        let size = height * width * channels
        let body: (Int) -> Void = { n in
            let src = source + n * strides.image
            var to = destination + n * size
            for y in 0..<height {
                for x in 0..<width {
                    let pixel = src + y * strides.y + x * strides.x
                    for c in 0..<channels { to[c] = pixel[c * strides.c] }
                    to += channels
                }
            }
        }
        if threaded {
            Parallel.forEachIndex(count, cost: size, body)
        } else {
            for n in 0..<count { body(n) }
        }
    }

    /// Per-channel sums of values and of squared values over `count` NHWC images of uint8,
    /// exact (integers), in a fixed order whatever the thread count.
    public static func channelSums(bytes source: UnsafePointer<UInt8>, count: Int, pixelsPerImage: Int,
                                   channels: Int) -> [(sum: UInt64, squares: UInt64)] {
        let size = pixelsPerImage * channels
        let grain = Swift.max(1, (1 << 20) / Swift.max(size, 1))
        let chunks = (count + grain - 1) / grain
        var partial = [UInt64](repeating: 0, count: Swift.max(chunks, 1) * channels * 2)
        partial.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            Parallel.forEach(chunks, grain: 1) { range in
                for chunk in range {
                    let slot = base + chunk * channels * 2
                    let images = (chunk * grain)..<Swift.min(count, (chunk + 1) * grain)
                    var p = source + images.lowerBound * size
                    let end = source + images.upperBound * size
                    // Squares are < 2^16, so 64-bit sums are exact up to 2^48 values per channel.
                    while p < end {
                        for c in 0..<channels {
                            var s: UInt64 = 0, q: UInt64 = 0
                            var k = c
                            while k < size {
                                let v = UInt64(p[k])
                                s &+= v
                                q &+= v * v
                                k += channels
                            }
                            slot[2 * c] &+= s
                            slot[2 * c + 1] &+= q
                        }
                        p += size
                    }
                }
            }
        }
        var result = [(sum: UInt64, squares: UInt64)](repeating: (0, 0), count: channels)
        for chunk in 0..<chunks {
            for c in 0..<channels {
                result[c].sum &+= partial[(chunk * channels + c) * 2]
                result[c].squares &+= partial[(chunk * channels + c) * 2 + 1]
            }
        }
        return result
    }

    /// Per-channel mean and population variance of `count` NHWC images of Floats, in double
    /// precision, two passes (mean, then squared deviations), partial sums added in a fixed
    /// chunk order whatever the thread count.
    public static func channelMoments(floats source: UnsafePointer<Float>, count: Int, pixelsPerImage: Int,
                                      channels: Int) -> [(mean: Double, variance: Double)] {
        let size = pixelsPerImage * channels
        let n = Double(count * pixelsPerImage)
        guard count > 0, pixelsPerImage > 0 else { return Array(repeating: (0, 0), count: channels) }
        /// Sums of values (centre nil) or of squared deviations from the centre, per channel.
        func pass(_ centre: [Double]?) -> [Double] {
            let grain = Swift.max(1, (1 << 18) / Swift.max(size, 1))
            let chunks = (count + grain - 1) / grain
            var partial = [Double](repeating: 0, count: chunks * channels)
            partial.withUnsafeMutableBufferPointer { out in
                let base = out.baseAddress!
                (centre ?? []).withUnsafeBufferPointer { centreBuffer in
                    let m = centre == nil ? nil : centreBuffer.baseAddress
                    Parallel.forEach(chunks, grain: 1) { range in
                        for chunk in range {
                            let slot = base + chunk * channels
                            for image in (chunk * grain)..<Swift.min(count, (chunk + 1) * grain) {
                                let p = source + image * size
                                for c in 0..<channels {
                                    var s = 0.0
                                    var k = c
                                    if let m {
                                        let mc = m[c]
                                        while k < size { let d = Double(p[k]) - mc; s += d * d; k += channels }
                                    } else {
                                        while k < size { s += Double(p[k]); k += channels }
                                    }
                                    slot[c] += s
                                }
                            }
                        }
                    }
                }
            }
            var totals = [Double](repeating: 0, count: channels)
            for chunk in 0..<chunks { for c in 0..<channels { totals[c] += partial[chunk * channels + c] } }
            return totals
        }
        let means = pass(nil).map { $0 / n }
        let squares = pass(means)
        return (0..<channels).map { (means[$0], squares[$0] / n) }
    }

    /// The first flat index whose value is not a finite number in [0, 1], nil when all are.
    public static func firstOutsideUnitRange(_ source: UnsafePointer<Float>, count: Int) -> Int? {
        let grain = 1 << 16
        let chunks = (count + grain - 1) / grain
        var first = [Int](repeating: Int.max, count: Swift.max(chunks, 1))
        first.withUnsafeMutableBufferPointer { out in
            let base = out.baseAddress!
            Parallel.forEach(chunks, grain: 1) { range in
                for chunk in range {
                    for i in (chunk * grain)..<Swift.min(count, (chunk + 1) * grain) {
                        let v = source[i]
                        // NaN fails both comparisons.
                        if !(v >= 0 && v <= 1) { base[chunk] = i; break }
                    }
                }
            }
        }
        let found = first.min() ?? Int.max
        return found == Int.max ? nil : found
    }
}
