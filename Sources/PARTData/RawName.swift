import Foundation

/// File names as the file system holds them: any bytes but `/` and NUL, not necessarily UTF-8.
///
/// A Swift `String` (and so a `URL` path) cannot hold bytes that are not UTF-8, and Foundation
/// replaces or drops them, so such a file would be listed under another name and then be
/// "missing". A name read from a folder that is not valid UTF-8 is kept as a string whose
/// bytes 0x80...0xFF stand as the private-use scalars U+F780...U+F7FF (ASCII stays as it is),
/// and `cPath` turns those scalars back into the bytes when the file is opened. (Python's
/// surrogate escapes, U+DC80..., cannot be held in a Swift string; so such a name may sort
/// elsewhere than in torchvision among names holding scalars between U+DCFF and U+F780.)
enum RawName {
    static let base: UInt32 = 0xF700

    /// `bytes` as a name: the UTF-8 text when it is valid, else the byte-preserving form.
    static func decode(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        var out = String.UnicodeScalarView()
        for b in bytes { out.append(b < 0x80 ? UnicodeScalar(b) : UnicodeScalar(base + UInt32(b))!) }
        return String(out)
    }

    /// The bytes of `path` for the C file functions (NUL-terminated), the private-use scalars
    /// of `decode` turned back into the bytes they stand for.
    static func cPath(_ path: String) -> [CChar] {
        var out = [CChar]()
        out.reserveCapacity(path.utf8.count + 1)
        for scalar in path.unicodeScalars {
            if (base + 0x80...base + 0xFF).contains(scalar.value) {
                out.append(CChar(bitPattern: UInt8(scalar.value - base)))
            } else {
                for b in String(scalar).utf8 { out.append(CChar(bitPattern: b)) }
            }
        }
        out.append(0)
        return out
    }

    /// `realpath` of `path`, as a name of this form (nil when it does not resolve).
    static func realPath(_ path: String) -> String? {
        guard let p = realpath(cPath(path), nil) else { return nil }
        defer { free(p) }
        return decode(Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self),
                                                count: strlen(p))))
    }

    /// `path` for a message: the stand-in scalars shown as `\xHH`.
    static func display(_ path: String) -> String {
        var out = ""
        for scalar in path.unicodeScalars {
            if (base + 0x80...base + 0xFF).contains(scalar.value) {
                out += String(format: "\\x%02x", scalar.value - base)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
