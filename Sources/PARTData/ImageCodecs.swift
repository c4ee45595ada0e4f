import CPNG
import CTurboJPEG
import Foundation
import PARTEngine

/// What an image file holds before decoding.
public struct ImageHeader: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Whether the file stores colour (otherwise grey levels).
    public let isColor: Bool
}

/// JPEG decoding with libjpeg-turbo's TurboJPEG API: accurate integer IDCT and smooth chroma
/// upsampling, libjpeg's defaults, which are also Pillow's, so decoded pixels match
/// `numpy.asarray(PIL.Image.open(f).convert("RGB"))`. A warning (such as a truncated file)
/// is an error: a damaged image never silently becomes a grey one.
public final class JPEGDecoder {
    private let handle: tjhandle

    public init() throws {
        guard let h = tjInitDecompress() else { throw DatasetError("cannot initialise libjpeg-turbo") }
        handle = h
    }

    deinit { tjDestroy(handle) }

    private func message() -> String {
        guard let text = tjGetErrorStr2(handle) else { return "unknown error" }
        return String(cString: text)
    }

    public func header(_ bytes: UnsafeRawBufferPointer, source: String) throws -> ImageHeader {
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw DatasetError("\(source): empty file") }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        guard tjDecompressHeader3(handle, base.assumingMemoryBound(to: UInt8.self), UInt(bytes.count), &width, &height,
                                  &subsampling, &colorspace) == 0 else {
            throw DatasetError("\(source): not a readable JPEG (\(message()))")
        }
        if colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue) {
            throw DatasetError("\(source): a CMYK JPEG, which is not supported; convert it to RGB")
        }
        // A stream cut right after its start marker passes the header call with a 0x0 size, and
        // a width of 0 would make tjDecompress2 write a full image into an empty buffer.
        guard width > 0, height > 0 else {
            throw DatasetError("\(source): not a readable JPEG (its header gives a \(width)x\(height) image)")
        }
        try checkBound(Int(width), Int(height), source: source)
        return ImageHeader(width: Int(width), height: Int(height), isColor: colorspace != Int32(TJCS_GRAY.rawValue))
    }

    /// Decodes into `destination` (`height * width * channels` bytes, rows top to bottom),
    /// as RGB (channels 3; grey images are replicated) or grey (channels 1; colour images are
    /// refused). The header must match `expected` when given.
    public func decode(_ bytes: UnsafeRawBufferPointer, channels: Int, into destination: UnsafeMutablePointer<UInt8>,
                       expected: ImageHeader, source: String) throws {
        let h = try header(bytes, source: source)
        try checkSize(h, expected: expected, source: source)
        if channels == 1 && h.isColor {
            throw DatasetError("\(source): a colour JPEG where --channels 1 asks for grey images")
        }
        let format = channels == 1 ? Int32(TJPF_GRAY.rawValue) : Int32(TJPF_RGB.rawValue)
        let status = tjDecompress2(handle, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt(bytes.count),
                                   destination, Int32(h.width), 0, Int32(h.height), format,
                                   Int32(TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING))
        guard status == 0 else {
            throw DatasetError("\(source): corrupt or truncated JPEG (\(message()))")
        }
    }
}

func checkSize(_ h: ImageHeader, expected: ImageHeader, source: String) throws {
    guard h.width == expected.width && h.height == expected.height else {
        throw DatasetError("\(source): \(h.width)x\(h.height) pixels where the other images are \(expected.width)x\(expected.height); every image of a dataset must have the same size (resize them first)")
    }
}

/// PNG reading and writing with libpng's simplified API (8-bit images; palette, grey, grey +
/// alpha, RGB and RGBA files). Alpha is dropped, as Pillow's `convert("RGB")` does.
public enum PNGCodec {
    /// A fresh png_image for libpng's simplified API.
    private static func image() -> png_image {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        return image
    }

