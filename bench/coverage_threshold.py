"""Measures the brain-coverage skip threshold on phantoms: the lowest brain coverage of any slice labelled
with a bleed (a threshold at or below it drops no bleed), and how many slices each candidate threshold skips.

Usage: python3 bench/coverage_threshold.py PHANTOM_DIR [ICHD]
PHANTOM_DIR comes from `ichd phantom`; ICHD defaults to .build/release/ichd."""
import csv, glob, json, os, subprocess, sys

root = sys.argv[1]
ichd = sys.argv[2] if len(sys.argv) > 2 else ".build/release/ichd"
positive = set()
with open(os.path.join(root, "labels.csv")) as f:
    for row in csv.DictReader(f):
        if row["ID"].endswith("_any") and row["Label"] == "1":
            positive.add(row["ID"][3:-4])
files = sorted(glob.glob(os.path.join(root, "*", "*.dcm")))
out = subprocess.run([ichd, "inspect", "--json", *files], capture_output=True, text=True).stdout
slices = [json.loads(line) for line in out.splitlines()]
cov_pos = sorted(s["brain_coverage"] for s in slices if s["sop_instance_uid"] in positive)
cov_all = [s["brain_coverage"] or 0.0 for s in slices]
print(f"{len(slices)} slices, {len(cov_pos)} with a bleed")
print(f"lowest brain coverage of a bleed slice: {cov_pos[0]:.4f}")
for t in [0.0, 0.01, 0.02, 0.05, 0.10, 0.20]:
    dropped_pos = sum(c < t for c in cov_pos)
    skipped = sum(c < t for c in cov_all)
    print(f"threshold {t:.2f}: skips {skipped} slices ({skipped / len(slices):.1%}), of them {dropped_pos} with a bleed")
