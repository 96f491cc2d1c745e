#!/usr/bin/env python3
"""A reasoned 4-thread Raspberry Pi figure from the 1-thread estimate (bench/arm/estimate.sh), the worker pool's
scaling measured on x86 with the same kernel and split (`ichd bench --kernel dot --threads 1|2 --json`), and
the memory traffic of each layer.

usage: four_threads.py ESTIMATE.json BENCH_1T.json BENCH_2T.json [--bandwidth GB/s] [--llc MiB]

Per layer type (profile.py's names), with p parts:
  work split: the dot kernel splits a layer into im2col blocks (ConvDot.blockPixels with parts = p) and the
    pool gives each part a contiguous range of blocks (WorkerPool.range), so the slowest part does
    imb_p x (work / p), imb_p = its pixels / (pixels / p), counted here from the same formulas;
  fixed cost c (per layer: waking the pool, the wait for the slowest part, cache misses of shared data), from
    x86: T2 = T1 x imb_2 / 2 + c  ->  c = T2 - T1 x imb_2 / 2 (at least 0), in ms as measured on x86, taken
    as is on the Pi (an assumption: the Pi's cores are slower, so `--fixed-scale` lets it be scaled);
  compute time on the Pi with 4 threads: T4 = T1_pi x imb_4 / 4 + c x scale;
  memory: the bytes that must come from DRAM -- weights once if they fit the last-level cache (--llc), else
    once per block (every part streams all of them for each block it runs), plus the input and output
    bytes -- divided by the DRAM bandwidth (--bandwidth, GB/s): a floor under the layer's time.
  4-thread time = max(compute, memory) per layer, summed with the layer counts.
"""
import json, math, sys

args = sys.argv[1:]
def opt(name, default):
    if name in args:
        i = args.index(name); v = float(args[i + 1]); del args[i:i + 2]; return v
    return default
bandwidth = opt("--bandwidth", 17.0)
llc = opt("--llc", 2.0) * 2**20
scale = opt("--fixed-scale", 1.0)
est, b1, b2 = (json.load(open(p)) for p in args[:3])
assert b1["threads"] == 1 and b2["threads"] == 2 and b1["kernel"] == b2["kernel"] == "dot", "1- and 2-thread dot-kernel runs"

# Layer shapes as profile.py has them: name -> (inC, outH, outW, outC, k, stride, pad, count) at 256 px.
SHAPES = {"stem": (3, 128, 128, 64, 7, 2, 3, 1), "layer1": (64, 64, 64, 64, 3, 1, 1, 4),
          "layer2.0.conv1": (64, 32, 32, 128, 3, 2, 1, 1), "layer2.conv": (128, 32, 32, 128, 3, 1, 1, 3),
          "layer2.ds": (64, 32, 32, 128, 1, 2, 0, 1), "layer3.0.conv1": (128, 16, 16, 256, 3, 2, 1, 1),
          "layer3.conv": (256, 16, 16, 256, 3, 1, 1, 3), "layer3.ds": (128, 16, 16, 256, 1, 2, 0, 1),
          "layer4.0.conv1": (256, 8, 8, 512, 3, 2, 1, 1), "layer4.conv": (512, 8, 8, 512, 3, 1, 1, 3),
          "layer4.ds": (256, 8, 8, 512, 1, 2, 0, 1)}

def kind(layer):
    """ichd bench's layer name -> profile.py's layer type."""
    if layer == "stem": return "stem"
    parts = layer.split(".")
    if not parts[0].startswith("layer") or len(parts) != 3: return None
    if parts[0] == "layer1": return "layer1"
    if parts[2] == "downsample": return f"{parts[0]}.ds"
    if parts[1] == "0" and parts[2] == "conv1": return f"{parts[0]}.0.conv1"
    return f"{parts[0]}.conv"

def block_pixels(depth, out_c, pixels, parts):  # ConvDot.blockPixels
    target = 16 << 10 if out_c * depth <= 192 << 10 else 160 << 10
    want = max(3, target // depth)
    blocks = (pixels + want - 1) // want
    blocks = max(1, (blocks + parts - 1) // parts * parts)
    n = (pixels + blocks - 1) // blocks
    return max(3, (n + 2) // 3 * 3)

def split(name, parts):
    """(imbalance of the slowest part, number of blocks) for `parts` parts."""
    inC, oh, ow, outC, k, _, _, _ = SHAPES[name]
    depth = (inC * k * k + 31) // 32 * 32
    pixels = oh * ow
    block = block_pixels(depth, outC, pixels, parts)
    blocks = (pixels + block - 1) // block
    base, extra = divmod(blocks, parts)
    first = 0; worst = 0
    for p in range(parts):  # WorkerPool.range: the first `extra` parts get one block more
        n = base + (1 if p < extra else 0)
        px = min(pixels, (first + n) * block) - min(pixels, first * block)
        worst = max(worst, px); first += n
    return worst / (pixels / parts), blocks

x86 = {}
for run, key in ((b1, "t1"), (b2, "t2")):
    for layer in run["layers"]:
        k = kind(layer["name"])
        if k: x86.setdefault(k, {"t1": 0.0, "t2": 0.0, "n": 0}); x86[k][key] += layer["median_ms"]
for layer in b1["layers"]:
    k = kind(layer["name"])
    if k: x86[k]["n"] += 1

print(f"{est['build']} build, llvm-mca {est['mcpu']} at {est['ghz']} GHz; x86 scaling from `ichd bench --kernel dot` (1 and 2 threads);")
print(f"DRAM {bandwidth:g} GB/s, last-level cache {llc / 2**20:g} MiB, fixed cost x{scale:g}")
print(f"{'layer':15} {'n':>2} {'T1 ms':>7} | {'x86 T1':>7} {'x86 T2':>7} {'imb2':>5} {'c ms':>6} | {'imb4':>5} {'blocks':>6} {'compute':>8} {'DRAM MB':>8} {'memory':>7} {'T4 ms':>7}")
t1_total = t4_total = 0.0
for name, layer in est["layers"].items():
    count = layer["count"]; t1 = layer["ms"]
    m = x86.get(name)
    imb2, _ = split(name, 2); imb4, blocks4 = split(name, 4)
    x1 = m["t1"] / m["n"]; x2 = m["t2"] / m["n"]
    c = max(0.0, x2 - x1 * imb2 / 2)
    compute = t1 * imb4 / 4 + c * scale
    by = layer["bytes"]
    weights = by["weights"] * (1 if by["weights"] <= llc else blocks4)
    dram = weights + by["input"] + by["output"]
    memory = dram / (bandwidth * 1e9) * 1e3
    t4 = max(compute, memory)
    t1_total += t1 * count; t4_total += t4 * count
    print(f"{name:15} {count:2} {t1:7.2f} | {x1:7.2f} {x2:7.2f} {imb2:5.2f} {c:6.3f} | {imb4:5.2f} {blocks4:6} {compute:8.2f} {dram / 1e6:8.2f} {memory:7.2f} {t4:7.2f}")
print(f"whole network (convolutions + requantisation): 1 thread {t1_total:.1f} ms, 4 threads {t4_total:.1f} ms "
      f"({t1_total / t4_total:.2f}x)")
