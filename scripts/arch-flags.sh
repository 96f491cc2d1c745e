#!/usr/bin/env bash
# SwiftPM flags that let LLVM use this CPU's vector units for ichd's kernels (printed on stdout, may be empty).
#   x86_64 with AVX2 + FMA       -> -target-cpu haswell (x86-64-v3; "x86-64-v3" itself is rejected by swiftc,
#                                   and znver4 emits AVX-512, which not every dev or CI machine has)
#   aarch64 with dot product     -> -target-cpu cortex-a76 (Raspberry Pi 5: sdot) and -D ICHD_DOTPROD (the dot
#                                   kernel multiplies with sdot, not in int16 products: ConvDot.prefersInt16Products)
#   anything else                -> nothing: the portable default build (SSE2 / generic armv8-a NEON)
# ICHD_ARCH_FLAGS overrides (set it to " " for the portable build).
set -euo pipefail
if [ -n "${ICHD_ARCH_FLAGS:-}" ]; then echo "$ICHD_ARCH_FLAGS"; exit 0; fi
flags=$(grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || true)
case "$(uname -m)" in
    x86_64)
        if grep -qw avx2 <<<"$flags" && grep -qw fma <<<"$flags"; then echo "-Xswiftc -target-cpu -Xswiftc haswell"; fi ;;
    aarch64)
        if grep -qw asimddp <<<"$flags"; then echo "-Xswiftc -target-cpu -Xswiftc cortex-a76 -Xswiftc -DICHD_DOTPROD"; fi ;;
esac
