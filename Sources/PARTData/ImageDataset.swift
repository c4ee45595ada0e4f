import Foundation
import PARTEngine

/// A dataset that could not be built or loaded; `description` says what is wrong and, where
/// it can, what to do about it.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How pixels are stored.
public enum PixelType: String, Sendable, Codable {
    /// One byte per value, 0...255, read as value / 255.
    case uint8
    /// Float32 already in [0, 1] (adversarial examples saved as NumPy arrays).
    case float32

    public var size: Int { self == .uint8 ? 1 : 4 }
}

/// A fixed set of images (NHWC) with integer labels, in memory or memory-mapped.
///
/// Pixels are uint8 (every original format) or float32 in [0, 1] (NumPy files of adversarial
/// examples, which must not be quantised). The dataset also carries its class names and the
/// augmentation its training recipe uses (docs/method.md#2-the-training-loop-and-its-defaults).
public struct ImageDataset: Sendable {
    public let name: String
    /// `count * height * width * channels` values of `pixelType`, NHWC, from the start of `storage`.
    public let storage: ByteBuffer
    public let pixelType: PixelType
    public let labels: [Int32]
    public let count, height, width, channels, classes: Int
    /// One name per class (the class index is the position).
    public let classNames: [String]
    /// The augmentation of training batches (the trainer's batcher applies it).
    public var augmentation: Augmentation
    /// Each example's index in the whole split it was taken from, for a subset that is not a
    /// prefix (`subset`, `balancedPrefix`); nil when example i is example i of its split. Random
    /// draws are keyed by this index (`splitIndex(of:)`), so a subset changes no example.
    public private(set) var splitIndices: [Int]?

    /// Validates that there are `labels.count` images of `height x width x channels` bytes
    /// and that every label is in `0..<classes`.
    public init(name: String, images: [UInt8], labels: [Int32], height: Int, width: Int, channels: Int,
                classes: Int, classNames: [String]? = nil, augmentation: Augmentation = .none) throws {
        let perImage = height * width * channels
        guard height > 0, width > 0, channels > 0 else {
            throw DatasetError("\(name): image size \(height)x\(width)x\(channels) must be positive in every dimension")
        }
        guard images.count == labels.count * perImage else {
            let whole = images.count % perImage == 0 ? "\(images.count / perImage) images" : "not a whole number of images"
            throw DatasetError("\(name): \(labels.count) labels but \(images.count) image bytes (\(whole) of \(height)x\(width)x\(channels)); image and label counts must agree")
        }
        let storage = try images.withUnsafeBytes { try ByteBuffer.copying($0) }
        try self.init(name: name, storage: storage, pixelType: .uint8, labels: labels, height: height, width: width,
                      channels: channels, classes: classes, classNames: classNames, augmentation: augmentation)
    }

    /// A dataset over pixels already in `storage` (at least `labels.count` images of
    /// `pixelType`). Validates sizes, the class count, class names and every label.
    public init(name: String, storage: ByteBuffer, pixelType: PixelType, labels: [Int32], height: Int, width: Int,
                channels: Int, classes: Int, classNames: [String]? = nil, augmentation: Augmentation = .none) throws {
        guard height > 0, width > 0, channels > 0 else {
            throw DatasetError("\(name): image size \(height)x\(width)x\(channels) must be positive in every dimension")
        }
        guard classes > 0 else {
            throw DatasetError("\(name): the number of classes must be positive, got \(classes)")
        }
        guard classes <= Limits.classes else {
            throw DatasetError("\(name): \(classes) classes is more than the \(Limits.classes) a dataset may have")
        }
        let needed = labels.count * height * width * channels * pixelType.size
        guard storage.count >= needed else {
            throw DatasetError("\(name): \(labels.count) labels but only \(storage.count) bytes of pixels (\(needed) needed for \(height)x\(width)x\(channels) \(pixelType.rawValue) images); image and label counts must agree")
        }
        if let classNames, classNames.count != classes {
            throw DatasetError("\(name): \(classNames.count) class names for \(classes) classes")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DatasetError("\(name): label \(labels[bad]) of example \(bad) is outside 0..<\(classes)")
        }
        self.init(unchecked: name, storage: storage, pixelType: pixelType, labels: labels, height: height,
                  width: width, channels: channels, classes: classes,
                  classNames: classNames ?? (0..<classes).map(String.init), augmentation: augmentation)
    }

    private init(unchecked name: String, storage: ByteBuffer, pixelType: PixelType, labels: [Int32], height: Int,
                 width: Int, channels: Int, classes: Int, classNames: [String], augmentation: Augmentation) {
        self.name = name
        self.storage = storage
        self.pixelType = pixelType
        self.labels = labels
        self.count = labels.count
        self.height = height
        self.width = width
        self.channels = channels
        self.classes = classes
        self.classNames = classNames
        self.augmentation = augmentation
        self.splitIndices = nil
    }

    /// The split indices of examples `rows`: the keys of their random draws.
    public func splitIndex(of rows: [Int]) -> [Int] {
        guard let splitIndices else { return rows }
        return rows.map { splitIndices[$0] }
    }

    /// Values per image.
    public var imageSize: Int { height * width * channels }

    /// The image shape as [height, width, channels].
    public var shape: [Int] { [height, width, channels] }

