import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Users' images in torchvision's ImageFolder layout: `train/` and `test/` (or `val/`), each
/// with one sub-folder per class holding PNG or JPEG files (sub-folders of a class count too).
/// A folder with class folders but no `train/`, `test/` or `val/` serves as every split.
///
/// Classes are the training split's class folders in sorted name order (code-point order, as
/// Python's `sorted`), so class k is torchvision's class k; a test folder is matched to its
/// training class by name (a test split missing a class keeps the indices right; a test class
/// unknown to training is an error). Files are ordered as torchvision orders them: folders by
/// path, file names sorted. Hidden files and folders are skipped; files with other extensions
/// are ignored, except other image formats, which are an error (they would silently be
/// missing). Images are decoded once into a cache file.
///
/// Symbolic links are followed, each real folder at most once: a link to a folder already
/// listed, to a class folder, or to the split folder or one above it (which would loop, or
/// relabel other classes' images) is skipped with a warning. Entries that are neither folders
/// nor regular files (a FIFO named `x.png`, a socket, a device) are skipped with a warning, as
/// reading one could block forever. Names need not be UTF-8: any bytes name a class or a file
/// (`RawName`).
public enum ImageFolder {
    static let extensions: Set<String> = ["png", "jpg", "jpeg"]
    static let unsupported: Set<String> = ["bmp", "ppm", "pgm", "pbm", "tif", "tiff", "webp", "gif"]

    /// Names in Python's sort order (by Unicode code points).
    static func sortedNames(_ names: [String]) -> [String] {
        names.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
    }

    static func isDirectory(_ url: URL) -> Bool { kind(url).0 == .folder }

