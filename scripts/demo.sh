#!/usr/bin/env bash
# `make demo`: the main job on the simulated board. A copy of board/sim (console lamp, a pseudo-terminal as
# the serial port, the bundled model, local folders) runs under demo-out/board; phantom series land in its drop
# folder; the daemon scores them and speaks: lamp transitions on the console, the serial line as the
# integrators' reference reader `ichd listen` prints it. The model is trained on synthetic phantoms only.
set -euo pipefail
cd "$(dirname "$0")/.."
ichd=${ICHD:-.build/release/ichd}
out=demo-out
rm -rf "$out"
mkdir -p "$out/board"
# The sim board's config as shipped, with a shorter quiet time so the demo's series finish quickly.
# The console on any free port (8080 may be taken on a developer's machine); its address is in the log.
sed -e 's/^series_quiet_s = .*/series_quiet_s = 3/' -e 's/^resend_s = .*/resend_s = 5/' -e 's/^port = 8080$/port = 0/' \
    board/sim/ichd.toml > "$out/board/ichd.toml"

echo "== commissioning self-test"
"$ichd" selftest --model models/ichd-phantom-resnet18.ichm --work "$out/selftest"

echo "== four phantom series (synthetic bleeds in some) written as DICOM through DCMTK"
"$ichd" phantom --out "$out/series" --series 4 --seed 1 --positive-rate 0.5

echo "== ichd run --config $out/board/ichd.toml (the daemon; log in $out/daemon.log)"
"$ichd" run --config "$out/board/ichd.toml" --until-idle 6 > "$out/daemon.log" 2>&1 &
daemon=$!
link="$out/board/state/ttyICHD"
for _ in $(seq 1 100); do [ -e "$link" ] && break; sleep 0.1; done
echo "== ichd listen $link (the serial line as an integrator reads it)"
"$ichd" listen "$link" --timeout 12 > "$out/serial.txt" 2>&1 &
listener=$!
sleep 1
for s in "$out"/series/series-*; do cp -r "$s" "$out/board/drop/"; sleep 1; done
console=$(grep -o 'url=http://[^ ]*' "$out/daemon.log" | head -1 | cut -d= -f2)
if [ -n "$console" ]; then
    echo "== the web console at $console (GET /api/status while the daemon runs)"
    python3 - "$console" <<'PY' || true
import json, sys, urllib.request
s = json.load(urllib.request.urlopen(sys.argv[1] + "api/status", timeout=10))
print(f"health {s['health']}, lamp {s['lamp']}, model {s['model']['id']} {s['model']['sha']}, queue {s['queue']}, "
      f"latency p50/p95 {s['latency_ms']['p50']}/{s['latency_ms']['p95']} ms (budget {s['latency_ms']['budget']})")
for a in s["pending_alerts"]:
    print(f"pending alert {a['id']} raised {a['raised_at']}")
PY
fi
wait "$daemon"
wait "$listener" || true
echo "== lamp (simulated chip, from the daemon's console)"
grep -E "^lamp:" "$out/daemon.log" | head -20 || true
echo "== serial line"
grep -v -e " HB " -e "^lost " "$out/serial.txt" | head -40
echo "== what the daemon decided"
grep -E "ALERT|RESULT|rejected" "$out/daemon.log" | sed 's/^[^ ]* //' | head -20
echo "demo: daemon log $out/daemon.log, serial lines $out/serial.txt, archive $out/board/archive"
echo "demo: for the console, run 'ichd run --config board/sim/ichd.toml' and open http://127.0.0.1:8080/"
