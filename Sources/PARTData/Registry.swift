import Foundation
import PARTEngine

/// The datasets every command knows (docs/conventions.md#1-flags: `--dataset NAME --data DIR`).
public enum DatasetName: String, Sendable, CaseIterable, Codable {
    case fashionMNIST = "fashion-mnist"
    case mnist
    case cifar10
    case cifar100
    case svhn
    case tinyimagenet
    case imagefolder
    case npy

    /// What `--data` should name, for help and errors.
    public var expectedData: String {
        switch self {
        case .fashionMNIST, .mnist: return "a folder with the IDX files (train-images-idx3-ubyte[.gz], ...)"
        case .cifar10: return "the extracted cifar-10-batches-bin folder, cifar-10-binary.tar.gz, or a folder with train/ and test/ holding the ten class folders of images"
        case .cifar100: return "the extracted cifar-100-binary folder or cifar-100-binary.tar.gz"
        case .svhn: return "the folder holding train_32x32.mat and test_32x32.mat (and extra_32x32.mat)"
        case .tinyimagenet: return "the extracted tiny-imagenet-200 folder"
        case .imagefolder: return "a folder with train/ and test/ (or val/), one sub-folder of PNG or JPEG images per class"
        case .npy: return "an .npz file, or a folder with train.npz and test.npz (or <split>_x.npy and <split>_y.npy)"
        }
    }

    /// The folder read when `--data` is not given (only Fashion-MNIST has one).
    public var defaultLocation: URL? {
        self == .fashionMNIST ? FashionMNIST.defaultDirectory : nil
    }

    /// The training augmentation of the dataset's recipe (docs/method.md#2-the-training-loop-and-its-defaults).
    public var defaultAugmentation: Augmentation {
        switch self {
        case .cifar10, .cifar100, .tinyimagenet: return .cropFlip
        default: return .none
        }
    }
}

/// What a command asked for: the dataset, where its files are and the format options.
///
/// Codable, so that a run directory records the data it trained on (`RunRecord`) and a resume
/// reads the same files; locations are stored as absolute paths.
public struct DatasetRequest: Sendable, Equatable, Codable {
    public var name: DatasetName
    /// `--data`; nil reads the dataset's default location.
    public var location: URL?
    /// CIFAR-100: fine (100 classes) or coarse (20) labels.
    public var labelMode: CIFAR.LabelMode = .fine
    /// SVHN: add `extra_32x32.mat` to the training split.
    public var svhnExtra = false
    /// NumPy: the image layout when the shape does not tell.
    public var layout: NumPyData.Layout?
    /// NumPy and image folders: the class count, when the labels alone should not decide it.
    public var classes: Int?
    /// Image folders: 3 (RGB) or 1 (grey).
    public var channels = 3
    /// Where decoded-image caches go (default: beside the data, else the user's cache folder).
    public var cache: URL?
    /// Replaces the dataset's own training augmentation.
    public var augmentation: Augmentation?

    public init(name: DatasetName = .fashionMNIST, location: URL? = nil) {
        self.name = name
        self.location = location
    }

    private enum CodingKeys: String, CodingKey {
        case name, location, labelMode, svhnExtra, layout, classes, channels, cache, augmentation
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(DatasetName.self, forKey: .name)
        location = try c.decodeIfPresent(String.self, forKey: .location).map { URL(fileURLWithPath: $0) }
        labelMode = try c.decodeIfPresent(CIFAR.LabelMode.self, forKey: .labelMode) ?? .fine
        svhnExtra = try c.decodeIfPresent(Bool.self, forKey: .svhnExtra) ?? false
        layout = try c.decodeIfPresent(NumPyData.Layout.self, forKey: .layout)
        classes = try c.decodeIfPresent(Int.self, forKey: .classes)
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? 3
        cache = try c.decodeIfPresent(String.self, forKey: .cache).map { URL(fileURLWithPath: $0) }
        augmentation = try c.decodeIfPresent(Augmentation.self, forKey: .augmentation)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(location?.standardizedFileURL.path, forKey: .location)
        try c.encode(labelMode, forKey: .labelMode)
        try c.encode(svhnExtra, forKey: .svhnExtra)
        try c.encodeIfPresent(layout, forKey: .layout)
        try c.encodeIfPresent(classes, forKey: .classes)
        try c.encode(channels, forKey: .channels)
        try c.encodeIfPresent(cache?.standardizedFileURL.path, forKey: .cache)
        try c.encodeIfPresent(augmentation, forKey: .augmentation)
    }