    /// The visible entries of the folder `url`, read as bytes (readdir) and kept whatever they
    /// are (`RawName`).
    static func contents(_ url: URL) throws -> [String] {
        guard let dir = opendir(RawName.cPath(url.path)) else {
            throw DatasetError("\(RawName.display(url.path)): cannot list the folder (\(String(cString: strerror(errno)).lowercased()))")
        }
        defer { closedir(dir) }
        var names = [String]()
        while let entry = readdir(dir) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix(while: { $0 != 0 })) }
            let name = RawName.decode(bytes)
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        return names
    }

    /// The kind of the entry at `url` after symbolic links: a folder, a regular file, or
    /// something else (FIFO, socket, device, dangling link).
    enum Kind { case folder, file, other }

    static func kind(_ url: URL) -> (Kind, id: [UInt64]) {
        var info = stat()
        guard stat(RawName.cPath(url.path), &info) == 0 else { return (.other, []) }
        let id = [UInt64(info.st_dev), UInt64(info.st_ino)]
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return (.folder, id)
        case S_IFREG: return (.file, id)
        default: return (.other, id)
        }
    }

    /// Whether `url` is a symbolic link.
    static func isLink(_ url: URL) -> Bool {
        var info = stat()
        return lstat(RawName.cPath(url.path), &info) == 0 && info.st_mode & S_IFMT == S_IFLNK
    }

    /// Sub-folders of `url`, sorted.
    static func classFolders(_ url: URL) throws -> [String] {
        sortedNames(try contents(url).filter { isDirectory(url.appendingPathComponent($0)) })
    }

    /// Image files under `folder` (relative to `root`), in torchvision's order. `reserved` are
    /// folders never entered through a link (the split and class folders; `root` and the folders
    /// above it are never entered either).
    static func images(in folder: URL, root: URL, reserved: [URL] = [], warn: (String) -> Void = { _ in }) throws -> [String] {
        var out: [String] = []
        var folders = [folder]
        var visited = Set([kind(folder).id])
        let blocked = Set(reserved.map { kind($0).id }).subtracting(visited)
        let rootPath = RawName.realPath(root.path) ?? root.path
        while let current = folders.first {
            folders.removeFirst()
            var subfolders: [URL] = []
            for name in sortedNames(try contents(current)) {
                let url = current.appendingPathComponent(name)
                let (entryKind, id) = kind(url)
                if entryKind == .folder {
                    if isLink(url) {
                        let target = RawName.realPath(url.path) ?? ""
                        let above = rootPath == target || rootPath.hasPrefix(target.hasSuffix("/") ? target : target + "/")
                        if above || visited.contains(id) || blocked.contains(id) {
                            warn("\(RawName.display(url.path)): a link to \(RawName.display(target)), which is listed already or holds the data itself; skipped")
                            continue
                        }
                    }
                    guard visited.insert(id).inserted else { continue }
                    subfolders.append(url)
                    continue
                }
                let ext = url.pathExtension.lowercased()
                if entryKind == .other && (extensions.contains(ext) || unsupported.contains(ext)) {
                    warn("\(RawName.display(url.path)): not a regular file (a FIFO, socket, device or broken link); skipped")
                    continue
                }
                if extensions.contains(ext) {
                    out.append(String(url.path.dropFirst(root.path.count + 1)))
                } else if unsupported.contains(ext) {
                    throw DatasetError("\(url.path): .\(ext) images are not supported (only PNG and JPEG); convert the folder's images")
                }
            }
            // Folders are visited in the order of their full paths, as sorted(os.walk(...)).
            folders = sortedNames((folders + subfolders).map(\.path)).map { URL(fileURLWithPath: $0) }
        }
        return out
    }

    /// The folder of a split: `train/`, `test/` or `val/`, or the root itself when it has none.
    static func splitFolder(_ root: URL, split: DatasetSplit) throws -> URL? {
        let names = split == .train ? ["train"] : ["test", "val"]
        for n in names where isDirectory(root.appendingPathComponent(n)) { return root.appendingPathComponent(n) }
        return sharesSplits(root) ? root : nil
    }

    /// Whether the folder `root` serves as every split: it has no `train/`, `test/` or `val/`
    /// folder, so its test images are its training images.
    public static func sharesSplits(_ root: URL) -> Bool {
        !["train", "test", "val"].contains { isDirectory(root.appendingPathComponent($0)) }
    }

    /// Whether `folder` has a `train/` folder and a `test/` or `val/` one: an image folder itself.
    static func holdsSplits(_ folder: URL) -> Bool {
        isDirectory(folder.appendingPathComponent("train"))
            && (isDirectory(folder.appendingPathComponent("test")) || isDirectory(folder.appendingPathComponent("val")))
    }

    /// The labelled file list of a split.
    static func list(_ root: URL, split: DatasetSplit, warn: (String) -> Void = { _ in }) throws -> ImageList {
        guard isDirectory(root) else {
            throw DatasetError("\(root.path): no such folder; --data should name a folder with train/ and test/ (or val/), one sub-folder of images per class")
        }
        guard let folder = try splitFolder(root, split: split) else {
            throw DatasetError("\(root.path): no \(split == .train ? "train/" : "test/ or val/") folder")
        }
        let trainFolder = try splitFolder(root, split: .train) ?? folder
        let classes = try classFolders(trainFolder)
        guard !classes.isEmpty else {
            throw DatasetError("\(trainFolder.path): no class folders; put each class's images in a sub-folder named after it")
        }
        // --data named the folder above an image folder: its "class" holds the splits.
        if trainFolder == root, let copy = classes.first(where: { holdsSplits(root.appendingPathComponent($0)) }) {
            throw DatasetError("\(root.path): its sub-folder \(copy) holds the split folders (train/ and test/ or val/), so it is the image folder; name \(root.appendingPathComponent(copy).path) in --data")
        }
        let present = try classFolders(folder)
        let reserved = [folder, trainFolder] + classes.map { trainFolder.appendingPathComponent($0) }
            + present.map { folder.appendingPathComponent($0) }
        if let unknown = present.first(where: { !classes.contains($0) }) {
            throw DatasetError("\(folder.appendingPathComponent(unknown).path): class \(unknown) is not among the \(classes.count) training classes")
        }
        var list = ImageList(root: root, files: [], labels: [], classNames: classes)
        for (k, name) in classes.enumerated() where present.contains(name) {
            let files = try images(in: folder.appendingPathComponent(name), root: root, reserved: reserved, warn: warn)
            if files.isEmpty && folder == trainFolder {
                throw DatasetError("\(folder.appendingPathComponent(name).path): no PNG or JPEG images in class folder \(name)")
            }
            list.files += files
            list.labels += Array(repeating: Int32(k), count: files.count)
        }
        guard !list.files.isEmpty else { throw DatasetError("\(folder.path): no PNG or JPEG images") }
        return list
    }

    /// Loads a split, 3 channels (RGB; grey images replicated) or 1 (grey images only).
    public static func load(_ root: URL, split: DatasetSplit, channels: Int, cache: URL?, name: String,
                            warn: (String) -> Void) throws -> ImageDataset {
        let list = try self.list(root, split: split, warn: warn)
        return try DecodedCache.load(list, channels: channels, key: "imagefolder-\(split.rawValue)-c\(channels)",
                                     explicitCache: cache, name: name, augmentation: .none, warn: warn)
    }
}

