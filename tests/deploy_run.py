"""Helpers of the deploy tests: a real trained run (made once per test session), digit PNGs, a live server.

The run: `cnnzoo.train` on scikit-learn's digits; resnet18 at 32 px for 3 epochs reaches about 94% test top-1 in about 10 s on one core, so predictions
have real margins (random weights would make every backend comparison meaningless). Under pytest-xdist
the workers share one run: the first to take the lock trains, the others wait and reuse it.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

MODEL, EPOCHS = "resnet18", 3


def shared_run(tmp_path_factory) -> Path:
    """The session's digits run folder (trained on first use)."""
    from cnnzoo.train import train

    root = tmp_path_factory.getbasetemp()
    root = root.parent if root.name.startswith("popen-gw") else root  # shared by the xdist workers
    folder = root / f"deploy-digits-{MODEL}"
    with open(root / "deploy-digits.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "checkpoints" / "best.pt").is_file():
            with contextlib.redirect_stdout(None):
                train(model=MODEL, data="digits", out=str(folder), epochs=EPOCHS, seed=0, progress=False,
                      tensorboard=False, threads=1, workers=0)
    return folder


def write_digit_pngs(folder: Path, n: int = 10, start: int = 1700) -> list[tuple[Path, int]]:
    """`n` real digits as 8x8 grey PNGs, ink bright as the trainer sees them; (path, true label) pairs."""
    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        path = folder / f"digit{i}_{d.target[i]}.png"
        Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(path)
        out.append((path, int(d.target[i])))
    return out


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; a tiny race with other processes is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(source: str | Path, log: Path, *args: str, timeout: float = 180.0):
    """`cnnzoo serve SOURCE` in a real uvicorn process on 127.0.0.1; yields its base URL; always stopped."""
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "cnnzoo", "serve", str(source), "--host", "127.0.0.1", "--port", str(port), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not up after {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
