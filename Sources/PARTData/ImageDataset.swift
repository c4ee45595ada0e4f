import Foundation
import PARTEngine

/// A dataset that could not be built or loaded; `description` says what is wrong and, where
/// it can, what to do about it.
public struct DatasetError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A fixed set of uint8 images (NHWC) with integer labels, held in memory.
public struct ImageDataset: Sendable {
    public let name: String
    /// `count * height * width * channels` bytes, NHWC.
    public let images: [UInt8]
    public let labels: [Int32]
    public let count, height, width, channels, classes: Int

    /// Validates that there are `labels.count` images of `height x width x channels` bytes
    /// and that every label is in `0..<classes`.
    public init(name: String, images: [UInt8], labels: [Int32], height: Int, width: Int, channels: Int,
                classes: Int) throws {
        guard height > 0, width > 0, channels > 0 else {
            throw DatasetError("\(name): image size \(height)x\(width)x\(channels) must be positive in every dimension")
        }
        guard classes > 0 else {
            throw DatasetError("\(name): the number of classes must be positive, got \(classes)")
        }
        let perImage = height * width * channels
        guard images.count == labels.count * perImage else {
            let whole = images.count % perImage == 0 ? "\(images.count / perImage) images" : "not a whole number of images"
            throw DatasetError("\(name): \(labels.count) labels but \(images.count) image bytes (\(whole) of \(height)x\(width)x\(channels)); image and label counts must agree")
        }
        if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
            throw DatasetError("\(name): label \(labels[bad]) of example \(bad) is outside 0..<\(classes)")
        }
        self.init(unchecked: name, images: images, labels: labels, height: height, width: width,
                  channels: channels, classes: classes)
    }

    private init(unchecked name: String, images: [UInt8], labels: [Int32], height: Int, width: Int,
                 channels: Int, classes: Int) {
        self.name = name
        self.images = images
        self.labels = labels
        self.count = labels.count
        self.height = height
        self.width = width
        self.channels = channels
        self.classes = classes
    }

    /// Bytes per image.
    public var imageSize: Int { height * width * channels }

    /// Images `indices` as a Float tensor `[n, H, W, C]` scaled to [0, 1] (value / 255), and
    /// their labels.
    public func batch(_ indices: [Int]) -> (images: Tensor, labels: [Int32]) {
        let size = imageSize
        var tensor = Tensor.uninitialized(shape: [indices.count, height, width, channels])
        var batchLabels = [Int32](repeating: 0, count: indices.count)
        images.withUnsafeBufferPointer { src in
            tensor.withUnsafeMutableBufferPointer { dst in
                for (row, index) in indices.enumerated() {
                    precondition(index >= 0 && index < count, "\(name): example \(index) out of range 0..<\(count)")
                    let from = src.baseAddress! + index * size
                    let to = dst.baseAddress! + row * size
                    for k in 0..<size { to[k] = Float(from[k]) / 255 }
                    batchLabels[row] = labels[index]
                }
            }
        }
        return (tensor, batchLabels)
    }

    /// The first `n` examples (`n` clipped to `0...count`), for `--limit` options.
    public func prefix(_ n: Int) -> ImageDataset {
        let k = Swift.max(0, Swift.min(n, count))
        if k == count { return self }
        return ImageDataset(unchecked: name, images: Array(images[0..<(k * imageSize)]),
                            labels: Array(labels[0..<k]), height: height, width: width,
                            channels: channels, classes: classes)
    }
}

public enum DatasetSplit: String, Sendable, CaseIterable {
    case train, test
}

/// A dataset format on disk (future: CIFAR binary, SVHN .mat, ImageFolder, NPY).
public protocol DatasetLoader {
    static func load(directory: URL, split: DatasetSplit) throws -> ImageDataset
}

/// MNIST-format IDX files: `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
/// and `t10k-...` for the test split. The dataset is named after the directory.
///
/// Checks the magic numbers (2051, 3 dimensions, for images; 2049, 1 dimension, for labels),
/// that image and label counts agree, and that labels are < 10. Content errors are
/// `IDXError`s naming the file; a missing file or a count mismatch is a `DatasetError`.
public enum MNISTFormat: DatasetLoader {
    public static let classes = 10

    /// Base file names (without `.gz`) of a split's images and labels.
    public static func fileNames(for split: DatasetSplit) -> (images: String, labels: String) {
        let prefix = split == .train ? "train" : "t10k"
        return ("\(prefix)-images-idx3-ubyte", "\(prefix)-labels-idx1-ubyte")
    }

