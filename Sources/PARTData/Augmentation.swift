import Foundation
import PARTEngine

/// A dataset's training augmentation (docs/method.md#2-the-training-loop-and-its-defaults): random crop of the original size from
/// the image zero-padded by `padding` pixels on every side, then a horizontal flip with
/// probability 1/2 (CIFAR and TinyImageNet: padding 4 and flip; SVHN, MNIST and
/// Fashion-MNIST: none).
///
/// The draws for an example come from `KeyedStream(seed, .augmentation, index, epoch)`, so an
/// example is augmented the same way whatever batch it lands in, whether or not the batch is
/// prefetched, and however the epoch is split.
public struct Augmentation: Sendable, Equatable, Codable, CustomStringConvertible {
    /// Zero padding of the random crop; 0 means no crop.
    public var padding: Int
    /// Whether images are mirrored left-right with probability 1/2.
    public var flip: Bool

    public init(padding: Int, flip: Bool) {
        self.padding = Swift.max(0, padding)
        self.flip = flip
    }

    public static let none = Augmentation(padding: 0, flip: false)
    /// torchvision's `RandomCrop(size, padding=4)` then `RandomHorizontalFlip()`.
    public static let cropFlip = Augmentation(padding: 4, flip: true)

    public var isIdentity: Bool { padding == 0 && !flip }

    public var description: String {
        switch (padding > 0, flip) {
        case (false, false): return "none"
        case (true, false): return "crop (pad \(padding))"
        case (false, true): return "flip"
        case (true, true): return "crop (pad \(padding)) + flip"
        }
    }

    /// The crop window and flip of example `index` at `epoch`. The crop's top and left offsets
    /// are uniform in -padding...padding (torchvision draws the window's corner in the padded
    /// image, 0...2 * padding), drawn in that order, then the flip.
    public func transform(seed: UInt64, index: Int, epoch: Int) -> CropFlip {
        guard !isIdentity else { return .identity }
        var stream = KeyedStream(seed: seed, purpose: .augmentation, index: index, step: epoch)
        var t = CropFlip.identity
        if padding > 0 {
            let span = UInt64(2 * padding + 1)
            t.top = Int(stream.next().multipliedFullWidth(by: span).high) - padding
            t.left = Int(stream.next().multipliedFullWidth(by: span).high) - padding
        }
        if flip { t.flip = stream.next() >> 63 == 1 }
        return t
    }
}
