// libFuzzer's driver, for executables that have their own main (SwiftPM links every
// executable's main itself). The library comes from the toolchain with -sanitize=fuzzer.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
