// swift-tools-version:6.0
// The libFuzzer executables of PART for Swift, one per reader of outside bytes. A package of
// its own so that the main package's build and tests never see them: they link only with
// `-sanitize=fuzzer`. SwiftPM gives every executable its own `main`, so each target's main
// hands control to libFuzzer's driver (`LLVMFuzzerRunDriver`). Build and run them with
// scripts/fuzz.sh; the entry points are the PARTFuzzing library of the main package.
import Foundation
import PackageDescription

/// Target names; each has Targets/<name>/main.swift here and a seed corpus in Fuzz/corpus/<name>.
// (One line: scripts/fuzz.sh and the tests read it.)
let targets = ["safetensors", "checkpoint", "idx", "idx-gzip", "eval-results", "npy", "cifar", "mat", "numpy-data", "zip", "tar", "image", "image-cache", "checkpoint-fit", "torch", "onnx"]

/// The main package, two directories up; SwiftPM names a path dependency after its folder.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "PARTFuzz",
    dependencies: [.package(path: root.path)],
    targets: [.systemLibrary(name: "CLibFuzzer", path: "CLibFuzzer")] + targets.map { name in
        .executableTarget(
            name: "fuzz-\(name)",
            dependencies: ["CLibFuzzer", .product(name: "PARTFuzzing", package: root.lastPathComponent.lowercased())],
            path: "Targets/\(name)")
    }
)
