"""Weights by name: tables, the careful downloader, and `--weights imagenet` through the library and the CLI.

Never the internet: the tests register their own table rows (files made here, their checksums computed here) and
serve them from a local HTTP server that `CNNZOO_WEIGHTS_MIRROR` points at; the origin URLs are never reached.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from cnnzoo import CnnzooError, create_model
from cnnzoo.cli import main
from cnnzoo.pretrained import fetch as fetch_module
from cnnzoo.pretrained import tables
from cnnzoo.pretrained.tables import Published

ORIGIN = "http://127.0.0.1:9/never-reached"  # the discard port: nothing answers there


def sha(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Served files: a torchvision-style .pth, a pytorchcv-style zip, and the bad variants."""
    folder = tmp_path_factory.mktemp("mirror")
    tv = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    buf = io.BytesIO()
    torch.save(tv.state_dict(), buf)
    tv_bytes = buf.getvalue()
    tv_file = f"shufflenet_v2_x0_5-{sha(tv_bytes, 'sha256')[:8]}.pth"
    (folder / tv_file).write_bytes(tv_bytes)

    from pytorchcv.model_provider import get_model

    cv = get_model("mobilenet_wd4", pretrained=False).eval()
    buf = io.BytesIO()
    torch.save(cv.state_dict(), buf)
    cv_bytes = buf.getvalue()
    cv_sha1 = sha(cv_bytes, "sha1")
    cv_file = f"mobilenet_wd4-2249-{cv_sha1[:8]}.pth"
    for name, members in {cv_file: {cv_file: cv_bytes}, "evil.pth": {"../evil.pth": cv_bytes},
                          "other.pth": {"something-else.pth": cv_bytes}}.items():
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as z:
            for member, data in members.items():
                z.writestr(member, data)
    (folder / "garbled.pth").write_bytes(tv_bytes[:-1] + bytes([tv_bytes[-1] ^ 1]))
    return {"folder": folder, "tv": tv, "tv_file": tv_file, "tv_sha256": sha(tv_bytes, "sha256"), "cv": cv,
            "cv_file": cv_file, "cv_sha1": cv_sha1, "tv_bytes": tv_bytes}


@pytest.fixture(scope="module")
def mirror(files):
    """The local mirror; paths under /truncated/ promise more bytes than they send, /silent/ never answers,
    /stalled/ answers and sends a little of the body, then nothing."""
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            if self.path.startswith("/silent/"):
                time.sleep(3)
                return
            if self.path.startswith("/stalled/"):
                data = (files["folder"] / self.path.rsplit("/", 1)[1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:1000])
                self.wfile.flush()
                time.sleep(3)
                return
            if self.path.startswith("/truncated/"):
                data = (files["folder"] / self.path.rsplit("/", 1)[1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(files["folder"])))
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # a client that gave up (the timeout tests): not news
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch, mirror, files):
    """A fresh cache, the mirror, and table rows for two models whose files the mirror serves."""
    base, hits = mirror
    hits.clear()
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNZOO_CACHE", str(cache))
    monkeypatch.setenv("CNNZOO_WEIGHTS_MIRROR", base)
    monkeypatch.setenv("CNNZOO_WEIGHTS_TIMEOUT", "1")
    rows = {
        "shufflenet_v2_x0_5": [Published("shufflenet_v2_x0_5", "v1", "torchvision", True, f"{ORIGIN}/{files['tv_file']}",
                                         files["tv_file"], files["tv_sha256"][:8], None, 5.3, 60.552, 81.746)],
        "mobilenet_v1_025": [Published("mobilenet_v1_025", "pytorchcv", "pytorchcv", True,
                                       f"{ORIGIN}/{files['cv_file']}.zip", files["cv_file"], None, files["cv_sha1"],
                                       None, None, 77.51)],
    }
    real = tables.published
    monkeypatch.setattr(tables, "published", lambda model: rows.get(model) or real(model))
    return {"cache": cache, "hits": hits, "rows": rows, "base": base}


def cache_files(cache: Path) -> list[str]:
    return sorted(os.listdir(cache)) if cache.exists() else []


def logits(model, seed=0, size=64):
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.eval()(x)


def test_good_downloads_land_verified_and_load_once(env, files):
    from cnnzoo.pretrained.load import cached

    assert cached("shufflenet_v2_x0_5") is None  # what the tour asks before it starts from ImageNet
    for _ in range(2):
        ours = create_model("shufflenet_v2_x0_5", pretrained=True)
        torch.testing.assert_close(logits(ours), logits(files["tv"]))
        cv = create_model("mobilenet_v1_025", pretrained="imagenet")
        torch.testing.assert_close(logits(cv, size=224), logits(files["cv"], size=224), atol=1e-5, rtol=1e-5)
    assert len(env["hits"]) == 2  # each file fetched once; the second load reads the verified cache
    assert cached("shufflenet_v2_x0_5") == env["cache"] / files["tv_file"] and cached("resnet50") is None
    assert cache_files(env["cache"]) == sorted([".cnnzoo-verified.json", files["tv_file"], files["cv_file"]])


