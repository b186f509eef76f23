#!/bin/sh
# Fails when the shared library exports a symbol outside the cynic_ namespace,
# or exports nothing at all.
set -eu
lib="$1"
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}')
if [ -z "$syms" ]; then
  echo "no exported symbols in $lib" >&2
  exit 1
fi
bad=$(printf '%s\n' "$syms" | grep -v '^cynic_' | grep -v '^cynic__' || true)
internal=$(printf '%s\n' "$syms" | grep '^cynic__' || true)
if [ -n "$bad$internal" ]; then
  echo "symbols exported outside the public cynic_ API:" >&2
  printf '%s\n' $bad $internal >&2
  exit 1
fi
echo "$(printf '%s\n' "$syms" | wc -l) symbols exported, all cynic_*"
