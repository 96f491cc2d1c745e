#!/usr/bin/env python3
"""Prints the model card's figures (markdown) from the reports `make model` writes, so that the numbers in
models/README.md are exactly the measured ones:

    python3 training/model_card_figures.py models/eval-int8.json models/eval-float.json models/training-log.json

Checks the issue's targets on the held-out series and says which are met.
"""
import json
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    int8, flt, log = (json.load(open(p)) for p in sys.argv[1:4])
    floats = {c["name"]: c for c in flt["classes"]}
    agreement = {a["name"]: a for a in int8.get("reference") or []}
    print(f"Held-out test set: {int8['files']} files, {int8['slices_scored']} slices scored "
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
        if c["name"] != "any":
            met.append((f"AUC {c['name']} >= 0.95 (int8)", c["auc"] >= 0.95))
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
    print("\nTargets:")
    for name, ok in met:
        print(f"- {'met' if ok else 'NOT MET'}: {name}")


if __name__ == "__main__":
    main()
