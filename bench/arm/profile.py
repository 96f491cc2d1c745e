#!/usr/bin/env python3
"""Cycle estimate of each ResNet18 (256 x 256) convolution on a Cortex-A76 / A72 core, from qemu's per-translation-
block execution counts (bench/arm/estimate.sh) and llvm-mca's cycles per block (each block simulated as if
repeated, steady state: L1 hits, perfect branch prediction -- a lower bound on time).

usage: profile.py BUILD MCPU [--detail LAYER] [--ghz F]
         BUILD: cortex-a76 (run on qemu -cpu max, model it with MCPU neoverse-n1) or armv8-a (MCPU cortex-a72)
       profile.py --layers                 the layer list estimate.sh profiles (name inC outH outW outC k stride pad)
       profile.py --loops FILE.s MCPU      llvm-mca cycles per iteration of ConvDot's multiplying inner loops
Prints per layer: instructions and llvm-mca cycles per real layer (scaled from the ROWS simulated output rows),
split into the dot inner loop, the rest of the dot kernel (per-tile setup, reductions, stores), im2col, border
(the HWC copy), Winograd's GEMM loop, transforms and split copy (for the layers that run as Winograd:
ConvWinograd.preferred(with: .dot) on this build, or WINOGRAD=1/0 in estimate.sh), libc, requantisation; and the bytes each layer moves (weights, input, int32 accumulators, output)."""
import bisect, collections, json, os, re, subprocess, sys

# name: (inC, outH, outW, outC, k, stride, pad, count in the network)
LAYERS = {"stem": (3, 128, 128, 64, 7, 2, 3, 1), "layer1": (64, 64, 64, 64, 3, 1, 1, 4),
          "layer2.0.conv1": (64, 32, 32, 128, 3, 2, 1, 1), "layer2.conv": (128, 32, 32, 128, 3, 1, 1, 3),
          "layer2.ds": (64, 32, 32, 128, 1, 2, 0, 1), "layer3.0.conv1": (128, 16, 16, 256, 3, 2, 1, 1),
          "layer3.conv": (256, 16, 16, 256, 3, 1, 1, 3), "layer3.ds": (128, 16, 16, 256, 1, 2, 0, 1),
          "layer4.0.conv1": (256, 8, 8, 512, 3, 2, 1, 1), "layer4.conv": (512, 8, 8, 512, 3, 1, 1, 3),
          "layer4.ds": (256, 8, 8, 512, 1, 2, 0, 1)}
MCA = os.environ.get("LLVM_MCA", "/usr/lib/llvm-19/bin/llvm-mca")
ROWS = int(os.environ.get("ROWS", "4"))
def rows(oh):
    """Output rows simulated: ROWS, or the whole layer where it has at most 8 (layer4: its 8 x 8 outputs run as
    Winograd only in whole 4 x 4-tile blocks)."""
    return oh if oh <= 8 else ROWS
if sys.argv[1] == "--layers":
    for name, (inC, oh, ow, outC, k, st, p, _) in LAYERS.items():
        print(name, inC, oh, ow, outC, k, st, p, rows(oh))
    sys.exit(0)
if sys.argv[1] == "--loops":
    path, mcpu = sys.argv[2], sys.argv[3]
    lines = open(path).read().splitlines()
    func = None; body = []; funcs = []
    for line in lines:
        m = re.match(r"^(\$s\S+|[A-Za-z_]\S*):", line)
        if m and not line.startswith(".L"):
            if func: funcs.append((func, body))
            func, body = m.group(1), []
        elif func: body.append(line)
    if func: funcs.append((func, body))
    mult = re.compile(r"^\s+(sdot|smull2?|smlal2?|sadalp|mla|mul)\s")
    for func, body in funcs:
        if "ConvDot" not in func and "ConvWinograd" not in func: continue
        labels = {m.group(1): i for i, l in enumerate(body) for m in [re.match(r"^(\.LBB\w+):", l)] if m}
        for i, l in enumerate(body):
            m = re.match(r"^\s+(b\.\w+|b|cbnz|cbz)\s+.*?(\.LBB\w+)\s*$", l)
            if not m or m.group(2) not in labels or labels[m.group(2)] >= i: continue
            seg = body[labels[m.group(2)] + 1:i + 1]
            if any(re.match(r"^\.LBB\w+:", x) for x in seg): continue
            ins = [x.split("//")[0].rstrip() for x in seg if x.strip() and not x.strip().startswith(("//", "."))]
            if not any(mult.match(x) for x in ins): continue
            hist = collections.Counter(x.split()[0] for x in ins)
            src = ".Lloop:\n" + "\n".join(x.replace(m.group(2), ".Lloop") for x in ins) + "\n"
            r = subprocess.run([MCA, "-mtriple=aarch64", f"-mcpu={mcpu}", "-mattr=+dotprod", "-iterations=500", "-"],
                               input=src, capture_output=True, text=True)
            c = re.search(r"Total Cycles:\s+(\d+)", r.stdout)
            cyc = int(c.group(1)) / 500 if c else float("nan")
            macs = 0
            for x in ins:
                op = x.split()[0]
                if op == "sdot": macs += 16 if ".16b" in x else 8
                elif op in ("smull", "smull2", "smlal", "smlal2"): macs += 8 if ".8h" in x else 4
            name = subprocess.run(["swift-demangle", "-compact", func], capture_output=True, text=True).stdout.strip()
            print(f"  {name[:60]:60} {len(ins):3} instr, {macs:4} MACs, {cyc:6.2f} cyc, {macs / cyc:5.1f} MAC/cycle: " +
                  ", ".join(f"{n} {op}" for op, n in hist.most_common(6)))
    sys.exit(0)

