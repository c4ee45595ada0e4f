import Foundation
import PARTEngine

/// SVHN, cropped digits (Netzer et al. 2011, http://ufldl.stanford.edu/housenumbers/):
/// `train_32x32.mat` (73,257 images), `test_32x32.mat` (26,032) and `extra_32x32.mat`
/// (531,131), MATLAB level-5 files with `X`, uint8 of size 32x32x3xN (column-major: row,
/// column, channel, image), and `y`, N labels 1...10 where 10 means the digit 0 (as
/// torchvision maps it).
public enum SVHN {
    public static let officialCounts = ["train_32x32.mat": 73_257, "test_32x32.mat": 26_032, "extra_32x32.mat": 531_131]
    public static let classNames = (0...9).map(String.init)

    /// The files of a split: `extra` joins training only when asked.
    public static func files(split: DatasetSplit, extra: Bool) -> [String] {
        split == .test ? ["test_32x32.mat"] : (extra ? ["train_32x32.mat", "extra_32x32.mat"] : ["train_32x32.mat"])
    }

    /// Decodes a parsed MAT-file's `X` and `y`: images into `pixels` (NHWC, room for all of
    /// them) and labels with 10 mapped to 0. `count` is the number of images, read first
    /// from `imageCount`.
    public static func imageCount(_ variables: [String: MATFile.Variable], source: String) throws -> Int {
        guard let x = variables["X"] else { throw DatasetError("\(source): no variable X (the images)") }
        guard variables["y"] != nil else { throw DatasetError("\(source): no variable y (the labels)") }
        guard x.type != nil, !x.isComplex else {
            throw DatasetError("\(source): X is a \(x.isComplex ? "complex" : x.className) array; SVHN images are uint8")
        }
        guard x.dimensions.count == 4, x.dimensions[0] == 32, x.dimensions[1] == 32, x.dimensions[2] == 3 else {
            throw DatasetError("\(source): X has size \(x.dimensions.map(String.init).joined(separator: "x")); SVHN images are 32x32x3xN")
        }
        return x.dimensions[3]
    }

    public static func decode(_ variables: [String: MATFile.Variable], into pixels: UnsafeMutablePointer<UInt8>,
                              source: String) throws -> [Int32] {
        let n = try imageCount(variables, source: source)
        guard let x = variables["X"], let y = variables["y"] else { return [] }
        guard y.type != nil, !y.isComplex else {
            throw DatasetError("\(source): y is a \(y.isComplex ? "complex" : y.className) array; SVHN labels are numbers 1...10")
        }
        guard y.count == n, y.dimensions.filter({ $0 != 1 }).count <= 1 else {
            throw DatasetError("\(source): y has size \(y.dimensions.map(String.init).joined(separator: "x")) for \(n) images; it must be \(n)x1")
        }
        var labels = [Int32](repeating: 0, count: n)
        for i in 0..<n {
            let v = y.value(i)
            guard v == v.rounded(), v >= 1, v <= 10 else {
                let text = v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
                throw DatasetError("\(source): label \(text) of image \(i); SVHN labels are 1...10 (10 is the digit 0)")
            }
            labels[i] = v == 10 ? 0 : Int32(v)
        }
        // Column-major [32, 32, 3, N]: element (row, column, channel, image) sits at
        // row + 32 column + 1024 channel + 3072 image.
        let strides = (image: 3072, y: 1, x: 32, c: 1024)
        guard n > 0 else { return labels }
        try x.withStorage {
            if let raw = x.bytes, raw.count > 0 {
                ImageData.interleave(bytes: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), into: pixels,
                                     count: n, height: 32, width: 32, channels: 3, strides: strides)
            } else {
                // Other storage types: every value must be a whole number in 0...255.
                let converted = try ByteBuffer.allocate(x.count)
                let out = converted.mutablePointer.assumingMemoryBound(to: UInt8.self)
                for i in 0..<x.count {
                    let v = x.value(i)
                    guard v == v.rounded(), v >= 0, v <= 255 else {
                        throw DatasetError("\(source): X holds \(v) (its value \(i)); SVHN pixels are whole numbers 0...255")
                    }
                    out[i] = UInt8(v)
                }
                ImageData.interleave(bytes: out, into: pixels, count: n, height: 32, width: 32, channels: 3, strides: strides)
            }
        }
        return labels
    }

    /// Loads a split from the folder holding the `.mat` files. Checksums of the official
    /// files and their image counts are checked; a difference is a warning.
    public static func load(_ directory: URL, split: DatasetSplit, extra: Bool, name: String,
                            warn: (String) -> Void) throws -> ImageDataset {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory) else {
            throw DatasetError("\(directory.path): no such folder; --data should name the folder holding train_32x32.mat and test_32x32.mat (from http://ufldl.stanford.edu/housenumbers/)")
        }
        let folder = isDirectory.boolValue ? directory : directory.deletingLastPathComponent()
        var parts: [(variables: [String: MATFile.Variable], path: String, count: Int)] = []
        for file in files(split: split, extra: extra) {
            let url = folder.appendingPathComponent(file)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw DatasetError("\(url.path): missing; SVHN's \(split.rawValue) split needs \(files(split: split, extra: extra).joined(separator: " and ")) (from http://ufldl.stanford.edu/housenumbers/)")
            }
            let raw = try ByteBuffer.mapping(url)
            if let problem = OfficialChecksum.verify(raw.bytes, officialName: file, path: url.path) { warn(problem) }
            let variables = try MATFile.parse(raw, source: url.path, wanted: ["X", "y"])
            let n = try imageCount(variables, source: url.path)
            if let official = officialCounts[file], n != official {
                warn("\(url.path): \(n) images, the official file has \(official) (not the original SVHN file?)")
            }
            parts.append((variables, url.path, n))
        }
        let total = parts.reduce(0) { $0 + $1.count }
        let storage = try ByteBuffer.allocate(total * 3072)
        var labels: [Int32] = []
        labels.reserveCapacity(total)
        for part in parts {
            let pixels = storage.mutablePointer.assumingMemoryBound(to: UInt8.self) + labels.count * 3072
            labels += try decode(part.variables, into: pixels, source: part.path)
        }
        return try ImageDataset(name: name, storage: storage, pixelType: .uint8, labels: labels, height: 32, width: 32,
                                channels: 3, classes: 10, classNames: classNames, augmentation: .none)
    }
}
