/*
 * src/common/err.h: one error-code space for cynic and cynic-harness, and the
 * one function that names any code in it.
 *
 * Every internal function returns 0 or a negative code from one of these
 * disjoint ranges, and callers never need to know which range a code is from:
 *   -1 .. -999        negative errno; on Unix these are also libuv's codes
 *                     (UV_ECONNREFUSED == -ECONNREFUSED), CYNIC_EINVAL,
 *                     CYNIC_ENOMEM and CYNIC_ERANGE among them;
 *   -1001 .. -1999    libcynic's own (CYNIC_EOPEN, CYNIC_EFULL, ...: common.h);
 *   -2001 .. -2999    file.h's kinds of file (CYNIC__FILE_EFIFO, ...);
 *   -3000 .. -3999    libuv's resolver codes (UV_EAI_*);
 *   -4095             UV_EOF.
 * Where the code is about a path a user named, cynic__file_strerror words
 * the errno ones for that ("has no reader (a FIFO nobody has open ...)").
 */
#ifndef CYNIC_COMMON_ERR_H
#define CYNIC_COMMON_ERR_H

/* What `rc` means, in words, for logs and API answers. Static storage;
 * never NULL ("unknown error" for a code of no range). */
const char *cynic__strerror(int rc);

#endif
