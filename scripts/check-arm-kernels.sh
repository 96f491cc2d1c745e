#!/usr/bin/env bash
# ARM bit-exactness check of the kernels (part of `make test`): Sources/ICHKernels plus scripts/arm/Entry.swift
# compiled for aarch64 with the shared a64 tool (cortex-a76 = Raspberry Pi 5 with sdot, generic armv8-a =
# Raspberry Pi 4), linked without an aarch64 Swift runtime (scripts/arm/runtime_stubs.c implements the few
# runtime calls the kernels make, gen_stubs.py makes the rest abort by name), run under qemu-user on the ResNet18
# shapes and 300 random shapes (scripts/arm/driver.c: dot, pairs and Winograd (both GEMM tiles) against ReferenceKernels in-process,
# requantisation, max pool), and compared byte for byte with the same driver built natively for x86_64.
#   Winograd runs with both GEMM tiles (the arm64 smlal lanes and the x86 vpmaddwd pairs) on every architecture.
#   cortex-a76 build on qemu -cpu max and -cpu cortex-a76, armv8-a build on -cpu cortex-a72; the cortex-a76 build
#   must die with SIGILL on -cpu cortex-a72 (proof that the sdot code really runs).
# Installs qemu-user-static, gcc-aarch64-linux-gnu and libc6-dev-arm64-cross when missing (as root or via sudo).
# Where ../shared/tools/a64 is absent (or the packages cannot be installed) it says it skipped and exits 0;
# A64_REQUIRED=1 makes that a failure. Build output: .build-arm-check/ (ARM_CHECK_BUILD). About a minute.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tool=${A64_TOOL:-$root/../shared/tools/a64}
here=$root/scripts/arm
b=${ARM_CHECK_BUILD:-$root/.build-arm-check}
skip() {
    if [ "${A64_REQUIRED:-0}" = 1 ]; then
        echo "check-arm-kernels: FAILED: $1 (and A64_REQUIRED=1)" >&2
        exit 1
    fi
    echo "check-arm-kernels: SKIPPED: the ARM bit-exactness check did not run because $1"
    exit 0
}
[ -x "$tool/compile.sh" ] || skip "$tool/compile.sh is absent (the shared a64 tool sits beside the repository, or set A64_TOOL)"
packages=(qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    echo "check-arm-kernels: installing ${missing[*]}"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
        skip "${missing[*]} could not be installed"
fi
mkdir -p "$b"
src=("$root"/Sources/ICHKernels/*.swift "$here/Entry.swift")
t0=$(date +%s)
build_a64() {  # NAME [compile.sh flags]: the Pi 5 build defines ICHD_DOTPROD as scripts/arch-flags.sh does there
    local name=$1; shift
    local define=(); [ "$name" = cortex-a76 ] && define=(-- -DICHD_DOTPROD)
    A64_MODULE=ICHKernels "$tool/compile.sh" -c "$@" "${src[@]}" -o "$b/kern-$name.o" "${define[@]}"
    python3 "$here/gen_stubs.py" "$b/kern-$name.o" "$b/stubs-$name.c"
    aarch64-linux-gnu-gcc -O2 -Wl,--no-warn-rwx-segments -o "$b/ichk-a64-$name" "$here/driver.c" "$here/mark.c" \
        "$here/runtime_stubs.c" "$b/stubs-$name.c" "$b/kern-$name.o"
}
build_a64 cortex-a76 --cpu cortex-a76 &
a76=$!
build_a64 armv8-a &
v8=$!
# The x86_64 reference: the same sources with the real Swift runtime, tuned as the product is (scripts/arch-flags.sh).
# shellcheck disable=SC2046
swiftc -O -wmo -parse-as-library -module-name ICHKernels $(bash "$root/scripts/arch-flags.sh" | sed 's/-Xswiftc //g') \
    -emit-object "${src[@]}" -o "$b/kern-x86.o"
clang -O2 -c "$here/driver.c" -o "$b/driver-x86.o"
clang -O2 -c "$here/mark.c" -o "$b/mark-x86.o"
swiftc "$b/kern-x86.o" "$b/driver-x86.o" "$b/mark-x86.o" -o "$b/ichk-x86"
wait "$a76" || { echo "check-arm-kernels: the cortex-a76 build failed" >&2; exit 1; }
wait "$v8" || { echo "check-arm-kernels: the armv8-a build failed" >&2; exit 1; }
echo "check-arm-kernels: built for aarch64 (cortex-a76, armv8-a) and x86_64 in $(($(date +%s) - t0)) s"

q() { qemu-aarch64-static -L /usr/aarch64-linux-gnu "$@"; }
rm -rf "$b/out"; mkdir -p "$b/out/x86"
rc=0
runs=(a76-max:max:cortex-a76 a76-a76:cortex-a76:cortex-a76 v8-a72:cortex-a72:armv8-a)
t=$(date +%s)
# All four runs at once (qemu is single-threaded); then compare.
"$b/ichk-x86" "$b/out/x86" > "$b/out/x86.txt" 2>/dev/null &
pids=($!)
for run in "${runs[@]}"; do
    IFS=: read -r dir cpu build <<<"$run"
    mkdir -p "$b/out/$dir"
    q -cpu "$cpu" "$b/ichk-a64-$build" "$b/out/$dir" > "$b/out/$dir.txt" 2>"$b/out/$dir.err" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
[ "$rc" = 0 ] || echo "check-arm-kernels: a run exited non-zero"
echo "check-arm-kernels: x86_64 and 3 qemu runs in $(($(date +%s) - t)) s"
for run in "${runs[@]}"; do
    IFS=: read -r dir cpu build <<<"$run"
    same=yes
    cmp -s "$b/out/x86.txt" "$b/out/$dir.txt" || same=NO
    n=0
    for f in "$b"/out/x86/*.i32; do
        n=$((n + 1))
        cmp -s "$f" "$b/out/$dir/$(basename "$f")" || same=NO
    done
    echo "check-arm-kernels: $build build on qemu -cpu $cpu: $(tail -1 "$b/out/$dir.txt"); stdout and $n output" \
        "buffers identical to x86_64: $same"
    if [ "$same" != yes ]; then
        rc=1
        diff "$b/out/x86.txt" "$b/out/$dir.txt" | head -20 || true
        tail -3 "$b/out/$dir.err" || true
    fi
done
sig=$( (ulimit -c 0; q -cpu cortex-a72 "$b/ichk-a64-cortex-a76" >/dev/null 2>&1); echo $?)
if [ "$sig" = 132 ]; then
    echo "check-arm-kernels: cortex-a76 build on qemu -cpu cortex-a72 (no dotprod) dies with SIGILL, as it must (its sdot runs)"
else
    echo "check-arm-kernels: the cortex-a76 build on qemu -cpu cortex-a72 exited $sig, not SIGILL: does it still use sdot?"
    rc=1
fi
echo "check-arm-kernels: x86_64: $(tail -1 "$b/out/x86.txt"); $(grep '^fuzz' "$b/out/x86.txt" | cut -d';' -f1)"
[ "$rc" = 0 ] && echo "check-arm-kernels: PASSED" || echo "check-arm-kernels: FAILED"
exit $rc
