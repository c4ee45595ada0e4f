import CZlib
import Foundation
import PARTEngine
#if canImport(Glibc)
import Glibc
#endif

/// A labelled list of image files (JPEG or PNG) to decode into one dataset.
struct ImageList {
    var root: URL
    /// Paths relative to `root`, in dataset order.
    var files: [String]
    var labels: [Int32]
    var classNames: [String]

    /// How a file is named in messages.
    func describe(_ i: Int) -> String { RawName.display(root.appendingPathComponent(files[i]).path) }

    /// A digest of every file's path, size and modification time, the class names and the
    /// channel count: a cache made from other files, or other settings, does not match.
    func fingerprint(channels: Int) throws -> String {
        var text = "part-decoded-images v1\nchannels \(channels)\nclasses \(classNames.joined(separator: "\t"))\n"
        for (i, f) in files.enumerated() {
            var info = stat()
            guard stat(RawName.cPath(root.appendingPathComponent(f).path), &info) == 0 else {
                throw DatasetError("\(describe(i)): cannot read (\(String(cString: strerror(errno))))")
            }
            text += "\(f)\t\(labels[i])\t\(info.st_size)\t\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)\n"
        }
        return Array(text.utf8).withUnsafeBytes { MD5.hex($0) }
    }
}

/// Decodes image files in parallel into one NHWC uint8 buffer. Every image must have the size
/// of the first; errors name the file (the first failing file in list order, whatever the
/// threads did).
enum ImageDecoding {
    static func decode(_ list: ImageList, channels: Int) throws -> (storage: ByteBuffer, height: Int, width: Int) {
        guard !list.files.isEmpty else { throw DatasetError("\(list.root.path): no images") }
        let first = try header(list, 0)
        let size = first.width * first.height * channels
        let (total, overflow) = list.files.count.multipliedReportingOverflow(by: size)
        guard !overflow, total <= FileInput.defaultLimit else {
            throw DatasetError("\(list.root.path): \(list.files.count) images of \(first.width)x\(first.height)x\(channels) "
                               + "(the size of \(list.describe(0))) need more than the \(FileInput.defaultLimit) bytes this "
                               + "machine can hold; use fewer or smaller images")
        }
        let storage = try ByteBuffer.allocate(total)
        let out = storage.mutablePointer.assumingMemoryBound(to: UInt8.self)
        let failures = Locked([Int: Error]())
        Parallel.forEach(list.files.count, grain: 32) { range in
            var jpeg: JPEGDecoder?
            for i in range {
                do {
                    let url = list.root.appendingPathComponent(list.files[i])
                    let file = try ByteBuffer.mapping(url)
                    let source = list.describe(i)
                    switch ImageFileFormat.detect(file.bytes) {
                    case .jpeg:
                        let decoder = try jpeg ?? JPEGDecoder()
                        jpeg = decoder
                        try decoder.decode(file.bytes, channels: channels, into: out + i * size, expected: first, source: source)
                    case .png:
                        try PNGCodec.decode(file.bytes, channels: channels, into: out + i * size, expected: first, source: source)
                    case nil:
                        throw DatasetError("\(source): \(file.count == 0 ? "empty file" : "neither a JPEG nor a PNG file (by its first bytes)")")
                    }
                } catch {
                    failures.withLock { $0[i] = error }
                    return
                }
            }
        }
        if let firstFailure = failures.value.min(by: { $0.key < $1.key }) { throw firstFailure.value }
        return (storage, first.height, first.width)
    }

    static func header(_ list: ImageList, _ i: Int) throws -> ImageHeader {
        let file = try ByteBuffer.mapping(list.root.appendingPathComponent(list.files[i]))
        switch ImageFileFormat.detect(file.bytes) {
        case .jpeg: return try JPEGDecoder().header(file.bytes, source: list.describe(i))
        case .png: return try PNGCodec.header(file.bytes, source: list.describe(i))
        case nil: throw DatasetError("\(list.describe(i)): \(file.count == 0 ? "empty file" : "neither a JPEG nor a PNG file (by its first bytes)")")
        }
    }
}

