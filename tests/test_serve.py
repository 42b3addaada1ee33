"""`cnnzoo serve` end to end: a real uvicorn process on 127.0.0.1, good and hostile uploads, micro-batching."""
from __future__ import annotations

import concurrent.futures
import io
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from cnnzoo.deploy.serve import serve_in_background
from deploy_run import ONE_THREAD, shared_run, write_digit_pngs

pytestmark = pytest.mark.xdist_group(name="deploy-serve")


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG signature and header that declare `width` x `height` grey pixels, and a token of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_digit_pngs(tmp_path_factory.mktemp("digits"), 8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    run = shared_run(tmp_path_factory)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    # auto backend: the server measures its candidates at startup and says which it took
    with serve_in_background(run, "--max-upload-mb", "1", "--max-batch", "8", "--max-wait-ms", "50", log=log,
                             env=ONE_THREAD) as url:
        yield url, log


def post(url: str, files=None, **kw) -> httpx.Response:
    return httpx.post(url + "/predict", files=files, timeout=30, **kw)


def test_model_card_and_health(server):
    url, log = server
    card = httpx.get(url + "/model", timeout=10).json()
    assert card["model"] == "resnet18" and card["classes"] == [str(i) for i in range(10)]
    assert card["input_size"] == 32 and card["in_chans"] == 1
    assert card["card"]["year"] == 2016 and card["limits"]["max_upload_bytes"] == 2**20
    assert card["backend"] in ("eager", "bf16", "onnxruntime", "int8")
    assert f"backend: {card['backend']}" in log.read_text()  # the startup log says which and why
    assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
    page = httpx.get(url + "/", timeout=10)
    assert page.status_code == 200 and "Drop an image" in page.text


def test_good_images_are_classified(server, digits):
    url, _ = server
    right = 0
    for path, label in digits:
        r = post(url, {"file": (path.name, path.read_bytes(), "image/png")})
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]["top"]
        assert len(top) == 5 and top[0]["probability"] >= top[1]["probability"]
        assert abs(sum(t["probability"] for t in top) - 1) < 0.2
        right += top[0]["label"] == str(label)
    assert right >= 6  # a 3-epoch model; 8 of 8 on these in practice


def test_several_images_in_one_request_and_raw_body(server, digits):
    url, _ = server
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p, _ in digits[:3]]
    r = post(url, files)
    assert r.status_code == 200 and [x["file"] for x in r.json()["results"]] == [p.name for p, _ in digits[:3]]
    raw = httpx.post(url + "/predict", content=digits[0][0].read_bytes(), headers={"content-type": "image/png"})
    assert raw.status_code == 200 and len(raw.json()["results"][0]["top"]) == 5


def test_hostile_inputs_get_4xx_json_and_the_server_goes_on(server, digits):
    url, _ = server
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    cases = {
        "not an image": (415, {"file": ("notes.txt", b"hello, this is text" * 10, "image/png")}),
        "truncated JPEG": (422, {"file": ("cut.jpg", jpeg[: len(jpeg) // 2], "image/jpeg")}),
        "30000x30000 PNG": (413, {"file": ("bomb.png", png_declaring(30000, 30000), "image/png")}),
        "oversized upload": (413, {"file": ("big.png", b"\0" * (2 * 2**20), "image/png")}),
        "empty file": (400, {"file": ("empty.png", b"", "image/png")}),
    }
    for what, (status, files) in cases.items():
        r = post(url, files)
        assert r.status_code == status, (what, r.status_code, r.text)
        assert r.json()["error"], what
    assert httpx.post(url + "/predict", content=b"", timeout=10).status_code == 400  # empty body

    def chunks():  # no Content-Length: the server counts the bytes as they arrive
        for _ in range(8):
            yield b"\0" * 2**18

    r = httpx.post(url + "/predict", content=chunks(), headers={"content-type": "image/png"}, timeout=30)
    assert r.status_code == 413 and "upload too large" in r.json()["error"]
    assert post(url, data={"note": "no file"}).status_code == 400  # a form without an image
    no_file = b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n--XyZ--\r\n'
    r = httpx.post(url + "/predict", content=no_file, headers={"content-type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 400 and "no image" in r.json()["error"]
    assert httpx.get(url + "/nowhere", timeout=10).json()["status"] == 404
    path = digits[0][0]
    assert post(url, {"file": (path.name, path.read_bytes(), "image/png")}).status_code == 200
    health = httpx.get(url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["errors"] >= 8


def test_concurrent_requests_are_micro_batched(server, digits):
    url, _ = server
    payloads = [p.read_bytes() for p, _ in digits] * 3

    def one(data: bytes) -> dict:
        r = post(url, {"file": ("d.png", data, "image/png")})
        assert r.status_code == 200, r.text
        return r.json()["results"][0]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, payloads))
    assert len(results) == 24
    assert max(r["batch"] for r in results) > 1  # 12 clients, 50 ms wait: some images shared a forward pass
    assert max(r["batch"] for r in results) <= 8
