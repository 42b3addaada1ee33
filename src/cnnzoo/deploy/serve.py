"""An HTTP service for a trained model (FastAPI on uvicorn), with a web page to try it.

    POST /predict   multipart/form-data, one image or several (any field name), or a raw image body
                    -> {"results": [{"file", "top": [{"label", "probability"}], "batch"}], "backend", ...}
    GET  /model     the model's card, classes, input size, normalisation, backend and limits
    GET  /health    liveness and counters (requests, images, batches, mean batch size)
    GET  /          the page: drop or pick an image, see the top-5 classes as bars

Hostile input gets a JSON error and a 4xx status, and the server goes on: an upload over `max_upload_bytes`
413 (refused from its Content-Length before the body is read, or as soon as the count passes the limit),
too many pixels 413, not an allowed image format 415, corrupt or truncated data 422, no image 400.

Micro-batching: requests put their images on a queue; one worker takes everything queued (up to
`max_batch`), optionally waits `max_wait_ms` for more, and runs them as one batch in an inference thread,
so concurrent clients share the cost of a forward pass while the event loop keeps accepting requests.
The default wait is 0: images that arrive during a forward pass make up the next batch anyway, and a
fixed wait only delays a lone client (benchmarks/serve_load.py: with 5 ms, one client's p50 doubled
while 16 clients gained nothing over no wait).
Binds to 127.0.0.1 unless told otherwise, and answers only requests whose Host header names the bound host
or localhost (Starlette's TrustedHostMiddleware): a web page cannot reach the local server through DNS
rebinding.

Memory. A 6300x6300 1-bit PNG is 5 KB on the wire and 119 MB decoded as RGB, so the limit is on decoded
pixels, read from the headers before anything is decoded: `max_pixels` per request (all its files
together) and `max_inflight_pixels` across the requests being decoded at once (the others wait their
turn). Decoding goes straight towards the model's input size (JPEG draft, `Image.reduce`), and after a
burst the freed heap is handed back to the system (glibc's `malloc_trim`; elsewhere a no-op), so the
resident size falls back instead of staying at the peak.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..errors import CnnzooError
from .images import MAX_PIXELS, ImageRejected, decode_image, header_pixels
from .predict import Predictor, softmax


@dataclasses.dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 16  # 1 turns micro-batching off
    max_wait_ms: float = 0.0  # extra wait for company once a batch's first image is queued
    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = MAX_PIXELS
    max_files: int = 16  # images per request
    top_k: int = 5
    max_inflight_pixels: int = 2 * MAX_PIXELS  # decoded at once over all requests; the rest wait
    allowed_hosts: tuple[str, ...] | None = None  # Host headers answered; default the bound host and localhost

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_upload_bytes", "max_pixels", "max_files", "top_k", "max_inflight_pixels"):
            if not getattr(self, name) >= 1:
                raise CnnzooError(f"serve: {name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.max_wait_ms < 60_000:
            raise CnnzooError(f"serve: max_wait_ms must be in [0, 60000), got {self.max_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise CnnzooError(f"serve: port must be in [0, 65535], got {self.port}")
        self.max_inflight_pixels = max(self.max_inflight_pixels, self.max_pixels)

    def hosts(self) -> list[str]:
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        if self.host in ("0.0.0.0", "::", ""):  # every interface: the names it is reached by are unknown here
            return ["*"]
        return sorted({self.host, f"[{self.host}]" if ":" in self.host else self.host, "localhost", "127.0.0.1",
                       "[::1]"})


class PixelBudget:
    """Decoded pixels in flight: `take(n)` waits until n more fit under the limit; `give(n)` returns them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self.cond: asyncio.Condition | None = None

    async def take(self, n: int) -> None:
        self.cond = self.cond or asyncio.Condition()
        async with self.cond:
            await self.cond.wait_for(lambda: self.used + n <= self.limit)
            self.used += n

    async def give(self, n: int) -> None:
        async with self.cond:
            self.used -= n
            self.cond.notify_all()


