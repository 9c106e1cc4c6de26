"""A run killed with SIGKILL after its first checkpoint resumes to the uninterrupted result."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # trains models or runs scripts end to end

WORKER = os.path.join(os.path.dirname(__file__), "resume_worker.py")


def _run(ckpt, out):
    return subprocess.Popen([sys.executable, WORKER, str(ckpt), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _steps(ckpt):
    folder = os.path.join(ckpt, "steps")
    if not os.path.isdir(folder):
        return []
    return sorted(int(d) for d in os.listdir(folder) if d.isdigit())


def test_sigkill_and_resume_matches_uninterrupted(tmp_path):
    straight = _run(tmp_path / "a", tmp_path / "a.npz")
    assert straight.wait(timeout=600) == 0, straight.stdout.read().decode()

    ckpt = tmp_path / "b"
    proc = _run(ckpt, tmp_path / "b.npz")
    deadline = time.time() + 600
    while not _steps(ckpt) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _steps(ckpt)
    assert killed_at and killed_at[-1] < 400, f"run was not interrupted mid-way: {killed_at}"
    assert not (tmp_path / "b.npz").exists()

    resumed = _run(ckpt, tmp_path / "b.npz")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read().decode()
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert len(a.files) == len(b.files) > 10
    for name in a.files:
        np.testing.assert_array_equal(a[name], b[name])