/// TinyImageNet-200 (the CS231n version, http://cs231n.stanford.edu/tiny-imagenet-200.zip):
/// 64x64 JPEG images of 200 ImageNet classes. `wnids.txt` lists the classes' WordNet ids,
/// `train/<wnid>/images/*.JPEG` holds 500 images per class, `val/images/*.JPEG` 10,000 images
/// labelled by `val/val_annotations.txt` (file, wnid, box; tab-separated). `val` is the
/// project's test split (the `test/` images have no labels). Classes are the wnids in sorted
/// order, as an ImageFolder over `train/` numbers them; class names come from `words.txt`.
public enum TinyImageNet {
    public static let side = 64

    /// The dataset folder: `location` itself or its `tiny-imagenet-200` sub-folder.
    static func root(_ location: URL) throws -> URL {
        for candidate in [location, location.appendingPathComponent("tiny-imagenet-200")]
        where FileManager.default.fileExists(atPath: candidate.appendingPathComponent("wnids.txt").path) {
            return candidate
        }
        throw DatasetError("\(location.path): no wnids.txt; --data should name the extracted tiny-imagenet-200 folder (from http://cs231n.stanford.edu/tiny-imagenet-200.zip)")
    }

    static func lines(_ url: URL) throws -> [Substring] {
        let file = try ByteBuffer.mapping(url)
        return String(decoding: file.bytes, as: UTF8.self).split(whereSeparator: \.isNewline)
    }

    /// The class list: sorted wnids, checked for duplicates, with names from words.txt.
    static func classes(_ root: URL) throws -> (wnids: [String], names: [String]) {
        let url = root.appendingPathComponent("wnids.txt")
        let ids = try lines(url).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !ids.isEmpty else { throw DatasetError("\(url.path): no class ids") }
        var seen = Set<String>()
        for id in ids where !seen.insert(id).inserted { throw DatasetError("\(url.path): class \(id) is listed twice") }
        let wnids = ImageFolder.sortedNames(ids)
        var words: [String: String] = [:]
        let wordsURL = root.appendingPathComponent("words.txt")
        if FileManager.default.fileExists(atPath: wordsURL.path) {
            for line in try lines(wordsURL) {
                let parts = line.split(separator: "\t", maxSplits: 1)
                if parts.count == 2, seen.contains(String(parts[0])) {
                    words[String(parts[0])] = parts[1].split(separator: ",").first.map { $0.trimmingCharacters(in: .whitespaces) }
                }
            }
        }
        return (wnids, wnids.map { words[$0] ?? $0 })
    }

