#!/usr/bin/env python3
"""Would a smarter weight rounding than round-to-nearest help an `.ichm` model? A measurement aid for the
converter (issue 3), next to bench/quant_ablation.py, whose float64 simulation of the int8 arithmetic it uses.

GPTQ (Frantar et al., 2022) on the model's own int8 grid: for every convolution and the classifier, H = the sum
of x x^T over the input patches x the float network gives it on calibration slices; the weights of each output
channel are rounded column by column to the model file's per-channel weight scale, and each column's rounding
error is spread over the columns not yet rounded through the inverse of H (blocks of 128 columns, dampening
`--damp` x mean diagonal). That minimises each layer's own output error on the calibration inputs.

Both roundings get the converter's bias correction (bias - (w_q - w) . E[input]) and the classifier's mean logit
shift over the calibration slices, so they differ only in the integers. Reported on test slices: int8 - float
differences with every activation exact (the weights' own error) and with every activation quantised as the
model file says (what the engine would give).

    .cache/train-venv/bin/python bench/weight_rounding.py --model models/ichd-phantom-resnet18.ichm \\
        --weights models/ichd-phantom-resnet18.safetensors --calibrate .cache/phantom-data/val-ds \\
        --dataset .cache/phantom-data/test-ds --uncertain 0.05
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from quant_ablation import Int8Simulation, fold, layers, load, pick_slices
from train import read_dataset


def input_statistics(model, slices, batch=8):
    """Per layer: H = sum of x x^T over its input patches (x as the weight matrix's columns see them), and the
    mean of its input per channel (for bias correction), on the float network."""
    hessians, sums, counts = {}, {}, {}

    def hook(name, module, x):
        if isinstance(module, nn.Conv2d):
            sums[name] = sums.get(name, 0) + x.sum(dim=(0, 2, 3))
            counts[name] = counts.get(name, 0) + x.shape[0] * x.shape[2] * x.shape[3]
            u = F.unfold(x, module.kernel_size, padding=module.padding, stride=module.stride)
            x = u.transpose(1, 2).reshape(-1, u.shape[1])
        else:
            sums[name] = sums.get(name, 0) + x.sum(dim=0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        hessians[name] = hessians.get(name, 0) + x.T @ x

    handles = [m.register_forward_hook(lambda m, i, o, n=n: hook(n, m, i[0])) for n, (m, _) in layers(model).items()]
    with torch.no_grad():
        for i in range(0, len(slices), batch):
            model(torch.from_numpy(slices[i:i + batch].astype(np.float64)))
    for h in handles:
        h.remove()
    return hessians, {n: sums[n] / counts[n] for n in sums}


def round_to_nearest(w, scales, hessian, damp):
    return torch.clamp(torch.round(w / scales.view(-1, 1)), -127, 127)


def gptq(w, scales, hessian, damp, block=128):
    """Integers for `w` (rows x columns) on the grid `scales` (one per row), GPTQ order: column by column."""
    w = w.clone()
    h = hessian.clone()
    dead = torch.diag(h) == 0  # inputs never seen: their weights cannot matter
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(len(h), dtype=h.dtype)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros_like(w)
    for i1 in range(0, w.shape[1], block):
        i2 = min(i1 + block, w.shape[1])
        part, errors = w[:, i1:i2].clone(), torch.zeros(w.shape[0], i2 - i1, dtype=w.dtype)
        for i in range(i2 - i1):
            q[:, i1 + i] = torch.clamp(torch.round(part[:, i] / scales), -127, 127)
            errors[:, i] = (part[:, i] - q[:, i1 + i] * scales) / u[i1 + i, i1 + i]
            part[:, i:] -= errors[:, i:i + 1] * u[i1 + i, i1 + i:i2].unsqueeze(0)
        w[:, i2:] -= errors @ u[i1:i2, i2:]
    return q


def rounded_tensors(sim, tensors, folded, hessians, means, rounding, damp):
    """The model file's tensors with every layer's integers from `rounding` and its bias corrected for them."""
    out = dict(tensors)
    for name, (w, b) in folded.items():
        w2 = w.detach().reshape(w.shape[0], -1)
        scales = tensors[f"{name}.weight_scale"].view(-1)
        q = rounding(w2, scales, hessians[name], damp)
        error = (q * scales.view(-1, 1) - w2).reshape(w.shape)
        shift = (error.sum(dim=(2, 3)) @ means[name]) if error.dim() == 4 else error @ means[name]
        out[f"{name}.weight"] = q.reshape(tensors[f"{name}.weight"].shape)
        out[f"{name}.bias"] = (b.detach() - shift) / (sim.input_scale(name) * scales)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--calibrate", required=True, help="an `ichd preprocess --dataset` folder of calibration slices")
    ap.add_argument("--calibration-samples", type=int, default=64)
    ap.add_argument("--dataset", required=True, help="an `ichd preprocess --dataset` folder of test slices")
    ap.add_argument("--slices", type=int, default=384)
    ap.add_argument("--uncertain", type=float, default=None, metavar="P")
    ap.add_argument("--damp", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    meta, tensors, model = load(args.model, args.weights)
    # Only the int8 layers: a fastai head runs in float32 (its weights are in the model file as they are).
    folded = {name: wb for name, wb in fold(model).items() if f"{name}.weight_scale" in tensors}
    _, _, cal = read_dataset(args.calibrate)
    cal = cal[np.linspace(0, len(cal) - 1, min(args.calibration_samples, len(cal))).astype(int)]
    _, _, raw = read_dataset(args.dataset)
    test = raw[pick_slices(model, raw, args.uncertain, args.slices)]
    hessians, means = input_statistics(model, cal)
    sim = Int8Simulation(meta, tensors, folded)
    everything = sim.points()

    print(f"{len(test)} test slices, {len(cal)} calibration slices; int8 - float, classifier shift removed")
    print(f"{'weights':20} {'activations':12} {'mean|dlogit|':>12} {'max|dp|':>8} {'p99|dp|':>8}   max|dp| per class")
    for label, rounding in (("round to nearest", round_to_nearest), ("GPTQ", gptq)):
        sim.t = rounded_tensors(sim, tensors, folded, hessians, means, rounding, args.damp)
        for acts, exact in (("exact", everything), ("quantised", ())):
            with torch.no_grad():
                def diff(x):
                    x = torch.from_numpy(x.astype(np.float64))
                    ref = model(x)
                    return sim.run(x, exact) - ref, ref
                shift = torch.cat([diff(cal[i:i + 16])[0] for i in range(0, len(cal), 16)]).mean(dim=0)
                pairs = [diff(test[i:i + 16]) for i in range(0, len(test), 16)]
            d = torch.cat([p[0] for p in pairs]) - shift
            ref = torch.cat([p[1] for p in pairs])
            dp = (torch.sigmoid(ref + d) - torch.sigmoid(ref)).abs()
            print(f"{label:20} {acts:12} {d.abs().mean().item():12.4f} {dp.max().item():8.4f} "
                  f"{torch.quantile(dp.flatten(), 0.99).item():8.4f}   "
                  + " ".join(f"{m:.4f}" for m in dp.max(dim=0).values.tolist()))


if __name__ == "__main__":
    main()
