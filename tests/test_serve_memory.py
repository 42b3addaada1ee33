"""The server under the memory attack of issue #16, its Host check, --port 0 and client disconnects."""
from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from deploy_run import ONE_THREAD, shared_run, write_digit_pngs

pytestmark = pytest.mark.xdist_group(name="deploy-serve")


def _kb(pid: int, field: str) -> int:
    text = open(f"/proc/{pid}/status").read()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`cnnzoo serve RUN --port 0` in a subprocess: (url, process, log path)."""
    run = shared_run(tmp_path_factory)
    log = tmp_path_factory.mktemp("serve-mem") / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cnnzoo", "serve", str(run), "--backend", "eager",
                                 "--port", "0"], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ONE_THREAD})
    try:
        deadline = time.monotonic() + 120
        while not (m := re.search(r"serving \S+ on http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{m.group(1)}"
        assert m.group(1) != "0"  # the port the system gave, not the 0 asked for
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, proc, log
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _bilevel(side: int = 6300) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side, side), 1).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_memory_attack_stays_bounded_and_server_answers(server, tmp_path):
    url, proc, _ = server
    bomb = _bilevel()
    assert len(bomb) < 20_000  # a few kB on the wire, 40 megapixels declared
    idle = _kb(proc.pid, "VmRSS")
    for _ in range(3):
        r = httpx.post(url + "/predict", files=[("f", (f"b{i}.png", bomb, "image/png")) for i in range(16)], timeout=120)
        assert r.status_code == 413 and "per request" in r.json()["error"]
    one = httpx.post(url + "/predict", files={"f": ("b.png", bomb, "image/png")}, timeout=120)
    assert one.status_code == 200, one.text  # a single such image is within the limit: decoded, reduced
    peak = _kb(proc.pid, "VmHWM")
    assert peak < idle + 2**20, (idle, peak)  # kB: peak RSS under idle + 1 GB
    (path, label), = write_digit_pngs(tmp_path, 1)
    r = httpx.post(url + "/predict", files={"f": (path.name, path.read_bytes(), "image/png")}, timeout=30)
    assert r.status_code == 200 and r.json()["results"][0]["top"][0]["label"] == str(label)


def test_foreign_host_header_refused(server):
    url, _, _ = server
    assert httpx.get(url + "/health", headers={"host": "evil.example"}, timeout=10).status_code == 400
    assert httpx.get(url + "/health", headers={"host": "localhost"}, timeout=10).status_code == 200


def test_client_leaving_mid_upload_is_one_line(server):
    url, _, log = server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                  b"Content-Length: 100000\r\n\r\n--x\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\""
                  b"\r\n\r\n" + b"\0" * 1000)
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "disconnected" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    text = log.read_text()
    assert "disconnected before its request was read" in text and "Traceback" not in text
    assert httpx.get(url + "/health", timeout=10).status_code == 200


def test_taken_port_fails_before_serving_on(tmp_path_factory):
    run = shared_run(tmp_path_factory)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = subprocess.run([sys.executable, "-m", "cnnzoo", "serve", str(run), "--backend", "eager", "--port",
                            str(s.getsockname()[1])], capture_output=True, text=True, timeout=120,
                           env={**os.environ, **ONE_THREAD})
    assert r.returncode == 2 and "serving" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("cnnzoo: error: cannot listen on 127.0.0.1:")