    static func list(_ root: URL, split: DatasetSplit, warn: (String) -> Void) throws -> ImageList {
        let (wnids, names) = try classes(root)
        if wnids.count != 200 { warn("\(root.appendingPathComponent("wnids.txt").path): \(wnids.count) classes, TinyImageNet-200 has 200") }
        var list = ImageList(root: root, files: [], labels: [], classNames: names)
        let index = Dictionary(uniqueKeysWithValues: wnids.enumerated().map { ($1, Int32($0)) })
        switch split {
        case .train:
            let train = root.appendingPathComponent("train")
            guard ImageFolder.isDirectory(train) else { throw DatasetError("\(train.path): missing") }
            if let extra = try ImageFolder.classFolders(train).first(where: { index[$0] == nil }) {
                throw DatasetError("\(train.appendingPathComponent(extra).path): class \(extra) is not in wnids.txt")
            }
            for (k, wnid) in wnids.enumerated() {
                let folder = train.appendingPathComponent(wnid).appendingPathComponent("images")
                guard ImageFolder.isDirectory(folder) else { throw DatasetError("\(folder.path): missing (class \(wnid) of wnids.txt)") }
                let files = try ImageFolder.images(in: folder, root: root)
                guard !files.isEmpty else { throw DatasetError("\(folder.path): no images") }
                list.files += files
                list.labels += Array(repeating: Int32(k), count: files.count)
            }
            if list.files.count != 100_000 { warn("\(train.path): \(list.files.count) images, TinyImageNet-200 has 100,000") }
        case .test:
            let val = root.appendingPathComponent("val")
            let annotations = val.appendingPathComponent("val_annotations.txt")
            guard FileManager.default.fileExists(atPath: annotations.path) else {
                throw DatasetError("\(annotations.path): missing; it labels the validation images, TinyImageNet's test split")
            }
            var annotated = Set<String>()
            for (n, line) in try lines(annotations).enumerated() {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
                guard fields.count >= 2 else {
                    throw DatasetError("\(annotations.path): line \(n + 1) is not 'file<TAB>wnid<TAB>box'")
                }
                let file = String(fields[0]), wnid = String(fields[1])
                guard let label = index[wnid] else {
                    throw DatasetError("\(annotations.path): line \(n + 1) labels \(file) with \(wnid), which is not in wnids.txt")
                }
                guard annotated.insert(file).inserted else {
                    throw DatasetError("\(annotations.path): line \(n + 1) labels \(file) a second time")
                }
                let path = "val/images/\(file)"
                guard FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path) else {
                    throw DatasetError("\(root.appendingPathComponent(path).path): missing (line \(n + 1) of val_annotations.txt)")
                }
                list.files.append(path)
                list.labels.append(label)
            }
            let images = val.appendingPathComponent("images")
            if let stray = try ImageFolder.images(in: images, root: images).first(where: { !annotated.contains($0) }) {
                throw DatasetError("\(images.appendingPathComponent(stray).path): not labelled in val_annotations.txt")
            }
            guard !list.files.isEmpty else { throw DatasetError("\(annotations.path): labels no images") }
            if list.files.count != 10_000 { warn("\(val.path): \(list.files.count) images, TinyImageNet-200 has 10,000") }
        }
        return list
    }

    /// Loads a split (train, or val as test), decoding the JPEGs once into a cache.
    public static func load(_ location: URL, split: DatasetSplit, cache: URL?, name: String,
                            warn: (String) -> Void) throws -> ImageDataset {
        let root = try self.root(location)
        let list = try self.list(root, split: split, warn: warn)
        let dataset = try DecodedCache.load(list, channels: 3, key: "tinyimagenet-\(split.rawValue)", explicitCache: cache,
                                            name: name, augmentation: .cropFlip, warn: warn)
        if dataset.height != side || dataset.width != side {
            warn("\(root.path): images are \(dataset.width)x\(dataset.height), TinyImageNet's are 64x64")
        }
        return dataset
    }
}
