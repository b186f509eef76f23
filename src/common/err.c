/*
 * src/common/err.c: one error-code space, one strerror (err.h).
 */
#include "err.h"

#include <uv.h>

#include "cynic/common.h"
#include "file.h"

const char *cynic__strerror(int rc) {
  if (rc <= -1000 && rc > -2000)
    return cynic_strerror(rc);
  if (rc <= -2000 && rc > -3000)
    return cynic__file_strerror(rc);
  if (rc < 0)
    return uv_strerror(rc); /* errno, resolver and EOF codes */
  return rc == 0 ? "success" : "unknown error";
}
