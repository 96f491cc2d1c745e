#!/usr/bin/env python3
"""Where does the int8 model's error come from? A measurement aid for the converter (issue 3).

Simulates an `.ichm` model's int8 arithmetic in float64 with PyTorch (the model file's int8 weights, weight
scales, int32 biases and activation parameters; requantisation as docs/model-format.md says) next to the float
weights it was converted from (torchvision or fastai head), on slices of an `ichd preprocess --dataset` folder,
and reports the int8-float differences (logits and probabilities) with every activation quantised, then with
activation points left unquantised (kept at full precision) or layers' weights left float: the drop in error is
their share. The "only ..." variants keep one source of error and remove the others: the body's int8 weights,
the body's activation rounding, the head's quantisation (pooled features, hidden features, head weights).

    .cache/train-venv/bin/python bench/quant_ablation.py --model models/ichd-phantom-resnet18.ichm \
        --weights models/ichd-phantom-resnet18.safetensors --dataset .cache/phantom-data/test-ds --slices 400

Float64 simulation of integer arithmetic: exact for these sizes except the order of rounding in
requantisation, so the "all quantised" line matches `ichd eval --reference` closely, not bit for bit.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "training"))
from fastai_head import FastaiResNet18  # noqa: E402
from train import ResNet18, read_dataset, u8_round_trip  # noqa: E402


def read_ichm(path):
    raw = open(path, "rb").read()
    length = struct.unpack("<Q", raw[16:24])[0]
    meta = json.loads(raw[64:64 + length].rstrip(b"\0"))
    start = 64 + length
    start += (-start) % 64
    dtypes = {"i8": np.int8, "i32": np.int32, "f32": np.float32}
    tensors = {}
    for t in meta["tensors"]:
        a = np.frombuffer(raw, dtype=dtypes[t["dtype"]], count=int(np.prod(t["shape"])), offset=start + t["offset"])
        tensors[t["name"]] = torch.from_numpy(a.astype(np.float64).reshape(t["shape"]))
    return meta, tensors


class Int8Simulation:
    """The int8 network in float64; `exact` names activation points left at full precision."""

    def __init__(self, meta, tensors, folded=None):
        self.head = meta["head"]
        self.acts = meta["quantization"]["activations"]
        # Format version 2: the shortcut path (block outputs as adds and pool read them, downsample outputs,
        # pooled features) is int16, symmetric; empty for version 1 (bytes throughout).
        self.wide = meta["quantization"].get("wide_activations") or {}
        self.t = tensors
        self.folded = folded or {}  # layer name -> (float weight, float bias): weights left unquantised
        self.float_weights = set()
        self.activation_bits = None  # what-if: the activations on another grid (--activation-bits); None: the file's
        self.wide_headroom = 4  # what-if: the int16 path's headroom (--wide-headroom)

    def quant(self, name, x, relu):
        if name in self.exact:
            return F.relu(x) if relu else x
        p = self.acts[name]
        own = p.get("bits", 8)  # format version 3 files carry 12-bit activations
        bits = self.activation_bits or own
        if bits != 8 or own != 8:
            # The file's range on a grid of (2^bits - 1) steps (its own: 255 or 4095), zero still exact.
            f = (2 ** bits - 1) / (2 ** own - 1)
            z = round(p["zero_point"] * f)
            step = p["scale"] / f
            return step * (torch.clamp(torch.round(x / step) + z, 0, 2 ** bits - 1) - z)
        return u8_round_trip(x, p["scale"], p["zero_point"])

    def quant_wide(self, name, x, relu):
        """The int16 shortcut path's rounding (exact when `name` is left unquantised)."""
        if name in self.exact:
            return F.relu(x) if relu else x
        # what-if --wide-headroom: the model file's scales cover 4 x calibration's largest magnitude
        s = self.wide[name]["scale"] * self.wide_headroom / 4
        return torch.clamp(torch.round(x / s), 0 if relu else -32767, 32767) * s

    def points(self):
        """Every activation point the model file quantises, in network order."""
        return (["input", "stem"] + [n for n in sorted(set(self.acts) | set(self.wide)) if n.startswith("layer")]
                + self.head_points())

    def head_points(self):
        # A fastai head written before 2026-12-06 rounded its hidden features to bytes; now it is float32.
        return ["pool", "head.fc1"] if "head.fc1" in self.acts else ["pool"]

    def head_layers(self):
        return ["head.fc1", "head.fc2"] if self.head == "fastai" else ["fc"]

    def layer_names(self):
        """Every layer with weights (convolutions, then the head's)."""
        return [n[:-len(".weight_scale")] for n in self.t if n.endswith(".weight_scale")]

    def input_scale(self, layer):
        """The scale of what `layer` (a convolution or "fc") reads: its bias is stored in units of that scale
        times its weight scales. (The network's wiring, as `run` follows it.)"""
        if layer == "stem":
            return self.acts["input"]["scale"]
        if layer in ("fc", "head.fc1"):
            return self.scale("pool")
        if layer == "head.fc2":
            return self.acts["head.fc1"]["scale"]
        stage, block, kind = layer.split(".")
        if kind == "conv2":
            return self.acts[f"{stage}.{block}.conv1"]["scale"]
        s, b = int(stage[5:]), int(block)
        return self.acts["stem" if (s, b) == (1, 0) else f"{stage}.0" if b == 1 else f"layer{s - 1}.1"]["scale"]

    def scale(self, name):
        return self.acts[name]["scale"] if name in self.acts else self.wide[name]["scale"]

    def conv(self, name, x, in_scale, stride, pad):
        if name in self.float_weights:
            w, b = self.folded[name]
            return F.conv2d(x, w, b, stride=stride, padding=pad)
        w = self.t[f"{name}.weight"] * self.t[f"{name}.weight_scale"].view(-1, 1, 1, 1)
        b = self.t[f"{name}.bias"] * in_scale * self.t[f"{name}.weight_scale"]
        return F.conv2d(x, w, b, stride=stride, padding=pad)

    def linear(self, name, x):
        if name in self.float_weights:
            w, b = self.folded[name]
            return x @ w.T + b
        if f"{name}.weight_scale" not in self.t:  # a float32 layer of the model file (the fastai head)
            return x @ self.t[f"{name}.weight"].T + self.t[f"{name}.bias"]
        w = self.t[f"{name}.weight"] * self.t[f"{name}.weight_scale"].view(-1, 1)
        return x @ w.T + self.t[f"{name}.bias"] * self.input_scale(name) * self.t[f"{name}.weight_scale"]

    def run(self, x, exact=(), float_weights=(), wide_skip=False):
        """The network as the model file computes it. A model with an int16 shortcut path (format version 2)
        rounds the block outputs as the residual adds and the pool read them, the downsample outputs and the
        pooled features to their int16 grids. `float_weights`: layers computed with the float (folded)
        weights. `wide_skip` (for a version 1 model): that shortcut path at full precision, while the
        convolutions still read the block outputs as bytes."""
        self.exact = set(exact)
        self.float_weights = set(float_weights)

        def shortcut(name, v, relu):
            if self.wide:
                return self.quant_wide(name, v, relu)
            if wide_skip:
                return F.relu(v) if relu else v
            return self.quant(name, v, relu)

        x = self.quant("input", x, False)
        x = self.quant("stem", self.conv("stem", x, self.input_scale("stem"), 2, 3), True)
        x = F.max_pool2d(x, 3, 2, 1)
        skip = x
        for layer in range(1, 5):
            for b in range(2):
                name = f"layer{layer}.{b}"
                stride = 2 if layer > 1 and b == 0 else 1
                if f"{name}.downsample.weight" in self.t:
                    down = self.conv(f"{name}.downsample", x, self.input_scale(f"{name}.downsample"), stride, 0)
                    identity = shortcut(f"{name}.downsample", down, False)
                else:
                    identity = skip
                y = self.quant(f"{name}.conv1", self.conv(f"{name}.conv1", x, self.input_scale(f"{name}.conv1"), stride, 1), True)
                y = self.conv(f"{name}.conv2", y, self.input_scale(f"{name}.conv2"), 1, 1) + identity
                x = self.quant(name, y, True)
                skip = shortcut(name, y, True) if self.wide or wide_skip else x
        pooled = skip.mean(dim=(2, 3))
        if self.head == "fastai":  # concat pool: max then average
            pooled = torch.cat([skip.amax(dim=(2, 3)), pooled], 1)
        x = self.quant_wide("pool", pooled, False) if self.wide else self.quant("pool", pooled, False)
        if self.head == "fastai":
            hidden = self.linear("head.fc1", x)
            hidden = self.quant("head.fc1", hidden, True) if "head.fc1" in self.acts else F.relu(hidden)
            return self.linear("head.fc2", hidden)
        return self.linear("fc", x)


