"""Out-of-distribution scores per layer, measured on the float network before a conversion (docs/model-ood.md).

For a model and `ichd preprocess --dataset` folders: fits, as `ichd convert --ood-layers` does, a Mahalanobis
summary (Ledoit-Wolf shrunk covariance) per activation and statistic on the fit set, sets each one's threshold
at the 99.5th percentile of the validation set's distances, reads the ensemble as the largest normalised
distance (`OODEnsemble`), and reports, for every single layer and for the ensembles, how many slices and series
of each other set it calls out of distribution. Nothing here is tuned on the evaluated sets: they are only
reported on. The appliance's own figures come from `ichd convert` / `ichd eval` / `ichd infer` (int8 engine);
this script is the quick float-side look that chooses what to convert.

    python3 training/ood_layers.py --weights W.safetensors --fit TRAIN-DS --val VAL-DS \
        --set test=TEST-DS --set heldout=HELDOUT-DS --set real=REAL-DS [--json out.json] [--gram]

With --gram it also reports Gram-matrix deviations (Sastry & Oore 2020, "Detecting out-of-distribution examples
with Gram matrices"): per layer and power p (1, 2), how far each entry of the slice's channel-correlation
matrix (of the p-th power of the activations, then its p-th root) falls outside the range of the fit slices',
summed relative to that range's bounds, normalised by the validation slices' mean deviation; each layer's
threshold and the total's are the --quantile of the validation slices. Fit and validation sets are limited to
--gram-samples slices (a layer4 matrix has 131,328 entries).

With --input it also reports a check of the input itself, before the network: per channel (window), the
histogram of the normalised values in 32 bins over [-3, 3] and the mean absolute difference of horizontal
neighbours (noise and texture), 99 values per slice, with a Mahalanobis summary as the layers'.

With --energy it also reports the joint energy of the logits (Wang et al. 2021, "Can multi-label classification
networks know what they don't know?"): sum over classes of log(1 + exp(logit)); a slice is out when its energy
is below the (1 - --quantile) quantile of the validation slices', and its score is that quantile / energy.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train as T  # noqa: E402

LAYERS = ["stem", "layer1.1", "layer2.1", "layer3.1", "layer4.1"]


def per_layer(model, x, batch, describe):
    """Runs the network over x and returns, per key, the stacked arrays that `describe(name, activations as
    float64, shaped (batch, channels, plane))` gives for each tapped layer as {key: array}."""
    out = {}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            def tap(name, a):
                if name in LAYERS:
                    for key, v in describe(name, a.double().flatten(2)).items():
                        out.setdefault(key, []).append(v)
                return a

            model.features(x[i:i + batch].float(), tap)
    return {key: np.concatenate(v) for key, v in out.items()}


def statistics(model, x, batch=32):
    """Per slice, per layer: channel means and standard deviations over the plane (float64)."""
    return per_layer(model, x, batch,
                     lambda name, flat: {name: torch.cat([flat.mean(2), flat.std(2, unbiased=False)], 1).numpy()})


GRAM_POWERS = [1, 2]


def joint_energy(model, x, batch=32):
    """Per slice: sum over classes of softplus(logit) (high: a confident call on some class)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(torch.nn.functional.softplus(model(x[i:i + batch].float()).double()).sum(1).numpy())
    return np.concatenate(out)


def input_features(model, x):
    """Per slice: each channel's histogram (32 bins over [-3, 3], as shares) and mean |horizontal step|."""
    x = x.float().numpy()
    rows = []
    for s in x:
        hist = [np.histogram(c, bins=32, range=(-3, 3))[0] / c.size for c in s]
        steps = [np.abs(np.diff(c, axis=1)).mean() for c in s]
        rows.append(np.concatenate(hist + [np.array(steps)]))
    return np.array(rows, dtype=np.float64)