here = os.path.dirname(os.path.abspath(__file__))
build_dir = os.environ.get("ARM_BUILD", os.path.join(os.getcwd(), ".build-arm"))
build, mcpu = sys.argv[1], sys.argv[2]
detail = sys.argv[sys.argv.index("--detail") + 1] if "--detail" in sys.argv else None
ghz = float(sys.argv[sys.argv.index("--ghz") + 1]) if "--ghz" in sys.argv else (2.4 if build == "cortex-a76" else 1.8)
binary = f"{build_dir}/prof-a64-{build}"
OBJDUMP = os.environ.get("OBJDUMP", "/opt/swift/usr/bin/llvm-objdump")
TAG = os.environ.get("PROFILE_TAG", "")  # estimate.sh's WINOGRAD what-ifs

# Symbols, and the binary's code as LLVM assembly text, by address.
syms = []
for line in subprocess.run(["llvm-nm", "-n", "--defined-only", binary], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW" and not parts[2].startswith("$x"):
        syms.append((int(parts[0], 16), parts[2]))
addrs = [a for a, _ in syms]
def symbol(pc):
    i = bisect.bisect_right(addrs, pc) - 1
    return syms[i][1] if i >= 0 else "?"
code = {}
dis = subprocess.run([OBJDUMP, "-d", "--no-show-raw-insn", "--mattr=+v8.2a,+dotprod,+fullfp16", "--section=.text", binary],
                     capture_output=True, text=True).stdout
for line in dis.splitlines():
    m = re.match(r"^\s+([0-9a-f]+):\s+(\S.*)$", line)
    if m:
        text = m.group(2).split("//")[0].strip()
        text = re.sub(r"0x[0-9a-f]+ <[^>]*>", ".Ltarget", text)  # branch targets -> a label llvm-mca can parse
        code[int(m.group(1), 16)] = text

def group(sym, block):
    d = subprocess.run(["swift-demangle", "-compact", sym], capture_output=True, text=True).stdout.strip() if sym.startswith("$s") else sym
    if sym in ("memset", "memcpy", "memmove") or "libc" in sym: return "libc " + sym
    if "ConvDot" in d and "im2col" in d: return "im2col"
    if "ConvDot.border" in d or "ConvGEMM.border" in d or "transpose8x8" in d: return "border"
    if "requantize" in d.lower(): return "requantize"
    if "ConvDot" in d and "convAccumulate" in d:
        # The K loop: one block that multiplies (sdot, or smull for the Pi 4 build) and branches back to itself.
        return "dot inner loop" if any(i.startswith(("sdot", "smull", "smlal")) for i in block) and len(block) <= 48 else "dot kernel other"
    if "ConvGEMM.convAccumulate" in d: return "convAccumulate setup"
    if "ConvWinograd" in d and "splitPairs" in d: return "wino split"
    if "ConvWinograd" in d:
        # The GEMM's K loop (smlal on arm64) as above; the rest is the input and output transforms and their loops.
        return "wino GEMM loop" if any(i.startswith(("smlal", "smull", "sdot")) for i in block) and len(block) <= 48 else "wino transforms"
    return "other " + d[:60]

cache_path = f"{build_dir}/mca-cache-{build}-{mcpu}.json"
cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
def cycles(pc, n):
    key = f"{pc:x}:{n}"
    if key not in cache:
        block = [code.get(pc + 4 * i, "nop") for i in range(n)]
        src = ".Ltarget:\n" + "\n".join(block) + "\n"
        r = subprocess.run([MCA, "-mtriple=aarch64", f"-mcpu={mcpu}", "-iterations=100", "-"], input=src, capture_output=True, text=True)
        m = re.search(r"Total Cycles:\s+(\d+)", r.stdout)
        cache[key] = int(m.group(1)) / 100 if m else n / 2.0  # unparsable block: assume IPC 2
        if not m: print(f"  (llvm-mca failed on {key}: {r.stderr.strip()[:120]})", file=sys.stderr)
    return cache[key]

total = collections.Counter(); tot_mac = 0
print(f"{build}{TAG} build, llvm-mca -mcpu={mcpu}; per real layer (x{ROWS} rows scaled), cycles in millions")
groups_order = ["dot inner loop", "dot kernel other", "im2col", "border", "wino GEMM loop", "wino transforms", "wino split",
                "libc memset", "libc memcpy", "convAccumulate setup", "requantize"]
print(f"{'layer':15} {'n':>2} {'MMAC':>7} {'Minstr':>7} {'Mcyc':>7} {'MAC/cyc':>7} {'ms@'+str(ghz):>7} | " + " ".join(f"{g[:12]:>12}" for g in groups_order) + " | other")
traffic = {}; per_layer = {}
for name, (inC, oh, ow, outC, k, st, pad, count) in LAYERS.items():
    path = f"{build_dir}/prof-{build}{TAG}/{name}.tsv"
    if not os.path.exists(path): continue
    scale = oh / rows(oh)
    by_group = collections.Counter(); instr = 0; blocks = collections.Counter()
    for line in open(path):
        phase, pc, n, c = line.split("\t"); phase, pc, n, c = int(phase), int(pc, 16), int(n), int(c)
        if phase not in (1, 2) or n <= 0: continue
        sym = symbol(pc)
        block = [code.get(pc + 4 * i, "?") for i in range(n)]
        g = "requantize" if phase == 2 and not sym.startswith("mem") else group(sym, block)
        cyc = cycles(pc, n) * c * scale
        by_group[g] += cyc; instr += n * c * scale
        blocks[(g, pc, n)] += c * scale
    mac = outC * oh * ow * inC * k * k
    ih, iw = oh * st, ow * st
    # Bytes a layer moves at least once: weights (int8), input (u8), int32 accumulators written and read back,
    # output bytes (u8) -- plus what im2col writes and reads (depth bytes per pixel) and the bordered copy.
    depth = (inC * k * k + 31) // 32 * 32
    traffic[name] = (outC * depth, inC * ih * iw, 8 * outC * oh * ow, outC * oh * ow, 2 * oh * ow * depth)
    cyc = sum(by_group.values())
    other = sum(v for g, v in by_group.items() if g not in groups_order)
    print(f"{name:15} {count:2} {mac/1e6:7.1f} {instr/1e6:7.2f} {cyc/1e6:7.2f} {mac/cyc:7.2f} {cyc/ghz/1e6:7.2f} | " +
          " ".join(f"{by_group[g]/1e6:12.3f}" for g in groups_order) + f" | {other/1e6:.3f}")
    for g, v in by_group.items(): total[g] += v * count
    per_layer[name] = {"count": count, "macs": mac, "mcycles": cyc / 1e6, "ms": cyc / ghz / 1e6,
                       "groups": {g: v / 1e6 for g, v in by_group.items() if v > 0}}
    tot_mac += mac * count
    if detail == name:
        for (g, pc, n), c in sorted(blocks.items(), key=lambda x: -x[1] * cycles(x[0][1], x[0][2]))[:25]:
            print(f"    {g:20} {pc:x} {n:3} instr x {c:10.0f} runs, {cycles(pc, n):6.2f} cyc/run: {symbol(pc)[:70]}")
json.dump(cache, open(cache_path, "w"))
cyc = sum(total.values())
print(f"whole network (convolutions, x counts): {tot_mac/1e9:.3f} GMAC, {cyc/1e6:.1f} Mcycles, {tot_mac/cyc:.2f} MAC/cycle")
for g, v in total.most_common(): print(f"    {g:30} {v/1e6:9.1f} Mcycles  {100*v/cyc:5.1f}%")
print(f"  at {ghz} GHz: 1 thread {cyc/ghz/1e6:.1f} ms (convolutions + their requantisation)")
for name, t in traffic.items():
    per_layer[name]["bytes"] = dict(zip(("weights", "input", "accumulators", "output", "im2col"), t))
json.dump({"build": build, "mcpu": mcpu, "ghz": ghz, "rows": ROWS, "total_mcycles": cyc / 1e6, "total_ms": cyc / ghz / 1e6,
           "groups": {g: v / 1e6 for g, v in total.items()}, "layers": per_layer},
          open(f"{build_dir}/estimate-{build}{TAG}.json", "w"), indent=1)
print("bytes per layer (KiB): weights, input, int32 accumulators written + read, output, im2col written + read")
for name, t in traffic.items():
    print(f"    {name:15} x{LAYERS[name][7]} " + " ".join(f"{v / 1024:8.0f}" for v in t))