/// A file of decoded images that later runs memory-map instead of decoding again.
///
/// Layout (little-endian): the magic `PARTIMG1`, a UInt64 header length, a JSON header
/// (format, count, height, width, channels, class names, fingerprint of the source files),
/// zero padding to a multiple of 64, `count` Int32 labels, padding to 64, then the uint8 NHWC
/// pixels, and nothing after.
public enum DecodedCache {
    public struct Header: Codable, Equatable {
        public var format = 1
        public var count: Int
        public var height: Int
        public var width: Int
        public var channels: Int
        public var classNames: [String]
        public var fingerprint: String
        /// CRC-32 of the labels and pixels as written: a cache damaged on disk is detected and
        /// decoded again rather than trained on (nil in caches of earlier versions, which are
        /// decoded again too).
        public var checksum: UInt32? = nil
    }

    /// CRC-32 of a cache's labels then pixels.
    static func checksum(labels: UnsafeRawBufferPointer, pixels: UnsafeRawBufferPointer) -> UInt32 {
        var crc = crc32(0, nil, 0)
        for part in [labels, pixels] {
            var offset = 0
            while offset < part.count {
                let n = Swift.min(part.count - offset, 1 << 30)
                crc = crc32(crc, part.baseAddress!.advanced(by: offset).assumingMemoryBound(to: UInt8.self), uInt(n))
                offset += n
            }
        }
        return UInt32(crc)
    }

    /// Removes temporary files that a killed writer of `url` left beside it (`.NAME.PID.tmp`
    /// of a process that no longer runs); a live writer's file is left alone.
    static func removeStaleTemporaries(of url: URL) {
        let folder = url.deletingLastPathComponent()
        let prefix = ".\(url.lastPathComponent)."
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        where name.hasPrefix(prefix) && name.hasSuffix(".tmp") {
            let pid = Int32(name.dropFirst(prefix.count).dropLast(4)) ?? 0
            if pid > 0 && pid != getpid() && kill(pid, 0) == 0 { continue }
            unlink(folder.appendingPathComponent(name).path)
        }
    }

    static let magic = Array("PARTIMG1".utf8)

    static func align(_ n: Int) -> Int { (n + 63) / 64 * 64 }

    /// Parses a cache file: its header, labels and a view of its pixels.
    public static func parse(_ file: ByteBuffer, source: String) throws -> (header: Header, labels: [Int32], pixels: ByteBuffer) {
        func fail(_ message: String) -> DatasetError { DatasetError("\(source): \(message)") }
        let bytes = file.bytes
        guard bytes.count >= 16, bytes[0..<8].elementsEqual(magic) else { throw fail("not a decoded-image cache") }
        let headerLength = bytes.u64(8)
        guard headerLength <= UInt64(bytes.count - 16) else { throw fail("truncated header") }
        let json = Data(bytes[16..<(16 + Int(headerLength))])
        guard let header = try? JSONDecoder().decode(Header.self, from: json), header.format == 1 else {
            throw fail("unreadable header")
        }
        guard header.count >= 0, header.height > 0, header.width > 0, header.channels > 0,
              header.count < Int(Int32.max), header.height < 1 << 16, header.width < 1 << 16, header.channels <= 4 else {
            throw fail("implausible sizes in the header")
        }
        let labelsAt = align(16 + Int(headerLength))
        let pixelsAt = align(labelsAt + 4 * header.count)
        let total = pixelsAt + header.count * header.height * header.width * header.channels
        guard bytes.count == total else { throw fail("\(bytes.count) bytes where its header implies \(total): truncated or damaged") }
        var labels = [Int32](repeating: 0, count: header.count)
        for i in 0..<header.count {
            let v = Int32(bitPattern: bytes.u32(labelsAt + 4 * i))
            guard v >= 0 && Int(v) < header.classNames.count else { throw fail("label \(v) of image \(i) out of range") }
            labels[i] = v
        }
        let pixels = ByteBuffer.view(of: file, pixelsAt..<total)
        guard let expected = header.checksum else { throw fail("a cache without a checksum (an earlier version's)") }
        let actual = checksum(labels: UnsafeRawBufferPointer(rebasing: bytes[labelsAt..<(labelsAt + 4 * header.count)]),
                              pixels: pixels.bytes)
        guard actual == expected else {
            throw fail(String(format: "damaged: CRC-32 %08x of its labels and pixels differs from the recorded %08x", actual, expected))
        }
        return (header, labels, pixels)
    }

