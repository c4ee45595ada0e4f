import Foundation
import PARTEngine

/// CIFAR-10 and CIFAR-100, binary version (Krizhevsky 2009,
/// https://www.cs.toronto.edu/~kriz/cifar.html).
///
/// A file is a sequence of records: the label byte(s), then 3,072 pixel bytes: the 1,024 red
/// values of the 32x32 image row by row, then green, then blue. CIFAR-10 has one label byte
/// (0...9) per record and files `data_batch_1.bin` ... `data_batch_5.bin` (10,000 records
/// each) and `test_batch.bin`; CIFAR-100 has a coarse (0...19) and a fine (0...99) label byte
/// and files `train.bin` (50,000) and `test.bin` (10,000). Both come as `.tar.gz` archives
/// whose files sit in `cifar-10-batches-bin/` or `cifar-100-binary/`.
public enum CIFAR {
    public enum Variant: Sendable, Equatable {
        case cifar10
        case cifar100(LabelMode)
    }

    /// Which of CIFAR-100's two labels is the class.
    public enum LabelMode: String, Sendable, CaseIterable, Codable {
        /// 100 classes.
        case fine
        /// 20 superclasses.
        case coarse
    }

    public static let side = 32
    public static let imageBytes = 3 * 32 * 32

    public static let cifar10Names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    public static let cifar100FineNames = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ]

    public static let cifar100CoarseNames = [
        "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
        "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
        "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
        "vehicles_1", "vehicles_2",
    ]

    /// Label bytes before each record's pixels.
    static func labelBytes(_ variant: Variant) -> Int { variant == .cifar10 ? 1 : 2 }

    /// Number of classes.
    public static func classes(_ variant: Variant) -> Int {
        switch variant {
        case .cifar10: return 10
        case .cifar100(.fine): return 100
        case .cifar100(.coarse): return 20
        }
    }

    /// The files of a split, in order, and the records each official file holds.
    static func files(_ variant: Variant, split: DatasetSplit) -> [(name: String, officialCount: Int)] {
        switch (variant, split) {
        case (.cifar10, .train): return (1...5).map { ("data_batch_\($0).bin", 10_000) }
        case (.cifar10, .test): return [("test_batch.bin", 10_000)]
        case (.cifar100, .train): return [("train.bin", 50_000)]
        case (.cifar100, .test): return [("test.bin", 10_000)]
        }
    }

    /// Folder inside the official archive, and the archive's name.
    static func names(_ variant: Variant) -> (folder: String, archive: String) {
        variant == .cifar10 ? ("cifar-10-batches-bin", "cifar-10-binary.tar.gz")
                            : ("cifar-100-binary", "cifar-100-binary.tar.gz")
    }

    /// Parses one binary file: `count` records, validated, as NHWC pixels written to
    /// `pixels` (room for `count * 3072` bytes) and the class labels. Returns the count.
    ///
    /// Errors: a size that is not a whole number of records, a label out of range (both of
    /// CIFAR-100's labels are checked, whichever is used).
    public static func recordCount(_ bytes: UnsafeRawBufferPointer, variant: Variant, source: String) throws -> Int {
        let record = labelBytes(variant) + imageBytes
        guard bytes.count > 0 else { throw DatasetError("\(source): empty file") }
        guard bytes.count % record == 0 else {
            throw DatasetError("\(source): \(bytes.count) bytes is not a whole number of \(record)-byte records (\(bytes.count / record) records and \(bytes.count % record) bytes over): the file is truncated or not a CIFAR binary file")
        }
        return bytes.count / record
    }

    /// Decodes the records of one file into `pixels` (NHWC) and returns their class labels.
    public static func parse(_ bytes: UnsafeRawBufferPointer, variant: Variant, into pixels: UnsafeMutablePointer<UInt8>,
                             source: String) throws -> [Int32] {
        let count = try recordCount(bytes, variant: variant, source: source)
        let lb = labelBytes(variant), record = lb + imageBytes
        var labels = [Int32](repeating: 0, count: count)
        for r in 0..<count {
            let at = r * record
            switch variant {
            case .cifar10:
                let label = bytes[at]
                guard label < 10 else {
                    throw DatasetError("\(source): record \(r) has label \(label); CIFAR-10 labels are 0...9")
                }
                labels[r] = Int32(label)
            case .cifar100(let mode):
                let coarse = bytes[at], fine = bytes[at + 1]
                guard coarse < 20 else {
                    throw DatasetError("\(source): record \(r) has coarse label \(coarse); CIFAR-100 coarse labels are 0...19")
                }
                guard fine < 100 else {
                    throw DatasetError("\(source): record \(r) has fine label \(fine); CIFAR-100 fine labels are 0...99")
                }
                labels[r] = Int32(mode == .fine ? fine : coarse)
            }
        }
        // Planar records (R plane, G plane, B plane) to interleaved NHWC.
        let first = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + lb
        ImageData.interleave(bytes: first, into: pixels, count: count, height: side, width: side, channels: 3,
                             strides: (record, side, 1, side * side))
        return labels
    }

    /// Class names from a names file (one per line, blank lines ignored), checked against the count.
    static func classNames(_ source: FileSource, file: String, expected: [String]) throws -> [String] {
        guard let names = try source.withFile(file, { String(decoding: $0, as: UTF8.self) }) else { return expected }
        let lines = names.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard lines.count == expected.count else {
            throw DatasetError("\(source.describe(file)): \(lines.count) class names, expected \(expected.count)")
        }
        return lines
    }

    /// The folder or archive `location` points at: the folder holding the `.bin` files, its
    /// parent, the official `.tar.gz` itself or a folder holding it.
    static func source(_ location: URL, variant: Variant) throws -> (FileSource, archive: URL?) {
        let (folder, archive) = names(variant)
        let probe = files(variant, split: .test)[0].name
        // CIFAR-10 is also read from image folders (a re-encoded copy); CIFAR-100 only from its binary files.
        let orFolders = variant == .cifar10 ? ", or a folder of train/ and test/ with one folder of images per class" : ""
        let norFolders = variant == .cifar10 ? ", nor train/ and test/ image folders" : ""
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: location.path, isDirectory: &isDirectory) else {
            throw DatasetError("\(location.path): no such file or folder; --data should name the extracted \(folder) folder or \(archive) (from https://www.cs.toronto.edu/~kriz/cifar.html)\(orFolders)")
        }
        if !isDirectory.boolValue {
            // One of the .bin files: read its folder.
            if location.pathExtension == "bin" { return (FolderSource(directory: location.deletingLastPathComponent()), nil) }
            return (try TarSource(url: location), location)
        }
        switch binaryFiles(in: location, variant: variant) {
        case .folder(let c)?: return (FolderSource(directory: c), nil)
        case .archive(let tgz)?: return (try TarSource(url: tgz), tgz)
        case nil: break
        }
        if let near = nearby(location, variant: variant) {
            throw DatasetError("\(location.path): no CIFAR files here, but \(near.path) has them: name that folder in --data")
        }
        throw DatasetError("\(location.path): no CIFAR binary files: expected \(probe) there or in \(folder)/, or \(archive) (download the binary version from https://www.cs.toronto.edu/~kriz/cifar.html)\(norFolders)")
    }

    /// The binary files found in a folder: a folder of `.bin` files, or the official archive.
    enum BinaryFiles { case folder(URL), archive(URL) }

    /// Where the binary files are in the folder `location`: the folder itself or its official
    /// sub-folder holding the `.bin` files, else the official `.tar.gz` inside it; nil if none.
    static func binaryFiles(in location: URL, variant: Variant) -> BinaryFiles? {
        let (folder, archive) = names(variant)
        let probe = files(variant, split: .test)[0].name
        for c in [location, location.appendingPathComponent(folder)] where FolderSource(directory: c).contains(probe) {
            return .folder(c)
        }
        let tgz = location.appendingPathComponent(archive)
        return FileManager.default.fileExists(atPath: tgz.path) ? .archive(tgz) : nil
    }

    /// A folder near `location` that holds the dataset, for the error when `location` holds none:
    /// the copy above a split or class folder the user named (`train/`, `train/cat/`), else the
    /// first subfolder (by name) that holds one. Only looks; nil when nothing near qualifies.
    static func nearby(_ location: URL, variant: Variant) -> URL? {
        func holds(_ c: URL) -> Bool {
            (variant == .cifar10 && isImageFolder(c)) || binaryFiles(in: c, variant: variant) != nil
        }
        let location = location.standardizedFileURL
        let parent = location.deletingLastPathComponent()
        for above in [parent, parent.deletingLastPathComponent()] where above.path != location.path && holds(above) {
            return above
        }
        let children = (try? ImageFolder.contents(location)) ?? []
        return ImageFolder.sortedNames(children).map { location.appendingPathComponent($0) }
            .first { ImageFolder.isDirectory($0) && holds($0) }
    }

    /// Whether `location` holds CIFAR-10 as an image folder (`train/` beside no binary files),
    /// such as a re-encoded copy: `train/` and `test/` with one folder per class.
    public static func isImageFolder(_ location: URL) -> Bool {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: location.appendingPathComponent("train").path, isDirectory: &isDirectory),
              isDirectory.boolValue else { return false }
        let binary = [names(.cifar10).folder, names(.cifar10).archive, "data_batch_1.bin"]
        return !binary.contains { fm.fileExists(atPath: location.appendingPathComponent($0).path) }
    }

    /// CIFAR-10 from an image folder: the class folders must be CIFAR-10's ten names, which sort
    /// into the official label order, and the images 32x32. The training augmentation is
    /// CIFAR-10's (the registry sets it).
    public static func loadImageFolder(_ location: URL, split: DatasetSplit, cache: URL?, name: String,
                                       warn: (String) -> Void) throws -> ImageDataset {
        let dataset = try ImageFolder.load(location, split: split, channels: 3, cache: cache, name: name, warn: warn)
        guard dataset.classNames == cifar10Names else {
            throw DatasetError("\(location.path): class folders \(dataset.classNames.prefix(12).joined(separator: ", ")); "
                               + "CIFAR-10 as an image folder needs the ten folders \(cifar10Names.joined(separator: ", ")) "
                               + "(use --dataset imagefolder for other classes)")
        }
        guard dataset.height == side, dataset.width == side else {
            throw DatasetError("\(location.path): \(dataset.height)x\(dataset.width) images; CIFAR-10's are \(side)x\(side) "
                               + "(use --dataset imagefolder for other sizes)")
        }
        return dataset
    }

    /// Loads a split. Every file of the split must be present; each is validated; a record
    /// count that differs from the official files' is reported through `warn`, and so is an
    /// official archive whose checksum differs from the published one.
    public static func load(_ location: URL, variant: Variant, split: DatasetSplit, name: String,
                            warn: (String) -> Void) throws -> ImageDataset {
        let (source, archive) = try self.source(location, variant: variant)
        if let archive, split == .train {
            let raw = try ByteBuffer.mapping(archive)
            if let problem = OfficialChecksum.verify(raw.bytes, officialName: names(variant).archive, path: archive.path) {
                warn(problem)
            }
        }
        let list = files(variant, split: split)
        var counts: [Int] = []
        for file in list {
            guard let n = try source.withFile(file.name, { try recordCount($0, variant: variant, source: source.describe(file.name)) }) else {
                throw DatasetError("\(source.describe(file.name)): missing; the \(split.rawValue) split needs \(list.map(\.name).joined(separator: ", "))")
            }
            counts.append(n)
        }
        // The five CIFAR-10 training files hold equally many records: a shorter one was cut.
        if let most = counts.indices.max(by: { counts[$0] < counts[$1] }),
           let odd = counts.firstIndex(where: { $0 != counts[most] }) {
            throw DatasetError("\(source.describe(list[odd].name)): \(counts[odd]) records where \(list[most].name) has \(counts[most]): the file is truncated")
        }
        for (file, n) in zip(list, counts) where n != file.officialCount {
            warn("\(source.describe(file.name)): \(n) records, the official file has \(file.officialCount): truncated, or not the original CIFAR file")
        }
        let total = counts.reduce(0, +)
        let storage = try ByteBuffer.allocate(total * imageBytes)
        var labels: [Int32] = []
        labels.reserveCapacity(total)
        var done = 0
        for file in list {
            let pixels = storage.mutablePointer.assumingMemoryBound(to: UInt8.self) + done * imageBytes
            let part = try source.withFile(file.name) { try parse($0, variant: variant, into: pixels, source: source.describe(file.name)) } ?? []
            labels += part
            done += part.count
        }
        let classNames: [String]
        switch variant {
        case .cifar10:
            classNames = try self.classNames(source, file: "batches.meta.txt", expected: cifar10Names)
        case .cifar100(.fine):
            classNames = try self.classNames(source, file: "fine_label_names.txt", expected: cifar100FineNames)
        case .cifar100(.coarse):
            classNames = try self.classNames(source, file: "coarse_label_names.txt", expected: cifar100CoarseNames)
        }
        return try ImageDataset(name: name, storage: storage, pixelType: .uint8, labels: labels, height: side,
                                width: side, channels: 3, classes: classes(variant), classNames: classNames,
                                augmentation: .cropFlip)
    }
}