def load(model_path, weights_path):
    """The model file (metadata, tensors) and the float network it was converted from, in float64."""
    meta, tensors = read_ichm(model_path)
    from safetensors.torch import load_file
    state = {k: v.float() for k, v in load_file(weights_path).items()}
    if meta["head"] == "fastai":
        model = FastaiResNet18(len(meta["class_names"])).load_fastai(state)
    else:
        model = ResNet18(len(meta["class_names"]))
        model.load_state_dict(state)
    return meta, tensors, model.double().eval()


def pick_slices(model, raw, uncertain, count):
    """Indices of `count` slices spread evenly over the dataset `raw`; with `uncertain` P, over the slices where
    some class's float probability lies in [P, 1-P] (where the sigmoid is steep and differences are largest)."""
    candidates = np.arange(len(raw))
    if uncertain is not None:
        with torch.no_grad():
            p = torch.cat([torch.sigmoid(model(torch.from_numpy(raw[i:i + 64].astype(np.float64))))
                           for i in range(0, len(raw), 64)])
        candidates = torch.nonzero(((p >= uncertain) & (p <= 1 - uncertain)).any(dim=1)).flatten().numpy()
        print(f"{len(candidates)} of {len(raw)} slices have a class with float probability in [{uncertain}, {1 - uncertain}]")
    return candidates[np.linspace(0, len(candidates) - 1, min(count, len(candidates))).astype(int)]


