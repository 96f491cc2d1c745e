#!/usr/bin/env python3
"""The console in a real headless Chromium, driven over the DevTools protocol (websocket-client).

    console_browser.py upload --url http://127.0.0.1:PORT --file SLICE [--file ...] --screenshot OUT.png [--token T]
    console_browser.py ack --url http://127.0.0.1:PORT --alert ID --screenshot OUT.png [--token T]

upload: opens /upload, chooses the files in the file input, presses Score and waits until the results show a
probability table and an inline heatmap overlay that the browser decoded (naturalWidth > 0).
ack: opens the status page, finds the pending alert's row, presses its Acknowledge button and waits until the
page, reloaded, no longer lists it.
With --token the console first answers with its login form (401); the script signs in through it, so the
session cookie path is exercised as a technician would. Prints one JSON line of what it saw; exit 0 on success,
1 with the reason otherwise. The screenshot is written either way (a test artefact).
"""
import argparse
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


class Browser:
    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not exe:
            raise SystemExit("no chromium on PATH (Debian package `chromium`; make test installs it)")
        self.profile = tempfile.mkdtemp(prefix="ichd-chromium-")
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1280,1600",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line or "")
            if m:
                port = int(m.group(1))
            elif not line and self.proc.poll() is not None:
                raise SystemExit("chromium exited before it listened")
        if port is None:
            raise SystemExit("chromium did not open its DevTools port")
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60, suppress_origin=True)
        self.next_id = 0
        for domain in ("Page", "Runtime", "DOM"):
            self.call(f"{domain}.enable")

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"script failed: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def wait(self, expression, seconds, what):
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                if self.js(expression):
                    return
            except RuntimeError:
                pass  # the page is navigating
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {seconds} s waiting for {what}")

    def open(self, url):
        self.call("Page.navigate", url=url)
        time.sleep(0.2)
        self.wait("document.readyState === 'complete' && location.href !== 'about:blank'", 30, f"{url} to load")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def sign_in(b, url, token):
    b.open(url + "/")
    b.wait("!!document.querySelector('#login input[name=token]')", 10, "the login form")
    b.js(f"document.querySelector('#login input[name=token]').value = {json.dumps(token)};"
         "document.querySelector('#login').submit(); true")
    b.wait("location.pathname === '/' && !!document.getElementById('health')", 20, "the status page after signing in")


def upload(b, args):
    b.open(args.url + "/upload")
    doc = b.call("DOM.getDocument")
    node = b.call("DOM.querySelector", nodeId=doc["root"]["nodeId"], selector="#files")["nodeId"]
    b.call("DOM.setFileInputFiles", nodeId=node, files=[os.path.abspath(f) for f in args.file])
    b.js("document.querySelector('#upload button[type=submit]').click(); true")
    b.wait("document.querySelectorAll('#results article.slice').length > 0", 120, "the results")
    b.wait("Array.from(document.querySelectorAll('#results img')).every(i => i.complete)", 20, "the images to decode")
    seen = b.js("""(() => {
        const tables = document.querySelectorAll('#results table.probabilities');
        const rows = tables.length ? Array.from(tables[0].querySelectorAll('tr')).slice(1).map(r =>
            [r.cells[0].textContent, parseFloat(r.cells[1].textContent)]) : [];
        const overlays = Array.from(document.querySelectorAll('#results img.overlay'));
        return {slices: document.querySelectorAll('#results article.slice').length,
                probabilities: Object.fromEntries(rows),
                overlays: overlays.map(i => ({cls: i.dataset.class, w: i.naturalWidth, h: i.naturalHeight,
                                              jpeg: i.src.startsWith('data:image/jpeg;base64,')})),
                preview: !!document.querySelector('#results img.preview') && document.querySelector('#results img.preview').naturalWidth,
                decision: document.getElementById('series-decision') ? document.getElementById('series-decision').textContent.trim() : null,
                error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent};
    })()""")
    problems = []
    if len(seen["probabilities"]) != 6 or not all(0 <= p <= 1 for p in seen["probabilities"].values()):
        problems.append("six probabilities in [0, 1]")
    if not seen["overlays"] or not all(o["jpeg"] and o["w"] > 0 and o["h"] > 0 for o in seen["overlays"]):
        problems.append("a decoded JPEG heatmap overlay")
    if seen["error"]:
        problems.append(f"no error (saw {seen['error']!r})")
    return seen, problems


def acknowledge(b, args):
    b.open(args.url + "/")
    row = f"tr.alert[data-alert={json.dumps(args.alert)}]"
    b.wait(f"!!document.querySelector({json.dumps(row)})", 20, f"alert {args.alert} on the status page")
    b.js(f"document.querySelector({json.dumps(row + ' button.ack')}).click(); true")
    b.wait(f"document.readyState === 'complete' && !document.querySelector({json.dumps(row)}) && !!document.getElementById('health')",
           20, f"alert {args.alert} to be gone")
    seen = {"pending_text": b.js("document.getElementById('alerts').textContent.trim()"),
            "lamp": b.js("document.getElementById('lamp') ? document.getElementById('lamp').textContent : null")}
    return seen, []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["upload", "ack"])
    ap.add_argument("--url", required=True)
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--alert")
    ap.add_argument("--token")
    ap.add_argument("--screenshot", required=True)
    args = ap.parse_args()
    b = Browser()
    try:
        try:
            if args.token:
                sign_in(b, args.url, args.token)
            seen, problems = upload(b, args) if args.mode == "upload" else acknowledge(b, args)
        except (TimeoutError, RuntimeError, StopIteration) as e:
            seen, problems = {}, [str(e)]
        b.screenshot(args.screenshot)
    finally:
        b.close()
    print(json.dumps({"mode": args.mode, "seen": seen, "problems": problems}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
