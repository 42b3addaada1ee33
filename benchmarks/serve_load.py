"""Load test of `cnnzoo serve` on loopback: N concurrent clients for T seconds, with and without micro-batching.

    .venv/bin/python benchmarks/serve_load.py [RUN|CHECKPOINT|MODEL.onnx] [--clients 16] [--seconds 10]

Two real servers (uvicorn subprocesses on 127.0.0.1) serve the same model with the same backend: one
micro-batches (`--max-batch 16`, `--max-wait-ms` 0 by default), the other runs every image alone (`--max-batch 1`).
Each round loads one of them, then the other (A B A B ...), with N clients that each post a real digit
PNG, wait for the answer and post again until T seconds have passed. Reported per server: requests,
errors (anything but a 200 with 5 classes; must be 0), p50/p99 latency, images/s, and the mean batch
the server ran (from /health). Bounded: at most 256 clients, 120 s a round. Without a source, a digits
run (resnet18, 3 epochs) is trained into a temporary folder first.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from cnnzoo.deploy.serve import serve_in_background


def digit_pngs(n: int = 32) -> list[bytes]:
    d = load_digits()
    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.round(d.images[i] * 255 / 16).astype(np.uint8), mode="L").save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


async def load(url: str, images: list[bytes], clients: int, seconds: float) -> tuple[list[float], int, float]:
    """Latencies (s) of the successful requests, the error count, and the seconds the round took."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def one_client(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < deadline:
                data = images[i % len(images)]
                i += clients
                t = time.perf_counter()
                try:
                    r = await client.post(url + "/predict", files={"file": ("d.png", data, "image/png")})
                    ok = r.status_code == 200 and len(r.json()["results"][0]["top"]) == 5
                except (httpx.HTTPError, ValueError, KeyError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1

        await asyncio.gather(*(one_client(k) for k in range(clients)))
        return latencies, errors, time.perf_counter() - start


def train_digits(folder: str) -> str:
    from cnnzoo.train import train

    with contextlib.redirect_stdout(None):
        train(model="resnet18", data="digits", out=folder, epochs=3, progress=False, tensorboard=False, workers=0)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", nargs="?", help="run folder, checkpoint or .onnx (default: train a digits run)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2, help="rounds per server, alternating")
    ap.add_argument("--backend", default="onnxruntime", help="the same for both servers (default onnxruntime)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=0.0)
    args = ap.parse_args()
    clients, seconds = min(max(1, args.clients), 256), min(max(1.0, args.seconds), 120.0)
    images = digit_pngs()
    with tempfile.TemporaryDirectory(prefix="cnnzoo-serve-load-") as tmp:
        source = args.source or train_digits(os.path.join(tmp, "run"))
        modes = {f"micro-batched (max {args.max_batch}, wait {args.max_wait_ms:g} ms)":
                 ["--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
                 "one image at a time (max-batch 1)": ["--max-batch", "1"]}
        with contextlib.ExitStack() as stack:
            urls = {m: stack.enter_context(serve_in_background(
                source, "--backend", args.backend, *a, log=Path(tmp) / f"serve{i}.log"))
                    for i, (m, a) in enumerate(modes.items())}
            stats = {m: {"lat": [], "errors": 0, "seconds": 0.0, "images": 0, "batches": 0} for m in modes}
            for _ in range(args.rounds):
                for mode, url in urls.items():
                    before = httpx.get(url + "/health").json()
                    lat, err, sec = asyncio.run(load(url, images, clients, seconds))
                    after = httpx.get(url + "/health").json()
                    s = stats[mode]
                    s["lat"] += lat
                    s["errors"] += err
                    s["seconds"] += sec
                    s["images"] += after["images"] - before["images"]
                    s["batches"] += after["batches"] - before["batches"]
            backend = httpx.get(next(iter(urls.values())) + "/model").json()["backend"]
    print(f"# serve_load {datetime.date.today()}: {clients} clients x {seconds:g} s x {args.rounds} rounds per server, "
          f"backend {backend}, load average {os.getloadavg()[0]:.1f}\n")
    print("| server | requests | errors | p50 ms | p99 ms | images/s | mean batch |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for mode, s in stats.items():
        lat = np.array(s["lat"]) * 1000
        p50, p99 = (np.percentile(lat, 50), np.percentile(lat, 99)) if len(lat) else (float("nan"),) * 2
        mean_batch = s["images"] / s["batches"] if s["batches"] else float("nan")
        print(f"| {mode} | {len(lat) + s['errors']} | {s['errors']} | {p50:.1f} | {p99:.1f} | "
              f"{len(lat) / s['seconds']:.1f} | {mean_batch:.2f} |")
    return 1 if any(s["errors"] for s in stats.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
