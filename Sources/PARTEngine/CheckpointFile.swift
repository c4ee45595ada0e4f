import Foundation

/// The one place model weights are read from a file: safetensors, or a PyTorch `torch.save`
/// checkpoint (`.pt`, `.pth`), told apart by the file's first bytes, not its name.
public enum CheckpointFile {
    public enum Format: String, Sendable {
        case safetensors, torch
    }

    /// The format of a file that starts with `bytes` (its first 8 bytes when it has them). A
    /// zip archive is a `torch.save` file. A safetensors file starts with the 8-byte length of
    /// its JSON header, whose first bytes may read 0x80 0x02 like a pickle (a header of 640
    /// bytes), but whose last four are zero (headers are far below 4 GiB); in a pickle those
    /// bytes are opcodes and their arguments, never all zero except in the length of the FRAME
    /// (0x95) that starts a protocol-4 pickle. A file too short to tell is safetensors (its
    /// reader then says it is truncated).
    public static func format(of bytes: UnsafeRawBufferPointer) -> Format {
        if bytes.count >= 4, bytes.u32(0) == 0x0403_4B50 { return .torch }
        guard bytes.count >= 8, TorchFile.recognises(bytes), bytes.u32(4) != 0 || bytes[2] == 0x95 else { return .safetensors }
        return .torch
    }

    /// The format of the file at `url`, from its first bytes (safetensors when it cannot tell).
    public static func format(of url: URL) throws -> Format {
        let reader: FileInput.Reader
        do {
            reader = try FileInput.Reader(url)
        } catch let error as FileInputError {
            throw SafetensorsError(error.description)
        }
        let head = try reader.read(count: Swift.min(reader.size, 8))
        return head.withUnsafeBytes { format(of: $0) }
    }

    /// The tensors of the file at `url` (a regular file; see `FileInput`) as float32, with the
    /// stored element types. `key` picks the dict inside a `torch.save` file that holds the
    /// weights when it holds several (`--key`); a safetensors file has only one.
    public static func read(from url: URL, key: String? = nil) throws -> SafetensorsFile {
        let bytes: [UInt8]
        do {
            bytes = try FileInput.read(url)
        } catch let error as FileInputError {
            throw SafetensorsError(error.description)
        }
        return try decode(bytes, source: url.path, key: key)
    }

    /// `read` of bytes held in memory; `source` names them in errors.
    public static func decode(_ bytes: [UInt8], source: String, key: String? = nil) throws -> SafetensorsFile {
        switch bytes.withUnsafeBytes({ format(of: $0) }) {
        case .torch:
            return try bytes.withUnsafeBytes { try TorchFile.decode($0, source: source, key: key) }
        case .safetensors:
            if let key {
                throw SafetensorsError("\(source): --key \(messageText(key)) picks a dict inside a .pt file, and this is a "
                                       + "safetensors file, which holds one set of tensors: drop --key")
            }
            return try SafetensorsFile.decode(bytes, source: source)
        }
    }
}
