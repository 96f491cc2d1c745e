#!/usr/bin/env python3
"""The daemon's targets (issue 17), measured side by side with `ichd bench` in one run.

1. Idle latency: slices dropped one at a time (written under a temporary name and renamed, as a producer that
   renames does), each waited for; file close to score from the journal, against the engine's own latency
   (`ichd bench --model M --threads N`, same threads, same run). Target: median <= engine median + 20 ms.
2. Burst: N slices (phantom series) in the drop folder at once; sustained throughput from the journal's
   completion times, peak RSS of the daemon process (getrusage of the child), against the CPU bound
   cores / (engine 1-thread median + decode-and-preprocess median) from `ichd bench`. Target: >= 0.9 of the
   bound, RSS <= 96 MiB, nothing lost.
3. Alert timing: for the positive series of the burst and of the idle run, the journal's alert latency (file
   close of the slice that completed the evidence to the decision) against that series' slice latencies.

Usage: bench/daemon_bench.py [--ichd .build/release/ichd] [--slices 2000] [--threads 2] [--json]
No dependencies beyond the standard library (sqlite3 reads the journal).
"""
import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "models", "ichd-phantom-resnet18.ichm")


def config(board, threads, scorers=1, quiet=1.0, budget=1000):
    text = f"""board = "bench"
[folders]
drop = "drop"
archive = "archive"
quarantine = "quarantine"
state = "state"
[model]
path = "{MODEL}"
threads = {threads}
scorers = {scorers}
[budget]
slice_ms = {budget}
[decision]
adjacent_slices = 2
series_quiet_s = {quiet}
[lamp]
backend = "sim"
"""
    path = os.path.join(board, "ichd.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def ichd_json(ichd, *args):
    out = subprocess.run([ichd, *args, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def slice_files(folder):
    out = []
    for d, _, names in os.walk(folder):
        out += [os.path.join(d, n) for n in sorted(names) if n.endswith(".dcm")]
    return sorted(out)


def journal(board):
    return sqlite3.connect(os.path.join(board, "state", "journal.sqlite"))


def count_done(board):
    try:
        with journal(board) as db:
            return db.execute("SELECT count(*) FROM instances").fetchone()[0]
    except sqlite3.Error:
        return 0


def start_daemon(ichd, cfg, until_idle=None):
    args = [ichd, "run", "--config", cfg] + (["--until-idle", str(until_idle)] if until_idle else [])
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def idle_latency(ichd, work, threads, scorers, count):
    board = os.path.join(work, "idle")
    os.makedirs(board)
    cfg = config(board, threads, scorers)
    src = os.path.join(work, "idle-src")
    subprocess.run([ichd, "phantom", "--out", src, "--series", "2", "--seed", "77", "--positive-rate", "0.5"],
                   check=True, capture_output=True)
    files = slice_files(src)[:count]
    daemon = start_daemon(ichd, cfg)
    time.sleep(3)  # model loaded, watching
    drop = os.path.join(board, "drop")
    for i, f in enumerate(files):
        rel = os.path.relpath(f, src)
        target = os.path.join(drop, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(f, target + ".part")
        os.rename(target + ".part", target)
        deadline = time.time() + 30
        while count_done(board) < i + 1 and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # idle: the next slice lands on an idle box
    daemon.terminate()
    daemon.wait()
    with journal(board) as db:
        lat = [r[0] for r in db.execute("SELECT latency_ms FROM slices WHERE scored = 1")]
        alerts = [r[0] for r in db.execute("SELECT latency_ms FROM alerts")]
    return {"slices": len(lat), "median_ms": statistics.median(lat), "p95_ms": sorted(lat)[int(0.95 * (len(lat) - 1))],
            "alert_lat_ms": alerts}


def burst(ichd, work, threads, scorers, n):
    board = os.path.join(work, "burst")
    os.makedirs(board)
    cfg = config(board, threads, scorers, quiet=2, budget=600000)
    series = max(1, (n + 24) // 25)  # a phantom series has 25-28 slices
    src = os.path.join(board, "drop")
    subprocess.run([ichd, "phantom", "--out", src, "--series", str(series), "--seed", "5000", "--positive-rate", "0.3"],
                   check=True, capture_output=True)
    for name in os.listdir(src):
        if not os.path.isdir(os.path.join(src, name)):
            os.remove(os.path.join(src, name))
    files = slice_files(src)
    for extra in files[n:]:
        os.remove(extra)
    files = files[:n]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    daemon = start_daemon(ichd, cfg, until_idle=2)
    daemon.wait()
    wall = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with journal(board) as db:
        done = [r[0] for r in db.execute("SELECT done_at FROM instances ORDER BY done_at")]
        counts = {k: db.execute(q).fetchone()[0] for k, q in {
            "instances": "SELECT count(*) FROM instances",
            "scorings": "SELECT count(*) FROM scorings",
            "scored_slices": "SELECT count(*) FROM slices WHERE scored = 1",
            "skipped_slices": "SELECT count(*) FROM slices WHERE scored = 0",
            "series_final": "SELECT count(*) FROM series WHERE final = 1",
            "alerts": "SELECT count(*) FROM alerts"}.items()}
        # Alert timing: the alert's latency (completing slice's file close to the decision) against that
        # slice's own latency (its file close to its score): the alert must not wait for more slices.
        alert_rows = db.execute("SELECT series_uid, latency_ms, slice FROM alerts").fetchall()
        per_series = {s: db.execute("SELECT latency_ms FROM slices WHERE series_uid = ? AND instance = ? AND scored = 1",
                                    (s, i)).fetchone()[0] for s, _, i in alert_rows}
    # Sustained rate: the middle 90% of completions (start-up and the last stragglers excluded).
    lo, hi = int(0.05 * len(done)), int(0.95 * len(done)) - 1
    rate = (hi - lo) / (done[hi] - done[lo]) if hi > lo else 0
    left = slice_files(os.path.join(board, "drop"))
    return {"slices": len(files), "wall_s": wall, "slices_per_s": rate, "peak_rss_mib": usage.ru_maxrss / 1024,
            "cpu_s": (usage.ru_utime + usage.ru_stime) - (before.ru_utime + before.ru_stime),
            "left_in_drop": len(left), **counts,
            "alert_vs_completing_slice_latency_ms": [(a, per_series[s]) for s, a, _ in alert_rows]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ichd", default=os.path.join(ROOT, ".build", "release", "ichd"))
    ap.add_argument("--slices", type=int, default=2000)
    ap.add_argument("--idle-slices", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="model.threads")
    ap.add_argument("--scorers", type=int, default=2, help="model.scorers")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    work = tempfile.mkdtemp(prefix="ichd-daemon-bench-")
    try:
        engine_n = ichd_json(args.ichd, "bench", "--model", MODEL, "--threads", str(args.threads), "--runs", "30")
        engine_1 = ichd_json(args.ichd, "bench", "--model", MODEL, "--threads", "1", "--runs", "30")
        pre = ichd_json(args.ichd, "bench", "--stage", "preprocess", "--runs", "100")
        idle = idle_latency(args.ichd, work, args.threads, args.scorers, args.idle_slices)
        b = burst(args.ichd, work, args.threads, args.scorers, args.slices)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    bound = cores / ((engine_1["median_ms"] + pre["median_ms"]) / 1000)
    report = {
        "cpu": cpu, "cores": cores, "threads": args.threads, "scorers": args.scorers,
        "engine_median_ms": engine_n["median_ms"], "engine_1thread_median_ms": engine_1["median_ms"],
        "decode_preprocess_median_ms": pre["median_ms"],
        "idle": idle, "idle_target_ms": engine_n["median_ms"] + 20,
        "burst": b, "cpu_bound_slices_per_s": bound, "throughput_vs_bound": b["slices_per_s"] / bound,
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"model.threads {args.threads}, model.scorers {args.scorers}")
    print(f"CPU {cpu}, {cores} cores; engine {engine_n['median_ms']:.1f} ms at {args.threads} threads, "
          f"{engine_1['median_ms']:.1f} ms at 1; decode+preprocess {pre['median_ms']:.1f} ms")
    print(f"idle: {idle['slices']} slices, file close to score median {idle['median_ms']:.1f} ms, p95 {idle['p95_ms']:.1f} ms "
          f"(target <= {report['idle_target_ms']:.1f} ms); alert latencies {idle['alert_lat_ms']}")
    print(f"burst: {b['slices']} slices, {b['instances']} recorded, {b['scorings']} scorings, {b['left_in_drop']} left in drop, "
          f"{b['series_final']} series final, {b['alerts']} alerts")
    print(f"burst: {b['slices_per_s']:.1f} slices/s sustained, CPU bound {bound:.1f} slices/s: "
          f"{report['throughput_vs_bound']:.2f} of it (target >= 0.90); peak RSS {b['peak_rss_mib']:.1f} MiB (target <= 96)")
    print("alert latency vs the completing slice's own latency (ms): "
          + ", ".join(f"{a} vs {s}" for a, s in b["alert_vs_completing_slice_latency_ms"]))


if __name__ == "__main__":
    sys.exit(main())
