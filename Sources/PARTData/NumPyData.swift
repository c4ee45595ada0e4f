import Foundation
import PARTEngine

/// Users' arrays as NumPy files: images uint8 (0...255) or float32 in [0, 1] (so adversarial
/// examples saved as arrays read back without rounding), with integer labels.
///
/// `--data` names either one file that every split reads (the way to evaluate saved
/// adversarial examples): an `.npz`, or an `.npy` of images with `<name>_labels.npy` (or
/// `<name>_y.npy`) beside it; or a folder holding, per split, `<split>.npz` or the pair
/// `<split>_x.npy` and `<split>_y.npy` (the test split may be called `val`). An `.npz` holds
/// the images under `x` or `images` and the labels under `y` or `labels`.
///
/// Images are `[N, H, W, C]` (NHWC) or `[N, C, H, W]` (NCHW) with C = 1 or 3, told apart by
/// which axis has size 1 or 3 (or by `layout`), or `[N, H, W]` for one channel.
public enum NumPyData {
    public enum Layout: String, Sendable, CaseIterable, Codable {
        case nhwc, nchw
    }

    static let imageKeys = ["x", "images"], labelKeys = ["y", "labels"]

    /// Where a split's arrays are: one `.npz`, or an images `.npy` and a labels `.npy`.
    enum Files {
        case npz(URL)
        case pair(images: URL, labels: URL)
    }