def test_progress_bar_when_asked(env, capsys, monkeypatch):
    create_model("shufflenet_v2_x0_5", pretrained=True)  # not a terminal: no bar
    assert "B/s" not in capsys.readouterr().err
    for f in env["cache"].iterdir():
        f.unlink()
    monkeypatch.setenv("CNNZOO_PROGRESS", "1")
    create_model("shufflenet_v2_x0_5", pretrained=True)
    assert "B/s" in capsys.readouterr().err


def test_tags_and_models_without_weights(env):
    with pytest.raises(CnnzooError, match=r"no weights tagged 'v9'; it has imagenet:v1"):
        create_model("shufflenet_v2_x0_5", pretrained="imagenet:v9")
    with pytest.raises(CnnzooError, match="googlenet_paper has no published ImageNet weights"):
        create_model("googlenet_paper", pretrained=True)
    assert tables.resolve("resnet50", "imagenet").tag == "v2" and tables.resolve("resnet50", "imagenet:v1").top1 == 76.13
    for spec in ("ImageNet:V1", "imagenet:IMAGENET1K_V1", "IMAGENET:imagenet1k_v1"):  # torchvision's enum names too
        assert tables.is_spec(spec) and tables.resolve("resnet50", spec).tag == "v1"
    assert not tables.is_spec("imagenet.pth") and not tables.is_spec("./imagenet")
    with pytest.raises(CnnzooError, match="no weights tagged ''"):  # a colon promises a tag
        tables.resolve("resnet50", "imagenet:")


def bad(env, row_changes: dict, model="shufflenet_v2_x0_5"):
    import dataclasses

    row = env["rows"][model][0]
    env["rows"][model] = [dataclasses.replace(row, **row_changes)]
    with pytest.raises(CnnzooError) as err:
        create_model(model, pretrained=True)
    message = str(err.value)
    assert "\n" not in message
    assert cache_files(env["cache"]) == []  # nothing loaded, nothing left behind
    return message


def test_wrong_checksum(env, files):
    assert "does not start with deadbeef" in bad(env, {"sha256": "deadbeef"})
    assert "SHA-1" in bad(env, {"sha1": "0" * 40}, model="mobilenet_v1_025")


def test_truncated_body(env, files, monkeypatch):
    monkeypatch.delenv("CNNZOO_WEIGHTS_MIRROR")  # the origin itself misbehaves
    assert "stopped after" in bad(env, {"url": f"{env['base']}/truncated/{files['tv_file']}"})


def test_not_found(env):
    assert "HTTP 404" in bad(env, {"url": f"{ORIGIN}/missing-12345678.pth", "file": "missing-12345678.pth"})


def test_server_that_stops_answering(env, files, monkeypatch):
    monkeypatch.delenv("CNNZOO_WEIGHTS_MIRROR")
    start = time.monotonic()
    assert "no answer within 1 s" in bad(env, {"url": f"{env['base']}/silent/{files['tv_file']}"})
    assert time.monotonic() - start < 3


def test_connect_and_read_timeouts_are_separate(env, files, monkeypatch):
    monkeypatch.delenv("CNNZOO_WEIGHTS_MIRROR")
    monkeypatch.setenv("CNNZOO_WEIGHTS_TIMEOUT", "5,0.5")  # the body stalls: the read timeout
    start = time.monotonic()
    assert "no answer within 0.5 s" in bad(env, {"url": f"{env['base']}/stalled/{files['tv_file']}"})
    monkeypatch.setenv("CNNZOO_WEIGHTS_TIMEOUT", "0.5,5")  # the headers never come: the connect timeout
    assert "no answer within 0.5 s" in bad(env, {"url": f"{env['base']}/silent/{files['tv_file']}"})
    assert time.monotonic() - start < 3
    monkeypatch.setenv("CNNZOO_WEIGHTS_TIMEOUT", "soon")
    assert "CONNECT,READ" in bad(env, {})


def test_a_mirror_that_is_not_a_url_is_one_line(env, files, monkeypatch):
    for mirror in ("not a url", "http://[::1", "ftp://127.0.0.1:9", "https://"):
        monkeypatch.setenv("CNNZOO_WEIGHTS_MIRROR", mirror)
        assert "is not a mirror URL" in bad(env, {})
    monkeypatch.setenv("CNNZOO_WEIGHTS_MIRROR", files["folder"].as_uri())  # a folder on a machine without a network
    torch.testing.assert_close(logits(create_model("shufflenet_v2_x0_5", pretrained=True)), logits(files["tv"]))


