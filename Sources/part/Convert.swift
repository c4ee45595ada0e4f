import ArgumentParser
import Foundation
import PARTEngine

/// `part convert IN OUT`: a checkpoint between PyTorch's `torch.save` format and safetensors.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint between .pt (torch.save) and .safetensors.",
        discussion: """
        IN is read by content (a torch.save zip archive or legacy file, or safetensors), without \
        running any of its pickle: only the globals a state_dict needs are known, any other is \
        refused. OUT's extension picks what is written: .safetensors (float32, integer buffers as \
        int64, as part train writes), or .pt/.pth (the zip layout of torch.save, which \
        torch.load(weights_only=True) opens, float32 and int64). The weights are the dict at the \
        top level of a .pt, or the one dict of tensors under a top-level key (--key when there are \
        several); module., model. and _orig_mod. prefixes shared by every name are removed. \
        Half, bfloat16 and double tensors become float32; safetensors metadata is not kept in a .pt.
        """)

    @Argument(help: ArgumentHelp("The checkpoint to read (.pt, .pth or .safetensors).", valueName: "in"))
    var input: String

    @Argument(help: ArgumentHelp("The file to write: .safetensors, .pt or .pth.", valueName: "out"))
    var output: String

    @Option(help: ArgumentHelp("In a .pt file holding several dicts of tensors, the top-level key of the one to convert "
                               + "(e.g. state_dict, model, ema).", valueName: "name"))
    var key: String?

    @Flag(help: "Replace OUT when it exists.")
    var overwrite = false

    /// The format OUT's extension names.
    var outputFormat: CheckpointFile.Format? {
        switch URL(fileURLWithPath: output).pathExtension.lowercased() {
        case "pt", "pth": return .torch
        case "safetensors": return .safetensors
        default: return nil
        }
    }

    func validate() throws {
        guard outputFormat != nil else {
            throw ValidationError("OUT \(messageText(output, limit: 4096)) must end in .safetensors, .pt or .pth (the format to write)")
        }
        try checkOutputs([.init("OUT", output)], inputs: [input])
        if !overwrite, FileManager.default.fileExists(atPath: output) {
            throw ValidationError("OUT \(messageText(output, limit: 4096)) exists; pass --overwrite to replace it, or name another file")
        }
    }

    func run() throws {
        let file = try CheckpointFile.read(from: URL(fileURLWithPath: input), key: key)
        guard !file.tensors.isEmpty else {
            throw TorchFileError("\(input): holds no tensors; nothing to convert")
        }
        // Checked again after reading: OUT may be the input under another name.
        try checkOutputs([.init("OUT", output)], inputs: [input])
        let url = URL(fileURLWithPath: output)
        switch outputFormat {
        case .torch:
            try SafetensorsFile.writeAtomically(try TorchFile.encode(file), to: url)
        default:
            var out = SafetensorsFile(metadata: file.metadata)
            out.tensors = file.tensors
            // Integer tensors stay integers (num_batches_tracked); every other one becomes float32.
            for (name, dtype) in file.dtypes where [.i64, .i32, .u8, .bool].contains(dtype) { out.dtypes[name] = .i64 }
            try out.write(to: url)
        }
        FileHandle.standardError.write(Data("part convert: \(file.tensors.count) tensors from \(messageText(input, limit: 4096)) to \(messageText(output, limit: 4096))\n".utf8))
    }
}
