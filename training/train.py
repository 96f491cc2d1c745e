#!/usr/bin/env python3
"""Trains ichd's ResNet18 on slices preprocessed by the appliance itself (`ichd preprocess --dataset`).

The recipe of the research project (fastai ResNet18 on RSNA 2019, three CT windows, 256 px head crops,
flip/rotate/blur augmentation, one-cycle schedule, multi-label BCE over the six RSNA classes), reproduced in
plain PyTorch so that it runs from PyPI's CPU wheel with nothing else: no torchvision, no fastai, no
downloaded weights (there is no network for ImageNet weights here; the network starts from scratch).

Inputs are the exact tensors the appliance feeds its engine, so training and inference cannot drift apart;
augmentation works on those tensors. Output: the float weights as safetensors in torchvision layout (what
`ichd convert` reads), the alert thresholds chosen on the validation set, and a JSON log of every epoch.

See training/README.md for the one command that runs the whole pipeline (`make model`).
"""
import argparse
import csv
import hashlib
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]


# ---------------------------------------------------------------- the network (torchvision's key names)

class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x, tap, name):
        identity = x if self.downsample is None else tap(f"{name}.downsample", self.downsample(x))
        y = tap(f"{name}.conv1", F.relu(self.bn1(self.conv1(x))))
        return tap(name, F.relu(self.bn2(self.conv2(y)) + identity))


class ResNet18(nn.Module):
    """torchvision.models.resnet18 with the same state_dict keys, written out so no torchvision is needed."""

    def __init__(self, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, cout in enumerate([64, 128, 256, 512]):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.fc = nn.Linear(512, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        # Zero-initialised last BN of each block: every block starts as identity (torchvision's
        # zero_init_residual), which trains from scratch noticeably more steadily.
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def features(self, x, tap=None):
        """layer4's output. `tap(name, activation)` sees (and may replace) every activation the int8 model
        quantises, under the model file's names (input, stem, layerN.B.conv1, layerN.0.downsample, layerN.B)."""
        tap = tap or (lambda name, a: a)
        x = self.maxpool(tap("stem", F.relu(self.bn1(self.conv1(tap("input", x))))))
        for i in range(1, 5):
            for b, block in enumerate(getattr(self, f"layer{i}")):
                x = block(x, tap, f"layer{i}.{b}")
        return x

    def forward(self, x, tap=None):
        pooled = torch.flatten(F.adaptive_avg_pool2d(self.features(x, tap), 1), 1)
        return self.fc(tap("pool", pooled) if tap else pooled)


def u8_round_trip(a, scale, zero):
    """`a` quantised to u8 affine (scale, zero point) and back, as the int8 engine quantises an activation:
    round half to even, add the zero point, clamp to 0..255."""
    return scale * (torch.clamp(torch.round(a / scale) + zero, 0, 255) - zero)


class QuantisationNoise:
    """The int8 model's rounding, simulated on every activation the int8 model quantises, with each tensor's
    min-max range as calibration sets it (noise: a running average of batch ranges; grid: the whole range seen,
    so only what lies beyond it is clamped). `grid=False`: uniform noise of one quantisation step
    (range / 255); exact zeros of ReLU outputs stay exact, as they do in int8 (zero is a code point).
    `grid=True`: the rounding itself, u8 affine as the converter quantises (clamped to the range), gradients
    passing straight through. `weights=True` also rounds every convolution and linear weight to its
    per-output-channel symmetric int8 grid (-127..127; BatchNorm folding scales a channel, so the folded weights
    land on the same integers): with noise, uniform noise of one such step. `run(model, x)` is the network
    under this rounding."""

    def __init__(self, generator, momentum=0.9, grid=False, weights=False):
        self.generator = generator
        self.momentum = momentum
        self.grid = grid
        self.round_weights = weights
        self.low, self.high = {}, {}

    def observe(self, name, a):
        lo, hi = float(a.detach().min()), float(a.detach().max())
        if self.grid:  # the whole range seen, as min-max calibration takes it: values beyond it are clamped
            self.low[name], self.high[name] = min(self.low.get(name, lo), lo), max(self.high.get(name, hi), hi)
            return a
        m = self.momentum
        self.low[name] = m * self.low[name] + (1 - m) * lo if name in self.low else lo
        self.high[name] = m * self.high[name] + (1 - m) * hi if name in self.high else hi
        return a

    def inject(self, name, a):
        lo, hi = min(self.low[name], 0.0), max(self.high[name], 0.0)
        step = (hi - lo) / 255
        if self.grid:
            if step == 0:
                return a
            return a + (u8_round_trip(a, step, round(-lo / step)) - a).detach()
        noise = (torch.rand(a.shape, generator=self.generator, device="cpu").to(a.device) - 0.5) * step
        return a + (noise if lo < 0 else noise * (a > 0))

    def weights(self, model):
        """The weights under this rounding (none replaced without `weights`), by parameter name."""
        if not self.round_weights:
            return {}
        out = {}
        for name, w in model.named_parameters():
            if name.endswith("weight") and w.dim() in (2, 4):
                step = (w.detach().abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127).clamp(min=1e-12)
                if self.grid:
                    out[name] = w + (torch.round(w / step) * step - w).detach()
                else:
                    out[name] = w + (torch.rand(w.shape, generator=self.generator).to(w.device) - 0.5) * step
        return out

    def run(self, model, x):
        return torch.func.functional_call(model, self.weights(model), (x, self.inject))


# ---------------------------------------------------------------- data

def read_labels(path):
    """RSNA format: ID,Label rows ID_<key>_<subtype>. Returns {key: [6 x 0/1]}; malformed rows are errors."""
    labels = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f)):
            if n == 0 and row and row[0] == "ID":
                continue
            if len(row) != 2 or not row[0].startswith("ID_") or row[1] not in ("0", "1"):
                sys.exit(f"{path}:{n + 1}: not an RSNA label row: {row}")
            key, _, subtype = row[0][3:].rpartition("_")
            if subtype not in CLASSES:
                sys.exit(f"{path}:{n + 1}: unknown subtype {subtype!r}")
            labels.setdefault(key, [0] * len(CLASSES))[CLASSES.index(subtype)] = int(row[1])
    return labels


