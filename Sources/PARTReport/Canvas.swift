/// An RGB picture being drawn: filled rectangles, pictures copied at an integer scale, and text
/// in the built-in bitmap font. Drawing outside the canvas is clipped.
public struct Canvas {
    public let width: Int
    public let height: Int
    /// RGB bytes, rows top to bottom.
    public private(set) var pixels: [UInt8]

    public typealias Colour = (UInt8, UInt8, UInt8)

    public init(width: Int, height: Int, background: Colour = (255, 255, 255)) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, background)
    }

    public var image: RasterImage { RasterImage(width: width, height: height, channels: 3, pixels: pixels) }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ colour: Colour) {
        let x0 = max(0, x), x1 = min(width, x + w), y0 = max(0, y), y1 = min(height, y + h)
        guard x0 < x1 else { return }
        pixels.withUnsafeMutableBufferPointer { p in
            for row in y0..<max(y0, y1) {
                for col in x0..<x1 {
                    let at = (row * width + col) * 3
                    p[at] = colour.0; p[at + 1] = colour.1; p[at + 2] = colour.2
                }
            }
        }
    }

    /// Copies an RGB picture of `w` x `h` pixels (`rgb` holds 3 bytes per pixel from `offset`)
    /// with its top-left corner at (x, y), each pixel as a `scale` x `scale` block.
    public mutating func draw(_ rgb: [UInt8], offset: Int = 0, width w: Int, height h: Int, x: Int, y: Int, scale: Int) {
        precondition(offset + w * h * 3 <= rgb.count, "the picture holds \(w)x\(h) RGB pixels")
        let canvasWidth = width, canvasHeight = height
        pixels.withUnsafeMutableBufferPointer { p in
            rgb.withUnsafeBufferPointer { s in
                for row in 0..<(h * scale) {
                    let cy = y + row
                    guard cy >= 0 && cy < canvasHeight else { continue }
                    let sourceRow = offset + (row / scale) * w * 3
                    for col in 0..<(w * scale) {
                        let cx = x + col
                        guard cx >= 0 && cx < canvasWidth else { continue }
                        let from = sourceRow + (col / scale) * 3, to = (cy * canvasWidth + cx) * 3
                        p[to] = s[from]; p[to + 1] = s[from + 1]; p[to + 2] = s[from + 2]
                    }
                }
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel a `scale` x `scale` block.
    public mutating func text(_ text: String, x: Int, y: Int, scale: Int = 2, colour: Colour = (0, 0, 0)) {
        var left = x
        for character in text {
            for (r, bits) in BitmapFont.glyph(character).enumerated() {
                for c in 0..<BitmapFont.columns where bits & (0x10 >> UInt8(c)) != 0 {
                    fill(x: left + c * scale, y: y + r * scale, width: scale, height: scale, colour)
                }
            }
            left += BitmapFont.advance * scale
        }
    }

    /// Width in pixels of `text` at `scale`.
    public static func textWidth(_ text: String, scale: Int = 2) -> Int { BitmapFont.width(text, scale: scale) }
    public static func textHeight(scale: Int = 2) -> Int { BitmapFont.rows * scale }
}
