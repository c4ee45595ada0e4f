import ArgumentParser
import Foundation
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN

/// `--key` and `--arch` of the commands that open a model file (`part eval`, `part cam`), and
/// the opening itself.
struct ModelFileOptions: ParsableArguments {
    @Option(help: ArgumentHelp("In a .pt checkpoint holding several dicts of tensors, the top-level key of the one with the model's weights "
                               + "(e.g. state_dict, model, ema).", valueName: "name"))
    var key: String?

    @Option(help: ArchitectureName.help("Architecture, when the file does not say."), transform: ArchitectureName.parse)
    var arch: ArchitectureName?

    /// The model in `url` for the images of `data` (its fit to them checked first: classes,
    /// input shape) and the file's metadata.
    func load(_ url: URL, for data: ImageDataset, rng: inout RNG) throws -> (ImageClassifier, [String: String]) {
        try CheckpointFit.check(url, fits: data, key: key)
        return try ModelFile.load(url, architecture: arch?.name, numClasses: data.classes,
                                  inputShape: (data.height, data.width, data.channels), key: key, rng: &rng)
    }
}