def layers(model):
    """Every convolution with the BatchNorm after it, and the head's linear layers with the BatchNorm1d before
    them (fastai) or none (torchvision's fc), under the model file's layer names."""
    if isinstance(model, FastaiResNet18):
        out = layers(model.body)
        del out["fc"]
        h = model.head.layers
        return out | {"head.fc1": (h[4], h[2]), "head.fc2": (h[8], h[6])}
    out = {"stem": (model.conv1, model.bn1)}
    for layer in range(1, 5):
        for b, block in enumerate(getattr(model, f"layer{layer}")):
            out[f"layer{layer}.{b}.conv1"] = (block.conv1, block.bn1)
            out[f"layer{layer}.{b}.conv2"] = (block.conv2, block.bn2)
            if block.downsample is not None:
                out[f"layer{layer}.{b}.downsample"] = (block.downsample[0], block.downsample[1])
    out["fc"] = (model.fc, None)
    return out


def fold(model):
    """Each layer's (weight, bias), BatchNorm folded into convolutions, float64, named as the model file names layers."""
    def folded(layer, bn):
        if bn is None:
            return layer.weight, layer.bias
        k = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        if isinstance(layer, torch.nn.Linear):  # fastai: BatchNorm1d before a linear layer without bias
            return layer.weight * k.view(1, -1), layer.weight @ (bn.bias - bn.running_mean * k)
        return layer.weight * k.view(-1, 1, 1, 1), bn.bias - bn.running_mean * k

    return {name: folded(*pair) for name, pair in layers(model).items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--slices", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--per-point", action="store_true", help="also one variant per activation point")
    ap.add_argument("--uncertain", type=float, default=None, metavar="P",
                    help="only slices where some class's float probability lies in [P, 1-P]: the slices where "
                         "the sigmoid is steep and the largest probability differences occur")
    ap.add_argument("--only", nargs="*", metavar="VARIANT", help="run only these variants (names as printed)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--activation-bits", type=int, default=None,
                    help="what-if: the activations rounded to this many bits over the file's ranges (default: the file's own, 8 or 12)")
    ap.add_argument("--wide-headroom", type=float, default=4,
                    help="what-if: the int16 path's scales cover this many times calibration's largest magnitude (the converter: 4)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    meta, tensors, model = load(args.model, args.weights)

    _, _, raw = read_dataset(args.dataset)
    pick = pick_slices(model, raw, args.uncertain, args.slices)
    sim = Int8Simulation(meta, tensors, fold(model))
    sim.activation_bits = args.activation_bits
    sim.wide_headroom = args.wide_headroom

    points, weighted = sim.points(), sim.layer_names()
    head_points, head_layers = sim.head_points(), sim.head_layers()
    body_points = [p for p in points if p not in head_points]
    body_layers = [n for n in weighted if n not in head_layers]
    variants = [("all quantised", ())] + ([(f"{p} exact", (p,)) for p in points] if args.per_point else [])
    variants += [("block outputs exact", tuple(p for p in points if p.count(".") == 1)),
                 ("conv1 outputs exact", tuple(p for p in points if p.endswith(".conv1"))),
                 ("downsamples exact", tuple(p for p in points if p.endswith(".downsample"))),
                 ("residual stream exact", tuple(p for p in points if p.count(".") == 1 or p.endswith(".downsample"))),
                 ("residual stream, pool exact",
                  tuple(p for p in points if p.count(".") == 1 or p.endswith(".downsample") or p == "pool")),
                 ("all activations exact", tuple(points))]
    # (variant, exact activation points, layers with float weights)
    weight_variants = [("float weights, all quantised", (), weighted), ("float weights, all exact", tuple(points), weighted),
                       ("only body weights int8", tuple(points), head_layers),
                       ("only body activations quantised", tuple(head_points), weighted),
                       ("only head quantised", tuple(body_points), body_layers),
                       ("head in float", tuple(head_points), head_layers)]
    if meta.get("calibration", {}).get("channel_equalization"):
        # The model's integers belong to the channel-equalised network, not to the weights file's: mixing its
        # layers with float weights from the file would compare different networks. (Its float function is the
        # same, so the other variants hold.)
        print("channel-equalised model: the float-weight variants are left out")
        weight_variants = []
    # What an int16 shortcut path would buy a bytes-only (version 1) model; a version 2 model has one.
    skip_variants = [] if sim.wide else [("shortcut path exact", ()), ("shortcut path, pool exact", ("pool",))]
    if args.only:
        unknown = set(args.only) - {v[0] for v in variants + weight_variants + skip_variants}
        if unknown:
            sys.exit(f"unknown variants: {', '.join(sorted(unknown))}")
        variants, weight_variants, skip_variants = ([v for v in group if v[0] in args.only]
                                                    for group in (variants, weight_variants, skip_variants))
    diffs = {v[0]: [] for v in variants + weight_variants + skip_variants}
    refs = []
    with torch.no_grad():
        for i in range(0, len(pick), args.batch):
            x = torch.from_numpy(raw[pick[i:i + args.batch]].astype(np.float64))
            ref = model(x)
            refs.append(ref)
            for v, exact in variants:
                diffs[v].append(sim.run(x, exact) - ref)
            for v, exact, float_layers in weight_variants:
                diffs[v].append(sim.run(x, exact, float_weights=float_layers) - ref)
            for v, exact in skip_variants:
                diffs[v].append(sim.run(x, exact, wide_skip=True) - ref)
    ref = torch.cat(refs)
    print(f"{len(pick)} slices of {args.dataset}; logit and probability differences int8 - float, all classes")
    print(f"{'variant':32} {'mean|dlogit|':>12} {'max|dp|':>8} {'p99|dp|':>8}   max|dp| per class")
    for v in diffs:
        d = torch.cat(diffs[v])
        dp = (torch.sigmoid(ref + d) - torch.sigmoid(ref)).abs()
        per = " ".join(f"{m:.4f}" for m in dp.max(dim=0).values.tolist())
        print(f"{v:32} {d.abs().mean().item():12.4f} {dp.max().item():8.4f} {torch.quantile(dp.flatten(), 0.99).item():8.4f}   {per}")
        # What a classifier bias refitted for this variant would leave (the shift measured on these same
        # slices, so optimistic): the converter's bias correction was fitted for the all-quantised network.
        centred = d - d.mean(dim=0)
        dpc = (torch.sigmoid(ref + centred) - torch.sigmoid(ref)).abs()
        print(f"{'':32} mean shift removed: max|dp| {dpc.max().item():.4f}, per class "
              f"{' '.join(f'{m:.4f}' for m in dpc.max(dim=0).values.tolist())}")
        print(f"{'':32} mean dlogit per class {' '.join(f'{m:+.4f}' for m in d.mean(dim=0).tolist())}, sd {' '.join(f'{m:.4f}' for m in d.std(dim=0).tolist())}")


if __name__ == "__main__":
    main()
