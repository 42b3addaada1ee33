"""Pretrained weights: torchvision's files for every architecture it ships, safetensors, URLs with hashes,
in_chans and num_classes adaptation, and the refusal of files that would run code."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import math
import os
import pickle
import re
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
import torch
import torchvision

import cnnzoo
from cnnzoo import CnnzooError, create_model, get_card, list_models
from cnnzoo.cli import main
from cnnzoo.weights import adapt_input_conv, cache_dir, convert, read_weights

TV_NAMES = sorted({get_card(n).torchvision for n in list_models() if get_card(n).torchvision})
_BLOCK = torch.rand(1_000_003, generator=torch.Generator().manual_seed(0)) - 0.5  # a prime length


@contextlib.contextmanager
def _cheap_init():
    """Skip random initialisation while models are built: every tensor is overwritten by `_fill` or a load,
    and drawing 140 M random numbers for a VGG takes seconds."""
    names = ("normal_", "trunc_normal_", "uniform_", "kaiming_normal_", "kaiming_uniform_", "xavier_uniform_",
             "xavier_normal_", "constant_", "zeros_", "ones_")
    saved = {n: getattr(torch.nn.init, n) for n in names}
    for n in names:
        setattr(torch.nn.init, n, lambda t, *a, **k: t)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def _fill(model: torch.nn.Module) -> torch.nn.Module:
    """Every float tensor from a random block tiled at a different offset (so no two layers are equal),
    scaled by 1/sqrt(fan-in); running variances positive."""
    offset = 0
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            flat, n, start = t.view(-1), t.numel(), offset % len(_BLOCK)
            done = 0
            while done < n:
                take = min(n - done, len(_BLOCK) - start)
                flat[done:done + take].copy_(_BLOCK[start:start + take])
                done, start = done + take, 0
            offset += 7919
            if key.endswith("running_var"):
                t.add_(1.0)
            elif t.ndim > 1:
                t.mul_(2 * math.sqrt(3.0 / (n / t.shape[0])))
    return model


@pytest.fixture
def fast_dir(tmp_path):
    """A folder in RAM when there is one (/dev/shm): VGG files are 500 MB each."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm) as d:
            yield Path(d)
    else:
        yield tmp_path


@pytest.mark.parametrize("tv_name", TV_NAMES)
def test_torchvision_file_loads(tv_name, fast_dir, capsys):
    """torchvision's model writes its state dict with torch.save (the published .pth format); every cnnzoo
    model whose card names it loads the file through create_model(pretrained=...), with equal logits."""
    with _cheap_init():
        extra = {"init_weights": True} if tv_name == "googlenet" else {}  # silences its FutureWarning
        tv = _fill(getattr(torchvision.models, tv_name)(weights=None, **extra)).eval()
    path = fast_dir / f"{tv_name}-0123abcd.pth"
    torch.save(tv.state_dict(), path)
    ours_names = [n for n in list_models() if get_card(n).torchvision == tv_name]
    size = max(32, get_card(ours_names[0]).min_input_size)
    x = torch.randn(2, 3, size, size)
    for name in ours_names:
        with _cheap_init():
            ours = create_model(name, pretrained=str(path)).eval()
        if name == tv_name:
            with torch.no_grad():
                expected, got = tv(x), ours(x)
            assert got.abs().max() > 0
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        else:  # a paper-exact variant that shares the weights' layout (resnet50_v1): tensors equal
            for k, v in ours.state_dict().items():
                assert torch.equal(v, tv.state_dict()[k]), k
        assert f"into {name}" in capsys.readouterr().err


def test_legacy_densenet_keys_old_serialization_and_wrappers(tmp_path):
    """Old torchvision DenseNet files ('norm.1', pre-1.6 serialization), DataParallel's 'module.' prefix and a
    training script's {"model": ..., "optimizer": ...} all load."""
    tv = torchvision.models.densenet121(weights=None).eval()
    legacy = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])(\.\w+)$")
    old = {legacy.sub(r"\1.\2\3", k): v for k, v in tv.state_dict().items()}
    assert sum(k not in tv.state_dict() for k in old) > 100
    files = {"legacy.pth": old, "ddp.pth": {f"module.{k}": v for k, v in tv.state_dict().items()},
             "script.pth": {"model": tv.state_dict(), "optimizer": {"state": {}}, "epoch": 90}}
    x = torch.randn(1, 3, 32, 32)
    for name, obj in files.items():
        torch.save(obj, tmp_path / name, _use_new_zipfile_serialization=name != "legacy.pth")
        ours = create_model("densenet121", pretrained=str(tmp_path / name)).eval()
        with torch.no_grad():
            torch.testing.assert_close(ours(x), tv(x))


