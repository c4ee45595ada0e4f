import Foundation

/// Sizes that come from outside (flags, labels, file headers) checked before anything is
/// allocated for them. Each bound is far above any real use and far below what makes a machine
/// fail: a label of 100000000 would otherwise make a classifier head of 100 million rows, and a
/// PNG header claiming 100000x100000 pixels 30 GB of pixels.
public enum Limits {
    /// Classes of a dataset or model (ImageNet-21k has 21,843).
    public static let classes = 100_000
    /// Images in one batch.
    public static let batchSize = 65_536
    /// Rows or columns of one image.
    public static let imageSide = 16_384
    /// Pixels of one image (8192x8192).
    public static let imagePixels = 8_192 * 8_192
    /// Bytes this machine can give to one run: its physical memory.
    public static var memory: Int { Int(clamping: ProcessInfo.processInfo.physicalMemory) }

    /// "--batch-size must be at most 65536", nil when `value` is within the bound.
    public static func batchSizeProblem(_ value: Int, flag: String = "--batch-size") -> String? {
        value > batchSize ? "\(flag) \(value) is more than the \(batchSize) images one batch may hold; use a smaller one" : nil
    }

    /// Whether an image of `height` x `width` is within the per-image bounds.
    public static func imageFits(height: Int, width: Int) -> Bool {
        height >= 0 && width >= 0 && height <= imageSide && width <= imageSide && height * width <= imagePixels
    }

    /// "1.5 GB".
    public static func bytesText(_ bytes: Double) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB"]
        var v = bytes, u = 0
        while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
        return u == 0 ? "\(Int(v)) bytes" : String(format: "%.1f %@", v, units[u])
    }
}