    static func files(_ location: URL, split: DatasetSplit) throws -> Files? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: location.path, isDirectory: &isDirectory) else {
            throw DatasetError("\(location.path): no such file or folder; --data should name an .npz file or a folder with train.npz and test.npz (or train_x.npy, train_y.npy, test_x.npy, test_y.npy)")
        }
        if !isDirectory.boolValue {
            if location.pathExtension.lowercased() == "npy" {
                // Images alone (as `part eval --save-adversarial` writes them): the labels beside them.
                let stem = location.deletingPathExtension().lastPathComponent
                for suffix in ["_labels", "_y"] {
                    let labels = location.deletingLastPathComponent().appendingPathComponent("\(stem)\(suffix).npy")
                    if FileManager.default.fileExists(atPath: labels.path) { return .pair(images: location, labels: labels) }
                }
                throw DatasetError("\(location.path): images without labels; save the labels beside them as \(stem)_labels.npy (numpy.save), or give an .npz holding both (x or images, y or labels)")
            }
            guard location.pathExtension.lowercased() == "npz" else {
                throw DatasetError("\(location.path): a single file must be an .npz holding the images (x or images) and labels (y or labels), or an .npy of images with <name>_labels.npy beside it")
            }
            return .npz(location)
        }
        let names = split == .train ? ["train"] : ["test", "val"]
        for n in names {
            let npz = location.appendingPathComponent("\(n).npz")
            if FileManager.default.fileExists(atPath: npz.path) { return .npz(npz) }
            let x = location.appendingPathComponent("\(n)_x.npy"), y = location.appendingPathComponent("\(n)_y.npy")
            let hasX = FileManager.default.fileExists(atPath: x.path), hasY = FileManager.default.fileExists(atPath: y.path)
            if hasX && hasY { return .pair(images: x, labels: y) }
            if hasX != hasY {
                throw DatasetError("\((hasX ? y : x).path): missing; \((hasX ? x : y).lastPathComponent) needs it beside it")
            }
        }
        return nil
    }

    /// Reads the named members of an `.npz` (only those asked for are decompressed).
    static func readNPZ(_ url: URL, want: [[String]]) throws -> [NPY.Array] {
        let raw = try ByteBuffer.mapping(url)
        let entries = try Zip.datasetEntries(raw.bytes, source: url.path)
        let byName = Dictionary(entries.map { ($0.name.hasSuffix(".npy") ? String($0.name.dropLast(4)) : $0.name, $0) },
                                uniquingKeysWith: { a, _ in a })
        return try want.map { keys in
            let present = keys.filter { byName[$0] != nil }
            guard let key = present.first else {
                throw DatasetError("\(url.path): no array named \(keys.joined(separator: " or ")) (it has \(byName.keys.sorted().joined(separator: ", ")))")
            }
            guard present.count == 1 else {
                throw DatasetError("\(url.path): holds both \(present.joined(separator: " and ")); keep one")
            }
            let member = try Zip.extractNPY(byName[key]!, from: raw.bytes, source: url.path)
            return try NPY.parse(member, source: "\(url.path): \(key)")
        }
    }

    /// Labels as Int32, validated: integer type, one per image, non-negative.
    static func labels(_ array: NPY.Array, source: String) throws -> [Int32] {
        guard array.dtype.kind == "i" || array.dtype.kind == "u" else {
            throw DatasetError("\(source): labels are \(array.dtype); they must be integers")
        }
        guard array.shape.count == 1 || (array.shape.count == 2 && array.shape[1] == 1) else {
            throw DatasetError("\(source): labels have shape \(array.shape); they must be [N] or [N, 1]")
        }
        var out = [Int32](repeating: 0, count: array.count)
        try array.withData { _ in
            for i in 0..<array.count {
                guard let v = array.integer(i), v >= 0, v < Int64(Int32.max) else {
                    throw DatasetError("\(source): label \(array.integer(i).map(String.init) ?? "?") of example \(i) is negative or too large")
                }
                // The class count is the largest label + 1: a stray huge label would size the model.
                guard v < Int64(Limits.classes) else {
                    throw DatasetError("\(source): label \(v) of example \(i) is not below \(Limits.classes), the most classes a "
                                       + "dataset may have")
                }
                out[i] = Int32(v)
            }
        }
        return out
    }

    /// The split's images and labels as arrays, and names for messages.
    static func arrays(_ files: Files) throws -> (images: NPY.Array, labels: NPY.Array, imagesSource: String, labelsSource: String) {
        switch files {
        case .npz(let url):
            let arrays = try readNPZ(url, want: [imageKeys, labelKeys])
            return (arrays[0], arrays[1], "\(url.path): images", "\(url.path): labels")
        case .pair(let x, let y):
            return (try NPY.parse(try ByteBuffer.mapping(x), source: x.path),
                    try NPY.parse(try ByteBuffer.mapping(y), source: y.path), x.path, y.path)
        }
    }

    /// Only the labels of a split (for the class count).
    static func labelsOnly(_ files: Files) throws -> [Int32] {
        switch files {
        case .npz(let url):
            return try labels(try readNPZ(url, want: [labelKeys])[0], source: "\(url.path): labels")
        case .pair(_, let y):
            return try labels(try NPY.parse(try ByteBuffer.mapping(y), source: y.path), source: y.path)
        }
    }

    /// Decodes images into NHWC storage: (storage, pixel type, height, width, channels).
    public static func images(_ array: NPY.Array, layout: Layout?, source: String) throws
        -> (storage: ByteBuffer, type: PixelType, height: Int, width: Int, channels: Int) {
        let s = array.shape
        let n: Int, h: Int, w: Int, c: Int, planar: Bool
        switch s.count {
        case 3:
            (n, h, w, c, planar) = (s[0], s[1], s[2], 1, false)
        case 4:
            let lastIsChannel = s[3] == 1 || s[3] == 3, secondIsChannel = s[1] == 1 || s[1] == 3
            let chosen: Layout
            if let layout {
                chosen = layout
            } else if lastIsChannel && !secondIsChannel {
                chosen = .nhwc
            } else if secondIsChannel && !lastIsChannel {
                chosen = .nchw
            } else if lastIsChannel {
                throw DatasetError("\(source): shape \(s) could be NHWC or NCHW; say which with --layout nhwc or --layout nchw")
            } else {
                throw DatasetError("\(source): shape \(s) has no channel axis of size 1 or 3; images must be [N, H, W, C] or [N, C, H, W] with C = 1 or 3, or [N, H, W]")
            }
            if chosen == .nhwc { (n, h, w, c, planar) = (s[0], s[1], s[2], s[3], false) }
            else { (n, c, h, w, planar) = (s[0], s[1], s[2], s[3], true) }
        default:
            throw DatasetError("\(source): images have shape \(s); they must be [N, H, W, C], [N, C, H, W] or [N, H, W]")
        }
        guard h > 0, w > 0, c > 0 else { throw DatasetError("\(source): empty images (shape \(s))") }
        // --layout chooses between the axes; the channel axis it names must still be 1 or 3.
        guard c == 1 || c == 3 else {
            throw DatasetError("\(source): shape \(s) read as \(planar ? "NCHW" : "NHWC") gives \(c) channels; images must have "
                               + "1 or 3 (check --layout)")
        }
        guard Limits.imageFits(height: h, width: w) else {
            throw DatasetError("\(source): images of \(h)x\(w) pixels are larger than the \(Limits.imageSide) per side and "
                               + "\(Limits.imagePixels) pixels an image may have")
        }
        let size = h * w * c
        let strides = planar ? (image: size, y: w, x: 1, c: h * w) : (image: size, y: w * c, x: c, c: 1)
        switch (array.dtype.kind, array.dtype.size) {
        case ("u", 1):
            let storage = try ByteBuffer.allocate(n * size)
            if n > 0 {
                array.withData { data in
                    ImageData.interleave(bytes: data.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                         into: storage.mutablePointer.assumingMemoryBound(to: UInt8.self),
                                         count: n, height: h, width: w, channels: c, strides: strides)
                }
            }
            return (storage, .uint8, h, w, c)
        case ("f", 4), ("f", 8):
            // Native float32 is used in place; other float types are converted first.
            let native = array.dtype.size == 4 && !array.dtype.bigEndian
            let floats = try ByteBuffer.allocate(n * size * 4)
            let out = floats.mutablePointer.assumingMemoryBound(to: Float.self)
            try array.withData { data in
                let values: UnsafePointer<Float>
                var converted: ByteBuffer?
                if native {
                    // The data may sit at any byte offset (inside a zip member): copy to aligned memory.
                    converted = try ByteBuffer.copying(data)
                } else {
                    let c = try ByteBuffer.allocate(n * size * 4)
                    let p = c.mutablePointer.assumingMemoryBound(to: Float.self)
                    for i in 0..<(n * size) { p[i] = array.float(i) }
                    converted = c
                }
                guard let converted, n > 0 else { return }
                values = converted.pointer.assumingMemoryBound(to: Float.self)
                if let bad = ImageData.firstOutsideUnitRange(values, count: n * size) {
                    let image = bad / size
                    throw DatasetError("\(source): value \(values[bad]) in image \(image) (flat index \(bad)); float images must be finite and in [0, 1]")
                }
                ImageData.interleave(floats: values, into: out, count: n, height: h, width: w, channels: c, strides: strides)
            }
            return (floats, .float32, h, w, c)
        default:
            throw DatasetError("\(source): images are \(array.dtype); they must be uint8 (0...255) or float32 in [0, 1]")
        }
    }

    /// Loads a split (nil when the folder has no file for it). `classes` overrides the class
    /// count, which is otherwise the largest label of all splits present plus one.
    public static func load(_ location: URL, split: DatasetSplit, layout: Layout?, classes: Int?, name: String)
        throws -> ImageDataset? {
        guard let files = try files(location, split: split) else { return nil }
        let (x, y, xSource, ySource) = try arrays(files)
        let labels = try self.labels(y, source: ySource)
        let decoded = try images(x, layout: layout, source: xSource)
        let n = x.shape[0]
        guard labels.count == n else {
            throw DatasetError("\(ySource): \(labels.count) labels for \(n) images in \(xSource); they must agree")
        }
        var classCount = classes ?? 0
        if classes == nil {
            var maxLabel = labels.max() ?? -1
            for other in DatasetSplit.allCases where other != split {
                if let otherFiles = try self.files(location, split: other), !sameFiles(otherFiles, files) {
                    maxLabel = Swift.max(maxLabel, try labelsOnly(otherFiles).max() ?? -1)
                }
            }
            classCount = Int(maxLabel) + 1
        } else if let bad = labels.firstIndex(where: { Int($0) >= classCount }) {
            throw DatasetError("\(ySource): label \(labels[bad]) of example \(bad) is not below --classes \(classCount)")
        }
        return try ImageDataset(name: name, storage: decoded.storage, pixelType: decoded.type, labels: labels,
                                height: decoded.height, width: decoded.width, channels: decoded.channels,
                                classes: Swift.max(classCount, 1), augmentation: .none)
    }

    static func sameFiles(_ a: Files, _ b: Files) -> Bool {
        switch (a, b) {
        case (.npz(let u), .npz(let v)): return u == v
        case (.pair(let x1, _), .pair(let x2, _)): return x1 == x2
        default: return false
        }
    }
}
