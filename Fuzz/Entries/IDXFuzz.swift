import CZlib
import PARTData

/// The IDX reader of MNIST-format datasets, raw and gzipped.
enum IDXFuzz {
    /// `IDX.parse`: accepted files are exactly header + data; refusals are `IDXError`s.
    static func runRaw(_ bytes: [UInt8]) throws {
        let array: IDXArray
        do {
            array = try IDX.parse(bytes, source: "input")
        } catch {
            try requireRefusal(error, [IDXError.self], "IDX.parse")
            return
        }
        let rank = Int(bytes[3])
        guard array.dimensions.count == rank, array.bytes.count == array.dimensions.reduce(1, *),
              4 + 4 * rank + array.bytes.count == bytes.count, array.bytes[...] == bytes[(4 + 4 * rank)...] else {
            throw FuzzFinding("IDX.parse accepted a file whose size or data disagree with its header")
        }
    }

    /// `IDX.decode` of a gzip stream. The first byte chooses what the rest is: even, a gzip
    /// stream as found on disk; odd, an IDX file (or anything) that is gzipped here in one or
    /// two members, so that valid streams whose content disagrees with their header (a
    /// small header over a large body, as a gzip bomb has) are reached despite the CRC.
    ///
    /// Check: the header-bounded reader agrees with the plain one (inflate everything within
    /// the deflate bound, then parse): both accept with the same result or both refuse.
    static func runGzip(_ input: [UInt8]) throws {
        guard let mode = input.first else { return }
        let body = Array(input.dropFirst())
        let bytes: [UInt8]
        if mode & 1 == 0 {
            bytes = body
        } else {
            let split = body.isEmpty ? 0 : Int(mode >> 1) % (body.count + 1)
            bytes = gzip(Array(body[..<split])) + (split < body.count ? gzip(Array(body[split...])) : [])
        }
        var bounded: Result<IDXArray, Error>
        do {
            bounded = .success(try IDX.decode(bytes, source: "input"))
        } catch {
            try requireRefusal(error, [IDXError.self], "IDX.decode")
            bounded = .failure(error)
        }
        var plain: Result<IDXArray, Error>
        do {
            let isGzip = bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
            var raw = bytes
            if isGzip {
                do {
                    raw = try IDX.gunzip(bytes, source: "input", limit: plainLimit)
                } catch let error as IDXError where error.description.hasSuffix("more than \(plainLimit) bytes") {
                    // Too large to compare at fuzzing speed (a bomb): the bounded reader's
                    // result has passed its own checks above.
                    return
                }
            }
            plain = .success(try IDX.parse(raw, source: "input"))
        } catch {
            try requireRefusal(error, [IDXError.self], "IDX.gunzip + IDX.parse")
            plain = .failure(error)
        }
        switch (bounded, plain) {
        case let (.success(a), .success(b)):
            guard a.dimensions == b.dimensions, a.bytes == b.bytes else {
                throw FuzzFinding("IDX.decode and gunzip + parse read different arrays")
            }
        case (.failure, .failure):
            break
        case let (.success(a), .failure(e)):
            throw FuzzFinding("IDX.decode accepted \(a.dimensions) but gunzip + parse refused: \(e)")
        case let (.failure(e), .success(b)):
            throw FuzzFinding("IDX.decode refused (\(e)) what gunzip + parse read as \(b.dimensions)")
        }
    }

    /// The plain reader stops here; inputs that inflate further are not compared.
    static let plainLimit = 1 << 20

    /// One gzip member of `bytes`.
    static func gzip(_ bytes: [UInt8]) -> [UInt8] {
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deinitialize(count: 1); stream.deallocate() }
        // A 512-byte window and the smallest memory level: valid gzip, and cheap enough to
        // make for every input.
        guard deflateInit2_(stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 9, 1, Z_DEFAULT_STRATEGY,
                            ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return [] }
        defer { deflateEnd(stream) }
        var input = bytes
        let bound = Int(deflateBound(stream, uLong(bytes.count))) + 64
        var output = [UInt8](repeating: 0, count: bound)
        let written: Int = input.withUnsafeMutableBufferPointer { inp in
            output.withUnsafeMutableBufferPointer { out in
                stream.pointee.next_in = inp.baseAddress
                stream.pointee.avail_in = UInt32(inp.count)
                stream.pointee.next_out = out.baseAddress
                stream.pointee.avail_out = UInt32(out.count)
                guard deflate(stream, Z_FINISH) == Z_STREAM_END else { return 0 }
                return out.count - Int(stream.pointee.avail_out)
            }
        }
        return Array(output[..<written])
    }
}
