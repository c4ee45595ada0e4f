// swift-tools-version:6.0
// PART for Swift: pixel-reweighted adversarial training on a oneDNN engine.
//
// Targets stack one way: C modules <- PARTEngine <- PARTNN <- PARTData / PARTAttacks /
// PARTCAM / PARTONNX <- PARTTraining / PARTEvaluation <- part (the command-line tool); PARTDistributed (the
// ranks of a data-parallel job) stands apart and PARTTraining and PARTEvaluation use it.
import PackageDescription

let package = Package(
    name: "PART",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "part", targets: ["part"]),
        .library(name: "PARTTraining", targets: ["PARTTraining"]),
        // The fuzz targets' entry points, for the libFuzzer package in Fuzz/.
        .library(name: "PARTFuzzing", targets: ["PARTFuzzing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // ONNX files are protobuf messages (Sources/PARTONNX/Generated, scripts/generate_onnx_proto.sh).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries from Debian packages (libdnnl-dev, zlib1g-dev, libturbojpeg0-dev, libpng-dev).
        .systemLibrary(name: "CDNNL", path: "Sources/CDNNL", providers: [.apt(["libdnnl-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG", providers: [.apt(["libturbojpeg0-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", providers: [.apt(["libpng-dev"])]),

        // Tensors, oneDNN kernels with their backward passes, RNG, safetensors I/O.
        .target(name: "PARTEngine", dependencies: ["CDNNL", "CZlib"]),
        // Layers with explicit backward, the model zoo, checkpoints.
        .target(name: "PARTNN", dependencies: ["PARTEngine"]),
        // Datasets: one registry over IDX, CIFAR binary, SVHN .mat, TinyImageNet and image folders
        // (JPEG, PNG), NumPy files; keyed augmentation and a prefetching batcher.
        .target(name: "PARTData", dependencies: ["PARTEngine", "CZlib", "CTurboJPEG", "CPNG"]),
        // ONNX image classifiers run on the engine's layers: the reader, load-time folding, the graph.
        .target(name: "PARTONNX", dependencies: ["PARTNN", .product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        // Attacks under an epsilon map.
        .target(name: "PARTAttacks", dependencies: ["PARTNN"]),
        // Class activation maps and the rules that turn them into epsilon maps.
        .target(name: "PARTCAM", dependencies: ["PARTNN"]),
        // The evaluation protocol: attack sequences, re-verification, results files and resume.
        .target(name: "PARTEvaluation", dependencies: ["PARTAttacks", "PARTData", "PARTNN", "PARTDistributed", "PARTONNX"]),
        // The ranks of a data-parallel job: one process, or Open MPI loaded at run time (dlopen), so
        // that nothing needs MPI to build or run alone.
        .target(name: "PARTDistributed"),
        // Objectives, epsilon-map providers, optimiser, schedules, the trainer, evaluation.
        .target(name: "PARTTraining", dependencies: ["PARTNN", "PARTData", "PARTAttacks", "PARTCAM", "PARTDistributed", "PARTONNX"]),
        // What a person looks at: CAM grids as PNG, the HTML run report, TensorBoard event files.
        .target(name: "PARTReport", dependencies: ["PARTEngine", "PARTNN", "PARTAttacks", "PARTCAM", "PARTTraining", "CDNNL", "CPNG", "CZlib"]),
        .executableTarget(name: "part", dependencies: [
            "PARTTraining",
            "PARTEvaluation",
            "PARTReport",
            "PARTDistributed",
            "PARTONNX",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Every reader of outside bytes run on one input with the checks that must hold; the
        // libFuzzer executables (Fuzz/LibFuzzer, scripts/fuzz.sh) and the tests call them.
        .target(name: "PARTFuzzing", dependencies: ["PARTNN", "PARTData", "PARTEvaluation", "PARTONNX", "CZlib"], path: "Fuzz/Entries"),

        // The library used from code: trains and evaluates a tiny model (docs/quickstart.md quotes it).
        .executableTarget(name: "quickstart", dependencies: ["PARTTraining", "PARTAttacks", "PARTData", "PARTEngine"],
                          path: "Examples/Quickstart"),

        // What several test targets share: running the built `part`, temporary directories.
        .target(name: "PARTTestSupport", dependencies: ["PARTData", "PARTEngine", "PARTNN", "PARTTraining"],
                path: "Tests/PARTTestSupport"),
        .testTarget(name: "PARTEngineTests", dependencies: ["PARTEngine", "PARTTestSupport"]),
        // ONNX files exported by PyTorch run on the engine (Tests/Fixtures/onnx).
        .testTarget(name: "PARTONNXTests", dependencies: ["PARTONNX", "PARTNN", "PARTEngine"]),
        .testTarget(name: "PARTNNTests", dependencies: ["PARTNN", "PARTCAM", "PARTTraining"]),
        // Also runs the built `part` for `part data` (one-line errors, exit codes).
        .testTarget(name: "PARTDataTests", dependencies: ["PARTTestSupport", "PARTData", "PARTEvaluation", "part"]),
        .testTarget(name: "PARTAttacksTests", dependencies: ["PARTAttacks", "PARTTraining", "PARTTestSupport"]),
        .testTarget(name: "PARTTrainingTests", dependencies: ["PARTTraining", "PARTTestSupport", "PARTONNX"]),
        // Also runs the built `part` executable (killed with SIGKILL and resumed).
        .testTarget(name: "PARTEvaluationTests", dependencies: ["PARTTestSupport", "PARTEvaluation", "PARTTraining", "part"]),
        // Runs the built `part` executable: help, errors, exit codes, a tiny train + eval.
        .testTarget(name: "PARTCLITests", dependencies: ["PARTTestSupport", "part", "PARTNN"]),
        // The report module, and `part cam` / `part report` / `part train --tensorboard` run as a user
        // would (headless Chromium opens the report when it is installed).
        .testTarget(name: "PARTReportTests", dependencies: ["PARTTestSupport", "PARTReport", "PARTTraining", "part"]),
        // Collectives, the sharded sampler, synchronised batch norm; runs `mpirun -np 2 part train`
        // and `part eval` when Open MPI is installed.
        .testTarget(name: "PARTDistributedTests", dependencies: ["PARTTestSupport", "PARTDistributed", "PARTData", "PARTNN", "PARTEngine", "PARTTraining", "part"]),
        // The fuzz targets in-process over the committed corpus, regressions and mutations.
        .testTarget(name: "PARTFuzzingTests", dependencies: ["PARTFuzzing", "PARTEngine", "PARTNN", "PARTData", "PARTEvaluation"]),
    ]
)