def read_dataset(folder):
    """An `ichd preprocess --dataset` folder: its preprocessing description, its index rows and its slices as
    half floats (N x channels x size x size)."""
    with open(os.path.join(folder, "preprocessing.json")) as f:
        preprocessing = json.load(f)
    size = preprocessing["output_size"]
    channels = len(preprocessing["windows"])
    with open(os.path.join(folder, "index.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    raw = np.fromfile(os.path.join(folder, "tensors.f16"), dtype="<f2")
    if raw.size != len(rows) * channels * size * size:
        sys.exit(f"{folder}: tensors.f16 holds {raw.size} values, index.csv promises {len(rows)} slices")
    return preprocessing, rows, raw.reshape(len(rows), channels, size, size)


class SliceSet:
    """An `ichd preprocess --dataset` folder with its labels, held in memory as half floats."""

    def __init__(self, folder, labels_path):
        self.preprocessing, rows, raw = read_dataset(folder)
        labels = read_labels(labels_path)
        missing = [r["key"] for r in rows if r["key"] not in labels]
        if missing:
            sys.exit(f"{folder}: {len(missing)} slices have no label in {labels_path} (first: {missing[0]})")
        self.x = torch.from_numpy(raw)
        self.y = torch.tensor([labels[r["key"]] for r in rows], dtype=torch.float32)
        self.series = [r["series"] for r in rows]
        # The value air takes after normalisation (every window 0): what rotation pads with.
        self.background = torch.tensor([-m / s for m, s in zip(self.preprocessing["mean"], self.preprocessing["std"])])
        self.std = torch.tensor(self.preprocessing["std"], dtype=torch.float32)

    def __len__(self):
        return len(self.y)


def randomise_intensity(y, background, std, generator):
    """Domain randomisation of the windows (issue 20), per slice and channel, on what is not air or below the
    window (exact zeros stay zero): contrast x0.85-1.15 and brightness +-0.05 of the window width; and
    Gaussian noise of 0-0.04 window widths on half the slices (noise level and dose differ between scanners).
    The phantoms already vary tissue densities, noise texture and anatomy per series; this varies what the
    windows make of them, so that no fixed grey level or noise grain can stand in for blood."""
    n, c = y.shape[:2]
    u = lambda *shape: torch.rand(*shape, generator=generator)
    bg, s = background.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    x01 = (y - bg) * s  # y = (x01 - mean) / std and bg = -mean / std
    tissue = (x01 > 0).float()
    gain = (0.85 + 0.3 * u(n, c)).view(n, c, 1, 1)
    bias = ((u(n, c) - 0.5) * 0.1).view(n, c, 1, 1)
    sigma = (0.04 * u(n) * (u(n) < 0.5).float()).view(n, 1, 1, 1)
    noise = torch.randn(y.shape, generator=generator) * sigma
    x01 = (x01 * gain + (bias + noise) * tissue).clamp(0, 1)
    return x01 / s + bg


def augment(x, background, generator, std=None):
    """Flips, rotations within +-15 degrees, zoom 0.9-1.1, shifts of 4%, blur: on normalised tensors; with
    `std` (the normalisation's), also the intensity randomisation of `randomise_intensity`."""
    n = x.shape[0]
    u = lambda *shape: torch.rand(*shape, generator=generator)
    angle = (u(n) * 30 - 15) * math.pi / 180
    scale = 0.9 + 0.2 * u(n)
    flip = torch.where(u(n) < 0.5, -1.0, 1.0)
    shift = (u(n, 2) - 0.5) * 0.08
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    shifted = x - background.view(1, -1, 1, 1)  # pad with air: zero after shifting
    y = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Blur a quarter of the slices (scanner kernels differ): separable Gaussian, sigma 0.5-1.2 px.
    blur = u(n) < 0.25
    if blur.any():
        sigma = 0.5 + 0.7 * float(u(1))
        t = torch.arange(-3, 4, dtype=torch.float32)
        k = torch.exp(-t * t / (2 * sigma * sigma))
        k = k / k.sum()
        c = y.shape[1]
        b = y[blur]
        b = F.conv2d(F.pad(b, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7).repeat(c, 1, 1, 1), groups=c)
        b = F.conv2d(F.pad(b, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1).repeat(c, 1, 1, 1), groups=c)
        y[blur] = b
    y = y + background.view(1, -1, 1, 1)
    return y if std is None else randomise_intensity(y, background, std, generator)


# ---------------------------------------------------------------- metrics

def auc(scores, labels):
    """Area under the ROC curve (Mann-Whitney, ties counted half); None without both classes."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    p, q = labels.sum(), (~labels).sum()
    if p == 0 or q == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - p * (p + 1) / 2) / (p * q))


def rates(scores, labels, threshold):
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    called = scores >= threshold
    sens = float((called & labels).sum() / labels.sum()) if labels.any() else None
    spec = float((~called & ~labels).sum() / (~labels).sum()) if (~labels).any() else None
    return sens, spec


def series_scores(probabilities, truth, series):
    top, positive = {}, {}
    for p, t, s in zip(probabilities, truth, series):
        top[s] = max(top.get(s, 0.0), float(p))
        positive[s] = positive.get(s, False) or bool(t)
    keys = sorted(top)
    return np.array([top[k] for k in keys]), np.array([positive[k] for k in keys])


def choose_thresholds(probabilities, truth, series):
    """Per subtype, the threshold with the best sensitivity + specificity on validation slices (Youden).
    For `any`, which lights the lamp through the series rule (a series alarms when one slice reaches the
    threshold), the threshold with the widest margin: when the validation series separate, the midpoint in
    logit space between the highest negative series and the lowest positive series, so that neither side
    sits near it (nor flips between the float and the int8 model). When they do not separate, Youden on
    slices, lowered while series sensitivity is below 1 and series specificity stays at least 0.95."""
    thresholds = []
    for c in range(len(CLASSES)):
        s, y = probabilities[:, c], truth[:, c].astype(bool)
        if not y.any() or y.all():
            thresholds.append(0.5)
            continue
        candidates = np.unique(np.clip(s, 0.01, 0.99))
        best = max(candidates, key=lambda t: sum(rates(s, y, t)))
        thresholds.append(float(best))
    s_any, y_any = series_scores(probabilities[:, 0], truth[:, 0], series)
    logit = lambda p: math.log(p / (1 - p))
    if y_any.any() and (~y_any).any() and s_any[~y_any].max() < s_any[y_any].min():
        lo, hi = (min(max(float(x), 1e-6), 1 - 1e-6) for x in (s_any[~y_any].max(), s_any[y_any].min()))
        thresholds[0] = 1 / (1 + math.exp(-(logit(lo) + logit(hi)) / 2))
    else:
        t = thresholds[0]
        for candidate in sorted(np.unique(np.clip(probabilities[:, 0], 0.01, 0.99)), reverse=True):
            if candidate >= t:
                continue
            sens, spec = rates(s_any, y_any, t)
            if sens is None or sens >= 1.0 or rates(s_any, y_any, candidate)[1] < 0.95:
                break
            t = float(candidate)
        thresholds[0] = t
    # Rounded down to 3 decimals (the file is read by people as well).
    return [math.floor(x * 1000) / 1000 for x in thresholds]


# ---------------------------------------------------------------- training

def predict(model, data, batch=64):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(data), batch):
            out.append(torch.sigmoid(model(data.x[i:i + batch].float().contiguous(memory_format=torch.channels_last))))
    return torch.cat(out).numpy()


def evaluate(model, data):
    p = predict(model, data)
    y = data.y.numpy()
    eps = 1e-7
    pc = np.clip(p, eps, 1 - eps)
    bce = -(y * np.log(pc) + (1 - y) * np.log(1 - pc))
    weights = np.array([2, 1, 1, 1, 1, 1], dtype=np.float64)
    return p, {
        "weighted_log_loss": float((bce * weights).sum(1).mean() / weights.sum()),
        "auc": {c: auc(p[:, i], y[:, i]) for i, c in enumerate(CLASSES)},
    }


def noise_sensitivity(model, data, noise, batch=64, slices=256):
    """Mean squared logit change that simulated int8 rounding causes, and the largest probability change per
    class, on evenly spread slices of `data`."""
    model.eval()
    pick = torch.from_numpy(np.linspace(0, len(data) - 1, min(slices, len(data))).astype(np.int64))
    total, count, largest = 0.0, 0, torch.zeros(len(CLASSES))
    with torch.no_grad():
        for i in range(0, len(pick), batch):
            x = data.x[pick[i:i + batch]].float().contiguous(memory_format=torch.channels_last)
            clean, rounded = model(x), noise.run(model, x)
            d = rounded - clean
            total += float((d * d).sum())
            count += d.numel()
            largest = torch.maximum(largest, (torch.sigmoid(rounded) - torch.sigmoid(clean)).abs().amax(dim=0))
    return total / max(1, count), [round(float(v), 5) for v in largest]


def robust_finetune(model, train, val, args, generator, log, device):
    """Fine-tunes the trained network to be insensitive to int8 rounding: the loss adds to the clean BCE the
    mean squared difference between the logits with and without simulated rounding (weight `--robust-weight`)
    and, with `--robust-probability-weight`, the mean squared difference of the probabilities (what issue 3's
    0.02 aim is stated in: it weighs most the slices near a decision, where a logit change moves the
    probability most). `--robust-rounding grid` rounds as the int8 model does, `--robust-weights` rounds the
    weights too (QuantisationNoise). The float network stays the reference the int8 one is measured against,
    and learns to give the same answer when every activation (and with --robust-weights, every weight) is
    rounded to its int8 grid. BatchNorm statistics are frozen (eval mode), so the folded network the converter
    sees is the one trained here."""
    noise = QuantisationNoise(generator, grid=args.robust_rounding == "grid", weights=args.robust_weights)
    model.eval()
    with torch.no_grad():  # ranges before the first step
        for b in range(8):
            model(train.x[b * args.batch:(b + 1) * args.batch].float().to(device), noise.observe)
    steps = args.robust_epochs * (len(train) // args.batch)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.robust_lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    model.cpu()
    before, largest = noise_sensitivity(model, val, noise)
    model.to(device)
    log["robust_start"] = {"val_noise_change": before, "val_largest_probability_change": largest}
    print(f"robust fine-tuning ({args.robust_rounding}): validation mean squared logit change under int8 rounding "
          f"{before:.5f}, largest probability change per class {largest}", flush=True)
    for epoch in range(args.robust_epochs):
        started, total, spread, count = time.time(), 0.0, 0.0, 0
        order = torch.randperm(len(train), generator=generator)
        for b in range(len(train) // args.batch):
            idx = order[b * args.batch:(b + 1) * args.batch]
            x = augment(train.x[idx].float(), train.background, generator,
                        train.std if args.domain_randomisation else None).to(device).contiguous(memory_format=torch.channels_last)
            y = train.y[idx].to(device)
            clean = model(x, noise.observe)
            noisy = noise.run(model, x)
            bce = F.binary_cross_entropy_with_logits(clean, y)
            change = ((noisy - clean) ** 2).mean()
            loss = bce + args.robust_weight * change
            if args.robust_probability_weight:
                loss = loss + args.robust_probability_weight * ((torch.sigmoid(noisy) - torch.sigmoid(clean)) ** 2).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += bce.item() * len(idx)
            spread += change.item() * len(idx)
            count += len(idx)
        model.cpu()
        _, figures = evaluate(model, val)
        after, largest = noise_sensitivity(model, val, noise)
        model.to(device)
        entry = {"phase": "robust", "epoch": epoch + 1, "train_loss": total / count, "train_noise_change": spread / count,
                 "val_noise_change": after, "val_largest_probability_change": largest, "seconds": time.time() - started,
                 **{f"val_{k}": v for k, v in figures.items()}}
        log["epochs"].append(entry)
        print(f"robust epoch {epoch + 1}/{args.robust_epochs}: train BCE {entry['train_loss']:.4f}, logit change under "
              f"rounding train {entry['train_noise_change']:.5f} val {after:.5f} (largest probability change {largest}), "
              f"val weighted log loss {figures['weighted_log_loss']:.4f} ({entry['seconds']:.0f} s)", flush=True)
    model.cpu()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True, help="`ichd preprocess --dataset` folder of training slices")
    ap.add_argument("--train-labels", required=True, help="their RSNA-format labels.csv")
    ap.add_argument("--val", required=True, help="dataset folder of validation slices (thresholds, checkpoints)")
    ap.add_argument("--val-labels", required=True)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--name", default="ichd-phantom-resnet18", help="file name stem of the outputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs-small", type=int, default=6, help="epochs at --small-size (progressive resizing; 0: off)")
    ap.add_argument("--small-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=4, help="epochs at the full input size")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--amp", action="store_true", help="mixed precision (bfloat16 autocast; for GPUs and recent CPUs)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--init", help="start from these weights (safetensors, torchvision layout) instead of from scratch; "
                                   "with --epochs-small 0 --epochs 0 only the thresholds are chosen anew")
    ap.add_argument("--robust-epochs", type=int, default=0,
                    help="then fine-tune this many epochs to be insensitive to int8 rounding (robust_finetune)")
    ap.add_argument("--robust-weight", type=float, default=10.0, help="weight of the logit change under rounding")
    ap.add_argument("--robust-lr", type=float, default=2e-4)
    ap.add_argument("--robust-probability-weight", type=float, default=0.0,
                    help="weight of the probability change under rounding (0: logits only)")
    ap.add_argument("--robust-rounding", choices=["noise", "grid"], default="noise",
                    help="noise: uniform noise of one step on activations; grid: round them to their int8 grids, "
                         "straight-through gradients")
    ap.add_argument("--robust-weights", action="store_true",
                    help="also round (grid) or perturb by one step (noise) every weight on its int8 grid")
    ap.add_argument("--domain-randomisation", action=argparse.BooleanOptionalAction, default=True,
                    help="randomise window contrast, brightness and noise per slice (randomise_intensity); "
                         "--no-domain-randomisation gives the recipe before issue 20")
    ap.add_argument("--half-weights", action=argparse.BooleanOptionalAction, default=True,
                    help="store convolution and linear weights as F16 (BatchNorm stays F32): half the file size")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)

    train, val = SliceSet(args.train, args.train_labels), SliceSet(args.val, args.val_labels)
    if train.preprocessing != val.preprocessing:
        sys.exit("training and validation slices were preprocessed differently")
    full = train.preprocessing["output_size"]
    print(f"train: {len(train)} slices, {int(train.y[:, 0].sum())} with a bleed; val: {len(val)} slices, "
          f"{int(val.y[:, 0].sum())} with a bleed", flush=True)

    device = torch.device(args.device)
    model = ResNet18(len(CLASSES))
    if args.init:
        from safetensors.torch import load_file
        state = {k: v.float() for k, v in load_file(args.init).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            sys.exit(f"{args.init}: missing {missing}, unexpected {unexpected}")
        print(f"starting from {args.init}", flush=True)
    model = model.to(device).to(memory_format=torch.channels_last)
    background = train.background
    log = {"args": vars(args), "epochs": []}
    if args.init:  # the starting point's own history, so that one log tells how the shipped weights were made
        with open(args.init, "rb") as f:
            log["init"] = {"weights": os.path.basename(args.init), "sha256": hashlib.sha256(f.read()).hexdigest()}
        earlier = os.path.join(os.path.dirname(args.init), "training-log.json")
        if os.path.exists(earlier):
            with open(earlier) as f:
                log["init"]["training_log"] = json.load(f)
    best_loss, best_state = math.inf, None
    phases = [(args.small_size, args.epochs_small), (full, args.epochs)]
    for size, epochs in phases:
        if epochs == 0:
            continue
        steps = epochs * (len(train) // args.batch)
        optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=args.lr, total_steps=steps, pct_start=0.25)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator)
            started, total, count = time.time(), 0.0, 0
            for b in range(len(train) // args.batch):
                idx = order[b * args.batch:(b + 1) * args.batch]
                x = augment(train.x[idx].float(), background, generator, train.std if args.domain_randomisation else None)
                if size != full:
                    x = F.interpolate(x, size=(size, size), mode="area")
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                y = train.y[idx].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                    loss = F.binary_cross_entropy_with_logits(model(x).float(), y)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
                total += loss.item() * len(idx)
                count += len(idx)
            model.cpu()
            _, figures = evaluate(model, val)
            model.to(device)
            entry = {"size": size, "epoch": epoch + 1, "train_loss": total / count, "seconds": time.time() - started,
                     **{f"val_{k}": v for k, v in figures.items()}}
            log["epochs"].append(entry)
            aucs = " ".join(f"{c[:5]} {a:.3f}" if a is not None else f"{c[:5]} -" for c, a in figures["auc"].items())
            print(f"{size}px epoch {epoch + 1}/{epochs}: train loss {entry['train_loss']:.4f}, "
                  f"val weighted log loss {figures['weighted_log_loss']:.4f}, AUC {aucs} ({entry['seconds']:.0f} s)", flush=True)
            if size == full and figures["weighted_log_loss"] < best_loss:
                best_loss = figures["weighted_log_loss"]
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    if best_state is not None:
        model.cpu().load_state_dict(best_state)
    else:
        model.cpu()  # no epochs at the full size: --init's weights as they are (re-choosing thresholds)
    if args.robust_epochs:
        robust_finetune(model.to(device), train, val, args, generator, log, device)
    p, figures = evaluate(model, val)
    thresholds = choose_thresholds(p, val.y.numpy(), val.series)
    s_any, y_any = series_scores(p[:, 0], val.y.numpy()[:, 0], val.series)
    sens, spec = rates(s_any, y_any, thresholds[0])
    log["validation"] = {**figures, "thresholds": dict(zip(CLASSES, thresholds)),
                         "series_any": {"sensitivity": sens, "specificity": spec, "series": len(s_any)}}
    print(f"thresholds (validation): {', '.join(f'{c} {t}' for c, t in zip(CLASSES, thresholds))}")
    print(f"validation series 'any' at its threshold: sensitivity {sens}, specificity {spec} over {len(s_any)} series")

    from safetensors.torch import save_file
    state = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        half = args.half_weights and k.endswith("weight") and v.dim() in (2, 4)
        state[k] = v.to(torch.float16 if half else torch.float32).contiguous()
    weights = os.path.join(args.out, f"{args.name}.safetensors")
    # One metadata key: safetensors writes several in a random order, and the same run should give the same bytes.
    about = json.dumps({"layout": "torchvision", "classes": CLASSES, "recipe": "ichd training/train.py", "seed": args.seed},
                       sort_keys=True)
    save_file(state, weights + ".tmp", metadata={"ichd": about})
    os.replace(weights + ".tmp", weights)
    with open(os.path.join(args.out, "thresholds.txt"), "w") as f:
        f.write(",".join(str(t) for t in thresholds) + "\n")
    with open(os.path.join(args.out, "training-log.json"), "w") as f:
        json.dump(log, f, indent=2)
    print(f"wrote {weights}, thresholds.txt and training-log.json to {args.out}")


if __name__ == "__main__":
    main()