    /// The request with its paths absolute, so that a run resumed from another working
    /// directory reads the same files.
    public var absolute: DatasetRequest {
        var r = self
        r.location = location.map { URL(fileURLWithPath: $0.path).standardizedFileURL }
        r.cache = cache.map { URL(fileURLWithPath: $0.path).standardizedFileURL }
        return r
    }

    /// What defines the data a run trained on, as (flag, value) pairs in flag order: every
    /// option but the cache folder (where decoded images are kept, not which).
    public var fingerprint: [(flag: String, value: String)] {
        let augment: String
        switch augmentation {
        case nil: augment = "auto"
        case .some(let a) where a == .none: augment = "none"
        case .some(let a) where a == .cropFlip: augment = "crop-flip"
        case .some(let a): augment = a.description
        }
        return [("--dataset", name.rawValue),
                ("--data", location.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path } ?? "(default)"),
                ("--label-mode", labelMode.rawValue), ("--svhn-extra", String(svhnExtra)),
                ("--layout", layout?.rawValue ?? "(auto)"), ("--classes", classes.map(String.init) ?? "(auto)"),
                ("--channels", String(channels)), ("--augment", augment)]
    }

    /// A problem with the combination of options, as a sentence naming the flag; nil if none.
    public func problem() -> String? {
        if labelMode != .fine && name != .cifar100 { return "--label-mode applies to --dataset cifar100 only" }
        if svhnExtra && name != .svhn { return "--svhn-extra applies to --dataset svhn only" }
        if layout != nil && name != .npy { return "--layout applies to --dataset npy only" }
        if channels != 3 && name != .imagefolder { return "--channels applies to --dataset imagefolder only" }
        if channels != 1 && channels != 3 { return "--channels must be 1 or 3" }
        if let classes, classes < 1 { return "--classes must be at least 1" }
        if let cache {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: cache.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                return "--cache \(cache.path) is a file; name a folder for the decoded-image caches"
            }
        }
        if let classes, classes > Limits.classes { return "--classes \(classes) is more than the \(Limits.classes) classes a dataset may have" }
        if classes != nil && name != .npy && name != .imagefolder { return "--classes applies to --dataset npy and imagefolder only" }
        if location == nil && name.defaultLocation == nil {
            return "--dataset \(name.rawValue) needs --data: \(name.expectedData)"
        }
        return nil
    }

    /// The dataset's display name: the registry name, or the folder or file name of users' data
    /// (image folders, NumPy files, IDX files outside the default folder).
    public var displayName: String {
        switch name {
        case .fashionMNIST, .mnist:
            // Users' own IDX files are named after their folder.
            guard let location, location.standardizedFileURL != name.defaultLocation?.standardizedFileURL else {
                return name.rawValue
            }
            return location.standardizedFileURL.lastPathComponent
        case .imagefolder, .npy:
            let last = (location ?? URL(fileURLWithPath: ".")).standardizedFileURL
            return last.pathExtension.isEmpty ? last.lastPathComponent : last.deletingPathExtension().lastPathComponent
        case .cifar100:
            return labelMode == .coarse ? "cifar100-coarse" : "cifar100"
        default:
            return name.rawValue
        }
    }
}

