import ArgumentParser
import Foundation
import PARTAttacks
import PARTCAM
import PARTData
import PARTEngine
import PARTNN
import PARTTraining

/// `part bench`: the PART workloads timed on this machine, with the same JSON keys as the
/// PyTorch reference script (the PyTorch reference benchmark; scripts/bench_compare.py runs both), so the two can be compared
/// side by side, plus achieved GFLOP/s against the machine's own convolution peak.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time PGD-10 (or FGSM), a training step, Grad-CAM, a whole PART step and the data path.",
        discussion: """
        Each time is the median of --reps runs after one warm-up run, on random images of the \
        architecture's usual shape (small-cnn 28x28x1 with eps 0.1; the others 32x32x3 with eps \
        8/255, alpha eps/4). GFLOP/s count convolution and linear work (forward, backward-data, \
        backward-weights). The peak is measured here: every convolution of the model timed alone \
        (forward, same batch and precision), combined as total FLOPs over total time; the \
        training step's limit likewise times each convolution's forward, backward-data and \
        backward-weights alone in the training passes' precision. Keys match \
        torch_reference.py: ratio = PyTorch seconds / these seconds.

        --generation fgsm times fast adversarial training instead: one FGSM step of 1.25 eps from a \
        random start replaces PGD-10 (keys fgsm_s_per_batch, fast_at_images_per_s and \
        fast_part_images_per_s, as torch_reference.py --generation fgsm prints the first two).
        """)

    @Option(help: ArchitectureName.help("Architecture.", default: ModelZoo.benchmarkArchitecture),
            transform: ArchitectureName.parse)
    var arch: ArchitectureName = .benchmark

    @Option(help: ArgumentHelp("Time this ONNX model instead of --arch, on images of its own input shape and "
                               + "classes (as part train --model trains it).", valueName: "file.onnx"))
    var model: String?

    @Option(parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 128

    @Option(parsing: .unconditional, help: "Timed repetitions per workload (the median is reported).")
    var reps: Int = 3

    @Option(parsing: .unconditional, help: "Images of the Grad-CAM workloads.")
    var camImages: Int = 32

    @Option(help: ArgumentHelp("The attack of the AT and PART steps: pgd (PGD-10, alpha eps/4) or fgsm (one step of "
                               + "1.25 eps from a random start: fast AT).", valueName: "pgd|fgsm"))
    var generation: BenchGeneration = .pgd

    @OptionGroup var engine: EngineOptions
    @OptionGroup var training: TrainPrecisionOptions

    @Flag(help: "Print one JSON object.")
    var json = false

    @Flag(help: "Also print the seconds spent per kind of kernel in one PART step.")
    var profile = false

    @OptionGroup var optimizations: OptimizationOptions

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let problem = Limits.batchSizeProblem(batchSize) { throw ValidationError(problem) }
        if let input = try? ModelZoo.architecture(arch.name).defaultInput,
           let problem = ModelZoo.batchProblem(arch.name, imageSize: input.side, batch: batchSize) {
            throw ValidationError(problem)
        }
        guard reps >= 1 else { throw ValidationError("--reps must be at least 1") }
        guard camImages >= 1 else { throw ValidationError("--cam-images must be at least 1") }
    }

    /// Median seconds of `reps` calls after one warm-up call, and the FLOPs of one call.
    func timed(_ body: () throws -> Void) rethrows -> (seconds: Double, flops: Double) {
        try body()
        var times = [Double]()
        var flops = 0.0
        for _ in 0..<reps {
            Profile.reset()
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9)
            flops = Profile.flops
        }
        times.sort()
        return (times[times.count / 2], flops)
    }

    func run() throws {
        try requireOneProcess("bench")
        do {
            try engine.settings(without: optimizations.without).bind { try runBench() }
        } catch {
            throw fail(error)
        }
    }

    func runBench() throws {
        // The architecture's default input, and the budget of its datasets: 0.1 on grey
        // (Fashion-)MNIST-size images, 8/255 on CIFAR-size colour ones.
        var rng = RNG(seed: 0)
        let (model, name, side, channels) = try benchedModel(rng: &rng)
        let epsilon: Float = channels == 1 ? 0.1 : 8.0 / 255
        let n = batchSize
        let x = Tensor(shape: [n, side, side, channels], values: (0..<(n * side * side * channels)).map { _ in rng.uniform() })
        let y = (0..<n).map { _ in Int32(rng.next() % UInt64(model.numClasses)) }
        let indices = Array(0..<n)
        let budget = try EpsilonMap.constant(epsilon, shape: x.shape)
        let fast = generation == .fgsm
        let pgd = fast ? PGD(steps: 1, stepSize: 1.25 * epsilon) : PGD(steps: 10, stepSize: epsilon / 4)
        let sgd = SGD(parameters: model.parameters, learningRate: 0.01, momentum: 0.9, weightDecay: 2e-4)

        func trainStep(_ images: Tensor) throws {
            sgd.zeroGradients()
            _ = try AdversarialTraining().accumulateGradients(model, clean: images, adversarial: images, labels: y,
                                                              precision: (training.trainPrecision ?? .fp32).dtype)
            sgd.step()
        }

        let tPGD = try timed { _ = try pgd.perturb(model, AttackBatch(images: x, labels: y, indices: indices, budget: budget), seed: 1) }
        let tStep = try timed { try trainStep(x) }
        let cam = CAMBudget(method: GradCAM(), rule: ZScoreRule())
        let partStep = {
            let map = try EpsilonMap(try cam.budgets(model, images: x, epsilon: epsilon, epsilonLow: epsilon * 7 / 8))
            let adversarial = try pgd.perturb(model, AttackBatch(images: x, labels: y, indices: indices, budget: map), seed: 1)
            try trainStep(adversarial)
        }
        let tPART = try timed(partStep)
        let atStep = {
            let adversarial = try pgd.perturb(model, AttackBatch(images: x, labels: y, indices: indices, budget: budget), seed: 1)
            try trainStep(adversarial)
        }
        let tAT = try timed(atStep)
        let m = min(camImages, n)
        let camBatch = x.slice(0..<m)
        let tCamBatched = try timed { _ = try ClassActivation.maps(model, images: camBatch, method: GradCAM()) }
        let tCamSingle = try timed {
            for i in 0..<m { _ = try ClassActivation.maps(model, images: x.slice(i..<(i + 1)), method: GradCAM()) }
        }

        // The data path: gathering and converting a batch of a uint8 dataset of this shape.
        let pixels = (0..<(4 * n * side * side * channels)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let data = try ImageDataset(name: "synthetic", images: pixels, labels: (0..<(4 * n)).map { Int32($0 % 10) },
                                    height: side, width: side, channels: channels, classes: 10)
        let order = rng.permutation(4 * n)
        let tData = timed { _ = data.batch(Array(order[0..<n])) }

        // The machine's peak for this model: each convolution alone, forward, same batch.
        Profile.reset()
        // In the attack passes' precision: the peak of a bf16 run is its bf16 convolutions'.
        Profile.tracing = true
        _ = try AttackPass.logits(model, x)
        Profile.tracing = false
        let traced = Profile.traced   // `timed` resets the profile
        var peakFlops = 0.0, peakSeconds = 0.0
        for (op, shape, dtype) in traced {
            let input = try Tensor(shape: shape, repeating: 0.5).converted(to: dtype)
            let w = Tensor(shape: [op.outChannels, op.inChannels, op.kernel, op.kernel], repeating: 0.01)
            let b = op.hasBias ? Tensor(shape: [op.outChannels]) : nil
            let t = try timed { _ = try op.forward(input, weight: w, bias: b, weightVersion: 7, winograd: true) }
            peakFlops += t.flops
            peakSeconds += t.seconds
        }
        let peak = peakFlops / max(peakSeconds, 1e-12) / 1e9

        // The training step's limit: each of the same convolutions alone in the training passes'
        // precision, its forward, backward-data (not for the first, whose input is the image) and
        // backward-weights, as the step runs them.
        let trainType = (training.trainPrecision ?? .fp32).dtype
        var limitFlops = 0.0, limitSeconds = 0.0
        for (index, (op, shape, _)) in traced.enumerated() {
            let input = try Tensor(shape: shape, repeating: 0.5).converted(to: trainType)
            let w = Tensor(shape: [op.outChannels, op.inChannels, op.kernel, op.kernel], repeating: 0.01)
            let b = op.hasBias ? Tensor(shape: [op.outChannels]) : nil
            let output = try op.forward(input, weight: w, bias: b, weightVersion: 7)
            let dy = try Tensor(shape: output.shape, repeating: 0.01).converted(to: trainType)
            let t = try timed {
                _ = try op.forward(input, weight: w, bias: b, weightVersion: 7)
                _ = try op.backward(dy, x: input, weight: w, weightVersion: 7, needInputGradient: index > 0,
                                    needParameterGradients: true)
            }
            limitFlops += t.flops
            limitSeconds += t.seconds
        }
        let trainLimit = limitFlops / max(limitSeconds, 1e-12) / 1e9

        var kernels: [String: Double]? = nil
        if profile {
            Profile.timing = true
            Profile.reset()
            try partStep()
            kernels = Profile.seconds
            Profile.timing = false
        }

        func gflops(_ t: (seconds: Double, flops: Double)) -> Double { t.flops / max(t.seconds, 1e-12) / 1e9 }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let result = BenchResult(
            model: name, batch: n, threads: Engine.threads, engine: "oneDNN \(Engine.instructionSet)",
            precision: engine.precision.rawValue, train_precision: (training.trainPrecision ?? .fp32).rawValue,
            without: optimizations.without.sorted(),
            generation: generation.rawValue,
            pgd10_s_per_batch: fast ? nil : tPGD.seconds, fgsm_s_per_batch: fast ? tPGD.seconds : nil,
            train_step_s_per_batch: tStep.seconds,
            at_step_s_per_batch: tAT.seconds, at_images_per_s: fast ? nil : Double(n) / tAT.seconds,
            fast_at_images_per_s: fast ? Double(n) / tAT.seconds : nil,
            part_step_s_per_batch: tPART.seconds, part_images_per_s: fast ? nil : Double(n) / tPART.seconds,
            fast_part_images_per_s: fast ? Double(n) / tPART.seconds : nil,
            cam_official_s_per_image: tCamSingle.seconds / Double(m), cam_batched_s_per_image: tCamBatched.seconds / Double(m),
            data_images_per_s: Double(n) / tData.seconds,
            pgd10_gflops: gflops(tPGD), train_step_gflops: gflops(tStep), at_step_gflops: gflops(tAT),
            part_step_gflops: gflops(tPART), peak_gflops: peak, train_step_limit_gflops: trainLimit,
            train_step_limit_s: limitSeconds, train_step_fraction_of_limit: gflops(tStep) / trainLimit,
            pgd10_fraction_of_peak: gflops(tPGD) / peak, at_step_fraction_of_peak: gflops(tAT) / peak,
            part_step_fraction_of_peak: gflops(tPART) / peak,
            peak_rss_mb: Double(usage.ru_maxrss) / 1024, kernel_seconds_per_part_step: kernels)
        if json {
            try printJSON(result)
        } else {
            result.printTable()
        }
    }
}

