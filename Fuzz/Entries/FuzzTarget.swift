/// The fuzz targets: one per reader of bytes that come from outside (checkpoints, datasets).
///
/// A target runs its reader on one input and checks what must hold whatever the input: the
/// reader either returns a value that passes the target's consistency checks or throws one of
/// its own error types (a one-sentence refusal). Anything else (a trap, an unexpected error
/// type, an inconsistent result) is a finding. The same entry points serve the libFuzzer
/// executables (the package in Fuzz/, built by scripts/fuzz.sh with `-sanitize=fuzzer,address`)
/// and the test suite, which runs them in-process over the corpus and mutations of it.
public struct FuzzTarget: Sendable {
    /// The target's name: its corpus is Fuzz/corpus/<name>, its executable fuzz-<name>.
    public let name: String
    /// What it reads.
    public let summary: String
    /// Runs one input; throws `FuzzFinding` when a check fails.
    public let run: @Sendable ([UInt8]) throws -> Void
    /// Mutated inputs of the test suite's in-process pass (a few seconds in a debug build).
    public var smokeRuns = 5_000
}

/// An input that broke a check of a fuzz target.
public struct FuzzFinding: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum FuzzTargets {
    /// Every target, by name. Adding a reader: write its entry function, list it here, add
    /// its name to `targets` in Fuzz/LibFuzzer/Package.swift with a Targets/<name>/main.swift
    /// there, and a seed corpus (scripts/make_fuzz_corpus.py).
    public static let all: [FuzzTarget] = [
        FuzzTarget(name: "safetensors", summary: "SafetensorsFile.decode and its header checks",
                   run: { try SafetensorsFuzz.run($0) }),
        FuzzTarget(name: "checkpoint", summary: "checkpoint metadata, Checkpoint.apply and loadModel on decoded files",
                   run: { try CheckpointFuzz.run($0) }),
        FuzzTarget(name: "idx", summary: "IDX.parse of raw IDX files",
                   run: { try IDXFuzz.runRaw($0) }),
        FuzzTarget(name: "idx-gzip", summary: "IDX.decode of gzipped IDX files (header-bounded inflation)",
                   run: { try IDXFuzz.runGzip($0) }),
        FuzzTarget(name: "eval-results", summary: "a part eval results file and its progress file, resumed",
                   run: { try EvaluationFuzz.runResults($0) }, smokeRuns: 2_000),
        FuzzTarget(name: "npy", summary: "NPYFile.read of .npy arrays (part eval --save-adversarial)",
                   run: { try EvaluationFuzz.runNPY($0) }),
        FuzzTarget(name: "cifar", summary: "CIFAR-10/100 binary batches", run: { try DataFuzz.runCIFAR($0) }),
        FuzzTarget(name: "mat", summary: "MAT-files (SVHN)", run: { try DataFuzz.runMAT($0) }),
        FuzzTarget(name: "numpy-data", summary: "NPY.parse and NumPyData.images of dataset arrays",
                   run: { try DataFuzz.runNPY($0) }),
        FuzzTarget(name: "zip", summary: "zip archives (.npz): entries and extraction", run: { try DataFuzz.runZip($0) }),
        FuzzTarget(name: "tar", summary: "tar archives", run: { try DataFuzz.runTar($0) }),
        FuzzTarget(name: "image", summary: "PNG and JPEG images (image folders, TinyImageNet)",
                   run: { try DataFuzz.runImage($0) }),
        FuzzTarget(name: "image-cache", summary: "the decoded-image cache", run: { try DataFuzz.runCache($0) }),
        FuzzTarget(name: "checkpoint-fit", summary: "CheckpointFit.shape: a checkpoint's header against a dataset",
                   run: { try DataFuzz.runCheckpointFit($0) }),
        FuzzTarget(name: "torch", summary: "TorchFile.decode: torch.save files (zip and legacy), the restricted unpickler",
                   run: { try TorchFuzz.run($0) }, smokeRuns: 2_000),
        FuzzTarget(name: "onnx", summary: "ONNX models: the protobuf reader, load-time folding, the graph and a pass through it",
                   run: { try ONNXFuzz.run($0) }),
    ]

    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// The body of an `LLVMFuzzerTestOneInput`: runs target `name` on libFuzzer's input and
    /// stops the process on a finding, so libFuzzer saves the input as a crash.
    public static func libFuzzerEntry(_ name: String, _ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        guard let target = named(name) else { fatalError("no fuzz target named \(name)") }
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        do {
            try target.run(bytes)
        } catch {
            fatalError("fuzz target \(name): \(error)")
        }
        return 0
    }
}

/// Throws a finding unless `error` is one of the `expected` types (a clean refusal).
func requireRefusal(_ error: Error, _ expected: [Error.Type], _ what: String) throws {
    guard expected.contains(where: { type(of: error) == $0 }) else {
        throw FuzzFinding("\(what) threw \(type(of: error)) instead of a refusal: \(error)")
    }
    let text = "\(error)"
    guard !text.isEmpty, !text.contains("\n") else {
        throw FuzzFinding("\(what) refused with a message that is not one line: \(text.debugDescription)")
    }
}

/// The bits of a tensor's values, for exact comparison (NaN payloads included).
func bits(_ values: [Float]) -> [UInt32] { values.map(\.bitPattern) }
