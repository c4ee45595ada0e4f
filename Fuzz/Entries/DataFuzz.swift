import Foundation
import PARTData
import PARTEngine
import PARTEvaluation

/// The dataset readers of the registry (Sources/PARTData): CIFAR binaries, MAT-files (SVHN),
/// NumPy arrays, zip and tar archives, PNG and JPEG images, the decoded-image cache, and the
/// header reader that checks a checkpoint fits a dataset. A refusal is a `DatasetError` (or the
/// `IDXError` of a gzip stream); an accepted file must agree with its own sizes.
enum DataFuzz {
    /// The first input byte picks a variant: CIFAR-10, CIFAR-100 fine, CIFAR-100 coarse.
    static func runCIFAR(_ input: [UInt8]) throws {
        guard let mode = input.first else { return }
        let variant: CIFAR.Variant = [.cifar10, .cifar100(.fine), .cifar100(.coarse)][Int(mode) % 3]
        let body = Array(input.dropFirst())
        try body.withUnsafeBytes { bytes in
            let count: Int
            do {
                count = try CIFAR.recordCount(bytes, variant: variant, source: "input")
            } catch {
                try requireRefusal(error, [DatasetError.self], "CIFAR.recordCount")
                return
            }
            let pixels = UnsafeMutablePointer<UInt8>.allocate(capacity: count * CIFAR.imageBytes)
            defer { pixels.deallocate() }
            do {
                let labels = try CIFAR.parse(bytes, variant: variant, into: pixels, source: "input")
                let classes = CIFAR.classes(variant)
                guard labels.count == count, labels.allSatisfy({ $0 >= 0 && Int($0) < classes }) else {
                    throw FuzzFinding("CIFAR.parse returned \(labels.count) labels for \(count) records or one out of range")
                }
            } catch let finding as FuzzFinding {
                throw finding
            } catch {
                try requireRefusal(error, [DatasetError.self], "CIFAR.parse")
            }
        }
    }

    /// Every value of every variable is read, so a count or offset beyond the file shows.
    static func runMAT(_ input: [UInt8]) throws {
        let variables: [String: MATFile.Variable]
        do {
            variables = try input.withUnsafeBytes { try MATFile.parse(try ByteBuffer.copying($0), source: "input") }
        } catch {
            try requireRefusal(error, [DatasetError.self, IDXError.self], "MATFile.parse")
            return
        }
        for (_, v) in variables {
            guard v.count >= 0, v.dimensions.allSatisfy({ $0 >= 0 }) else {
                throw FuzzFinding("MAT variable \(v.name.debugDescription) has count \(v.count), dimensions \(v.dimensions)")
            }
            _ = v.withStorage { (0..<min(v.count, 1 << 16)).reduce(0.0) { $0 + v.value($1) } }
            if let bytes = v.bytes, bytes.count != v.count {
                throw FuzzFinding("MAT variable \(v.name.debugDescription) has \(bytes.count) bytes for \(v.count) values")
            }
        }
    }

    /// `NPY.parse`, then the images reader for either layout (first byte: none, NHWC, NCHW).
    static func runNPY(_ input: [UInt8]) throws {
        guard let mode = input.first else { return }
        let layout: NumPyData.Layout? = [nil, .nhwc, .nchw][Int(mode) % 3]
        let body = Array(input.dropFirst())
        let array: NPY.Array
        do {
            array = try body.withUnsafeBytes { try NPY.parse(try ByteBuffer.copying($0), source: "input") }
        } catch {
            try requireRefusal(error, [DatasetError.self], "NPY.parse")
            return
        }
        guard array.count == array.shape.reduce(1, *), array.data.count == array.count * array.dtype.size else {
            throw FuzzFinding("NPY.parse returned shape \(array.shape) with \(array.count) elements of \(array.data.count) bytes")
        }
        do {
            let images = try NumPyData.images(array, layout: layout, source: "input")
            let n = array.shape.first ?? 0
            let perValue = images.type == .uint8 ? 1 : 4
            guard images.storage.count == n * images.height * images.width * images.channels * perValue else {
                throw FuzzFinding("NumPyData.images made \(images.storage.count) bytes for \(n) images of "
                                  + "\(images.height)x\(images.width)x\(images.channels)")
            }
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            try requireRefusal(error, [DatasetError.self], "NumPyData.images")
        }
    }

