#!/bin/sh
# Compiles every ```c block of a Markdown file as its own translation unit
# against the public headers; a block with a main() is also linked with
# libcynic and run. $DOC_CFLAGS adds flags (the sanitizer builds pass their
# -fsanitize so the example links with the instrumented library). Fails on the first block that does not build or exits
# non-zero, naming the block's line in the document.
set -eu
cc="$1"; doc="$2"; inc="$3"; lib="$4"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v dir="$tmp" '
  /^```c[[:space:]]*$/ { n++; inblock = 1; file = sprintf("%s/block%03d_line%d.c", dir, n, NR + 1); next }
  /^```/ && inblock { inblock = 0; close(file); next }
  inblock { print > file }
' "$doc"
count=0
for src in "$tmp"/block*.c; do
  [ -e "$src" ] || { echo "no \`\`\`c blocks in $doc" >&2; exit 1; }
  count=$((count + 1))
  name=$(basename "$src" .c)
  line=${name#*_line}
  if grep -q 'int main' "$src"; then
    "$cc" -std=c11 -Wall -Wextra -Werror ${DOC_CFLAGS:-} -I"$inc" "$src" "$lib" -lpthread -lm -o "$tmp/$name" ||
      { echo "$doc:$line: example does not build" >&2; exit 1; }
    "$tmp/$name" > /dev/null || { echo "$doc:$line: example exited non-zero" >&2; exit 1; }
  else
    "$cc" -std=c11 -Wall -Wextra -Werror ${DOC_CFLAGS:-} -I"$inc" -c "$src" -o "$tmp/$name.o" ||
      { echo "$doc:$line: example does not compile" >&2; exit 1; }
  fi
done
echo "$count examples in $doc build"
