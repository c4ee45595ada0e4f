import ArgumentParser
import Foundation
import PARTCAM
import PARTData
import PARTEngine
import PARTEvaluation
import PARTNN
import PARTReport
import PARTTraining

struct Cam: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cam",
        abstract: "Draw what PART sees: CAMs, importance maps and epsilon maps of the first test images.",
        discussion: """
        For each of the first --limit test images: the CAM of the predicted class at the model's CAM \
        layer (--cam, --cam-layer), bicubically upsampled to the image size and squared (the \
        importance map), and the epsilon map the rule (--map-rule) makes of it: --eps on important \
        entries, --eps-low elsewhere. These are the maps `part train` computes for its batches.

        --out writes a PNG grid, one row per image (the first --grid-rows): the image, its CAM over \
        it as a heat map, the importance map, and the epsilon map (white: full eps), with the label, \
        the prediction and the share of entries at full eps. --save-maps writes every map of every \
        image as NumPy arrays (.npz): images, cams, importance, eps_maps, labels, predictions, \
        indices (in the test split, also with --balanced), full_eps_share, eps, eps_low.

        Without the flags, budgets and CAM settings come from the run beside the checkpoint \
        (config.json, else the training configuration in <name>.state.safetensors), else the \
        checkpoint's metadata, else the defaults; without --dataset, the images are the test split \
        of the dataset the run's config.json records (from --data when given, else its folder), \
        else of the one the checkpoint's metadata names.
        """)

    @Argument(help: ArgumentHelp("The checkpoint: .safetensors, .pt/.pth written by torch.save (told apart by content), or an ONNX model (.onnx).", valueName: "checkpoint"))
    var checkpoint: String

    @OptionGroup var data: DataOptions
    @OptionGroup var progressOptions: ProgressOptions
    @OptionGroup var engine: EngineOptions

    @Option(help: "CAM method (default: the run's, else gradcam).")
    var cam: CAMMethodName?

    @Option(name: [.customLong("cam-layer"), .customLong("layer")], help: ArgumentHelp(
        "CAM layer, one of the model's named layers (default: the run's, else the architecture's: "
            + ModelZoo.defaultCAMLayers + ").", valueName: "name"))
    var layer: String?

    @Option(help: "Rule from CAM to epsilon map (default: the run's, else zscore).")
    var mapRule: MapRuleName?

    @Option(name: .customLong("eps"), parsing: .unconditional, help: "Budget of important entries (default: the run's, else 0.1).")
    var epsilon: Fraction?

    @Option(name: .customLong("eps-low"), parsing: .unconditional, help: "Budget of the other entries (default: the run's, else 0.0875).")
    var epsilonLow: Fraction?

    @Option(parsing: .unconditional, help: "The first N test images.")
    var limit: Int = 8

    @Flag(help: ArgumentHelp("The first ceil(N/K) test images of each of the K classes instead of the first N "
                             + "(N = --limit)."))
    var balanced = false

    @Option(parsing: .unconditional, help: ArgumentHelp("Rows of the picture: the first N of the images (0: all).", valueName: "n"))
    var gridRows: Int = 32

    @Option(help: ArgumentHelp("The PNG grid.", valueName: "file.png"))
    var out: String = "cam-grid.png"

    @Option(help: ArgumentHelp("Also write every map as NumPy arrays here.", valueName: "maps.npz"))
    var saveMaps: String?

    @OptionGroup var modelFile: ModelFileOptions

    @Option(help: NormalizeOption.help("the model was trained with (default: the run's, else the checkpoint's)"))
    var normalize: String?

    @Option(parsing: .unconditional, help: "Images per CAM pass.")
    var batchSize: Int = 64

    @Flag(help: "Print the results as one JSON object.")
    var json = false

    func validate() throws {
        try Validation.count(limit, "--limit", atLeast: 1)
        try Validation.count(gridRows, "--grid-rows", atLeast: 0)
        try Validation.batchSize(batchSize)
        if let epsilon, !(epsilon.value >= 0 && epsilon.value <= 1) {
            throw ValidationError("--eps must be in [0, 1], got \(epsilon)")
        }
        if let epsilonLow, !(epsilonLow.value.isFinite && epsilonLow.value >= 0) {
            throw ValidationError("--eps-low must be a finite number >= 0, got \(epsilonLow)")
        }
        try NormalizeOption.validate(normalize)
        guard out.lowercased().hasSuffix(".png") else { throw ValidationError("--out names a PNG file (file.png), got '\(out)'") }
        if let saveMaps, !saveMaps.lowercased().hasSuffix(".npz") {
            throw ValidationError("--save-maps names a NumPy archive (maps.npz), got '\(saveMaps)'")
        }
        try checkOutputs([.init("--out", out)] + (saveMaps.map { [.init("--save-maps", $0)] } ?? []),
                         inputs: [checkpoint, stateFile(beside: checkpoint), data.directory, data.cache])
    }

    struct Output: Encodable {
        struct Image: Encodable {
            let index: Int
            let label: Int
            let prediction: Int
            let fullEpsShare: Double
        }
        let checkpoint: String
        let architecture: String
        /// The normalisation applied ("MEAN/STD"), nil for none.
        let normalize: String?
        let dataset: String
        let cam: String
        let camLayer: String
        let mapRule: String
        let epsilon: Float
        let epsilonLow: Float
        let count: Int
        let accuracy: Double
        let meanFullEpsShare: Double
        let grid: String
        let gridRows: Int
        let maps: String?
        let images: [Image]
        let seconds: Double
    }

    func run() throws {
        try requireOneProcess("cam")
        try engine.settings().bind { try makeMaps() }
    }

    /// The command's work, under its engine settings.
    func makeMaps() throws {
        do {
            let started = Date()
            let url = URL(fileURLWithPath: checkpoint)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CheckpointError("\(checkpoint): no such file")
            }
            let settings = RunSettings(checkpoint: url)
            let all = try data.load(.test, recorded: settings.dataset)
            // A balanced subset keeps each image's index in the test split (`splitIndex(of:)`): what
            // the grid, the text, the JSON and the maps number them by.
            let test = balanced ? try all.balancedPrefix(limit) : all.prefix(limit)
            // Checked again now that the data's own files are known (a file of a --data folder).
            do {
                try OutputPath.check([.init("--out", out)] + (saveMaps.map { [.init("--save-maps", $0)] } ?? []),
                                     inputs: [checkpoint])
            } catch let error as OutputPathError {
                throw BadArgument(error.description)
            }
            var rng = RNG(seed: 0)
            var (model, metadata) = try modelFile.load(url, for: test, rng: &rng)
            if let recorded = settings.normalize { metadata[Normalized.metadataKey] = recorded }
            let normalize = NormalizeOption.effective(self.normalize, metadata: metadata, warn: true)
            if let normalize {
                do {
                    model = try Normalized(model, text: normalize)
                } catch {
                    throw BadArgument("--normalize: \(error)")
                }
            }
            let method = cam ?? settings.cam ?? .gradcam
            let rule = mapRule ?? settings.mapRule ?? .zscore
            let eps = epsilon?.value ?? settings.epsilon ?? 0.1
            let epsLow = epsilonLow?.value ?? settings.epsilonLow ?? 0.0875
            guard epsLow <= eps else {
                throw BadArgument("--eps-low (\(epsLow)) must not exceed --eps (\(eps))")
            }
            let layer = self.layer ?? settings.camLayer ?? model.defaultCAMLayer
            do {
                _ = try CAMLayer.resolve(layer, model: model)
            } catch {
                throw BadArgument("\(error)")
            }
            if let problem = rule.channelProblem(channels: test.channels, images: test.name) { throw BadArgument(problem) }
            let budget = CAMBudget(method: method.method, rule: rule.rule, layer: layer)

            var progress = Progress(quiet: progressOptions.quiet)
            var parts = [CAMPanels]()
            for start in stride(from: 0, to: test.count, by: batchSize) {
                let positions = Array(start..<min(test.count, start + batchSize))
                let (images, labels) = test.batch(positions)
                parts.append(try CAMPanels.compute(model, images: images, labels: labels, indices: test.splitIndex(of: positions),
                                                   budget: budget, epsilon: eps, epsilonLow: epsLow))
                let done = start + positions.count
                progress.update(done: Double(done), total: Double(test.count), unit: "images",
                                "part cam: \(done)/\(test.count) images")
            }
            progress.clear()
            progress.update("part cam: \(test.count)/\(test.count) images", final: true)
            let panels = try CAMPanels.concatenate(parts)
            let rows = gridRows == 0 ? panels.count : min(gridRows, panels.count)
            let shown = rows == panels.count ? panels : panels.prefix(rows)
            // Short lines: the picture is about 800 pixels wide, and a long line loses its start.
            let grid = CAMGrid(title: "\(method.rawValue), \(rule.rawValue) rule, eps \(CAMGrid.number(eps)), "
                               + "eps-low \(CAMGrid.number(epsLow))",
                               subtitle: "\(model.architecture) at \(layer); \(test.name) test images",
                               classNames: test.classNames, colormap: JetColormap.table)
            try grid.render(shown).writePNG(to: URL(fileURLWithPath: out))
            if let saveMaps { try NPZ.write(panels.arrays, to: URL(fileURLWithPath: saveMaps)) }

            let shares = (0..<panels.count).map(panels.fullShare)
            let correct = zip(panels.labels, panels.predictions).filter { $0 == $1 }.count
            let output = Output(
                checkpoint: checkpoint, architecture: model.architecture, normalize: normalize, dataset: test.name,
                cam: method.rawValue,
                camLayer: layer, mapRule: rule.rawValue, epsilon: eps, epsilonLow: epsLow, count: panels.count,
                accuracy: Double(correct) / Double(panels.count), meanFullEpsShare: shares.reduce(0, +) / Double(shares.count),
                grid: out, gridRows: rows, maps: saveMaps,
                images: (0..<panels.count).map {
                    .init(index: panels.indices[$0], label: Int(panels.labels[$0]), prediction: Int(panels.predictions[$0]),
                          fullEpsShare: shares[$0])
                },
                seconds: Date().timeIntervalSince(started))
            if json {
                try printJSON(output)
            } else {
                let which = balanced ? "\(panels.count) class-balanced images" : "first \(panels.count) images"
                print("\(model.architecture) on \(test.name) test, \(which): \(method.rawValue) at \(layer), "
                      + "\(rule.rawValue) rule, eps \(CAMGrid.number(eps)), eps-low \(CAMGrid.number(epsLow))")
                func name(_ c: Int) -> String { c < test.classNames.count ? test.classNames[c] : String(c) }
                func padded(_ text: String) -> String { text.padding(toLength: max(12, text.count), withPad: " ", startingAt: 0) }
                for image in output.images.prefix(rows) {
                    print(String(format: "  #%-5d label %@ prediction %@ full eps %5.1f%%", image.index,
                                 padded(name(image.label)) as NSString, padded(name(image.prediction)) as NSString,
                                 100 * image.fullEpsShare))
                }
                print(String(format: "accuracy %.2f%%, mean share at full eps %.1f%%; grid (%d rows): %@%@",
                             100 * output.accuracy, 100 * output.meanFullEpsShare, rows, out as NSString,
                             (saveMaps.map { "; maps: \($0)" } ?? "") as NSString))
            }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw fail(error)
        }
    }
}