    public static func load(directory: URL, split: DatasetSplit) throws -> ImageDataset {
        let name = directory.standardizedFileURL.lastPathComponent
        let files = fileNames(for: split)
        let imageURL = try locate(files.images, in: directory, what: "\(split.rawValue) images")
        let labelURL = try locate(files.labels, in: directory, what: "\(split.rawValue) labels")

        let images = try IDX.read(contentsOf: imageURL, expectedDimensions: 3)
        let labels = try IDX.read(contentsOf: labelURL, expectedDimensions: 1)
        let imageCount = images.dimensions[0], height = images.dimensions[1], width = images.dimensions[2]
        guard imageCount == labels.dimensions[0] else {
            throw DatasetError("\(name) \(split.rawValue): \(imageURL.lastPathComponent) has \(imageCount) images but \(labelURL.lastPathComponent) has \(labels.dimensions[0]) labels")
        }
        if let bad = labels.bytes.firstIndex(where: { Int($0) >= classes }) {
            throw IDXError("\(labelURL.lastPathComponent): label \(labels.bytes[bad]) at index \(bad) is not < \(classes)")
        }
        let labelValues = labels.bytes.map { Int32($0) }
        return try ImageDataset(name: name, images: images.bytes, labels: labelValues, height: height,
                                width: width, channels: 1, classes: classes)
    }

    /// `base` or `base.gz` in `directory`, preferring the uncompressed file.
    static func locate(_ base: String, in directory: URL, what: String) throws -> URL {
        let raw = directory.appendingPathComponent(base)
        let gz = directory.appendingPathComponent(base + ".gz")
        let fm = FileManager.default
        if fm.fileExists(atPath: raw.path) { return raw }
        if fm.fileExists(atPath: gz.path) { return gz }
        let hint: String
        if directory.standardizedFileURL.path == FashionMNIST.defaultDirectory.path {
            hint = "install it with: apt-get install dataset-fashion-mnist"
        } else {
            hint = "put the MNIST-format IDX files there (for Fashion-MNIST, install them with: apt-get install dataset-fashion-mnist, which fills \(FashionMNIST.defaultDirectory.path))"
        }
        throw DatasetError("\(what) not found in \(directory.path): tried \(base) and \(base).gz; \(hint)")
    }
}

/// Fashion-MNIST (Xiao et al. 2017): 28x28 grey-scale images of 10 kinds of clothing.
public enum FashionMNIST {
    public static let defaultDirectory = URL(fileURLWithPath: "/usr/share/datasets/fashion-mnist")

    public static let classNames = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]

    public static func load(split: DatasetSplit, directory: URL = defaultDirectory) throws -> ImageDataset {
        try MNISTFormat.load(directory: directory, split: split)
    }
}

/// Mini-batches over a dataset in an order shuffled by the run's RNG (or sequential).
///
/// The order is drawn once, at initialisation; iterating yields `[Int]` index batches of
/// `batchSize`, the last one partial unless `dropLast`. Make one sampler per epoch.
public struct BatchSampler: Sequence, Sendable {
    /// The order of the examples for this epoch.
    public let order: [Int]
    public let batchSize: Int
    public let dropLast: Bool

    public init(count: Int, batchSize: Int, shuffle: Bool, rng: inout RNG, dropLast: Bool = false) {
        precondition(count >= 0, "BatchSampler: negative count \(count)")
        precondition(batchSize > 0, "BatchSampler: batch size must be positive, got \(batchSize)")
        self.order = shuffle ? rng.permutation(count) : Array(0..<count)
        self.batchSize = batchSize
        self.dropLast = dropLast
    }

    /// Number of batches this sampler yields.
    public var batchCount: Int {
        dropLast ? order.count / batchSize : (order.count + batchSize - 1) / batchSize
    }

    public var underestimatedCount: Int { batchCount }

    public struct Iterator: IteratorProtocol, Sendable {
        let order: [Int]
        let batchSize: Int
        let dropLast: Bool
        var position = 0

        public mutating func next() -> [Int]? {
            let remaining = order.count - position
            guard remaining > 0, !(dropLast && remaining < batchSize) else { return nil }
            let end = position + Swift.min(batchSize, remaining)
            defer { position = end }
            return Array(order[position..<end])
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(order: order, batchSize: batchSize, dropLast: dropLast)
    }
}
