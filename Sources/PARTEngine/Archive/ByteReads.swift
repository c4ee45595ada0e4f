/// An archive or stream that could not be read (a zip archive, compressed data, a pickle); one
/// sentence naming the file and what is wrong with it.
public struct ArchiveError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Little- and big-endian integer reads from raw bytes at any alignment.
extension UnsafeRawBufferPointer {
    @inline(__always) public func u16(_ offset: Int, bigEndian: Bool = false) -> UInt16 {
        let v = loadUnaligned(fromByteOffset: offset, as: UInt16.self)
        return bigEndian ? UInt16(bigEndian: v) : UInt16(littleEndian: v)
    }

    @inline(__always) public func u32(_ offset: Int, bigEndian: Bool = false) -> UInt32 {
        let v = loadUnaligned(fromByteOffset: offset, as: UInt32.self)
        return bigEndian ? UInt32(bigEndian: v) : UInt32(littleEndian: v)
    }

    @inline(__always) public func u64(_ offset: Int, bigEndian: Bool = false) -> UInt64 {
        let v = loadUnaligned(fromByteOffset: offset, as: UInt64.self)
        return bigEndian ? UInt64(bigEndian: v) : UInt64(littleEndian: v)
    }
}