/// The CAM settings and budgets of the run a checkpoint belongs to, from the first of: the
/// run's config.json beside the checkpoint, the training configuration in the optimiser state
/// beside it (<name>.state.safetensors, "config"), the checkpoint's own metadata (eps and eps-low
/// only in checkpoints written since they were added to it).
struct RunSettings {
    var cam: CAMMethodName?
    var mapRule: MapRuleName?
    var camLayer: String?
    var epsilon: Float?
    var epsilonLow: Float?
    /// The normalisation the model was trained with ("MEAN/STD").
    var normalize: String?
    /// The data the run trained on (its record's dataset request; for a checkpoint away from its
    /// run, the dataset its metadata names, from --data or its default folder), read when
    /// --dataset is not given.
    var dataset: DatasetRequest?

    init(checkpoint: URL) {
        let directory = checkpoint.deletingLastPathComponent()
        let stem = checkpoint.deletingPathExtension().lastPathComponent
        let stateURL = directory.appendingPathComponent(stem + ".state.safetensors")
        // The run's record (read as part train --resume reads it), else the configuration saved
        // with the optimiser state; a damaged record counts as none (the checkpoint's own
        // metadata still answers).
        let record = (try? RunRecord.read(directory)) ?? nil
        var config = record?.config
        dataset = record?.dataset
        if config == nil, let meta = try? RunReport.checkpointMetadata(stateURL), let text = meta["config"] {
            config = try? JSONDecoder().decode(TrainingConfig.self, from: Data(text.utf8))
        }
        let meta = (try? RunReport.checkpointMetadata(checkpoint)) ?? [:]
        if dataset == nil, let name = meta[RecipeKey.dataset].flatMap(DatasetName.init(rawValue:)) {
            dataset = DatasetRequest(name: name)
        }
        cam = config?.cam ?? meta[RecipeKey.cam].flatMap(CAMMethodName.init(rawValue:))
        mapRule = config?.mapRule ?? meta[RecipeKey.mapRule].flatMap(MapRuleName.init(rawValue:))
        camLayer = record?.camLayer ?? config?.camLayer ?? meta[RecipeKey.camLayer]
        epsilon = config?.epsilon ?? meta[RecipeKey.epsilon].flatMap(Float.init)
        epsilonLow = config?.epsilonLow ?? meta[RecipeKey.epsilonLow].flatMap(Float.init)
        normalize = config?.normalize ?? meta[Normalized.metadataKey]
    }
}
