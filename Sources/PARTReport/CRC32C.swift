/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial value and final XOR
/// 0xFFFFFFFF), the checksum of TFRecord framing; CRC32C("123456789") = 0xE3069283.
public enum CRC32C {
    /// The byte-at-a-time table: entry b is the CRC register after shifting in byte b.
    static let table: [UInt32] = (0..<256).map { byte -> UInt32 in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { t in
            for b in bytes { crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// TensorFlow's masked form, ((crc >> 15) | (crc << 17)) + 0xA282EAD8 (mod 2^32), stored in
    /// record files so that a CRC of data that itself holds CRCs stays well distributed.
    public static func masked<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
