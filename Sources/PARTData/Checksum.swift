import Foundation

/// MD5 (RFC 1321), the digest the dataset authors publish for their archives. Used only to
/// recognise a damaged or unofficial download, never for security.
public enum MD5 {
    /// Per-round left-rotation amounts.
    private static let shifts: [UInt32] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
        5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
        4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
        6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ]

    /// K[i] = floor(2^32 * |sin(i + 1)|).
    private static let constants: [UInt32] = (0..<64).map { UInt32(truncatingIfNeeded: Int64((abs(sin(Double($0 + 1))) * 4_294_967_296.0).rounded(.down))) }

    /// The digest of `bytes` as 32 lower-case hexadecimal digits.
    public static func hex(_ bytes: UnsafeRawBufferPointer) -> String {
        var state: (UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476)
        let k = constants, s = shifts
        let whole = bytes.count / 64
        k.withUnsafeBufferPointer { kp in
            s.withUnsafeBufferPointer { sp in
                for block in 0..<whole {
                    compress(&state, UnsafeRawBufferPointer(rebasing: bytes[(block * 64)..<(block * 64 + 64)]), kp, sp)
                }
                // Padding: 0x80, zeros, then the length in bits (little-endian) in the last 8 bytes.
                var tail = [UInt8](bytes[(whole * 64)...])
                tail.append(0x80)
                while tail.count % 64 != 56 { tail.append(0) }
                let bits = UInt64(bytes.count) &* 8
                for i in 0..<8 { tail.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
                tail.withUnsafeBytes { t in
                    for block in 0..<(t.count / 64) {
                        compress(&state, UnsafeRawBufferPointer(rebasing: t[(block * 64)..<(block * 64 + 64)]), kp, sp)
                    }
                }
            }
        }
        return [state.0, state.1, state.2, state.3]
            .flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * UInt32($0))) } }
            .map { String(format: "%02x", $0) }.joined()
    }

    /// One 64-byte block.
    @inline(__always)
    private static func compress(_ state: inout (UInt32, UInt32, UInt32, UInt32), _ block: UnsafeRawBufferPointer,
                                 _ k: UnsafeBufferPointer<UInt32>, _ s: UnsafeBufferPointer<UInt32>) {
        var (a, b, c, d) = state
        for i in 0..<64 {
            var f: UInt32
            let g: Int
            switch i >> 4 {
            case 0: f = (b & c) | (~b & d); g = i
            case 1: f = (d & b) | (~d & c); g = (5 * i + 1) & 15
            case 2: f = b ^ c ^ d; g = (3 * i + 5) & 15
            default: f = c ^ (b | ~d); g = (7 * i) & 15
            }
            f = f &+ a &+ k[i] &+ block.u32(4 * g)
            a = d
            d = c
            c = b
            b = b &+ ((f << s[i]) | (f >> (32 - s[i])))
        }
        state = (state.0 &+ a, state.1 &+ b, state.2 &+ c, state.3 &+ d)
    }
}

/// The checksums the dataset authors publish for their original files, and the check that
/// warns (never fails) when a file does not match: a re-packed or damaged download still
/// loads, but the user is told which file differs.
public enum OfficialChecksum {
    /// File name -> (size in bytes when known, MD5).
    public static let published: [String: (size: Int?, md5: String)] = [
        // https://www.cs.toronto.edu/~kriz/cifar.html
        "cifar-10-binary.tar.gz": (170_052_171, "c32a1d4ab5d03f1284b67883e8d87530"),
        "cifar-100-binary.tar.gz": (168_513_733, "03b5dce01913d631647c71ecec9e9cb8"),
        // http://ufldl.stanford.edu/housenumbers/
        "train_32x32.mat": (nil, "e26dedcc434d2e4c54c9b2d4a06d8373"),
        "test_32x32.mat": (nil, "eb5a983be6a315427106f1b164d9cef3"),
        "extra_32x32.mat": (nil, "a93ce644f1a588dc4d68dda5feec44a7"),
    ]

    /// Compares `bytes` (the contents of the official file `officialName`) with the published
    /// checksum; returns a warning naming `path` when they differ, nil when they match or when
    /// nothing is published for that name.
    public static func verify(_ bytes: UnsafeRawBufferPointer, officialName: String, path: String) -> String? {
        guard let expected = published[officialName] else { return nil }
        if let size = expected.size, size != bytes.count {
            return "\(path): \(bytes.count) bytes, the official \(officialName) has \(size): not the published file, or damaged"
        }
        let digest = MD5.hex(bytes)
        if digest != expected.md5 {
            return "\(path): MD5 \(digest) differs from the published \(expected.md5) of \(officialName): the file is damaged or not the official one"
        }
        return nil
    }
}