/// The one dataset registry: resolves a request to a loaded split with its images (uint8, or
/// float32 for NumPy float arrays, NHWC), labels, class names, shape and augmentation policy.
public enum DatasetRegistry {
    /// Loads `split`. Warnings (a checksum or a count that differs from the official files, a
    /// cache that cannot be written) go to `warn`; every problem with the files is a thrown
    /// `DatasetError` or `IDXError` naming the file.
    public static func load(_ request: DatasetRequest, split: DatasetSplit,
                            warn: (String) -> Void = { _ in }) throws -> ImageDataset {
        if let problem = request.problem() { throw DatasetError(problem) }
        guard let location = request.location ?? request.name.defaultLocation else {
            throw DatasetError("--dataset \(request.name.rawValue) needs --data: \(request.name.expectedData)")
        }
        let name = request.displayName
        var dataset: ImageDataset
        switch request.name {
        case .fashionMNIST, .mnist:
            let raw = try MNISTFormat.load(directory: location, split: split)
            let names = request.name == .fashionMNIST ? FashionMNIST.classNames : (0...9).map(String.init)
            dataset = try ImageDataset(name: name, storage: raw.storage, pixelType: .uint8, labels: raw.labels,
                                       height: raw.height, width: raw.width, channels: 1, classes: 10,
                                       classNames: names, augmentation: .none)
        case .cifar10:
            dataset = CIFAR.isImageFolder(location)
                ? try CIFAR.loadImageFolder(location, split: split, cache: request.cache, name: name, warn: warn)
                : try CIFAR.load(location, variant: .cifar10, split: split, name: name, warn: warn)
        case .cifar100:
            dataset = try CIFAR.load(location, variant: .cifar100(request.labelMode), split: split, name: name, warn: warn)
        case .svhn:
            dataset = try SVHN.load(location, split: split, extra: request.svhnExtra, name: name, warn: warn)
        case .tinyimagenet:
            dataset = try TinyImageNet.load(location, split: split, cache: request.cache, name: name, warn: warn)
        case .imagefolder:
            dataset = try ImageFolder.load(location, split: split, channels: request.channels, cache: request.cache,
                                           name: name, warn: warn)
            if let classes = request.classes {
                guard classes >= dataset.classes else {
                    throw DatasetError("--classes \(classes) is fewer than the \(dataset.classes) class folders of \(location.path)")
                }
                let names = dataset.classNames + (dataset.classes..<classes).map(String.init)
                dataset = try ImageDataset(name: name, storage: dataset.storage, pixelType: dataset.pixelType,
                                           labels: dataset.labels, height: dataset.height, width: dataset.width,
                                           channels: dataset.channels, classes: classes, classNames: names)
            }
        case .npy:
            guard let loaded = try NumPyData.load(location, split: split, layout: request.layout, classes: request.classes,
                                                  name: name) else {
                throw DatasetError("\(location.path): no \(split == .train ? "train.npz or train_x.npy + train_y.npy" : "test.npz, val.npz, test_x.npy + test_y.npy or val_x.npy + val_y.npy")")
            }
            dataset = loaded
        }
        return dataset.withAugmentation(request.augmentation ?? request.name.defaultAugmentation)
    }
}

extension DatasetRegistry {
    /// Throws unless a training and a test split can serve one model: the same image shape
    /// and class count.
    public static func checkSplitsAgree(train: ImageDataset, test: ImageDataset) throws {
        guard train.shape == test.shape else {
            throw DatasetError("\(train.name): training images are \(train.height)x\(train.width)x\(train.channels) but test images \(test.height)x\(test.width)x\(test.channels); both splits must have one image size")
        }
        guard train.classes == test.classes else {
            throw DatasetError("\(train.name): the training split has \(train.classes) classes but the test split \(test.classes); pass --classes")
        }
    }
}

/// Per-split figures of `part data inspect`: count, image shape, class histogram and the
/// per-channel mean and (population) standard deviation of the pixel values in [0, 1].
public struct SplitStatistics: Codable, Sendable, Equatable {
    public let split: String
    public let count: Int
    /// [height, width, channels]
    public let shape: [Int]
    public let pixelType: String
    /// Examples per class, indexed by class.
    public let histogram: [Int]
    public let mean: [Double]
    public let std: [Double]

    /// The figures of `dataset`. For uint8 pixels the sums are exact integers, so the figures
    /// are those of NumPy's `(x / 255).mean(axis=(0, 1, 2))` and `.std(...)` up to rounding of
    /// the last bits.
    public init(_ dataset: ImageDataset, split: DatasetSplit) {
        self.split = split.rawValue
        count = dataset.count
        shape = dataset.shape
        pixelType = dataset.pixelType.rawValue
        var histogram = [Int](repeating: 0, count: dataset.classes)
        for label in dataset.labels { histogram[Int(label)] += 1 }
        self.histogram = histogram
        let pixels = dataset.height * dataset.width
        switch dataset.pixelType {
        case .uint8:
            let sums = ImageData.channelSums(bytes: dataset.storage.pointer.assumingMemoryBound(to: UInt8.self),
                                             count: dataset.count, pixelsPerImage: pixels, channels: dataset.channels)
            let n = Double(dataset.count * pixels)
            mean = sums.map { n > 0 ? Double($0.sum) / n / 255 : 0 }
            std = sums.map { s in
                guard n > 0 else { return 0 }
                let m = Double(s.sum) / n
                return (Swift.max(0, Double(s.squares) / n - m * m)).squareRoot() / 255
            }
        case .float32:
            let moments = ImageData.channelMoments(floats: dataset.storage.pointer.assumingMemoryBound(to: Float.self),
                                                   count: dataset.count, pixelsPerImage: pixels, channels: dataset.channels)
            mean = moments.map(\.mean)
            std = moments.map { $0.variance.squareRoot() }
        }
    }
}
