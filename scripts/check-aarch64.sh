#!/usr/bin/env bash
# Proves the kernels module portable: compiles Sources/ICHKernels (standard library only) for aarch64 with the
# shared a64 tool, for generic armv8-a (Raspberry Pi 4) and cortex-a76 (Raspberry Pi 5), and fails if it
# does not compile or imports more than the standard library. Writes the assembly to .build-a64/ for inspection
# (../shared/tools/a64/loop-stats.sh counts the instructions of each inner loop).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tool=${A64_TOOL:-$root/../shared/tools/a64}
# A fresh clone has no shared tool beside it: say so and pass, so `make test` works anywhere. CI has the tool
# (or sets A64_TOOL), so CI still runs the check; A64_REQUIRED=1 turns the skip into a failure.
if [ ! -x "$tool/compile.sh" ]; then
    if [ "${A64_REQUIRED:-0}" = 1 ]; then
        echo "check-aarch64: $tool/compile.sh not found and A64_REQUIRED=1" >&2
        exit 1
    fi
    echo "check-aarch64: SKIPPED: the aarch64 check was not run because $tool/compile.sh is absent" \
        "(the shared a64 tool sits beside the repository, or set A64_TOOL); ICHKernels was not compiled for aarch64"
    exit 0
fi
out=$root/.build-a64
mkdir -p "$out"
files=("$root"/Sources/ICHKernels/*.swift)
if grep -lE '^import (Foundation|Glibc|Darwin)' "${files[@]}"; then
    echo "check-aarch64: the kernels module must import nothing but the standard library" >&2
    exit 1
fi
for target in armv8-a:"" cortex-a76:"--cpu cortex-a76"; do
    name=${target%%:*}
    # The Pi 5 build as scripts/arch-flags.sh makes it there: cortex-a76 with ICHD_DOTPROD (sdot, not int16 products).
    define=(); [ "$name" = cortex-a76 ] && define=(-- -DICHD_DOTPROD)
    # shellcheck disable=SC2086
    "$tool/compile.sh" ${target#*:} "${files[@]}" -o "$out/kernels-$name.s" "${define[@]}"
    echo "check-aarch64: ICHKernels compiles for aarch64 ($name): $out/kernels-$name.s"
done
