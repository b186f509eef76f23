#!/bin/sh
# Installs a build into a scratch DESTDIR, then builds a program against it
# with pkg-config, statically and dynamically, and runs both.
set -eu
build="$1"; cc="$2"; prefix="$3"; libdir="$4"
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
DESTDIR="$dest" cmake --install "$build" > /dev/null
pcdir="$dest$prefix/$libdir/pkgconfig"
[ -f "$pcdir/cynic.pc" ] || { echo "no cynic.pc in $pcdir" >&2; exit 1; }
for lib in libcynic.a libcynic.so libcynic.so.0; do
  [ -e "$dest$prefix/$libdir/$lib" ] || { echo "missing $lib" >&2; exit 1; }
done
# The programs, and the harness's CLI name working from the install.
for prog in cynic cynic-harness cynic-harness-cli; do
  [ -x "$dest$prefix/bin/$prog" ] || { echo "missing bin/$prog" >&2; exit 1; }
done
"$dest$prefix/bin/cynic-harness-cli" -h 2>&1 | grep -q -i "usage" ||
  { echo "cynic-harness-cli does not run as the CLI" >&2; exit 1; }
cat > "$dest/use.c" <<'C'
#include <cynic/cynic.h>
#include <stdio.h>
int main(void) {
  cynic_breaker_config_t cfg;
  cynic_breaker_config_default(&cfg);
  cynic_breaker_t *b;
  if (cynic_breaker_new(&cfg, &b) != 0) return 1;
  cynic_breaker_free(b);
  printf("libcynic %s\n", cynic_version());
  return 0;
}
C
flags=$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs cynic)
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror ${INSTALL_CFLAGS:-} "$dest/use.c" $flags -o "$dest/use_shared"
LD_LIBRARY_PATH="$dest$prefix/$libdir" "$dest/use_shared"
sflags=$(PKG_CONFIG_SYSROOT_DIR="$dest" PKG_CONFIG_PATH="$pcdir" pkg-config --static --cflags --libs cynic)
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror ${INSTALL_CFLAGS:-} -static-libgcc "$dest/use.c" \
  "$dest$prefix/$libdir/libcynic.a" $(echo $sflags | sed 's/-lcynic//') -o "$dest/use_static"
"$dest/use_static"
