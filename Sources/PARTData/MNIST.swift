import Foundation

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