@pytest.fixture(scope="module")
def shufflenet_file(tmp_path_factory):
    """A small torchvision file (1.4 M parameters) named the torch.hub way, NAME-<first 8 hex of SHA-256>.pth."""
    folder = tmp_path_factory.mktemp("served")
    tv = torchvision.models.shufflenet_v2_x0_5(weights=None).eval()
    tmp = folder / "tmp.pth"
    torch.save(tv.state_dict(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = folder / f"shufflenet-{digest[:8]}.pth"
    tmp.rename(path)
    return tv, path, digest


def test_num_classes_reinitialises_the_head(shufflenet_file, capsys):
    tv, path, _ = shufflenet_file
    x = torch.randn(2, 3, 32, 32)
    model = create_model("shufflenet_v2_x0_5", num_classes=7, pretrained=str(path)).eval()
    assert "classifier re-initialised (the weights have 1000 classes, the model 7): fc" in capsys.readouterr().err
    assert model.fc.weight.shape == (7, 1024)
    with torch.no_grad():
        pooled = tv.conv5(tv.stage4(tv.stage3(tv.stage2(tv.maxpool(tv.conv1(x)))))).mean([2, 3])
        torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), pooled)
    headless = create_model("shufflenet_v2_x0_5", num_classes=0, pretrained=str(path)).eval()
    assert headless(x).shape == (2, 1024)


def test_googlenet_auxiliary_heads_follow_num_classes(capsys):
    tv = torchvision.models.googlenet(weights=None, init_weights=True)
    with tempfile.TemporaryDirectory() as d:
        torch.save(tv.state_dict(), Path(d) / "g.pth")
        model = create_model("googlenet", num_classes=5, pretrained=str(Path(d) / "g.pth"))
    assert "aux1.fc2, aux2.fc2, fc" in capsys.readouterr().err
    assert torch.equal(model.aux1.fc1.weight, tv.aux1.fc1.weight) and model.aux1.fc2.out_features == 5