/// The figures of one `part bench` run (snake_case keys, as torch_reference.py prints them).
struct BenchResult: Encodable {
    let model: String
    let batch: Int
    let threads: Int
    let engine: String
    let precision: String
    /// Precision of the training step's own passes (`--train-precision`).
    let train_precision: String
    /// Optimisations turned off for this run.
    let without: [String]
    /// "pgd" (PGD-10) or "fgsm" (fast AT): which of the pairs of keys below are present.
    let generation: String
    let pgd10_s_per_batch: Double?
    let fgsm_s_per_batch: Double?
    let train_step_s_per_batch: Double
    /// The attack followed by a training step on its examples (at_images_per_s or
    /// fast_at_images_per_s = batch / this).
    let at_step_s_per_batch: Double
    let at_images_per_s: Double?
    let fast_at_images_per_s: Double?
    /// Grad-CAM maps + the attack under them + a training step.
    let part_step_s_per_batch: Double
    let part_images_per_s: Double?
    let fast_part_images_per_s: Double?
    let cam_official_s_per_image: Double
    let cam_batched_s_per_image: Double
    let data_images_per_s: Double
    let pgd10_gflops: Double
    let train_step_gflops: Double
    let at_step_gflops: Double
    let part_step_gflops: Double
    let peak_gflops: Double
    /// The training step's convolutions each timed alone (forward, backward-data, backward-weights)
    /// in the training passes' precision: their GFLOP/s, their summed seconds, and the step's
    /// GFLOP/s as a fraction of that limit.
    let train_step_limit_gflops: Double
    let train_step_limit_s: Double
    let train_step_fraction_of_limit: Double
    let pgd10_fraction_of_peak: Double
    let at_step_fraction_of_peak: Double
    let part_step_fraction_of_peak: Double
    let peak_rss_mb: Double
    let kernel_seconds_per_part_step: [String: Double]?

