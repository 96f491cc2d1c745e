"""Checks ichd's engines against ONNX Runtime on the same safetensors.

1. float32: for both layouts, N = 1, 2, 6 classes, several seeds and each safetensors dtype, `ichd infer` with the
   float reference executor must match ONNX Runtime: max |logit difference| <= 1e-4 x max(1, max |logit|).
2. int8: for both layouts (N = 6), `ichd convert` calibrated on phantom slices; on held-out phantom slices (ones
   the appliance scores, not those its brain-coverage rule skips) the int8 probabilities stay within 0.02 of
   float32 and every decision agrees where float32 is more than 0.02 away from the threshold.

Usage: python3 bench/verify_engines.py [--ichd .build/release/ichd] [--seeds 2] [--slices 12] [--float-only]
       [--convert-arg=ARG ...]
Needs numpy, onnx, onnxruntime (bench/requirements.txt). Ends with "N passed, M failed"; exit 1 on a failure."""
import argparse, atexit, csv, json, os, shutil, sys, tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ichd_cli import ichd_runner
from resnet18_reference import as_stored, build_onnx, random_state_dict, session, write_safetensors

ap = argparse.ArgumentParser()
ap.add_argument("--ichd", default=".build/release/ichd")
ap.add_argument("--seeds", type=int, default=2)
ap.add_argument("--slices", type=int, default=12, help="held-out phantom slices for the int8 check")
ap.add_argument("--calibration-samples", type=int, default=16)
ap.add_argument("--float-only", action="store_true", help="only the float32 check (what make test runs)")
ap.add_argument("--convert-arg", action="append", default=[], metavar="ARG",
                help="passed on to ichd convert (repeatable), e.g. --convert-arg=--no-wide-shortcut")
args = ap.parse_args()

passed = failed = 0


def check(ok, what):
    global passed, failed
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


ichd = ichd_runner(args.ichd)


tmp = tempfile.mkdtemp(prefix="ichd-verify-")
atexit.register(shutil.rmtree, tmp, True)
# Realistic inputs: phantom slices through the appliance's own preprocessing.
ichd("phantom", "--out", f"{tmp}/cal", "--series", "4", "--seed", "7000", "--positive-rate", "0.5")
ichd("phantom", "--out", f"{tmp}/held", "--series", "2", "--seed", "8000", "--positive-rate", "0.5")
# Only slices the appliance scores: the engines never see one the brain-coverage rule skips (a blank slice
# above the head is out of the network's domain). `--dataset` applies that rule and lists the scorable files.
ichd("preprocess", f"{tmp}/held", "--dataset", f"{tmp}/held-ds")
with open(f"{tmp}/held-ds/index.csv") as f:
    held = sorted(f"{tmp}/held/{row['file']}" for row in csv.DictReader(f))
held = [held[i * len(held) // args.slices + len(held) // (2 * args.slices)] for i in range(args.slices)]
tensors = []
for i, path in enumerate(held):
    t = f"{tmp}/held-{i}.f32"
    ichd("preprocess", path, "--tensor", t)
    tensors.append(t)
rng = np.random.default_rng(1)

# 1. float32 against ONNX Runtime
dtypes = ["F32", "F16", "BF16"]
case = 0
for layout in ["torchvision", "fastai"]:
    for n in [1, 2, 6]:
        for seed in range(args.seeds):
            dtype = dtypes[case % 3]
            case += 1
            sd = random_state_dict(layout, n, 1000 * n + seed)
            w = f"{tmp}/{layout}-{n}-{seed}.safetensors"
            write_safetensors(w, sd, dtype)
            sess = session(build_onnx(as_stored(sd, dtype), layout, n))
            inputs = [np.fromfile(tensors[seed % len(tensors)], dtype="<f4")]
            inputs.append(rng.normal(0, 1, 3 * 256 * 256).astype(np.float32))
            for k, x in enumerate(inputs):
                x.astype("<f4").tofile(f"{tmp}/x.f32")
                ref = sess.run(["logits"], {"input": x.reshape(1, 3, 256, 256)})[0][0]
                got = np.array(json.loads(ichd("infer", "--model", w, "--tensor", f"{tmp}/x.f32", "--json"))["logits"])
                err = np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref)))
                check(err <= 1e-4, f"float32 {layout} N={n} seed={seed} {dtype} input={'slice' if k == 0 else 'noise'}: "
                                   f"relative logit error {err:.2e}")

# 2. int8 against float32 on held-out phantom slices
for layout in [] if args.float_only else ["torchvision", "fastai"]:
    sd = random_state_dict(layout, 6, 77)
    w = f"{tmp}/{layout}-int8.safetensors"
    write_safetensors(w, sd)
    m = f"{tmp}/{layout}.ichm"
    ichd("convert", w, "--out", m, "--calibrate", f"{tmp}/cal", "--calibration-samples", str(args.calibration_samples),
          *args.convert_arg)
    worst, disagreements, near = 0.0, 0, 0
    for t in tensors:
        pf = np.array(json.loads(ichd("infer", "--model", w, "--tensor", t, "--json"))["probabilities"])
        pq = np.array(json.loads(ichd("infer", "--model", m, "--tensor", t, "--json"))["probabilities"])
        worst = max(worst, float(np.max(np.abs(pq - pf))))
        away = np.abs(pf - 0.5) > 0.02
        near += int(np.sum(~away))
        disagreements += int(np.sum(((pq >= 0.5) != (pf >= 0.5)) & away))
    check(worst <= 0.02, f"int8 {layout}: max |p_int8 - p_float| {worst:.4f} over {len(tensors)} held-out slices")
    check(disagreements == 0, f"int8 {layout}: {disagreements} decisions differ away from the threshold ({near} calls within 0.02 of it)")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
