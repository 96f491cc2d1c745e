#!/usr/bin/env python3
"""The web console's cost, measured beside the bare engine in one run (docs/console.md, "Measured").

    python3 bench/console_bench.py [--ichd .build/release/ichd] [--runs 30]

1. `ichd bench --model M` (the engine alone, one slice, 1 thread) in the same run, for the ratio.
2. `ichd serve` on a free port: POST /api/score of one phantom slice, without and with images (JPEG preview and
   heatmaps), and of a whole 28-slice phantom series; medians of wall time per request (upload, DICOM decode,
   preprocessing, engine, heatmaps, JSON). Peak RSS of the serve process (VmHWM).
3. `ichd run` on a temporary board, idle, with [console] enabled and disabled: resident memory (VmRSS) once
   ready, so the console's memory cost on the box is a number.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from ichd_cli import ichd_runner  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models/ichd-phantom-resnet18.ichm")


def multipart(paths):
    boundary = "ichdBench7f3a"
    body = b""
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{os.path.basename(p)}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post(url, body, ctype):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.load(r)
    return (time.perf_counter() - t) * 1000, out


def start(cmd, log):
    f = open(log, "w")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        m = re.search(r"console listening.*?url=(http://\S+/)|url=(http://\S+/).*console listening", open(log).read())
        if m:
            return p, (m.group(1) or m.group(2))
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    raise SystemExit(f"{' '.join(cmd)} did not start: {open(log).read()}")


def proc_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def daemon_rss(ichd, console, work):
    board = tempfile.mkdtemp(dir=work)
    with open(os.path.join(board, "ichd.toml"), "w") as f:
        f.write(f'board = "bench"\n[model]\npath = "{MODEL}"\nscorers = 2\n[lamp]\nbackend = "sim"\n'
                f'[console]\nenabled = {"true" if console else "false"}\nport = 0\n')
    log = os.path.join(board, "log")
    p = subprocess.Popen([ichd, "run", "--config", os.path.join(board, "ichd.toml")], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    time.sleep(4)
    rss = proc_kib(p.pid, "VmRSS") / 1024
    p.terminate()
    p.wait()
    return rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ichd", default=os.path.join(ROOT, ".build/release/ichd"))
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    run = ichd_runner(args.ichd)
    work = tempfile.mkdtemp(prefix="ichd-console-bench-")
    run("phantom", "--out", work + "/ph", "--series", "1", "--seed", "5", "--positive")
    series = sorted(os.path.join(work, "ph/series-001", f) for f in os.listdir(work + "/ph/series-001") if f.endswith(".dcm"))
    engine = json.loads(run("bench", "--model", MODEL, "--runs", str(args.runs), "--json"))

    serve, url = start([args.ichd, "serve", "--model", MODEL, "--port", "0"], work + "/serve.log")
    try:
        one, ctype = multipart([series[12]])
        for _ in range(3):
            post(url + "api/score", one, ctype)
        plain = [post(url + "api/score", one, ctype)[0] for _ in range(args.runs)]
        images = [post(url + "api/score?images=1", one, ctype)[0] for _ in range(args.runs)]
        whole, _ = multipart(series)
        series_ms = []
        for _ in range(5):
            ms, out = post(url + "api/score", whole, ctype)
            series_ms.append(ms)
        scored = sum(1 for s in out["slices"] if s["outcome"] == "scored")
        hwm = proc_kib(serve.pid, "VmHWM") / 1024
    finally:
        serve.terminate()
        serve.wait()
    with_console = daemon_rss(args.ichd, True, work)
    without_console = daemon_rss(args.ichd, False, work)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    result = {
        "cpu": cpu,
        "engine_median_ms": round(engine["median_ms"], 1),
        "score_one_slice_median_ms": round(statistics.median(plain), 1),
        "score_one_slice_with_images_median_ms": round(statistics.median(images), 1),
        "score_series_median_ms": round(statistics.median(series_ms), 1),
        "series_slices": len(series), "series_scored": scored,
        "score_series_per_slice_ms": round(statistics.median(series_ms) / len(series), 1),
        "one_slice_over_engine": round(statistics.median(plain) / engine["median_ms"], 2),
        "serve_peak_rss_mib": round(hwm, 1),
        "daemon_idle_rss_mib_console_on": round(with_console, 1),
        "daemon_idle_rss_mib_console_off": round(without_console, 1),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