    /// `Zip.entries`, then every member extracted (CRC checked by the reader).
    static func runZip(_ input: [UInt8]) throws {
        try input.withUnsafeBytes { bytes in
            let entries: [Zip.Entry]
            do {
                entries = try Zip.entries(bytes, source: "input")
            } catch {
                try requireRefusal(error, [ArchiveError.self], "Zip.entries")
                return
            }
            for entry in entries {
                do {
                    let member = try Zip.extract(entry, from: bytes, source: "input")
                    guard member.count == entry.size else {
                        throw FuzzFinding("Zip.extract gave \(member.count) bytes for a member of \(entry.size)")
                    }
                } catch let finding as FuzzFinding {
                    throw finding
                } catch {
                    try requireRefusal(error, [ArchiveError.self], "Zip.extract")
                }
            }
        }
    }

    static func runTar(_ input: [UInt8]) throws {
        try input.withUnsafeBytes { bytes in
            do {
                for entry in try Tar.entries(bytes, source: "input") {
                    guard entry.offset >= 0, entry.size >= 0, entry.offset + entry.size <= bytes.count else {
                        throw FuzzFinding("Tar.entries gave \(entry.path.debugDescription) at \(entry.offset)+\(entry.size) "
                                          + "in \(bytes.count) bytes")
                    }
                }
            } catch let finding as FuzzFinding {
                throw finding
            } catch {
                try requireRefusal(error, [DatasetError.self], "Tar.entries")
            }
        }
    }

    /// Decoding allocates `width * height * channels` bytes; the readers refuse nothing by size
    /// (a real image may be large), so images over 16 megapixels are only header-read here.
    static let largestDecoded = 1 << 24

    /// PNG or JPEG by the file's first bytes; the first input byte picks grey or RGB output.
    static func runImage(_ input: [UInt8]) throws {
        guard let mode = input.first else { return }
        // A decoder per input: a TurboJPEG handle is not to be shared between threads.
        let jpeg = try? JPEGDecoder()
        let channels = mode & 1 == 0 ? 1 : 3
        let body = Array(input.dropFirst())
        try body.withUnsafeBytes { bytes in
            guard let format = ImageFileFormat.detect(bytes) else { return }
            do {
                let header: ImageHeader
                switch format {
                case .png: header = try PNGCodec.header(bytes, source: "input")
                case .jpeg:
                    guard let jpeg else { throw FuzzFinding("libjpeg-turbo did not initialise") }
                    header = try jpeg.header(bytes, source: "input")
                }
                guard header.width > 0, header.height > 0 else {
                    throw FuzzFinding("an image header of \(header.width)x\(header.height) was accepted")
                }
                guard header.width * header.height <= largestDecoded else { return }
                let out = UnsafeMutablePointer<UInt8>.allocate(capacity: header.width * header.height * channels)
                defer { out.deallocate() }
                switch format {
                case .png: try PNGCodec.decode(bytes, channels: channels, into: out, expected: header, source: "input")
                case .jpeg: try jpeg?.decode(bytes, channels: channels, into: out, expected: header, source: "input")
                }
            } catch let finding as FuzzFinding {
                throw finding
            } catch {
                try requireRefusal(error, [DatasetError.self], "image decoding")
            }
        }
    }

    /// `DecodedCache.parse`: an accepted cache holds exactly its images and labels.
    static func runCache(_ input: [UInt8]) throws {
        do {
            let (header, labels, pixels) = try input.withUnsafeBytes {
                try DecodedCache.parse(try ByteBuffer.copying($0), source: "input")
            }
            guard labels.count == header.count,
                  pixels.count == header.count * header.height * header.width * header.channels else {
                throw FuzzFinding("DecodedCache.parse returned \(labels.count) labels and \(pixels.count) pixel bytes "
                                  + "for \(header.count) images")
            }
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            try requireRefusal(error, [DatasetError.self], "DecodedCache.parse")
        }
    }

    /// `CheckpointFit.shape`, which reads a safetensors header to check a checkpoint against a
    /// dataset before loading it.
    static func runCheckpointFit(_ input: [UInt8]) throws {
        let url = EvaluationFuzz.folder.appendingPathComponent("fit.safetensors")
        try Data(input).write(to: url)
        do {
            let shape = try CheckpointFit.shape(of: url)
            if let classes = shape.classes, classes < 1 {
                throw FuzzFinding("CheckpointFit.shape read \(classes) classes")
            }
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            try requireRefusal(error, [DatasetError.self], "CheckpointFit.shape")
        }
    }
}
