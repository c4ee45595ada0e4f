import ArgumentParser
import PARTDistributed
import PARTEngine
import PARTTraining

extension PassPrecision: ExpressibleByArgument {}

/// How the engine runs: threads and the precision of attack and CAM passes (docs/conventions.md#1-flags
///). Shared by every command that computes.
struct EngineOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads of the kernels (default: all cores). Results are identical for a given count.")
    var threads: Int?

    /// nil when --precision was not given (a resumed run keeps its own).
    @Option(name: .customLong("precision"),
            help: ArgumentHelp("Precision of attack and CAM passes: fp32, or bf16 on CPUs with AVX-512 BF16 "
                               + "(training's own passes follow --train-precision). (default: fp32, or the preset's)", valueName: "fp32|bf16"))
    var givenPrecision: PassPrecision?

    var precision: PassPrecision { givenPrecision ?? .fp32 }

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        // Far more threads than cores only slows the kernels down, and each costs a stack.
        let most = Swift.min(1024, 4 * Engine.availableCores)
        if let threads, threads > most {
            throw ValidationError("--threads \(threads) is more than \(most) (4 per core of the \(Engine.availableCores) cores "
                                  + "here, at most 1024); use fewer")
        }
        if let problem = precision.problemOnThisCPU(flag: "--precision") { throw ValidationError(problem) }
    }

    /// The engine settings the command runs under (`EngineSettings.bind`): these flags, the
    /// optimisations `without` names turned off, and, under MPI unless --threads was given, the
    /// machine's cores shared between the ranks on it.
    func settings(without: [String] = [], communicator: Communicator? = nil) -> EngineSettings {
        var settings = EngineSettings.current
        if let threads {
            settings.threads = threads
        } else if let communicator {
            settings.threads = Swift.max(1, Engine.availableCores / Swift.max(1, communicator.localSize))
        }
        settings.attackPrecision = precision.dtype
        settings.disabled.formUnion(without.compactMap(Optimizations.Name.init))
        return settings
    }
}


/// `--train-precision` of `part train` and `part bench`: the type of the training step's own
/// forward and backward passes (`TrainingPass`), separate from `--precision`.
struct TrainPrecisionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Precision of the training step's forward and backward passes: fp32, or bf16 on CPUs "
                               + "with AVX-512 BF16 (convolutions and linear layers in bfloat16 as under PyTorch's "
                               + "CPU autocast; weights, their gradients, SGD's momentum, batch-norm statistics and "
                               + "the loss stay fp32). --precision sets attack and CAM passes. (default: fp32)",
                               valueName: "fp32|bf16"))
    var trainPrecision: PassPrecision?

    func validate() throws {
        if let problem = trainPrecision?.problemOnThisCPU(flag: "--train-precision") { throw ValidationError(problem) }
    }
}
