#!/usr/bin/env bash
# Raspberry Pi speed estimate of the int8 ResNet18's convolutions (bench/README.md, "ARM"), 1 thread, 256 x 256:
# every distinct convolution shape runs once (4 output rows at the layer's real width, ROWS to change; layer4's
# 8 rows whole) through
# ConvGEMM.convAccumulate + requantisation, the way the engine runs it on arm64 (dot kernel), in the aarch64 build
# under qemu-user with a translation-block trace (-d in_asm,exec,nochain; bench/arm/tbcount.c counts each
# block's executions); profile.py weights every executed block by llvm-mca's cycles for it (steady state: L1 hits,
# perfect branch prediction, so a lower bound on time) and scales to the whole layer and network.
#   Pi 5: cortex-a76 build (sdot), llvm-mca -mcpu=neoverse-n1 (the A76's server twin; LLVM's own cortex-a76
#         model is the A57's), 2.4 GHz.   Pi 4: armv8-a build, -mcpu=cortex-a72, 1.8 GHz.
# The 3x3 stride-1 layers run as Winograd F(2x2, 3x3) where the engine takes it on that build
# (ConvWinograd.preferred(with: .dot): the Pi 4 build; layer1-3), through ConvWinograd.convAccumulate with each
# band requantised as it is handed over; WINOGRAD=1 forces it wherever the shape allows, WINOGRAD=0 never (the
# what-ifs; their output goes to prof-BUILD-winogradN/ and estimate-BUILD-winogradN.json).
# Also prints the inner loops' llvm-mca cycles per iteration. usage: bash bench/arm/estimate.sh [cortex-a76|armv8-a]
# Needs the shared a64 tool (../shared/tools/a64), qemu-user-static, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
# llvm-19 (installed when missing). About 2 minutes per build on 2 cores. Output in .build-arm-bench/ (ARM_BUILD).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here=$root/bench/arm
tool=${A64_TOOL:-$root/../shared/tools/a64}
export ARM_BUILD=${ARM_BUILD:-$root/.build-arm-bench}
b=$ARM_BUILD
[ -x "$tool/compile.sh" ] || { echo "estimate: $tool/compile.sh not found (set A64_TOOL)" >&2; exit 1; }
missing=()
for p in qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross llvm-19; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=$([ "$(id -u)" = 0 ] || echo sudo)
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
builds=("${@:-cortex-a76 armv8-a}")
# shellcheck disable=SC2206
builds=(${builds[*]})
mkdir -p "$b"
[ -x "$b/tbcount" ] || gcc -O2 -o "$b/tbcount" "$here/tbcount.c"
src=("$root"/Sources/ICHKernels/*.swift "$root/scripts/arm/Entry.swift")
for build in "${builds[@]}"; do
    # The Pi 5 build as scripts/arch-flags.sh makes it there: cortex-a76 and ICHD_DOTPROD (sdot, not int16 products).
    flags=(); define=(); [ "$build" = cortex-a76 ] && { flags=(--cpu cortex-a76); define=(-- -DICHD_DOTPROD); }
    A64_MODULE=ICHKernels "$tool/compile.sh" -c "${flags[@]}" "${src[@]}" -o "$b/kern-$build.o" "${define[@]}"
    A64_MODULE=ICHKernels "$tool/compile.sh" "${flags[@]}" "${src[@]}" -o "$b/kern-$build.s" "${define[@]}"
    python3 "$root/scripts/arm/gen_stubs.py" "$b/kern-$build.o" "$b/stubs-$build.c"
    # Non-PIE, so qemu's guest PCs are the ELF's addresses.
    aarch64-linux-gnu-gcc -O2 -no-pie -Wl,--no-warn-rwx-segments -o "$b/prof-a64-$build" "$here/profile.c" \
        "$root/scripts/arm/mark.c" "$root/scripts/arm/runtime_stubs.c" "$b/stubs-$build.c" "$b/kern-$build.o"
    cpu=$([ "$build" = cortex-a76 ] && echo max || echo cortex-a72)
    tag=${WINOGRAD:+-winograd$WINOGRAD}
    bin=$b/prof-a64-$build out=$b/prof-$build$tag
    mkdir -p "$out"
    mark=$(llvm-nm "$bin" | awk '$3=="ichk_mark"{print $1}')
    # name inC outH outW outC k stride pad rows (the layer list and the rows simulated are profile.py's: ROWS,
    # default 4, or the whole layer where it has at most 8)
    python3 "$here/profile.py" --layers | while read -r name inC oh ow outC k s p rows; do
        fifo=$(mktemp -u /tmp/ichd-qfifo.XXXXXX)
        mkfifo "$fifo"
        "$b/tbcount" "$mark" < "$fifo" > "$out/$name.tsv" &
        qemu-aarch64-static -L /usr/aarch64-linux-gnu -cpu "$cpu" -d in_asm,exec,nochain -D "$fifo" "$bin" \
            "$inC" "$rows" "$ow" "$outC" "$k" "$s" "$p" > /dev/null
        wait
        rm -f "$fifo"
    done
    mcpu=$([ "$build" = cortex-a76 ] && echo neoverse-n1 || echo cortex-a72)
    echo
    PROFILE_TAG=$tag python3 "$here/profile.py" "$build" "$mcpu"
    echo
    echo "inner loops of $build (llvm-mca -mcpu=$mcpu, cycles per iteration):"
    python3 "$here/profile.py" --loops "$b/kern-$build.s" "$mcpu"
done
