#!/bin/sh
# Runs a command with address-space randomisation off when the kernel allows
# it. ThreadSanitizer in gcc 12 aborts ("unexpected memory mapping") on
# kernels with a high vm.mmap_rnd_bits; without ASLR its shadow map fits.
if setarch "$(uname -m)" -R true 2>/dev/null; then
  exec setarch "$(uname -m)" -R "$@"
fi
exec "$@"