def gram_features(model, x, batch=16):
    """Per slice, per (layer, power): the upper triangle of the channel Gram matrix (float32)."""
    def describe(name, flat):
        iu = torch.triu_indices(flat.shape[1], flat.shape[1])
        grams = {}
        for p in GRAM_POWERS:
            fp = flat ** p
            g = fp @ fp.transpose(1, 2) / flat.shape[2]
            g = g.sign() * g.abs() ** (1.0 / p)
            grams[(name, p)] = g[:, iu[0], iu[1]].float().numpy()
        return grams

    return per_layer(model, x, batch, describe)


def print_row(label, ratios):
    """One line: per set, the slices at or above 1, the median, and each slice for small sets."""
    cells = []
    for name, r in ratios.items():
        cell = f"{name} {int((r >= 1).sum())}/{len(r)} sl, med {np.median(r):.2f}"
        if len(r) <= 10:
            cell += " [" + " ".join(f"{v:.2f}" for v in r) + "]"
        cells.append(cell)
    print(f"{label:40s} | " + " | ".join(cells), flush=True)


def gram_report(fit, val, sets, q):
    """Prints, per (layer, power) and for their sum, each set's share of slices out and median score."""
    def deviation(g, lo, hi):
        below = np.where(g < lo, (lo - g) / (np.abs(lo) + 1e-9), 0)
        above = np.where(g > hi, (g - hi) / (np.abs(hi) + 1e-9), 0)
        return (below + above).sum(1)

    scores = {}
    for key in fit:
        lo, hi = fit[key].min(0), fit[key].max(0)
        norm = deviation(val[key], lo, hi).mean() + 1e-12
        scores[key] = {"val": deviation(val[key], lo, hi) / norm}
        for name, g in sets.items():
            scores[key][name] = deviation(g[key], lo, hi) / norm
    scores[("total", "")] = {name: sum(scores[k][name] for k in fit) for name in ["val", *sets]}
    for (layer, p), by_set in scores.items():
        threshold = np.quantile(by_set["val"], q, method="nearest")
        print_row(f"gram {layer}" + (f" p={p}" if p else ""), {name: by_set[name] / threshold for name in sets})


def ledoit_wolf(x):
    """Mean and the covariance shrunk towards mu I (scikit-learn's ledoit_wolf, as OODFit.ledoitWolf)."""
    n, d = x.shape
    mean = x.mean(0)
    c = x - mean
    s = c.T @ c / n
    mu = np.trace(s) / d
    x2 = c ** 2
    beta = ((x2.T @ x2).sum() / n - (s ** 2).sum()) / (d * n)
    delta = ((s - mu * np.eye(d)) ** 2).sum() / d
    shrink = 1.0 if delta <= 0 else max(0.0, min(beta, delta) / delta)
    return mean, (1 - shrink) * s + shrink * mu * np.eye(d), shrink


class Summary:
    def __init__(self, fit, val, q):
        self.mean, cov, self.shrink = ledoit_wolf(fit)
        self.precision = np.linalg.inv(cov)
        self.threshold = np.quantile(self.distance(val), q, method="nearest")

    def distance(self, x):
        c = x - self.mean
        return np.sqrt(np.maximum(0, np.einsum("ij,jk,ik->i", c, self.precision, c)))

    def ratio(self, x):
        return self.distance(x) / self.threshold


def vector(stats, layer, statistic):
    v = stats[layer]
    return v if statistic == "mean+sd" else v[:, : v.shape[1] // 2]


def evenly(n, limit):
    return np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))


