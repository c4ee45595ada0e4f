import ArgumentParser
import Foundation
import PARTData
#if canImport(Glibc)
import Glibc
#endif

/// Checks of flags and inputs that every command shares, made before any work starts.
///
/// Each throws one sentence naming the flag or the files and what to change: a
/// `ValidationError` for a flag (exit code 64) and a `DatasetError` for data that does not fit
/// (exit code 1), per the exit-code contract of CONVENTIONS.md.
enum Validation {
    /// `value` must be a finite number (not nan or inf) in the given range.
    static func finite(_ value: Float, _ flag: String, atLeast lower: Float? = nil, above: Float? = nil,
                       atMost upper: Float? = nil) throws {
        var bounds = [String]()
        if let lower { bounds.append(">= \(lower)") }
        if let above { bounds.append("> \(above)") }
        if let upper { bounds.append("<= \(upper)") }
        let wanted = "a finite number" + (bounds.isEmpty ? "" : " " + bounds.joined(separator: " and "))
        guard value.isFinite, lower.map({ value >= $0 }) ?? true, above.map({ value > $0 }) ?? true,
              upper.map({ value <= $0 }) ?? true else {
            throw ValidationError("\(flag) must be \(wanted), got \(value)")
        }
    }

    /// The run directory named by `--out`, checked before training so that a run never learns
    /// after an epoch that it cannot save: not empty, not an existing non-directory, and
    /// writable (proved by creating and removing a probe file in it or, when it does not exist
    /// yet, in the nearest existing folder above it, where it will be created).
    static func outputDirectory(_ path: String, flag: String = "--out") throws -> URL {
        guard !path.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ValidationError("\(flag) is empty; name a directory for the run, e.g. \(flag) runs/my-run")
        }
        let url = URL(fileURLWithPath: path)
        // The directory itself, or the nearest existing folder above it.
        var probeIn = url
        var info = stat()
        while stat(probeIn.path, &info) != 0 {
            let parent = probeIn.deletingLastPathComponent()
            if parent.path == probeIn.path { break }
            probeIn = parent
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            let what = probeIn == url ? "\(flag) \(path) exists and is not a directory"
                : "\(flag) \(path) cannot be created: \(probeIn.path) is not a directory"
            throw ValidationError("\(what); choose another \(flag)")
        }
        let probe = probeIn.appendingPathComponent(".part-write-check-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = open(probe.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno)).lowercased()
            let place = probeIn == url ? "\(flag) \(path) is not writable" : "\(flag) \(path) cannot be created in \(probeIn.path)"
            throw ValidationError("\(place) (\(reason)); choose another \(flag) or fix its permissions")
        }
        close(fd)
        unlink(probe.path)
        return url
    }

    /// Learning-rate milestones: epochs from 1 to `epochs - 1` (a milestone at the last epoch
    /// or later never applies), strictly increasing, so that none is silently ignored or
    /// applied twice.
    static func milestones(_ values: [Int], epochs: Int, flag: String = "--lr-milestones") throws {
        for (i, m) in values.enumerated() {
            guard m >= 1, m < epochs else {
                throw ValidationError("\(flag) \(m) is outside 1...\(max(1, epochs - 1)); a milestone is an epoch after "
                                      + "which the learning rate changes, before the last of --epochs \(epochs)")
            }
            if i > 0, m <= values[i - 1] {
                throw ValidationError("\(flag) must be increasing without repeats, got \(values.map(String.init).joined(separator: " "))")
            }
        }
    }

    /// A split with no image is an error, not a run that "succeeds" on nothing.
    static func nonEmpty(_ data: ImageDataset, _ what: String) throws {
        guard data.count > 0 else {
            throw DatasetError("the \(what) of \(data.name) has no images; check --data (and the limit flags)")
        }
    }

    /// The training and held-out splits must hold images of one shape and one label set, or
    /// the first held-out check fails after an epoch of training.
    static func sameImages(train: ImageDataset, heldOut: ImageDataset) throws {
        let a = "\(train.height)x\(train.width)x\(train.channels)", b = "\(heldOut.height)x\(heldOut.width)x\(heldOut.channels)"
        guard a == b else {
            throw DatasetError("the training images of \(train.name) are \(a) but the held-out images are \(b); "
                               + "both splits must have one image shape (check --data)")
        }
        guard train.classes == heldOut.classes else {
            throw DatasetError("the training split of \(train.name) has \(train.classes) classes but the held-out split has "
                               + "\(heldOut.classes); both must share one label set (check --data)")
        }
    }
}
