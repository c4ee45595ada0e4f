import CPNG
import Foundation

/// An 8-bit image in memory, rows top to bottom, pixels interleaved (gray, RGB or RGBA), and its
/// PNG encoding through libpng's simplified API.
public struct RasterImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// 1 (gray), 3 (RGB) or 4 (RGBA).
    public let channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition([1, 3, 4].contains(channels) && pixels.count == width * height * channels,
                     "a \(width)x\(height) image of \(channels) channels needs \(width * height * channels) bytes")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The channel values of pixel (x, y).
    public func pixel(x: Int, y: Int) -> [UInt8] {
        let at = (y * width + x) * channels
        return Array(pixels[at..<(at + channels)])
    }

    private var format: UInt32 {
        switch channels {
        case 1: return cpng_format_gray
        case 3: return cpng_format_rgb
        default: return cpng_format_rgb_alpha
        }
    }

    /// The PNG file's bytes.
    public func pngData() throws -> Data {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = format
        var size: png_alloc_size_t = 0
        let stride = Int32(width * channels)
        // The first call measures, the second writes.
        guard pixels.withUnsafeBytes({ png_image_write_to_memory(&image, nil, &size, 0, $0.baseAddress, stride, nil) }) != 0 else {
            throw ReportError("PNG encoding failed: \(Self.message(of: image))")
        }
        var out = Data(count: Int(size))
        let ok = out.withUnsafeMutableBytes { o in
            pixels.withUnsafeBytes { png_image_write_to_memory(&image, o.baseAddress, &size, 0, $0.baseAddress, stride, nil) }
        }
        guard ok != 0 else { throw ReportError("PNG encoding failed: \(Self.message(of: image))") }
        return out.prefix(Int(size))
    }

    /// Writes the PNG file atomically.
    public func writePNG(to url: URL) throws {
        let data = try pngData()
        do {
            try data.write(to: url, options: .atomic)
        } catch {
            throw ReportError("cannot write \(url.path): check that its folder exists and is writable")
        }
    }

    /// Decodes a PNG file's bytes to 8-bit RGBA (gray, palette and 16-bit files are converted,
    /// transparency kept); `source` names the file in errors.
    public static func decodePNG(_ data: Data, source: String) throws -> RasterImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let began = data.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
        guard began != 0 else { throw ReportError("\(source) is not a readable PNG file: \(message(of: image))") }
        image.format = cpng_format_rgb_alpha
        let (width, height) = (Int(image.width), Int(image.height))
        var pixels = [UInt8](repeating: 0, count: width * height * 4)
        let finished = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard finished != 0 else {
            png_image_free(&image)
            throw ReportError("\(source) is not a readable PNG file: \(message(of: image))")
        }
        return RasterImage(width: width, height: height, channels: 4, pixels: pixels)
    }

    private static func message(of image: png_image) -> String {
        var copy = image.message
        return withUnsafeBytes(of: &copy) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
