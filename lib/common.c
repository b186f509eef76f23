/* lib/common.c: clock, error names, version. */
#define _POSIX_C_SOURCE 200809L
#include "cynic/common.h"

#include <time.h>

#include "version.h"

uint64_t cynic_clock_monotonic(void *arg) {
  (void)arg;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

const char *cynic_strerror(int err) {
  switch (err) {
#define XX(name, value, msg)                                                   \
  case CYNIC_##name:                                                           \
    return msg;
    CYNIC_ERRNO_MAP(XX)
#undef XX
  default:
    return "unknown error";
  }
}

const char *cynic_err_name(int err) {
  switch (err) {
#define XX(name, value, msg)                                                   \
  case CYNIC_##name:                                                           \
    return #name;
    CYNIC_ERRNO_MAP(XX)
#undef XX
  default:
    return "UNKNOWN";
  }
}

const char *cynic_version(void) { return CYNIC_VERSION_STRING; }