    func printTable() {
        let attack = generation == "fgsm" ? "FGSM" : "PGD-10"
        let atImages = at_images_per_s ?? fast_at_images_per_s ?? 0
        let partImages = part_images_per_s ?? fast_part_images_per_s ?? 0
        print("\(model), batch \(batch), \(threads) threads, \(precision), training passes \(train_precision)"
              + (without.isEmpty ? "" : ", without \(without.joined(separator: ", "))")
              + String(format: "; peak (convolutions alone): %.0f GFLOP/s", peak_gflops))
        let rows: [(String, String, String)] = [
            ("\(attack) per batch", String(format: "%.3f s", pgd10_s_per_batch ?? fgsm_s_per_batch ?? 0),
             String(format: "%.0f GFLOP/s (%.0f%% of peak)", pgd10_gflops, 100 * pgd10_fraction_of_peak)),
            ("training step per batch", String(format: "%.3f s", train_step_s_per_batch),
             String(format: "%.0f GFLOP/s (%.0f%% of its convolutions alone: %.3f s at %.0f GFLOP/s)", train_step_gflops,
                    100 * train_step_fraction_of_limit, train_step_limit_s, train_step_limit_gflops)),
            ("\(generation == "fgsm" ? "fast " : "")AT step (\(attack) + step)", String(format: "%.3f s", at_step_s_per_batch),
             String(format: "%.1f images/s, %.0f GFLOP/s (%.0f%% of peak)", atImages, at_step_gflops,
                    100 * at_step_fraction_of_peak)),
            ("\(generation == "fgsm" ? "fast " : "")PART step (maps + \(attack) + step)", String(format: "%.3f s", part_step_s_per_batch),
             String(format: "%.1f images/s, %.0f GFLOP/s, %+.1f%% vs AT", partImages, part_step_gflops,
                    100 * (part_step_s_per_batch / at_step_s_per_batch - 1))),
            ("Grad-CAM one image at a time", String(format: "%.2f ms/image", 1000 * cam_official_s_per_image), ""),
            ("Grad-CAM batched", String(format: "%.2f ms/image", 1000 * cam_batched_s_per_image), ""),
            ("data path (gather + convert)", String(format: "%.0f images/s", data_images_per_s), ""),
            ("peak memory", String(format: "%.0f MB", peak_rss_mb), ""),
        ]
        for (name, value, extra) in rows {
            print(name.padding(toLength: 34, withPad: " ", startingAt: 0) + value.padding(toLength: 16, withPad: " ", startingAt: 0) + extra)
        }
        if let kernels = kernel_seconds_per_part_step {
            let total = part_step_s_per_batch
            print("seconds per kernel kind in one PART step:")
            for (kind, s) in kernels.sorted(by: { $0.value > $1.value }) {
                print("  " + kind.padding(toLength: 32, withPad: " ", startingAt: 0) + String(format: "%.4f s  %4.1f%%", s, 100 * s / total))
            }
            let inKernels = kernels.values.reduce(0, +)
            print("  " + "outside oneDNN".padding(toLength: 32, withPad: " ", startingAt: 0)
                  + String(format: "%.4f s  %4.1f%%", total - inKernels, 100 * (total - inKernels) / total))
        }
    }
}

/// The attack `part bench` times in its AT and PART steps.
enum BenchGeneration: String, ExpressibleByArgument, CaseIterable {
    case pgd, fgsm
}
