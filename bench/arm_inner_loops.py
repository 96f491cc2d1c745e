#!/usr/bin/env python3
"""Instruction counts of the hot inner loops in the aarch64 assembly of ICHKernels.

`bash scripts/check-aarch64.sh` writes .build-a64/kernels-armv8-a.s and kernels-cortex-a76.s; this script
finds, in each function whose symbol contains one of the given names, every innermost loop (a label and the
backward branch to it with no other label in between) that multiplies, and prints its instruction histogram:
the numbers bench/README.md reports.

    python3 bench/arm_inner_loops.py .build-a64/kernels-cortex-a76.s ConvDot ConvGEMM
"""
import collections
import re
import sys

MULTIPLIES = ("sdot", "udot", "smull", "smull2", "umull", "smlal", "smlal2", "sadalp", "mla", "mul", "madd")


def functions(lines):
    """(symbol, [lines]) for each global function body."""
    name, body = None, []
    for line in lines:
        m = re.match(r"^(\$s\S+|[A-Za-z_]\S*):\s*(//.*)?$", line)
        if m and not line.startswith(".L"):
            if name:
                yield name, body
            name, body = m.group(1), []
        elif name:
            body.append(line)
    if name:
        yield name, body


def inner_loops(body):
    """Innermost loops: label L, then instructions, then a branch back to L, with no label in between."""
    labels = {}
    for i, line in enumerate(body):
        m = re.match(r"^(\.LBB\w+):", line)
        if m:
            labels[m.group(1)] = i
    for i, line in enumerate(body):
        m = re.match(r"^\s+(b\.\w+|b|cbnz|cbz|tbnz|tbz)\s+.*?(\.LBB\w+)\s*$", line)
        if not m or m.group(2) not in labels or labels[m.group(2)] >= i:
            continue
        start = labels[m.group(2)]
        segment = body[start + 1:i + 1]
        if any(re.match(r"^\.LBB\w+:", s) for s in segment):
            continue
        instructions = [s.split()[0] for s in segment if s.strip() and not s.strip().startswith(("//", "."))]
        yield m.group(2), instructions


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, names = sys.argv[1], sys.argv[2:]
    with open(path) as f:
        lines = f.read().splitlines()
    for symbol, body in functions(lines):
        if not any(n in symbol for n in names):
            continue
        for label, instructions in inner_loops(body):
            counts = collections.Counter(instructions)
            if not any(counts[m] for m in MULTIPLIES):
                continue
            calls = counts["bl"] + counts["blr"]
            short = next(n for n in names if n in symbol)
            histogram = ", ".join(f"{n} {c}" for n, c in counts.most_common())
            print(f"{short} {label}: {len(instructions)} instructions ({histogram}){'; CALLS' if calls else ''}")


if __name__ == "__main__":
    main()
