#!/usr/bin/env python3
"""Prints the model card's figures (markdown) from the reports `make model` writes, so that the numbers in
models/README.md are exactly the measured ones:

    python3 training/model_card_figures.py models/eval-int8.json models/eval-float.json models/training-log.json \
        [models/eval-heldout.json]

Checks the targets on the test series of the training family (issue 3's int8 aims, issue 20's in-family
targets) and, given the held-out family's report, issue 20's held-out targets and the gap between the two.
"""
import json
import sys


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    int8, flt, log = (json.load(open(p)) for p in sys.argv[1:4])
    heldout = json.load(open(sys.argv[4])) if len(sys.argv) == 5 else None
    floats = {c["name"]: c for c in flt["classes"]}
    agreement = {a["name"]: a for a in int8.get("reference") or []}
    print(f"Test set (training family): {int8['files']} files, {int8['slices_scored']} slices scored "
          f"({int8['slices_skipped']} skipped for low brain coverage, {sum(int8['rejected'].values())} rejected), "
          f"{int8['series_count']} series.\n")
    print("| class | positives / negatives | AUC int8 | AUC float32 | threshold | sensitivity | specificity | "
          "int8 vs float: max abs dp | 99th pct | slices within 0.02 | decisions agree |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    met = []
    for c in int8["classes"]:
        a = agreement.get(c["name"], {})
        r = c["at_threshold"]
        fa = floats[c["name"]]["auc"]
        print(f"| {c['name']} | {c['positives']} / {c['negatives']} | {c['auc']:.4f} | {fa:.4f} | {c['threshold']:.3f} | "
              f"{r['sensitivity']:.4f} | {r['specificity']:.4f} | {a.get('max_abs_probability_difference', float('nan')):.4f} | "
              f"{a.get('p99_abs_probability_difference', float('nan')):.4f} | "
              f"{100 * a.get('share_within_0_02', float('nan')):.2f}% | "
              f"{100 * a.get('decision_agreement', float('nan')):.2f}% |")
        met.append((f"AUC {c['name']} >= 0.97 (int8, in-family; issue 20)", c["auc"] >= 0.97))
        met.append((f"int8-float decision agreement {c['name']} >= 99.5%", a.get("decision_agreement", 0) >= 0.995))
        met.append((f"int8-float max abs dp {c['name']} <= 0.02 (issue 3's aim, every test slice)",
                     a.get("max_abs_probability_difference", 1) <= 0.02))
    s = int8["series"]
    print(f"\nSeries level (`any`; a series alarms when one slice reaches the threshold): {int8['series_count']} series, "
          f"{s['true_positives'] + s['false_negatives']} with a bleed: sensitivity {s['sensitivity']:.4f} "
          f"({s['true_positives']}/{s['true_positives'] + s['false_negatives']}), specificity {s['specificity']:.4f} "
          f"({s['true_negatives']}/{s['true_negatives'] + s['false_positives']}).")
    print(f"RSNA weighted log loss: int8 {int8['weighted_log_loss']:.4f}, float32 {flt['weighted_log_loss']:.4f}.")
    met.append(("series sensitivity >= 0.98", s["sensitivity"] >= 0.98))
    met.append(("series specificity >= 0.95", s["specificity"] >= 0.95))
    v = log.get("validation", {})
    if v:
        print(f"\nValidation (40 series, chose checkpoint and thresholds): weighted log loss {v['weighted_log_loss']:.4f}; "
              f"series `any` sensitivity {v['series_any']['sensitivity']}, specificity {v['series_any']['specificity']:.4f}.")
    if heldout:
        met += heldout_figures(heldout, int8)
    print("\nTargets:")
    for name, ok in met:
        print(f"- {'met' if ok else 'NOT MET'}: {name}")


def heldout_figures(h, test):
    """The held-out family's table beside the test set's AUCs, and issue 20's held-out targets."""
    inside = {c["name"]: c for c in test["classes"]}
    print(f"\nHeld-out family (never trained, validated or calibrated on): {h['files']} files, {h['slices_scored']} "
          f"slices scored ({h['slices_skipped']} skipped), {h['series_count']} series.\n")
    print("| class | positives / negatives | AUC held-out | AUC test set | gap | threshold | sensitivity | specificity | ECE |")
    print("|---|---|---|---|---|---|---|---|---|")
    met = []
    for c in h["classes"]:
        r, t = c["at_threshold"], inside[c["name"]]["auc"]
        print(f"| {c['name']} | {c['positives']} / {c['negatives']} | {c['auc']:.4f} | {t:.4f} | {t - c['auc']:+.4f} | "
              f"{c['threshold']:.3f} | {r['sensitivity']:.4f} | {r['specificity']:.4f} | {c['ece']:.4f} |")
        target = 0.90 if c["name"] == "any" else 0.85
        met.append((f"held-out AUC {c['name']} >= {target:.2f}", c["auc"] >= target))
        if c["name"] == "any":
            met.append(("held-out slice specificity any >= 0.80 at the model's threshold", r["specificity"] >= 0.80))
            met.append(("held-out slice sensitivity any >= 0.80 at the model's threshold", r["sensitivity"] >= 0.80))
    s = h["series"]
    print(f"\nSeries (`any`): sensitivity {s['sensitivity']:.4f} ({s['true_positives']}/{s['true_positives'] + s['false_negatives']}), "
          f"specificity {s['specificity']:.4f} ({s['true_negatives']}/{s['true_negatives'] + s['false_positives']}); "
          f"RSNA weighted log loss {h['weighted_log_loss']:.4f} (test set {test['weighted_log_loss']:.4f}).")
    o = h.get("ood")
    if o:
        print(f"Out of distribution: {o['slices_out']} of {o['slices']} slices ({100 * o['share_out']:.1f}%), "
              f"{o['series_out']} of {o['series']} series (ood median {o['median']:.2f}).")
    return met


if __name__ == "__main__":
    main()