    /// The pixels as bytes (NHWC). Float datasets are rounded to the nearest of 0...255; use
    /// `batch` for their exact values.
    public var images: [UInt8] {
        let n = count * imageSize
        switch pixelType {
        case .uint8:
            return Array(UnsafeBufferPointer(start: storage.pointer.assumingMemoryBound(to: UInt8.self), count: n))
        case .float32:
            let p = storage.pointer.assumingMemoryBound(to: Float.self)
            return (0..<n).map { UInt8((Swift.min(Swift.max(p[$0], 0), 1) * 255).rounded()) }
        }
    }

    /// Images `indices` as a Float tensor `[n, H, W, C]` in [0, 1] (uint8 / 255), and their
    /// labels; no augmentation.
    public func batch(_ indices: [Int]) -> (images: Tensor, labels: [Int32]) {
        (gather(indices, transforms: nil, threaded: true), indices.map { labels[$0] })
    }

    /// Images `indices` cut and mirrored by `transforms` (nil: unchanged), as Floats in [0, 1].
    public func gather(_ indices: [Int], transforms: [CropFlip]?, threaded: Bool) -> Tensor {
        for index in indices {
            precondition(index >= 0 && index < count, "\(name): example \(index) out of range 0..<\(count)")
        }
        switch pixelType {
        case .uint8:
            return ImageData.gather(bytes: storage.pointer.assumingMemoryBound(to: UInt8.self), rows: indices,
                                    height: height, width: width, channels: channels, transforms: transforms,
                                    threaded: threaded)
        case .float32:
            return ImageData.gather(floats: storage.pointer.assumingMemoryBound(to: Float.self), rows: indices,
                                    height: height, width: width, channels: channels, transforms: transforms,
                                    threaded: threaded)
        }
    }

    /// The first `n` examples (`n` clipped to `0...count`), sharing this dataset's memory, for
    /// `--limit` options.
    public func prefix(_ n: Int) -> ImageDataset {
        let k = Swift.max(0, Swift.min(n, count))
        if k == count { return self }
        var first = ImageDataset(unchecked: name, storage: storage, pixelType: pixelType, labels: Array(labels[0..<k]),
                                 height: height, width: width, channels: channels, classes: classes,
                                 classNames: classNames, augmentation: augmentation)
        first.splitIndices = splitIndices.map { Array($0.prefix(k)) }
        return first
    }

    /// The indices of a class-balanced subset of about `n` examples: the first ceil(n / K)
    /// examples of each of the K classes, in dataset order (fewer for a class that has fewer).
    public func balancedIndices(_ n: Int) -> [Int] {
        let perClass = (Swift.max(n, 0) + classes - 1) / classes
        var taken = [Int](repeating: 0, count: classes)
        var out: [Int] = []
        for (i, label) in labels.enumerated() where taken[Int(label)] < perClass {
            taken[Int(label)] += 1
            out.append(i)
        }
        return out
    }

    /// The indices of `n` examples (fewer if the dataset has fewer) taken one class at a time:
    /// the first example of each class, then the second of each, and so on (classes without
    /// examples skipped), returned in dataset order. For pictures of a few images (a report's CAM
    /// grid), which should show several classes even when the examples are sorted by class.
    public func interleavedIndices(_ n: Int) -> [Int] {
        var byClass = [[Int]](repeating: [], count: classes)
        for (i, label) in labels.enumerated() { byClass[Int(label)].append(i) }
        var out: [Int] = []
        var round = 0
        while out.count < Swift.min(Swift.max(n, 0), count) {
            for members in byClass where round < members.count && out.count < n { out.append(members[round]) }
            round += 1
        }
        return out.sorted()
    }

    /// The examples `indices` (in that order) as a dataset of their own, copied, which keeps
    /// their split indices; for subsets that are not a prefix (`--balanced`, `--val-split`).
    /// `name` renames it (default: this dataset's name).
    public func subset(_ indices: [Int], name newName: String? = nil) throws -> ImageDataset {
        if indices == Array(0..<count) && newName == nil { return self }
        let stride = imageSize * pixelType.size
        let copy = try ByteBuffer.allocate(indices.count * stride)
        for (row, i) in indices.enumerated() {
            precondition(i >= 0 && i < count, "\(name): example \(i) out of range 0..<\(count)")
            copy.mutablePointer.advanced(by: row * stride).copyMemory(from: storage.pointer.advanced(by: i * stride),
                                                                      byteCount: stride)
        }
        var chosen = ImageDataset(unchecked: newName ?? name, storage: copy, pixelType: pixelType, labels: indices.map { labels[$0] },
                                  height: height, width: width, channels: channels, classes: classes,
                                  classNames: classNames, augmentation: augmentation)
        let keys = splitIndex(of: indices)
        chosen.splitIndices = keys == Array(0..<keys.count) ? nil : keys
        return chosen
    }

    /// The class-balanced subset of `balancedIndices(n)` (`--balanced` with `--limit N`).
    public func balancedPrefix(_ n: Int) throws -> ImageDataset { try subset(balancedIndices(n)) }

    /// The same images under another augmentation policy.
    public func withAugmentation(_ policy: Augmentation) -> ImageDataset {
        var copy = self
        copy.augmentation = policy
        return copy
    }
}

public enum DatasetSplit: String, Sendable, CaseIterable {
    case train, test
}
