#!/usr/bin/env bash
# check_symbols.sh NAME "LAUNCHER_OBJECTS" "KERNEL_OBJECTS": every segblocks::cuda symbol the
# launcher objects call (left undefined) is defined by one of the kernel objects. Without a GPU
# the extension is never linked and loaded here, so a kernel instantiation or configuration the
# launchers call but no .cu file defines would otherwise show only as an undefined symbol when
# segblocks_core._C (or _cutlass) is imported on a GPU host. Run by the Makefile's
# cuda-launcher-check and cutlass-check.
set -euo pipefail
name=$1 launchers=$2 kernels=$3
# shellcheck disable=SC2086  # word splitting of the object lists is intended
called=$(nm -u --format=just-symbols $launchers | { grep '^_ZN9segblocks4cuda' || true; } | sort -u)
# shellcheck disable=SC2086
defined=$(nm --defined-only --format=just-symbols $kernels | sort -u)
missing=$(comm -23 <(echo "$called") <(echo "$defined") | sed '/^$/d')
if [ -n "$missing" ]; then
  echo "$name: the launchers call kernels that no .cu file defines:"
  echo "$missing" | c++filt | sed 's/^/  /'
  exit 1
fi
echo "$name: the $(echo "$called" | sed '/^$/d' | wc -l) kernel symbols the launchers call are all defined"