    private static func message(_ image: png_image) -> String {
        withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    public static func header(_ bytes: UnsafeRawBufferPointer, source: String) throws -> ImageHeader {
        var img = image()
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw DatasetError("\(source): empty file") }
        guard png_image_begin_read_from_memory(&img, base, bytes.count) != 0 else {
            throw DatasetError("\(source): not a readable PNG (\(message(img)))")
        }
        defer { png_image_free(&img) }
        if img.format & UInt32(PNG_FORMAT_FLAG_LINEAR) != 0 {
            throw DatasetError("\(source): a 16-bit PNG, which is not supported; convert it to 8 bits per channel")
        }
        guard img.width > 0, img.height > 0 else {
            throw DatasetError("\(source): not a readable PNG (its header gives a \(img.width)x\(img.height) image)")
        }
        try checkBound(Int(img.width), Int(img.height), source: source)
        return ImageHeader(width: Int(img.width), height: Int(img.height),
                           isColor: img.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0)
    }

    /// Decodes into `destination` as RGB (channels 3) or grey (channels 1; colour refused).
    public static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int, into destination: UnsafeMutablePointer<UInt8>,
                              expected: ImageHeader, source: String) throws {
        let h = try header(bytes, source: source)
        try checkSize(h, expected: expected, source: source)
        if channels == 1 && h.isColor {
            throw DatasetError("\(source): a colour PNG where --channels 1 asks for grey images")
        }
        var img = image()
        guard png_image_begin_read_from_memory(&img, bytes.baseAddress!, bytes.count) != 0 else {
            throw DatasetError("\(source): not a readable PNG (\(message(img)))")
        }
        // Read with alpha and drop it: reading without would composite onto black.
        img.format = channels == 1 ? cpng_format_gray_alpha : cpng_format_rgb_alpha
        let stride = channels + 1
        let pixels = h.width * h.height
        var withAlpha = [UInt8](repeating: 0, count: pixels * stride)
        let ok = withAlpha.withUnsafeMutableBytes { png_image_finish_read(&img, nil, $0.baseAddress!, 0, nil) }
        guard ok != 0 else {
            let text = message(img)
            png_image_free(&img)
            throw DatasetError("\(source): corrupt or truncated PNG (\(text))")
        }
        withAlpha.withUnsafeBufferPointer { src in
            for p in 0..<pixels {
                for c in 0..<channels { destination[p * channels + c] = src[p * stride + c] }
            }
        }
    }

    /// An 8-bit PNG of `height x width` pixels with 1 (grey) or 3 (RGB) channels, rows top to
    /// bottom, as file bytes.
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int) throws -> [UInt8] {
        guard channels == 1 || channels == 3, width > 0, height > 0, pixels.count == width * height * channels else {
            throw DatasetError("PNG: \(pixels.count) bytes do not make a \(width)x\(height) image of \(channels) channels (1 or 3)")
        }
        var img = image()
        img.width = UInt32(width)
        img.height = UInt32(height)
        img.format = channels == 1 ? cpng_format_gray : cpng_format_rgb
        var size = 0
        return try pixels.withUnsafeBytes { src -> [UInt8] in
            // The first call measures, the second writes.
            guard png_image_write_to_memory(&img, nil, &size, 0, src.baseAddress!, 0, nil) != 0 else {
                throw DatasetError("PNG: cannot encode (\(message(img)))")
            }
            var out = [UInt8](repeating: 0, count: size)
            let ok = out.withUnsafeMutableBytes { png_image_write_to_memory(&img, $0.baseAddress!, &size, 0, src.baseAddress!, 0, nil) }
            guard ok != 0 else { throw DatasetError("PNG: cannot encode (\(message(img)))") }
            return Array(out.prefix(size))
        }
    }
}

/// The image formats of image folders, told by the file's first bytes.
public enum ImageFileFormat: String, Sendable {
    case jpeg, png

    /// JPEG starts with FF D8 FF; PNG with 89 'PNG' 0D 0A 1A 0A.
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> ImageFileFormat? {
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        if bytes.count >= 8, bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        return nil
    }
}

/// Refuses, naming the file, an image whose header declares more pixels than `Limits` allows:
/// a small file may claim 100000x100000 pixels, and decoding allocates what the header says.
func checkBound(_ width: Int, _ height: Int, source: String) throws {
    guard Limits.imageFits(height: height, width: width) else {
        throw DatasetError("\(source): its header declares \(width)x\(height) pixels, more than the \(Limits.imageSide) per side "
                           + "and \(Limits.imagePixels) pixels an image may have")
    }
}
