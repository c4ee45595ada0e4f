import CLibFuzzer
import Foundation
import PARTFuzzing

// libFuzzer driving the "torch" target (see FuzzTargets in Fuzz/Entries).
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in FuzzTargets.libFuzzerEntry("torch", data, size) })
