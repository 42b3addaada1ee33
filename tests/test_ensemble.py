"""Ensembles (mean of softmax) and multi-crop testing (--tta): the arithmetic, the ONNX graph, the CLI, refusals.

The members are run folders written directly: a tiny mobilenet_v1_050 for digits at 16 px with random weights,
its batch norms calibrated on random images and its classifier scaled up, so that its predictions depend on the
image (at initialisation they do not) and members disagree. What is tested is how predictions combine, which
training would only make slower to check.
"""
from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.data.tta import VIEWS, Views, ViewAverage, mean_log_softmax
from cnnzoo.deploy.ensemble import Ensemble, evaluate_ensemble, load_ensemble, split_sources
from cnnzoo.deploy.export import export_run
from cnnzoo.deploy.meta import load_source, read_onnx_meta
from cnnzoo.deploy.predict import predict
from cnnzoo.errors import CnnzooError
from cnnzoo.train.checkpoint import save_checkpoint
from deploy_run import write_digit_pngs

MODEL, SIZE = "mobilenet_v1_050", 16
DIGITS = [str(i) for i in range(10)]


def write_run(folder, seed: int, *, classes=DIGITS, input_size=SIZE, mean=0.3, std=0.4, split_seed=0, hflip=False):
    """A run folder as `cnnzoo train` writes it (checkpoints/best.pt), holding a random member."""
    torch.manual_seed(seed)
    net = create_model(MODEL, num_classes=len(classes), in_chans=1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # one batch: its statistics exactly
    with torch.no_grad():
        net.train()(torch.randn(64, 1, input_size, input_size))
        head = net.get_classifier()
        head.weight.normal_(0, 3 / head.weight.shape[1] ** 0.5)
    config = {"data": "digits", "val": 0.1, "test": 0.1, "split_seed": split_seed, "hflip": hflip}
    save_checkpoint({"model": MODEL, "num_classes": len(classes), "in_chans": 1, "input_size": input_size,
                     "mean": [mean], "std": [std], "crop_pct": 1.0, "classes": list(classes), "epoch": 1, "step": 1,
                     "best_top1": None, "best_epoch": 1, "history": [], "config": config,
                     "state_dict": net.eval().state_dict()}, folder / "checkpoints", best=True)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    return write_run(root / "a", 1), write_run(root / "b", 2, mean=0.5, std=0.2)  # normalisations differ


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    return [str(p) for p, _ in write_digit_pngs(tmp_path_factory.mktemp("digits"), 4)]


def member_probs(run, x01: torch.Tensor) -> torch.Tensor:
    """A member's softmax on images in 0..1, normalised its own way."""
    src = load_source(run)
    m, s = src.meta.mean[0], src.meta.std[0]
    with torch.no_grad():
        return src.module((x01 - m) / s).softmax(1)


def test_ensemble_probabilities_are_the_mean_of_the_members(runs, tmp_path):
    a, b = runs
    same = write_run(tmp_path / "same", 3)  # a's normalisation: the ensemble feeds it the input unchanged
    source = load_ensemble([a, same])
    assert source.meta.model == "ensemble" and len(source.meta.members) == 2
    x = torch.randn(6, 1, SIZE, SIZE)
    with torch.no_grad():
        got = source.module(x).softmax(1)
        pa, ps = (load_source(r).module(x).softmax(1) for r in (a, same))
    assert (pa - ps).abs().max() > 0.1  # the members disagree, so the mean is not trivially either
    assert torch.allclose(got, (pa + ps) / 2, atol=1e-6, rtol=0)
    # no probability underflows to log 0: a member certain of one class still averages exactly
    assert torch.allclose(mean_log_softmax(torch.tensor([[[0.0, 800.0], [0.0, 0.0]]]), 1).exp(),
                          torch.tensor([[0.25, 0.75]]))


def test_members_normalised_differently_each_see_their_own_input(runs):
    x01 = torch.rand(6, 1, SIZE, SIZE)
    source = load_ensemble(list(runs))
    m, s = source.meta.mean[0], source.meta.std[0]  # the first member's normalisation: the ensemble's input
    with torch.no_grad():
        got = source.module((x01 - m) / s).softmax(1)
    want = sum(member_probs(r, x01) for r in runs) / 2
    assert (member_probs(runs[0], x01) - member_probs(runs[1], x01)).abs().max() > 0.1
    assert torch.allclose(got, want, atol=1e-4, rtol=0)  # float32 rounding of the affine map, through the network
    plain = Ensemble([load_source(r).module for r in runs])  # without re-normalising: wrong
    with torch.no_grad():
        assert (plain((x01 - m) / s).softmax(1) - want).abs().max() > 1e-2


def test_ensemble_onnx_agrees_with_pytorch(runs, tmp_path, pngs):
    source = load_ensemble(list(runs))
    report = export_run(source, "onnx", tmp_path / "ensemble.onnx", dynamic_batch=True, images=pngs)
    assert all(c.ok for c in report.checks) and report.model == "ensemble"
    assert [m["checkpoint"] for m in read_onnx_meta(report.path).members] == [
        str(r / "checkpoints" / "best.pt") for r in runs]
    x = torch.randn(5, 1, SIZE, SIZE)
    session = ort.InferenceSession(report.path, providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0]).softmax(1)
    with torch.no_grad():
        ref = source.module(x).softmax(1)
    assert torch.allclose(got, ref, atol=1e-4, rtol=0)  # the export tolerance
    # the exported file predicts like the two runs it was made of
    one = predict(report.path, pngs[:2], top_k=3)
    two = predict(load_ensemble(list(runs)), pngs[:2], top_k=3, backend="eager")
    for p, q in zip(one.predictions, two.predictions):
        assert [c for c, _ in p.top] == [c for c, _ in q.top]
        assert np.allclose([v for _, v in p.top], [v for _, v in q.top], atol=1e-4)  # the export tolerance


