/*
 * fuzz/fuzz_config.c: libFuzzer target for the proxy's config loader, the
 * parser of outside input an operator hands us. Build:
 *   CC=clang cmake -S . -B build-fuzz -DCYNIC_FUZZ=ON && cmake --build build-fuzz -t fuzz_config
 *   build-fuzz/src/proxy/fuzz_config -max_len=4096 CORPUS_DIR examples/
 * Any crash, leak, or sanitizer report is a bug; bad configs are expected.
 */
#include <stddef.h>
#include <stdint.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cynic__config_errors_t errs;
  cynic__config_t *cfg = NULL;
  if (cynic__config_parse("fuzz.yaml", (const char *)data, size, &cfg, &errs) == 0)
    cynic__config_free(cfg);
  for (size_t i = 0; i < errs.count; i++) {
    char line[512];
    cynic__config_error_format(&errs, i, line, sizeof line);
  }
  return 0;
}