def upper_median(values):
    v = sorted(values)
    return v[len(v) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True)
    p.add_argument("--fit", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--set", action="append", default=[], help="NAME=DATASET-FOLDER, reported on")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--quantile", type=float, default=0.995)
    p.add_argument("--json")
    p.add_argument("--gram", action="store_true", help="also report Gram-matrix deviations per layer")
    p.add_argument("--gram-samples", type=int, default=600, help="fit and validation slices for --gram")
    p.add_argument("--energy", action="store_true", help="also report the logits' joint energy")
    p.add_argument("--input", action="store_true", help="also report a histogram and texture check of the input")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    model = T.ResNet18(len(T.CLASSES))
    state = {k: v.float() for k, v in load_file(args.weights).items()}
    model.load_state_dict(state, strict=False)
    model.eval()

    def load(folder, limit=None, features=statistics):
        _, rows, raw = T.read_dataset(folder)
        idx = evenly(len(rows), limit) if limit else np.arange(len(rows))
        x = torch.from_numpy(raw[idx])
        return [rows[i] for i in idx], features(model, x)

    _, fit = load(args.fit, args.samples)
    _, val = load(args.val, args.samples)
    sets = {}
    for spec in args.set:
        name, _, folder = spec.partition("=")
        sets[name] = load(folder)

    configs = [([layer], st) for st in ("mean", "mean+sd") for layer in LAYERS]
    configs += [(LAYERS, st) for st in ("mean", "mean+sd")]
    configs += [(LAYERS[:3], st) for st in ("mean", "mean+sd")]
    report = []
    summaries = {}
    for layers, st in configs:
        for layer in layers:
            if (layer, st) not in summaries:
                summaries[(layer, st)] = Summary(vector(fit, layer, st), vector(val, layer, st), args.quantile)

        def ratio(stats):
            return np.max([summaries[(layer, st)].ratio(vector(stats, layer, st)) for layer in layers], 0)

        threshold = np.quantile(ratio(val), args.quantile, method="nearest")
        row = {"layers": layers, "statistic": st, "combined_threshold": float(threshold), "sets": {}}
        for name, (rows, stats) in sets.items():
            ood = ratio(stats) / threshold
            series = {}
            for r, o in zip(rows, ood):
                series.setdefault(r["series"], []).append(o)
            s_ood = [upper_median(v) for v in series.values()]
            entry = {"slices": len(ood), "slices_out": int((ood >= 1).sum()), "median": float(np.median(ood)),
                     "series": len(s_ood), "series_out": int(sum(o >= 1 for o in s_ood))}
            if len(ood) <= 10:
                entry["per_slice"] = {r["file"] + ("" if r["frame"] in ("", "0") else f"#{r['frame']}"): round(float(o), 2)
                                      for r, o in zip(rows, ood)}
            row["sets"][name] = entry
        report.append(row)
        label = ("+".join(layers) if len(layers) < len(LAYERS) else "all five") + " " + st
        cells = []
        for name, e in row["sets"].items():
            cell = f"{name} {e['slices_out']}/{e['slices']} sl, {e['series_out']}/{e['series']} ser, med {e['median']:.2f}"
            if "per_slice" in e:
                cell += " [" + " ".join(f"{v:.2f}" for v in e["per_slice"].values()) + "]"
            cells.append(cell)
        print(f"{label:40s} | " + " | ".join(cells), flush=True)
    named_sets = [(spec.partition("=")[0], spec.partition("=")[2]) for spec in args.set]
    if args.energy:
        floor = np.quantile(load(args.val, None, joint_energy)[1], 1 - args.quantile, method="nearest")
        print_row("joint energy of the logits", {name: floor / np.maximum(load(folder, None, joint_energy)[1], 1e-12)
                                                 for name, folder in named_sets})
    if args.input:
        summary = Summary(load(args.fit, args.samples, input_features)[1], load(args.val, None, input_features)[1],
                          args.quantile)
        print_row("input histogram + texture", {name: summary.ratio(load(folder, None, input_features)[1])
                                                for name, folder in named_sets})
    if args.gram:
        gram_report(load(args.fit, args.gram_samples, gram_features)[1], load(args.val, args.gram_samples, gram_features)[1],
                    {name: load(folder, None, gram_features)[1] for name, folder in named_sets}, args.quantile)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"weights": args.weights, "fit": args.fit, "val": args.val, "quantile": args.quantile,
                       "fit_slices": len(fit[LAYERS[0]]), "val_slices": len(val[LAYERS[0]]), "configs": report}, f, indent=1)


if __name__ == "__main__":
    main()
