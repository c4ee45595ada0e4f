import CLibFuzzer
import Foundation
import PARTFuzzing

// libFuzzer driving the "onnx" target (see FuzzTargets in Fuzz/Entries).
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in FuzzTargets.libFuzzerEntry("onnx", data, size) })