def release_memory() -> None:
    """Hand the heap's free pages back to the system (glibc `malloc_trim(0)`); a no-op elsewhere.

    glibc keeps freed blocks in its arenas for reuse, so after a burst of decodes the process would stay
    at its peak resident size; trimming costs a few milliseconds, paid only when a burst ends."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        pass


class BodyTooLarge(Exception):
    pass


class MicroBatcher:
    """Queue of (image tensor, future); a worker task runs them through `fn` in batches."""

    def __init__(self, fn, max_batch: int, max_wait_ms: float) -> None:
        self.fn, self.max_batch, self.max_wait = fn, max(1, max_batch), max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cnnzoo-infer")
        self.batches = self.images = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            with _suppress_cancel():
                await self.task
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def submit(self, x: torch.Tensor) -> tuple[np.ndarray, int]:
        """The logits of one preprocessed image, and the size of the batch it ran in."""
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((x, fut))
        return await fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            batch = [(x, f) for x, f in batch if not f.done()]  # a client that went away
            if not batch:
                continue
            try:
                logits = await loop.run_in_executor(self.pool, self.fn, torch.stack([x for x, _ in batch]))
            except Exception as exc:  # noqa: BLE001 - the error goes to every waiting request
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.batches, self.images = self.batches + 1, self.images + len(batch)
            for (_, f), row in zip(batch, logits):
                if not f.done():
                    f.set_result((row, len(batch)))


class _suppress_cancel:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        return kind is asyncio.CancelledError


def _limit_body(app, max_bytes: int):
    """ASGI middleware: refuse a body over `max_bytes` by its Content-Length, or while it streams in."""

    async def middleware(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > max_bytes:
            await _drain(receive, 4 * max_bytes + 64 * 2**20)  # so that the client can read our answer
            return await _json(send, 413, f"upload too large: {int(length)} bytes exceeds the limit of {max_bytes}")
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > max_bytes:
                raise BodyTooLarge(f"upload too large: more than the limit of {max_bytes} bytes")
            return message

        return await app(scope, counted, send)

    return middleware


async def _drain(receive, limit: int) -> None:
    seen = 0
    while seen <= limit:
        message = await receive()
        seen += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _json(send, status: int, error: str) -> None:
    import json

    body = json.dumps({"error": error, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(predictor: Predictor, cfg: ServeConfig | None = None):
    """The FastAPI application serving `predictor` (its backend already chosen)."""
    from contextlib import asynccontextmanager

    cfg = cfg or ServeConfig()
    batcher = MicroBatcher(predictor.backend, cfg.max_batch, cfg.max_wait_ms)
    counters = {"requests": 0, "errors": 0, "started": time.time()}
    meta = predictor.meta
    page = resources.files("cnnzoo.deploy").joinpath("page.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"cnnzoo: {meta.model}", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def error(status: int, message: str, **extra: Any) -> JSONResponse:
        counters["errors"] += 1
        return JSONResponse({"error": message, "status": status, **extra}, status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, exc: BodyTooLarge):
        return error(413, str(exc))

    budget = PixelBudget(cfg.max_inflight_pixels)
    side = int(meta.input_size / (meta.crop_pct or 1)) + 1  # the eval resize's short side: decode no finer

    def prepare(data: bytes) -> torch.Tensor:
        return predictor.pre(decode_image(data, predictor.pre.mode, max_pixels=cfg.max_pixels, size=side))

    def declared(files: list[tuple[str, bytes]]) -> int | JSONResponse:
        total = 0
        for name, data in files:
            try:
                total += header_pixels(data)
            except ImageRejected:  # reported per file when it is decoded
                continue
        if total > cfg.max_pixels:
            return error(413, f"too many pixels: the {len(files)} images of this request declare "
                              f"{total / 1e6:.0f} MP in all; the limit per request is {cfg.max_pixels / 1e6:.0f} MP")
        return total

    async def one(name: str, data: bytes) -> dict[str, Any]:
        try:
            x = await run_in_threadpool(prepare, data)
        except ImageRejected as exc:
            return {"file": name, "error": str(exc), "status": exc.status}
        logits, batch = await batcher.submit(x)
        probs = softmax(logits[None].astype(np.float64))
        top = predictor.top(probs, cfg.top_k)[0]
        return {"file": name, "top": [{"label": c, "probability": round(p, 6)} for c, p in top], "batch": batch}

    @app.post("/predict")
    async def predict(request: Request):
        counters["requests"] += 1
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            try:
                form = await request.form(max_files=cfg.max_files, max_fields=cfg.max_files)
            except HTTPException as exc:  # malformed multipart, too many parts
                return error(400, f"bad multipart body: {exc.detail}")
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]
            if not files:
                return error(400, "no image in the request: send multipart/form-data with a file field")
        elif kind.startswith("application/x-www-form-urlencoded"):
            return error(400, "no image in the request: send multipart/form-data with a file field")
        else:
            body = await request.body()
            if not body:
                return error(400, "empty body: send an image (multipart/form-data, or the raw bytes)")
            files = [("body", body)]
        pixels = declared(files)
        if isinstance(pixels, JSONResponse):
            return pixels
        await budget.take(pixels)
        try:
            results = await asyncio.gather(*(one(name, data) for name, data in files))
        finally:
            await budget.give(pixels)
            if budget.used == 0 and pixels > 1_000_000:  # a burst of large decodes ended
                await run_in_threadpool(release_memory)
        bad = [r for r in results if "error" in r]
        if bad:
            what = bad[0]["error"] if len(files) == 1 else f"{len(bad)} of {len(files)} files: {bad[0]['file']}: {bad[0]['error']}"
            return error(bad[0]["status"], what, results=results)
        return {"model": meta.model, "backend": predictor.backend.name, "results": results}

    @app.get("/model")
    async def model():
        return {"model": meta.model, "card": meta.card(), "classes": meta.classes, "num_classes": meta.num_classes,
                "input_size": meta.input_size, "in_chans": meta.in_chans, "mean": meta.mean, "std": meta.std,
                "crop_pct": meta.crop_pct, "epoch": meta.epoch, "best_top1": meta.best_top1, "source": predictor.source.path,
                "backend": predictor.backend.name, "backend_reason": predictor.reason,
                "limits": {"max_upload_bytes": cfg.max_upload_bytes, "max_pixels": cfg.max_pixels,
                           "max_files": cfg.max_files, "formats": list(_formats())},
                "batching": {"max_batch": cfg.max_batch, "max_wait_ms": cfg.max_wait_ms}}

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": meta.model, "backend": predictor.backend.name,
                "uptime_s": round(time.time() - counters["started"], 1), "requests": counters["requests"],
                "errors": counters["errors"], "images": batcher.images, "batches": batcher.batches,
                "mean_batch": round(batcher.images / batcher.batches, 2) if batcher.batches else None}

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    from starlette.middleware.trustedhost import TrustedHostMiddleware

    return _quiet_disconnects(_limit_body(TrustedHostMiddleware(app, allowed_hosts=cfg.hosts()),
                                          cfg.max_upload_bytes))


def _quiet_disconnects(app):
    """ASGI middleware: a client that leaves mid-upload is one log line, not a traceback."""
    from starlette.requests import ClientDisconnect

    async def middleware(scope, receive, send):
        try:
            return await app(scope, receive, send)
        except ClientDisconnect:
            client = scope.get("client") or ("?", 0)
            print(f"cnnzoo serve: {client[0]}:{client[1]} disconnected before its request was read",
                  file=sys.stderr, flush=True)

    return middleware


def _formats() -> tuple[str, ...]:
    from ..data.datasets import PIL_FORMATS

    return PIL_FORMATS


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def bind(cfg: ServeConfig) -> socket.socket:
    """The listening socket, bound now: a taken port fails before "serving on" is printed, and port 0
    becomes the port the system chose (`sock.getsockname()[1]`)."""
    family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((cfg.host, cfg.port))
    except (OSError, OverflowError) as exc:
        sock.close()
        raise CnnzooError(f"cannot listen on {cfg.host}:{cfg.port}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_server(app, cfg: ServeConfig, sock: socket.socket | None = None) -> None:
    """Serve `app` until interrupted (uvicorn, one process; the model is already loaded)."""
    import uvicorn

    sock = sock or bind(cfg)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5)
    uvicorn.Server(config).run(sockets=[sock])


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it; another process could take it before we do)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_background(source: str | os.PathLike, *args: str, log: str | os.PathLike | None = None,
                        port: int | None = None, timeout: float = 300.0, env: dict[str, str] | None = None):
    """`cnnzoo serve SOURCE ARGS...` in its own process on 127.0.0.1, for a notebook, a test or a load
    benchmark; yields the base URL once `GET /health` answers, and always stops the server.

        with serve_in_background("runs/digits", "--max-batch", "8") as url:
            requests.post(url + "/predict", files={"file": open("digit.png", "rb")})
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "cnnzoo", "serve", str(source), "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log or os.devnull, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    said = (lambda: Path(log).read_text()) if log else (lambda: "(no log kept)")
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise CnnzooError(f"the server exited with {proc.returncode}: {said()}")
            if time.monotonic() > deadline:
                raise CnnzooError(f"the server did not answer within {timeout:.0f} s: {said()}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as r:
            return r.status == 200
    except OSError:  # refused, reset, timed out: not up yet
        return False
