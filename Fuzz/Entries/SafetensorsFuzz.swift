import PARTEngine

/// `SafetensorsFile.decode`: a file is read or refused with a `SafetensorsError`; a file that
/// is read agrees with its header, and writing it and reading it back gives the same tensors.
enum SafetensorsFuzz {
    static func run(_ bytes: [UInt8]) throws {
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile.decode(bytes, source: "input")
        } catch {
            try requireRefusal(error, [SafetensorsError.self], "SafetensorsFile.decode")
            // The header reader alone must not accept what the whole-file reader refused for
            // a header reason; it may accept when only tensor data was wrong, so no check here.
            return
        }
        let header = try SafetensorsHeader.parse(bytes, fileSize: bytes.count, source: "input")
        guard Set(header.tensors.map(\.name)) == Set(file.tensors.keys), header.metadata == file.metadata else {
            throw FuzzFinding("the header and the decoded file disagree on names or metadata")
        }
        for entry in header.tensors {
            guard let tensor = file.tensors[entry.name], tensor.shape == entry.shape,
                  tensor.count == entry.shape.reduce(1, *), file.dtypes[entry.name] == entry.dtype else {
                throw FuzzFinding("tensor \(entry.name.debugDescription) does not match its header entry")
            }
        }
        // Round trip: what is written reads back to the same bits.
        let encoded: [UInt8]
        do {
            encoded = try file.encode()
        } catch {
            // Only an I64 value beyond what Int64 holds (Float(Int64.max) rounds up to 2^63)
            // may refuse to be written.
            try requireRefusal(error, [SafetensorsError.self], "SafetensorsFile.encode")
            return
        }
        let again = try SafetensorsFile.decode(encoded, source: "re-encoded")
        guard again.metadata == file.metadata, Set(again.tensors.keys) == Set(file.tensors.keys) else {
            throw FuzzFinding("re-encoded file has other names or metadata")
        }
        for (name, tensor) in file.tensors {
            guard let t = again.tensors[name], t.shape == tensor.shape, bits(t.scalars) == bits(tensor.scalars) else {
                throw FuzzFinding("tensor \(name.debugDescription) changed in a write/read round trip")
            }
        }
    }
}
