"""Runs a test script in a fresh Python process with fake CPU devices (XLA must see the flag
before JAX starts, so it cannot run in the pytest process)."""

import json
import os
import subprocess
import sys


def run_script(script: str, devices: int = 4, timeout: int = 600):
    """Runs `script` with `devices` fake CPU devices; returns its last stdout line as JSON."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