def test_in_chans_adapts_the_first_convolution(shufflenet_file):
    tv, path, _ = shufflenet_file
    x = torch.randn(2, 3, 32, 32)
    grey = x[:, :1]
    one = create_model("shufflenet_v2_x0_5", in_chans=1, pretrained=str(path)).eval()
    six = create_model("shufflenet_v2_x0_5", in_chans=6, pretrained=str(path)).eval()
    with torch.no_grad():  # a grey image = the RGB image (g, g, g); six channels (x, x) = x
        torch.testing.assert_close(one(grey), tv(grey.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(six(torch.cat([x, x], 1)), tv(x), rtol=1e-4, atol=1e-5)
    w = torch.randn(8, 3, 3, 3)
    assert torch.equal(adapt_input_conv(w, 3), w)
    torch.testing.assert_close(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    four = adapt_input_conv(w, 4)
    torch.testing.assert_close(four, torch.cat([w, w[:, :1]], 1) * 0.75)


def test_safetensors_convert_roundtrip_and_checks(shufflenet_file, tmp_path, capsys):
    tv, path, _ = shufflenet_file
    out = tmp_path / "s.safetensors"
    assert main(["weights", "convert", str(path), "--model", "shufflenet_v2_x0_5", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "fits shufflenet_v2_x0_5: 338 tensors, 1,366,792 parameters, 1000 classes, 3 input channel(s)" in line
    w = read_weights(out)
    assert w.info["model"] == "shufflenet_v2_x0_5" and w.info["num_classes"] == 1000
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(create_model("shufflenet_v2_x0_5", pretrained=str(out)).eval()(x), tv(x))
    # A checkpoint with another head and width converts to a model of that head and width.
    digits = create_model("shufflenet_v2_x0_5", num_classes=10, in_chans=1)
    torch.save(digits.state_dict(), tmp_path / "d.pth")
    r = convert(tmp_path / "d.pth", "shufflenet_v2_x0_5", tmp_path / "d.safetensors")
    assert (r["num_classes"], r["in_chans"]) == (10, 1)
    # The wrong architecture: one line, exit status 2, nothing written.
    capsys.readouterr()
    wrong = ["weights", "convert", str(path), "--model", "shufflenet_v2_x1_0", "--out", str(tmp_path / "x.safetensors")]
    assert main(wrong) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnzoo: error:") and err.count("\n") == 1 and "of another shape" in err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(CnnzooError, match="must end in .safetensors"):
        convert(path, "shufflenet_v2_x0_5", tmp_path / "s.pth")


# --- URLs ---------------------------------------------------------------------------------------------------

@pytest.fixture
def server(shufflenet_file):
    """An HTTP server on 127.0.0.1 serving the folder of `shufflenet_file`, counting the requests."""
    folder = shufflenet_file[1].parent
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            hits.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, hits
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_url_downloads_once_into_the_cache(server, shufflenet_file, tmp_path, monkeypatch):
    base, _, hits = server
    tv, path, _ = shufflenet_file
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "cache"))
    url = f"{base}/{path.name}"
    x = torch.randn(1, 3, 32, 32)
    for _ in range(2):
        model = create_model("shufflenet_v2_x0_5", pretrained=url).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), tv(x))
    # the file, and the record of its verified digest (so the next load does not hash it again)
    assert len(hits) == 1 and sorted(os.listdir(tmp_path / "cache")) == [".cnnzoo-verified.json", path.name]


def test_wrong_hash_is_refused_and_nothing_is_cached(server, shufflenet_file, tmp_path):
    base, folder, _ = server
    _, path, digest = shufflenet_file
    wrong = "deadbeef" if not digest.startswith("deadbeef") else "cafebabe"
    shutil.copy(path, folder / f"shufflenet-{wrong}.pth")
    cache = tmp_path / "cache"
    with pytest.raises(CnnzooError, match=f"does not start with {wrong}.*nothing was cached") as err:
        read_weights(f"{base}/shufflenet-{wrong}.pth", cache=cache)
    assert "\n" not in str(err.value)
    shutil.copy(path, folder / "plain.pth")  # no hash in the name: pin one after '#sha256='
    with pytest.raises(CnnzooError, match="does not start with 00000000"):
        read_weights(f"{base}/plain.pth#sha256=00000000", cache=cache)
    assert list(cache.iterdir()) == []
    assert read_weights(f"{base}/plain.pth#sha256={digest[:12]}", cache=cache).path == cache / "plain.pth"
    with pytest.raises(CnnzooError, match="could not download .*missing.pth"):
        read_weights(f"{base}/missing.pth", cache=cache)


def test_cache_follows_torch_home(monkeypatch, tmp_path):
    monkeypatch.delenv("CNNZOO_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cache_dir() == tmp_path / "th" / "hub" / "checkpoints"
    monkeypatch.setenv("CNNZOO_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine" and cache_dir(tmp_path / "arg") == tmp_path / "arg"


# --- files that would run code ----------------------------------------------------------------------------

class _SideEffect:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint would do, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    proof, marker = tmp_path / "proof", tmp_path / "marker"
    torch.save({"w": torch.zeros(1), "x": _SideEffect(proof)}, tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False)  # the payload works when loaded unsafely...
    assert proof.is_dir()
    evil = {"format": "cnnzoo-checkpoint-1", "model": "shufflenet_v2_x0_5",
            "state_dict": create_model("shufflenet_v2_x0_5").state_dict(), "config": _SideEffect(marker)}
    run = tmp_path / "runs" / "evil"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(evil, run / "checkpoints" / "best.pt")
    for source in (run / "checkpoints" / "best.pt", run):  # ...but never here: as a file, or as a run folder
        with pytest.raises(CnnzooError, match=r"was refused: it calls (posix|nt)\.mkdir") as err:
            create_model("shufflenet_v2_x0_5", pretrained=str(source))
        assert "\n" not in str(err.value) and "weights_only=True" in str(err.value)
    args = ["weights", "convert", str(run), "--model", "shufflenet_v2_x0_5", "--out", str(tmp_path / "o.safetensors")]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()


def test_unreadable_inputs_fail_in_one_line(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    torch.save({"epoch": 3, "note": "hi"}, tmp_path / "nostate.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    cases = {"junk.pth": "not a readable PyTorch", "junk.safetensors": "not a readable safetensors",
             "nostate.pth": "holds no state dict", "list.pth": "does not hold a state dict",
             "nothing.pth": "do not exist"}
    for name, message in cases.items():
        with pytest.raises(CnnzooError, match=message) as err:
            read_weights(tmp_path / name)
        assert "\n" not in str(err.value)
    with pytest.raises(CnnzooError, match="another architecture"):
        torch.save(create_model("resnet18", num_classes=3).state_dict(), tmp_path / "r18.pth")
        create_model("resnet34", pretrained=str(tmp_path / "r18.pth"))


def test_pickle_module_is_never_used_unsafely():
    """The loader's only torch.load calls pass weights_only=True (a guard against a later edit)."""
    source = Path(cnnzoo.weights.__file__).read_text()
    calls = re.findall(r"torch\.load\(([^)]*)\)", source)
    assert calls and all("weights_only=True" in c for c in calls)
    assert "pickle.load" not in source and pickle.UnpicklingError.__name__ in source