    /// Writes a cache file atomically (a temporary file renamed into place).
    public static func write(_ header: Header, labels: [Int32], pixels: UnsafeRawBufferPointer, to url: URL) throws {
        var header = header
        let raw = labels.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        header.checksum = raw.withUnsafeBytes { checksum(labels: $0, pixels: pixels) }
        let json = try JSONEncoder().encode(header)
        var head = magic
        head += withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init)
        head += json
        head += [UInt8](repeating: 0, count: align(head.count) - head.count)
        var labelBytes = labels.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        labelBytes += [UInt8](repeating: 0, count: align(head.count + labelBytes.count) - head.count - labelBytes.count)
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw DatasetError("\(temporary.path): cannot create")
        }
        do {
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }
            try handle.write(contentsOf: Data(head))
            try handle.write(contentsOf: Data(labelBytes))
            var offset = 0
            while offset < pixels.count {
                let n = Swift.min(pixels.count - offset, 1 << 26)
                try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: pixels.baseAddress! + offset),
                                                  count: n, deallocator: .none))
                offset += n
            }
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        guard rename(temporary.path, url.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw DatasetError("\(url.path): cannot write (\(reason))")
        }
    }

    /// The places a cache of `key` may live, first choice first: `explicit` (--cache), else a
    /// `.part-cache` folder inside the data folder when it is writable (and not marked read-only
    /// by its mode), then the user's cache
    /// folder (`$XDG_CACHE_HOME/part` or `~/.cache/part`).
    static func locations(key: String, dataRoot: URL, explicit: URL?) -> [URL] {
        let pathTag = Array(dataRoot.standardizedFileURL.path.utf8).withUnsafeBytes { String(MD5.hex($0).prefix(12)) }
        if let explicit { return [explicit.appendingPathComponent("\(key)-\(pathTag).partcache")] }
        var out = [dataRoot.appendingPathComponent(".part-cache").appendingPathComponent("\(key).partcache")]
        let env = ProcessInfo.processInfo.environment
        let userCache = env["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: env["HOME"] ?? NSTemporaryDirectory()).appendingPathComponent(".cache")
        out.append(userCache.appendingPathComponent("part").appendingPathComponent("\(key)-\(pathTag).partcache"))
        return out
    }

    /// Whether `folder` (or, when it does not exist yet, the nearest existing folder above it)
    /// has no write permission bit at all: a read-only copy of a dataset. Root may write there
    /// regardless, so the mode is what says the folder is not to be written.
    static func markedReadOnly(_ folder: URL) -> Bool {
        var url = folder.standardizedFileURL
        while true {
            if let mode = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.posixPermissions] as? NSNumber {
                return mode.intValue & 0o222 == 0
            }
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { return false }
            url = parent
        }
    }

    /// The dataset of `list`: mapped from a matching cache when one exists, else decoded and
    /// written to the first writable cache location (a failure to write is a warning).
    static func load(_ list: ImageList, channels: Int, key: String, explicitCache: URL?, name: String,
                     augmentation: Augmentation, warn: (String) -> Void) throws -> ImageDataset {
        let fingerprint = try list.fingerprint(channels: channels)
        let places = locations(key: key, dataRoot: list.root, explicit: explicitCache)
        for place in places { removeStaleTemporaries(of: place) }
        for place in places where FileManager.default.fileExists(atPath: place.path) {
            do {
                let (header, labels, pixels) = try parse(try ByteBuffer.mapping(place), source: place.path)
                guard header.fingerprint == fingerprint, header.channels == channels else { continue }
                return try ImageDataset(name: name, storage: pixels, pixelType: .uint8, labels: labels, height: header.height,
                                        width: header.width, channels: channels, classes: header.classNames.count,
                                        classNames: header.classNames, augmentation: augmentation)
            } catch {
                warn("\(error); decoding the images again")
            }
        }
        let (storage, height, width) = try ImageDecoding.decode(list, channels: channels)
        let header = Header(count: list.files.count, height: height, width: width, channels: channels,
                            classNames: list.classNames, fingerprint: fingerprint)
        var problems: [String] = []
        for place in places where !markedReadOnly(place.deletingLastPathComponent()) {
            do {
                try FileManager.default.createDirectory(at: place.deletingLastPathComponent(), withIntermediateDirectories: true)
                try write(header, labels: list.labels, pixels: storage.bytes, to: place)
                problems = []
                break
            } catch {
                problems.append("\(error)")
            }
        }
        if !problems.isEmpty {
            warn("cannot write a decoded-image cache (\(problems.joined(separator: "; "))); the images will be decoded again next time")
        }
        return try ImageDataset(name: name, storage: storage, pixelType: .uint8, labels: list.labels, height: height,
                                width: width, channels: channels, classes: list.classNames.count,
                                classNames: list.classNames, augmentation: augmentation)
    }
}
