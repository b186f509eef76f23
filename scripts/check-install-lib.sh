#!/bin/sh
# Installs only the library component of a build (what `make install-lib`
# does) into a scratch DESTDIR: libraries, headers and cynic.pc must be there
# and no program. Then builds a program against it with pkg-config and runs
# it both ways the README describes for a custom prefix: an rpath, and
# LD_LIBRARY_PATH.
set -eu
build="$1"; cc="$2"; prefix="$3"; libdir="$4"
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
DESTDIR="$dest" cmake --install "$build" --component lib > /dev/null
root="$dest$prefix"
pcdir="$root/$libdir/pkgconfig"
[ -f "$pcdir/cynic.pc" ] || { echo "no cynic.pc in $pcdir" >&2; exit 1; }
for f in "$libdir/libcynic.a" "$libdir/libcynic.so" "$libdir/libcynic.so.0" \
         include/cynic/cynic.h include/cynic/guard.h; do
  [ -e "$root/$f" ] || { echo "missing $f" >&2; exit 1; }
done
if [ -e "$root/bin" ]; then
  echo "the library-only install installed programs:" >&2
  ls "$root/bin" >&2
  exit 1
fi
cat > "$dest/use.c" <<'C'
#include <cynic/cynic.h>
#include <stdio.h>
static int dependency(void *arg, uint64_t timeout_ns) { (void)arg; (void)timeout_ns; return 0; }
int main(void) {
  cynic_guard_config_t cfg;
  cynic_guard_config_default(&cfg);
  cynic_guard_t *g;
  if (cynic_guard_new(&cfg, &g) != 0) return 1;
  int rc = cynic_guard_call(g, NULL, 0, cynic_deadline_none(), dependency, NULL, NULL);
  cynic_guard_free(g);
  printf("libcynic %s: %s\n", cynic_version(), rc == 0 ? "ok" : cynic_strerror(rc));
  return rc == 0 ? 0 : 1;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs cynic)
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror ${INSTALL_CFLAGS:-} "$dest/use.c" $flags -o "$dest/use_env"
LD_LIBRARY_PATH="$root/$libdir" "$dest/use_env"
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror ${INSTALL_CFLAGS:-} "$dest/use.c" $flags \
  -Wl,-rpath,"$root/$libdir" -o "$dest/use_rpath"
"$dest/use_rpath"
