"""ichd's int8 engine against ONNX Runtime, side by side in one run, same weights, same input.

Builds ResNet18 from one safetensors file (random weights), converts it with `ichd convert`
(calibrated on phantom slices), and quantises the same ONNX graph with ONNX Runtime's static QDQ quantiser
(per-channel int8 weights, u8 activations, calibrated on the same slices). Then times, batch 1, at 256 x 256:
  ort-fp32            ONNX Runtime float32
  ort-int8-default    QDQ int8, default session (AVX2 u8s8 path, saturating int16 pair sums)
  ort-int8-exact      QDQ int8 with session.x64quantprecision=1 (exact)
  ichd-int8           `ichd bench --model M.ichm --json`
  ichd-int8-12bit     the same network converted with --activation-bits 12
and prints medians and ratios (ichd / ort). Run on a quiet machine; it is noisy.

Usage: python3 bench/compare_ort.py [--threads 1] [--runs 30] [--ichd .build/release/ichd] [--layout torchvision]
Needs bench/requirements.txt."""
import argparse, atexit, glob, json, os, shutil, statistics, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ichd_cli import ichd_runner
from resnet18_reference import build_onnx, random_state_dict, write_safetensors

ap = argparse.ArgumentParser()
ap.add_argument("--ichd", default=".build/release/ichd")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--layout", default="torchvision")
ap.add_argument("--calibration-samples", type=int, default=16)
args = ap.parse_args()

import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


ichd = ichd_runner(args.ichd)


tmp = tempfile.mkdtemp(prefix="ichd-compare-")
atexit.register(shutil.rmtree, tmp, True)
sd = random_state_dict(args.layout, 6, 4242)
weights = f"{tmp}/w.safetensors"
write_safetensors(weights, sd)

# Calibration slices: phantoms through the appliance's own preprocessing, the same for both quantisers.
ichd("phantom", "--out", f"{tmp}/cal", "--series", "2", "--seed", "7100")
slices = sorted(glob.glob(f"{tmp}/cal/*/*.dcm"))
picked = [slices[i * len(slices) // args.calibration_samples + 3] for i in range(args.calibration_samples)]
tensors = []
for i, s in enumerate(picked):
    ichd("preprocess", s, "--tensor", f"{tmp}/t{i}.f32")
    tensors.append(np.fromfile(f"{tmp}/t{i}.f32", dtype="<f4").reshape(1, 3, 256, 256))
x = tensors[len(tensors) // 2]
x.tofile(f"{tmp}/input.f32")
model_fp32 = f"{tmp}/fp32.onnx"
m = build_onnx(sd, args.layout, 6)
m.graph.output.pop()  # the features output is for the correctness check only
onnx.save(m, model_fp32)


class Reader(CalibrationDataReader):
    def __init__(self):
        self.it = iter({"input": t} for t in tensors)

    def get_next(self):
        return next(self.it, None)


model_int8 = f"{tmp}/int8.onnx"
quantize_static(model_fp32, model_int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
# Bytes, like ONNX Runtime's u8 activations; and the same network with 12-bit activations (what the converter
# chooses where bytes miss its accuracy aim: two byte-kernel passes per convolution). Weight rounding does not
# change the timing, so the slower candidates (GPTQ, equalisation) are skipped.
for bits, name in [("8", "m.ichm"), ("12", "m12.ichm")]:
    ichd("convert", weights, "--out", f"{tmp}/{name}", "--calibrate", f"{tmp}/cal", "--calibration-samples",
         str(args.calibration_samples), "--activation-bits", bits, "--weight-rounding", "nearest", "--equalize", "off")


def time_ort(path, exact=False):
    o = ort.SessionOptions()
    o.intra_op_num_threads = args.threads
    o.inter_op_num_threads = 1
    if exact:
        o.add_session_config_entry("session.x64quantprecision", "1")
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    for _ in range(5):
        s.run(None, {"input": x})
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        s.run(None, {"input": x})
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


results = {
    "ort-fp32": time_ort(model_fp32),
    "ort-int8-default": time_ort(model_int8),
    "ort-int8-exact": time_ort(model_int8, exact=True),
}
def time_ichd(name):
    return json.loads(ichd("bench", "--model", f"{tmp}/{name}", "--input", picked[len(picked) // 2], "--runs",
                           str(args.runs), "--threads", str(args.threads), "--json"))
bench = time_ichd("m.ichm")
results["ichd-int8"] = bench["median_ms"]
results["ichd-int8-12bit"] = time_ichd("m12.ichm")["median_ms"]
print(f"ResNet18 256x256 batch 1, {args.threads} thread(s), median of {args.runs} runs, {time.strftime('%Y-%m-%d')}")
for k, v in results.items():
    print(f"  {k:18s} {v:9.2f} ms")
for ours in ["ichd-int8", "ichd-int8-12bit"]:
    for k in ["ort-fp32", "ort-int8-default", "ort-int8-exact"]:
        print(f"  {ours} / {k:18s} {results[ours] / results[k]:6.2f}")
print(f"  ichd peak RSS {bench['peak_rss_mib']:.1f} MiB, load {bench['load_ms']:.1f} ms, first result {bench['first_result_ms']:.1f} ms")
