/* Unit tests of src/common/file.c: nothing a user can name makes an open
 * wait, and only the right kinds of file are taken. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "file.h"

static char dir[] = "/tmp/cynic-file-XXXXXX";

static const char *path_in(const char *name) {
  static char buf[128];
  snprintf(buf, sizeof buf, "%s/%s", dir, name);
  return buf;
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void read_regular_file(void **state) {
  (void)state;
  const char *p = path_in("ok");
  write_file(p, "hello\n", 6);
  char *data = NULL;
  size_t len = 0;
  assert_int_equal(cynic__file_read(p, 6, &data, &len), 0);
  assert_int_equal(len, 6);
  assert_string_equal(data, "hello\n"); /* NUL-terminated */
  free(data);
  assert_int_equal(cynic__file_read(p, 5, &data, &len), CYNIC__FILE_ETOOBIG);
  assert_null(data);
  write_file(p, "", 0);
  assert_int_equal(cynic__file_read(p, 5, &data, &len), 0);
  assert_int_equal(len, 0);
  assert_string_equal(data, "");
  free(data);
  assert_int_equal(cynic__file_read(path_in("missing"), 5, &data, &len), -ENOENT);
}

/* A regular file whose st_size understates it (procfs says 0, as a file
 * that grows after fstat would): read through to the end, and still cut at
 * max + 1 bytes. */
static void read_file_larger_than_its_st_size(void **state) {
  (void)state;
  char *data = NULL;
  size_t len = 0;
  assert_int_equal(cynic__file_read("/proc/self/status", 1 << 20, &data, &len), 0);
  assert_true(len > 64);
  assert_int_equal(strlen(data), len);
  assert_non_null(strstr(data, "Name:"));
  free(data);
  assert_int_equal(cynic__file_read("/proc/self/status", 64, &data, &len), CYNIC__FILE_ETOOBIG);
  assert_null(data);
}

static void read_refuses_what_is_not_regular(void **state) {
  (void)state;
  const char *p = path_in("fifo");
  assert_int_equal(mkfifo(p, 0600), 0);
  char *data = NULL;
  size_t len = 0;
  /* returns at once: the open does not wait for a writer */
  assert_int_equal(cynic__file_read(p, 100, &data, &len), CYNIC__FILE_EFIFO);
  assert_int_equal(cynic__file_read("/dev/zero", 100, &data, &len), CYNIC__FILE_EDEVICE);
  assert_int_equal(cynic__file_read(dir, 100, &data, &len), -EISDIR);
  assert_null(data);
  assert_string_equal(cynic__file_strerror(CYNIC__FILE_EFIFO),
                      "is a FIFO (named pipe), not a regular file");
  unlink(p);
}

static void open_log_kinds(void **state) {
  (void)state;
  int err = 0;
  /* a regular file: created, appended to */
  const char *p = path_in("log");
  FILE *f = cynic__file_open_log(p, &err);
  assert_non_null(f);
  fputs("one\n", f);
  fclose(f);
  f = cynic__file_open_log(p, &err);
  assert_non_null(f);
  fputs("two\n", f);
  assert_int_equal(fcntl(fileno(f), F_GETFL) & O_NONBLOCK, 0); /* blocking once open */
  fclose(f);
  char *data = NULL;
  size_t len = 0;
  assert_int_equal(cynic__file_read(p, 100, &data, &len), 0);
  assert_string_equal(data, "one\ntwo\n");
  free(data);
  /* a character device */
  f = cynic__file_open_log("/dev/null", &err);
  assert_non_null(f);
  fclose(f);
  /* a FIFO nobody reads: refused at once; with a reader: taken */
  const char *q = path_in("logfifo");
  assert_int_equal(mkfifo(q, 0600), 0);
  assert_null(cynic__file_open_log(q, &err));
  assert_int_equal(err, -ENXIO);
  int rd = open(q, O_RDONLY | O_NONBLOCK);
  assert_true(rd >= 0);
  f = cynic__file_open_log(q, &err);
  assert_non_null(f);
  fputs("line\n", f);
  fflush(f);
  char buf[16] = "";
  assert_int_equal(read(rd, buf, sizeof buf - 1), 5);
  assert_string_equal(buf, "line\n");
  fclose(f);
  close(rd);
  unlink(q);
  /* a directory */
  assert_null(cynic__file_open_log(dir, &err));
  assert_int_equal(err, -EISDIR);
  unlink(p);
}

/* The first line of `path`, or "" when it does not exist. */
static const char *content(const char *path) {
  static char buf[64];
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f != NULL) {
    if (fgets(buf, sizeof buf, f) == NULL)
      buf[0] = '\0';
    fclose(f);
  }
  return buf;
}

/* logrotate's shift: log -> log.1 -> log.2, the oldest beyond `keep` is
 * replaced; a missing log.N is skipped; the new name is reported. */
static void rotate_shifts_and_keeps(void **state) {
  (void)state;
  char log[128], one[140], two[140], three[140], rotated[160];
  snprintf(log, sizeof log, "%s", path_in("app.log"));
  snprintf(one, sizeof one, "%s.1", log);
  snprintf(two, sizeof two, "%s.2", log);
  snprintf(three, sizeof three, "%s.3", log);
  write_file(log, "a", 1);
  assert_int_equal(cynic__file_rotate(log, 2, rotated, sizeof rotated), 0); /* no .1 yet */
  assert_string_equal(rotated, one);
  assert_string_equal(content(one), "a");
  assert_int_equal(access(log, F_OK), -1);
  write_file(log, "b", 1);
  assert_int_equal(cynic__file_rotate(log, 2, NULL, 0), 0);
  write_file(log, "c", 1);
  assert_int_equal(cynic__file_rotate(log, 2, NULL, 0), 0);
  assert_string_equal(content(one), "c");
  assert_string_equal(content(two), "b"); /* "a" was the oldest beyond keep 2 */
  assert_int_equal(access(three, F_OK), -1);
  /* nothing to rotate: the error of the last rename */
  assert_int_equal(cynic__file_rotate(log, 2, NULL, 0), -ENOENT);
  unlink(one);
  unlink(two);
}

int main(void) {
  assert_non_null(mkdtemp(dir));
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(read_regular_file),
      cmocka_unit_test(read_file_larger_than_its_st_size),
      cmocka_unit_test(read_refuses_what_is_not_regular),
      cmocka_unit_test(open_log_kinds),
      cmocka_unit_test(rotate_shifts_and_keeps),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  rmdir(dir);
  return rc;
}
