import PARTEngine

/// `TorchFile.decode` (both layouts of `torch.save`, the restricted unpickler, storages and
/// views): a file is read or refused with a `TorchFileError`; a file that is read is written as
/// a `.pt` again and reads back to the same tensors (NaN bits aside).
enum TorchFuzz {
    static func run(_ bytes: [UInt8]) throws {
        let file: SafetensorsFile
        do {
            file = try bytes.withUnsafeBytes { try TorchFile.decode($0, source: "input") }
        } catch {
            try requireRefusal(error, [TorchFileError.self], "TorchFile.decode")
            return
        }
        for (name, tensor) in file.tensors {
            guard tensor.count == tensor.shape.reduce(1, *), file.dtypes[name] != nil else {
                throw FuzzFinding("tensor \(name.debugDescription) has \(tensor.count) values for shape \(tensor.shape)")
            }
        }
        // Integer tensors are written as int64: only those whose values fit round-trip exactly.
        guard file.dtypes.values.allSatisfy({ ![.i64, .i32, .u8, .bool].contains($0) }) else { return }
        let again = try CheckpointFile.decode(try TorchFile.encode(file), source: "re-encoded")
        guard Set(again.tensors.keys) == Set(file.tensors.keys) else {
            throw FuzzFinding("the re-encoded file has other names")
        }
        for (name, tensor) in file.tensors {
            let a = tensor.scalars, b = again.tensors[name]!.scalars
            guard again.tensors[name]!.shape == tensor.shape,
                  zip(a, b).allSatisfy({ $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) }) else {
                throw FuzzFinding("tensor \(name.debugDescription) changed when written and read again")
            }
        }
    }
}
