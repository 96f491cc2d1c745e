#!/usr/bin/env python3
"""A fastai-layout model from the shipped torchvision one, to measure `ichd convert` on a trained fastai head.

fastai's `vision_learner` puts its own head on the ResNet18 body: AdaptiveConcatPool2d (max then average, 1024
features), Flatten, BatchNorm1d(1024), Dropout(0.25), Linear(1024, 512, no bias), ReLU, BatchNorm1d(512),
Dropout(0.5), Linear(512, N, no bias), with the state_dict keys `0.*` (body) and `1.*` (head). This script
keeps the shipped body (frozen), trains such a head on the body's features of the training phantoms, and writes
the whole network as safetensors in fastai layout: the input `ichd convert --layout fastai` takes from an
engineer. It is a measurement aid (docs/converting.md), not the shipped model.

Usage (after `make model`'s data exist):
  .cache/train-venv/bin/python training/fastai_head.py --body models/ichd-phantom-resnet18.safetensors \
      --train .cache/phantom-data/train-ds --train-labels .cache/phantom-data/train/labels.csv \
      --val .cache/phantom-data/val-ds --val-labels .cache/phantom-data/val/labels.csv \
      --out .cache/fastai-head/ichd-phantom-fastai.safetensors
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import CLASSES, QuantisationNoise, ResNet18, SliceSet, auc  # noqa: E402


class FastaiHead(nn.Module):
    """fastai's default head after AdaptiveConcatPool2d + Flatten, with its key numbering (2, 4, 6, 8)."""

    def __init__(self, classes):
        super().__init__()
        self.layers = nn.ModuleList([nn.Identity(), nn.Identity(), nn.BatchNorm1d(1024), nn.Dropout(0.25),
                                     nn.Linear(1024, 512, bias=False), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5),
                                     nn.Linear(512, classes, bias=False)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def fastai_body_key(key):
    """A torchvision body key (`ResNet18`'s) under fastai's names: 0.0 conv1, 0.1 bn1, 0.4-0.7 layer1-4."""
    if key.startswith("conv1."):
        return "0.0." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "0.1." + key[len("bn1."):]
    for i in range(4):
        if key.startswith(f"layer{i + 1}."):
            return f"0.{i + 4}." + key[len(f"layer{i + 1}."):]
    return key


def fastai_head_key(key):
    """A `FastaiHead` key under fastai's names: layers.2 -> 1.2."""
    return "1." + key[len("layers."):]


class FastaiResNet18(nn.Module):
    """ResNet18's body with fastai's head: what a fastai-layout safetensors file holds (`load_fastai`)."""

    def __init__(self, classes):
        super().__init__()
        self.body = ResNet18(classes)  # its fc is unused
        self.head = FastaiHead(classes)

    def forward(self, x):
        return self.head(concat_pool(self.body.features(x)))

    def load_fastai(self, state):
        """Loads fastai-layout tensors (`num_batches_tracked` may be absent)."""
        names = {fastai_body_key(k): ("body", k) for k in self.body.state_dict() if not k.startswith("fc.")}
        names.update({fastai_head_key(k): ("head", k) for k in self.head.state_dict()})
        parts = {"body": {}, "head": {}}
        for k, v in state.items():
            if k not in names:
                raise KeyError(f"not a fastai ResNet18 key: {k}")
            parts[names[k][0]][names[k][1]] = v
        for part, sd in parts.items():
            missing, _ = getattr(self, part).load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
            if missing:
                raise KeyError(f"missing {part} tensors: {missing}")
        return self


def concat_pool(f):
    """fastai's AdaptiveConcatPool2d + Flatten: per layer4 channel the max, then the average (1024 features)."""
    return torch.cat([F.adaptive_max_pool2d(f, 1), F.adaptive_avg_pool2d(f, 1)], 1).flatten(1)


def concat_pool_features(body, data, batch=64):
    """max then average over each layer4 channel: the 1024 inputs of fastai's head."""
    out = []
    body.eval()
    with torch.no_grad():
        for i in range(0, len(data), batch):
            x = data.x[i:i + batch].float().contiguous(memory_format=torch.channels_last)
            x = body.features(x)
            out.append(concat_pool(x))
    return torch.cat(out)


def validation_aucs(head, features, labels):
    """Per-class AUC of `head` (in eval mode) on `features`, as printed after each epoch."""
    with torch.no_grad():
        p = torch.sigmoid(head(features)).numpy()
    aucs = [auc(p[:, c], labels.numpy()[:, c]) for c in range(len(CLASSES))]
    return " ".join("-" if a is None else f"{a:.3f}" for a in aucs)


def logit_change(head, features, spread, generator):
    """Mean squared logit change of `head` (in eval mode) when its input features carry Gaussian noise of the
    per-feature `spread`, and the largest probability change."""
    with torch.no_grad():
        clean = head(features)
        noisy = head(features + spread * torch.randn(features.shape, generator=generator))
    return float(((noisy - clean) ** 2).mean()), float((torch.sigmoid(noisy) - torch.sigmoid(clean)).abs().max())


def robust_head(head, ftrain, ytrain, fval, yval, spread, args, generator):
    """Fine-tunes the trained head (BatchNorm statistics and dropout frozen: eval mode) so that its logits stay
    put when the features carry the int8 body's rounding errors: loss = BCE + robust weight x mean squared logit
    change under Gaussian feature noise of the measured spread (as training/train.py's second stage does for
    the whole network)."""
    head.eval()
    optimiser = torch.optim.AdamW(head.parameters(), lr=args.robust_lr, weight_decay=1e-2)
    steps = args.robust_epochs * ((len(ftrain) + 127) // 128)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    change, largest = logit_change(head, fval, spread, generator)
    print(f"robust start: validation logit change under feature noise {change:.5f} (largest probability change {largest:.4f})", flush=True)
    for epoch in range(args.robust_epochs):
        order = torch.randperm(len(ftrain), generator=generator)
        for i in range(0, len(ftrain), 128):
            idx = order[i:i + 128]
            f = ftrain[idx]
            clean = head(f)
            noisy = head(f + spread * torch.randn(f.shape, generator=generator))
            loss = F.binary_cross_entropy_with_logits(clean, ytrain[idx]) + args.robust_weight * ((noisy - clean) ** 2).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        change, largest = logit_change(head, fval, spread, generator)
        print(f"robust epoch {epoch + 1}: validation logit change under feature noise {change:.5f} (largest probability "
              f"change {largest:.4f}), val AUC {validation_aucs(head, fval, yval)}", flush=True)


def feature_noise_spread(body, data, slices, generator, batch=32):
    """Per concat-pool feature, the spread (standard deviation) of its change when every activation of the
    body is rounded as the int8 model rounds it (QuantisationNoise: uniform noise of one u8 step), on `slices`
    evenly spread slices of `data`."""
    noise = QuantisationNoise(generator)
    pick = torch.from_numpy(np.linspace(0, len(data) - 1, min(slices, len(data))).astype(np.int64))
    body.eval()
    changes = []
    with torch.no_grad():
        for i in range(0, len(pick), batch):  # ranges first, as calibration sees them
            body.features(data.x[pick[i:i + batch]].float().contiguous(memory_format=torch.channels_last), noise.observe)
        for i in range(0, len(pick), batch):
            x = data.x[pick[i:i + batch]].float().contiguous(memory_format=torch.channels_last)
            clean, noisy = body.features(x), body.features(x, noise.inject)
            changes.append(concat_pool(noisy) - concat_pool(clean))
    return torch.cat(changes).std(dim=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--body", required=True, help="trained weights, torchvision layout (safetensors)")
    ap.add_argument("--train", required=True)
    ap.add_argument("--train-labels", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--val-labels", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--robust-epochs", type=int, default=0,
                    help="then epochs that train the head to give the same logits when its input features carry the "
                         "int8 body's rounding errors (BatchNorm frozen, as the converter folds it)")
    ap.add_argument("--robust-weight", type=float, default=10.0, help="weight of the squared logit change in the loss")
    ap.add_argument("--robust-lr", type=float, default=1e-3)
    ap.add_argument("--noise-slices", type=int, default=512,
                    help="training slices on which the features' spread under int8 rounding is measured")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)

    from safetensors.torch import load_file, save_file
    body = ResNet18(len(CLASSES))
    state = {k: v.float() for k, v in load_file(args.body).items()}
    missing, unexpected = body.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        sys.exit(f"{args.body}: missing {missing}, unexpected {unexpected}")
    body = body.to(memory_format=torch.channels_last)

    train, val = SliceSet(args.train, args.train_labels), SliceSet(args.val, args.val_labels)
    print(f"features of {len(train)} training and {len(val)} validation slices", flush=True)
    ftrain, fval = concat_pool_features(body, train), concat_pool_features(body, val)

    head = FastaiHead(len(CLASSES))
    optimiser = torch.optim.AdamW(head.parameters(), lr=3e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=args.epochs * ((len(train) + 127) // 128))
    for epoch in range(args.epochs):
        head.train()
        order = torch.randperm(len(train))
        for i in range(0, len(train), 128):
            idx = order[i:i + 128]
            loss = F.binary_cross_entropy_with_logits(head(ftrain[idx]), train.y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        head.eval()
        print(f"epoch {epoch + 1}: train loss {loss.item():.4f}, val AUC {validation_aucs(head, fval, val.y)}", flush=True)

    if args.robust_epochs:
        generator = torch.Generator().manual_seed(args.seed)
        spread = feature_noise_spread(body, train, args.noise_slices, generator)
        print(f"feature spread under int8 rounding: median {spread.median():.4g}, max {spread.max():.4g} "
              f"(features: median sd {ftrain.std(dim=0).median():.4g})", flush=True)
        robust_head(head, ftrain, train.y, fval, val.y, spread, args, generator)

    out = {}
    for k, v in body.state_dict().items():
        if not k.startswith("fc.") and not k.endswith("num_batches_tracked"):
            out[fastai_body_key(k)] = v.float().contiguous()
    for k, v in head.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            out[fastai_head_key(k)] = v.float().contiguous()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(out, args.out, metadata={"source": f"fastai head trained on {args.train} over {args.body}"})
    print(f"wrote {args.out} ({len(out)} tensors)")


if __name__ == "__main__":
    main()
