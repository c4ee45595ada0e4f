/// Ops that turn images, maps and budgets into 8-bit RGB pixels for pictures (CAM grids).
/// Every output is interleaved RGB bytes, [N, H, W, 3] in row-major order.
public enum Pixels {
    /// round(255 v) clamped to 0...255; NaN gives 0.
    @inline(__always) static func byte(_ v: Float) -> UInt8 {
        guard v > 0 else { return 0 }
        return v >= 1 ? 255 : UInt8((v * 255).rounded())
    }

    /// Images [N, H, W, C] in [0, 1] as RGB: one channel is repeated as gray, three are kept,
    /// any other count shows the mean of the channels as gray.
    public static func rgb(_ images: Tensor) -> [UInt8] {
        precondition(images.shape.count == 4, "images are [N, H, W, C], got \(images.shape)")
        let c = images.shape[3], pixels = images.count / max(c, 1)
        var out = [UInt8](repeating: 0, count: pixels * 3)
        let src = images.readPointer
        out.withUnsafeMutableBufferPointer { o in
            let dst = o.baseAddress!
            Parallel.forEach(pixels, grain: 16_384) { range in
                for p in range {
                    if c == 3 {
                        for k in 0..<3 { dst[3 * p + k] = byte(src[3 * p + k]) }
                    } else {
                        var sum: Float = 0
                        for k in 0..<c { sum += src[c * p + k] }
                        let g = byte(sum / Float(c))
                        dst[3 * p] = g; dst[3 * p + 1] = g; dst[3 * p + 2] = g
                    }
                }
            }
        }
        return out
    }

    /// Maps [N, H, W] (or any shape) coloured through a lookup table of `table.count / 3` RGB
    /// entries in [0, 1] (row-major [entries, 3]): value v picks entry floor(v * entries),
    /// clamped to the first and last entries, as matplotlib's colormaps do; NaN is black.
    public static func colored(_ maps: Tensor, table: [Double]) -> [UInt8] {
        let entries = table.count / 3
        precondition(entries > 0 && table.count == entries * 3, "a colour table holds RGB triples")
        let lut = table.map { byte(Float($0)) }
        var out = [UInt8](repeating: 0, count: maps.count * 3)
        let src = maps.readPointer
        out.withUnsafeMutableBufferPointer { o in
            lut.withUnsafeBufferPointer { l in
                let dst = o.baseAddress!, colours = l.baseAddress!
                Parallel.forEach(maps.count, grain: 16_384) { range in
                    for p in range {
                        let v = src[p]
                        guard !v.isNaN else { continue }
                        let i = v <= 0 ? 0 : min(entries - 1, Int(min(v, 1) * Float(entries)))
                        dst[3 * p] = colours[3 * i]; dst[3 * p + 1] = colours[3 * i + 1]; dst[3 * p + 2] = colours[3 * i + 2]
                    }
                }
            }
        }
        return out
    }

    /// round(weight * top + (1 - weight) * base) per byte: a heat map laid over an image.
    public static func blend(_ base: [UInt8], _ top: [UInt8], weight: Float) -> [UInt8] {
        precondition(base.count == top.count, "blended pictures have the same size")
        var out = [UInt8](repeating: 0, count: base.count)
        out.withUnsafeMutableBufferPointer { o in
            base.withUnsafeBufferPointer { b in
                top.withUnsafeBufferPointer { t in
                    let dst = o.baseAddress!, bp = b.baseAddress!, tp = t.baseAddress!
                    Parallel.forEach(base.count, grain: 65_536) { range in
                        for i in range {
                            let v = weight * Float(tp[i]) + (1 - weight) * Float(bp[i])
                            dst[i] = UInt8(min(255, max(0, v.rounded())))
                        }
                    }
                }
            }
        }
        return out
    }

    /// Budgets [N, H, W, C] as RGB: an entry at full eps (>= `epsilon`) is bright, any other
    /// dark. With three channels each colour channel shows its own entry (the official rule
    /// marks channels separately); otherwise gray shows the share of a pixel's channels at full eps.
    public static func budgets(_ budgets: Tensor, epsilon: Float, bright: UInt8 = 255, dark: UInt8 = 48) -> [UInt8] {
        precondition(budgets.shape.count == 4, "budgets are [N, H, W, C], got \(budgets.shape)")
        let c = budgets.shape[3], pixels = budgets.count / max(c, 1)
        var out = [UInt8](repeating: 0, count: pixels * 3)
        let src = budgets.readPointer
        let span = Float(bright) - Float(dark)
        out.withUnsafeMutableBufferPointer { o in
            let dst = o.baseAddress!
            Parallel.forEach(pixels, grain: 16_384) { range in
                for p in range {
                    if c == 3 {
                        for k in 0..<3 { dst[3 * p + k] = src[3 * p + k] >= epsilon ? bright : dark }
                    } else {
                        var full = 0
                        for k in 0..<c where src[c * p + k] >= epsilon { full += 1 }
                        let g = UInt8((Float(dark) + span * Float(full) / Float(c)).rounded())
                        dst[3 * p] = g; dst[3 * p + 1] = g; dst[3 * p + 2] = g
                    }
                }
            }
        }
        return out
    }
}