def test_predict_with_two_runs(runs, pngs, capsys):
    a, b = runs
    assert main(["predict", str(a), str(b), *pngs, "--json", "--top-k", "10", "--backend", "eager"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "ensemble" and len(doc["predictions"]) == len(pngs)
    singles = [predict(r, pngs, top_k=10, backend="eager") for r in runs]
    for i, p in enumerate(doc["predictions"]):
        got = {t["label"]: t["probability"] for t in p["top"]}
        want = {c: (dict(singles[0].predictions[i].top)[c] + dict(singles[1].predictions[i].top)[c]) / 2 for c in DIGITS}
        assert max(abs(got[c] - want[c]) for c in DIGITS) < 1e-4  # b re-normalised in float32 (see above)
    assert split_sources([str(a), str(b), *pngs]) == ([str(a), str(b)], pngs)


def test_mismatched_members_are_refused_in_one_line(runs, tmp_path, pngs, capsys):
    a, _ = runs
    letters = write_run(tmp_path / "letters", 3, classes=[chr(ord("a") + i) for i in range(10)])
    bigger = write_run(tmp_path / "bigger", 4, input_size=24)
    other_split = write_run(tmp_path / "split1", 5, split_seed=1)
    (tmp_path / "m.onnx").write_bytes(b"not read: refused by its name")
    cases = [(["evaluate", str(a), str(letters)], "disagree on their classes"),
             (["predict", str(a), str(letters), pngs[0]], "disagree on their classes"),
             (["export", str(a), str(bigger), "--out", str(tmp_path / "x.onnx")], "take different inputs"),
             (["evaluate", str(a), str(other_split)], "different data or splits"),
             (["serve", str(a), str(a)], "is given twice"),
             (["predict", str(a), str(letters)], "no image given"),
             (["predict", str(a), str(tmp_path / "m.onnx"), pngs[0]], "is an ONNX file"),
             (["evaluate", str(a), "--tta", "10crop"], "trained without flips"),
             (["evaluate", str(a), str(letters), "--model", "resnet18"], "score one model"),
             (["predict", "resnet18", "--weights", "imagenet", str(a), pngs[0]], "--weights names one model"),
             (["evaluate", str(a), str(a / "checkpoints" / "best.pt"), "--tta", "flip"], "given twice")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = "".join(line for line in capsys.readouterr().err.splitlines(True) if not line.startswith("loading "))
        assert err.startswith("cnnzoo: error: ") and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x.onnx").exists()


def test_evaluate_ensemble_table(runs, tmp_path, capsys):
    a, b = runs
    assert main(["evaluate", str(a), str(b), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ensemble (mean of 2 softmax)" in out and "gain over the best member" in out
    r = json.loads((tmp_path / "eval-test.json").read_text())
    assert [m["source"] for m in r["members"]] == [str(a), str(b)] and r["images"] == 359
    assert r["gain_top1"] == pytest.approx(r["top1"] - max(m["top1"] for m in r["members"]))
    assert r["gain_top1_over_mean"] == pytest.approx(r["top1"] - sum(m["top1"] for m in r["members"]) / 2)
    assert (tmp_path / "confusion-test.png").is_file()


def test_views_ten_crops_and_flips():
    img = torch.arange(SIZE * SIZE, dtype=torch.uint8).reshape(1, SIZE, SIZE)  # every pixel different
    ten = Views("10crop", SIZE, [0.0], [1.0], in_chans=1, crop_pct=1.0)(img)
    assert ten.shape == (VIEWS["10crop"], 1, SIZE, SIZE)
    assert len({v.numpy().tobytes() for v in ten}) == 10  # corners have a margin even at crop_pct 1.0
    # TenCrop: the five crops (tl, tr, bl, br, centre), then those of the mirror image: tl' is tr mirrored
    assert torch.equal(ten[5:], ten[[1, 0, 3, 2, 4]].flip(-1))
    two = Views("flip", SIZE, [0.0], [1.0], in_chans=1, crop_pct=1.0)(img)
    assert two.shape == (2, 1, SIZE, SIZE) and not torch.equal(two[0], two[1]) and torch.equal(two[1], two[0].flip(-1))
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(SIZE * SIZE, 3))
    x = torch.randn(4, 5, 1, SIZE, SIZE)
    want = net(x.flatten(0, 1)).softmax(1).reshape(4, 5, 3).mean(1)
    assert torch.allclose(ViewAverage(net)(x).softmax(1), want, atol=1e-6)


def test_evaluate_and_predict_with_tta(runs, tmp_path, pngs, capsys):
    a, b = runs
    assert main(["evaluate", str(a), "--tta", "5crop", "--out", str(tmp_path)]) == 0
    assert "--tta 5crop (5 views, softmax averaged)" in capsys.readouterr().out
    t = json.loads((tmp_path / "eval-test.json").read_text())["tta"]
    assert set(t) >= {"views", "n_views", "top1", "top5", "gain_top1", "gain_top5", "ms_per_image", "cost_x"}
    assert t["n_views"] == 5 and t["cost_x"] > 0 and t["ms_per_image"] > 0
    r = evaluate_ensemble([str(a), str(b)], out=str(tmp_path / "e"), tta="5crop")
    assert r["tta"]["views"] == "5crop"
    plain = predict(a, pngs, top_k=10, backend="eager")
    multi = predict(a, pngs, top_k=10, backend="eager", tta="5crop")
    assert multi.tta == "5crop" and plain.tta is None
    assert any(dict(p.top) != pytest.approx(dict(q.top), abs=1e-6) for p, q in zip(plain.predictions, multi.predictions))
    with pytest.raises(CnnzooError, match="trained without flips"):
        predict(a, pngs, tta="10crop")


def test_serve_an_ensemble(runs, pngs):
    from fastapi.testclient import TestClient

    from cnnzoo.deploy.predict import Predictor
    from cnnzoo.deploy.serve import create_app

    pred = Predictor(load_ensemble(list(runs)), "eager")
    with TestClient(create_app(pred), base_url="http://127.0.0.1") as client:  # the server checks Host
        model = client.get("/model").json()
        assert model["model"] == "ensemble" and model["source"] == " + ".join(map(str, runs))
        with open(pngs[0], "rb") as f:
            top = client.post("/predict", files={"file": ("d.png", f, "image/png")}).json()["results"][0]["top"]
    want = predict(pred, pngs[:1], top_k=5).predictions[0].top
    assert [t["label"] for t in top] == [c for c, _ in want]
    assert np.allclose([t["probability"] for t in top], [p for _, p in want], atol=1e-6)