def test_malformed_weight_urls_are_one_line(env):
    cases = {"http://[::1/x.pth": "not a valid URL", "http://127.0.0.1:9/": "names no file",
             "http://127.0.0.1:9/a/..": "names no file", "http://127.0.0.1:9/x.pth#sha256=zz": "must be sha256="}
    for url, message in cases.items():
        with pytest.raises(CnnzooError, match=message) as err:
            create_model("shufflenet_v2_x0_5", pretrained=url)
        assert "\n" not in str(err.value)
    assert cache_files(env["cache"]) == [] and env["hits"] == []


def test_zip_with_a_path_outside_its_folder(env):
    assert "outside its folder" in bad(env, {"url": f"{ORIGIN}/evil.pth.zip", "file": "evil.pth"}, "mobilenet_v1_025")


def test_zip_without_the_expected_member(env):
    assert "does not hold other.pth" in bad(env, {"url": f"{ORIGIN}/other.pth.zip", "file": "other.pth"},
                                            "mobilenet_v1_025")


def test_oversized_member(env, monkeypatch):
    monkeypatch.setattr(fetch_module, "MAX_BYTES", 50_000)
    assert "over the" in bad(env, {}, "mobilenet_v1_025")


def test_offline_is_one_line_naming_url_and_path(env, monkeypatch, files):
    monkeypatch.delenv("CNNZOO_WEIGHTS_MIRROR")
    start = time.monotonic()
    message = bad(env, {})
    assert f"{ORIGIN}/{files['tv_file']}" in message and str(env["cache"] / files["tv_file"]) in message
    assert "fetch it by hand" in message and time.monotonic() - start < 2
    zipped = bad(env, {}, "mobilenet_v1_025")  # a zip fetched by hand: say which member goes where
    assert f"put the {files['cv_file']} it holds at {env['cache'] / files['cv_file']}" in zipped


def test_a_corrupted_cache_file_is_fetched_again(env, files, capsys):
    create_model("shufflenet_v2_x0_5", pretrained=True)
    target = env["cache"] / files["tv_file"]
    target.write_bytes((files["folder"] / "garbled.pth").read_bytes())
    ours = create_model("shufflenet_v2_x0_5", pretrained=True)
    torch.testing.assert_close(logits(ours), logits(files["tv"]))
    assert "does not match" in capsys.readouterr().err and len(env["hits"]) == 2


def test_predict_with_imagenet_weights_prints_imagenet_names(env, tmp_path, capsys):
    img = tmp_path / "noise.png"
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(img)
    assert main(["predict", "shufflenet_v2_x0_5", "--weights", "imagenet", str(img), "--top-k", "3", "--json"]) == 0
    out = capsys.readouterr().out
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    import json

    labels = [p["label"] for p in json.loads(out)["predictions"][0]["top"]]
    assert len(labels) == 3 and set(labels) <= set(_IMAGENET_CATEGORIES)


def test_weights_list_and_info(capsys):
    assert main(["weights", "list", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "imagenet:v1" in out and "80.86" in out and "resnet50-0676ba61.pth" in out
    assert main(["weights", "list", "alexnet_2012"]) == 0
    assert "two-tower" in capsys.readouterr().out
    assert main(["weights", "list", "nosuch*"]) == 2


def test_torchvision_table_matches_the_registry():
    r = subprocess.run([sys.executable, "scripts/make_torchvision_table.py", "--check"], cwd=Path(__file__).parent.parent,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}, timeout=120)
    assert r.returncode == 0, "src/cnnzoo/pretrained/torchvision.json is stale: run scripts/make_torchvision_table.py"


def test_evaluate_published_style_weights_on_a_folder(tmp_path, capsys):
    """`evaluate --model M --weights W --data D`: class folders in sorted order are the class indices."""
    model = create_model("resnet18", num_classes=3).eval()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    for c in ("a", "b", "c"):
        (tmp_path / "val" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((torch.rand(36, 36, 3) * 255).byte().numpy()).save(tmp_path / "val" / c / f"{i}.png")
    assert main(["evaluate", "--model", "resnet18", "--weights", str(tmp_path / "w.pth"), "--data",
                 str(tmp_path / "val"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "on " + str(tmp_path / "val") + " / all: 6 images" in out and (tmp_path / "out" / "eval-all.json").exists()
    assert main(["evaluate", "--model", "resnet18", "--data", str(tmp_path / "val")]) == 2


def test_weights_doc_is_current():
    r = subprocess.run([sys.executable, "scripts/make_weights_doc.py", "--check"], cwd=Path(__file__).parent.parent,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}, timeout=120)
    assert r.returncode == 0, "docs/weights.md is stale: run scripts/make_weights_doc.py"
