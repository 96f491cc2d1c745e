"""Runs the ichd binary from the bench scripts, failing loudly with its stderr."""
import subprocess


def ichd_runner(binary):
    def run(*args):
        r = subprocess.run([binary, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"ichd {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r.stdout
    return run
