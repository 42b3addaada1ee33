"""`cnnzoo train` and `cnnzoo evaluate` end to end: run folder, resume after SIGKILL, NaN, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnzoo.cli import main
from cnnzoo.train import load_checkpoint, read_checkpoint, read_metrics
from test_data import corrupt_jpeg, make_folder

TINY = ["--model", "mobilenet_v1_025", "--threads", "1", "--progress", "false"]
SYNTH = "synthetic:n=320,size=32,chans=1"  # 256 train / 32 val / 32 test; 8 steps of 32 per epoch


def cnnzoo(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnzoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **(env or {})}, **kw)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnzoo: error: "), err
    return err[0]


def test_resnet18_trains_on_digits_and_evaluates(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "resnet18", "--data", "digits", "--epochs", "2", "--threads", "1",
                 "--out", str(run), "--progress", "false"]) == 0
    out = capsys.readouterr().out
    assert "resnet18 (11.18 M parameters) on digits" in out and "epoch 2/2" in out and "test, last (epoch 2)" in out
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "classes.json", "config.yaml", "log.txt",
                                                     "metrics.jsonl", "results.json"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert json.loads((run / "classes.json").read_text()) == [str(d) for d in range(10)]
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["lr"] < 1e-5  # one-cycle ends near zero
    assert set(rows[0]) >= {"epoch", "train_loss", "val_loss", "val_top1", "val_top5", "lr", "seconds"}
    results = json.loads((run / "results.json").read_text())
    assert results["test_images"] == 359 and results["test_top1"] > 0.4  # chance is 0.1
    model, info = load_checkpoint(run)
    assert (info["model"], info["in_chans"], info["input_size"], info["crop_pct"]) == ("resnet18", 1, 32, 1.0)
    assert info["config"]["precision"] in ("bf16", "fp32") and len(info["mean"]) == 1
    assert main(["evaluate", str(run), "--which", "last"]) == 0
    report = capsys.readouterr().out
    assert f"top-1 {100 * results['test_top1']:.2f}%" in report  # the same figure as training's test
    ev = json.loads((run / "eval-test.json").read_text())
    assert sum(ev["per_class_images"].values()) == 359 and len(ev["confusion"]) == 10
    assert (run / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"
    assert "confused_pairs" in ev and "top_losses" in ev  # evaluation's mistakes (issue 15)
    assert ("most confused" in report) == bool(ev["confused_pairs"])


def _train_args(out: Path) -> list[str]:
    return ["train", *TINY, "--data", SYNTH, "--epochs", "3", "--batch-size", "32", "--out", str(out)]


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    full = cnnzoo(*_train_args(tmp_path / "full"))
    killed = cnnzoo(*_train_args(tmp_path / "killed"), env={"CNNZOO_TRAIN_PAUSE_AT_STEP": "12"})
    marker = tmp_path / "killed" / ".paused-at-step-12"  # step 12 of 24: the middle of epoch 2
    deadline = time.time() + 240
    while not marker.exists():
        assert killed.poll() is None and time.time() < deadline, killed.communicate()
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(30) == -signal.SIGKILL
    assert read_checkpoint(tmp_path / "killed", "last")["epoch"] == 1  # epoch 2 was lost with the process
    resumed = cnnzoo("train", "--resume", str(tmp_path / "killed"), "--progress", "false")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert "resuming after epoch 1 (step 8)" in out
    assert full.wait(240) == 0
    a, b = read_checkpoint(tmp_path / "full", "last"), read_checkpoint(tmp_path / "killed", "last")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 24
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key  # bitwise
    for i, state in a["optimizer"]["state"].items():  # AdamW's moments and step counts
        assert state and all(torch.equal(t, b["optimizer"]["state"][i][k]) for k, t in state.items())
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]
    assert strip(read_metrics(tmp_path / "killed")) == strip(read_metrics(tmp_path / "full"))
    assert not list((tmp_path / "killed").glob(".paused*"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "nan"
    # A step schedule whose second epoch multiplies the learning rate by 1e12: the loss overflows there.
    code = main(["train", *TINY, "--data", SYNTH, "--epochs", "3", "--batch-size", "32", "--out", str(run),
                 "--sched", "step", "--step-epochs", "1", "--step-gamma", "1e12", "--warmup-epochs", "0"])
    assert code == 2
    line = one_error_line(capsys)
    assert "the training loss became" in line and "in epoch 2" in line and "last.pt is kept" in line
    ckpt = read_checkpoint(run, "last")
    assert ckpt["epoch"] == 1 and all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert len(read_metrics(run)) == 1 and "the training loss became" in (run / "log.txt").read_text()


def test_corrupt_image_is_skipped_counted_and_logged(tmp_path, capsys):
    root = make_folder(tmp_path / "imgs", {"a": 12, "b": 12}, size=40)
    bad = corrupt_jpeg(root / "a" / "broken.jpg")
    run = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(root), "--epochs", "2", "--batch-size", "5", "--input-size", "32",
                 "--val", "0", "--test", "0", "--workers", "0", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "broken.jpg" in line]  # once per run, not once per epoch
    assert len(lines) == 1 and lines[0].startswith("skipped 1 unreadable image(s) (listed in")
    assert str(bad) in (run / "log.txt").read_text()
    assert (run / "skipped.txt").read_text().startswith(f"{bad}\t")
    results = json.loads((run / "results.json").read_text())
    assert results["skipped_images"] == [str(bad)] and read_metrics(run)[0]["skipped"] == 1


def test_googlenet_trains_with_auxiliary_heads_and_shows_progress(tmp_path, capsys):
    run = tmp_path / "g"
    assert main(["train", "--model", "googlenet", "--threads", "1", "--progress", "true", "--data",
                 "synthetic:n=80,classes=4,size=32", "--epochs", "1", "--batch-size", "16", "--out", str(run)]) == 0
    assert read_metrics(run)[0]["val_top1"] is not None  # eval mode gave plain logits
    bar = capsys.readouterr().err
    assert "epoch 1/1" in bar and "img/s" in bar and "lr " in bar and "run ETA" in bar


def test_yaml_config_with_overrides_is_saved_resolved(tmp_path):
    (tmp_path / "run.yaml").write_text(f"model: mobilenet_v1_025\ndata: '{SYNTH}'\nopt: adamw\nsched: cosine\n"
                                       "warmup-epochs: 1\nlabel_smoothing: 0\nepochs: 5\nbatch_size: 32\n")
    run = tmp_path / "r"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "2", "--threads", "1",
                 "--progress", "false", "--out", str(run)]) == 0
    saved = read_checkpoint(run, "last")["config"]
    assert (saved["opt"], saved["sched"], saved["epochs"], saved["label_smoothing"]) == ("adamw", "cosine", 2, 0.0)
    # AdamW's defaults, resolved: a mobile network's 4e-3 per 64 images, at 32
    assert saved["lr"] == pytest.approx(2e-3) and saved["weight_decay"] == 0.05
    assert "lr: 0.002" in (run / "config.yaml").read_text()
    assert [r["lr"] for r in read_metrics(run)][0] == pytest.approx(2e-3 * 8 / 9, rel=1e-6)  # warm-up ends at 9


def test_tensorboard_gets_the_epoch_metrics(tmp_path, monkeypatch):
    import types

    written = []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is optional)
        def __init__(self, log_dir):
            written.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            written.append((tag, step))

        def close(self):
            written.append(("closed", None))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    assert main(["train", *TINY, "--data", SYNTH, "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path / "r")]) == 0
    assert written[0] == ("dir", str(tmp_path / "r" / "tensorboard")) and written[-1] == ("closed", None)
    assert ("val_top1", 2) in written and ("train_loss", 1) in written and ("lr", 2) in written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the CUDA path (pinned memory, "
                    "non-blocking copies, autocast, fp16 grad scaler) is exercised only where one is")
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_training(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    run = tmp_path / precision
    assert main(["train", "--model", "resnet18", "--data", SYNTH, "--device", "cuda", "--precision", precision,
                 "--epochs", "2", "--batch-size", "32", "--progress", "false", "--out", str(run)]) == 0
    ckpt = read_checkpoint(run, "last")
    assert ckpt["config"]["precision"] == precision and ckpt["state_dict"]["fc.weight"].device.type == "cpu"
    assert bool(ckpt["scaler"]) == (precision == "fp16")  # the grad scaler's state, only where it is used
    model, info = load_checkpoint(run, device="cuda")
    assert next(model.parameters()).is_cuda and info["classes"][0] == "class0"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "run"
    assert main(["train", *TINY, "--data", SYNTH, "--epochs", "1", "--batch-size", "32", "--out", str(run)]) == 0
    return run


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", ["missing data", "empty class", "unknown model", "existing run",
                                  "other architecture", "changed setting", "evaluate other classes"])
def test_bad_input_gives_one_line_and_loses_nothing(tmp_path, capsys, finished_run, case):
    capsys.readouterr()
    before = _snapshot(finished_run)
    fresh = tmp_path / "fresh"
    if case == "missing data":
        argv, expect = ["train", *TINY, "--data", str(tmp_path / "nope"), "--out", str(fresh)], "does not exist"
    elif case == "empty class":
        make_folder(tmp_path / "d", {"a": 3, "b": 3})
        (tmp_path / "d" / "c").mkdir()
        argv, expect = ["train", *TINY, "--data", str(tmp_path / "d"), "--out", str(fresh)], "has no images"
    elif case == "unknown model":
        argv, expect = ["train", "--model", "resnet19", "--data", "digits", "--out", str(fresh)], "did you mean"
    elif case == "existing run":
        argv, expect = ["train", *TINY, "--data", SYNTH, "--out", str(finished_run)], "already holds a run"
    elif case == "other architecture":
        argv, expect = ["train", "--resume", str(finished_run), "--model", "resnet18"], "not 'resnet18'"
    elif case == "changed setting":
        argv, expect = ["train", "--resume", str(finished_run), "--lr", "0.5"], "a resumed run keeps its settings"
    else:
        argv, expect = ["evaluate", str(finished_run), "--data", "digits"], "but the model was trained on"
    assert main(argv) == 2
    assert expect in one_error_line(capsys)
    assert _snapshot(finished_run) == before and not fresh.exists()


def test_train_starts_from_weights_and_refits_the_head(tmp_path, finished_run):
    """`--weights` (here a run folder trained on 10 classes, for a 4-class data set): every weight but
    the classifier's is loaded, the classifier is re-initialised, and the log says so. At learning rate 0 the
    loaded weights come out of training unchanged, so they must equal the file's exactly."""
    from cnnzoo.weights import head_modules, read_weights

    run = tmp_path / "four"
    assert main(["train", *TINY, "--data", SYNTH + ",classes=4", "--weights", str(finished_run), "--epochs", "1",
                 "--lr", "0", "--sched", "constant", "--batch-size", "32", "--out", str(run)]) == 0
    log = (run / "log.txt").read_text()
    assert "loaded" in log and "classifier re-initialised" in log, log
    pretrained = read_weights(finished_run).state_dict
    model, info = load_checkpoint(run, which="last")
    assert info["config"]["weights"] == str(finished_run) and info["num_classes"] == 4
    heads = tuple(f"{h}." for h in head_modules(model))
    trained = {k: v for k, v in model.state_dict().items() if "running_" not in k and "num_batches" not in k}
    kept = [k for k in trained if not k.startswith(heads)]
    assert kept and all(torch.equal(trained[k], pretrained[k]) for k in kept)
    assert all(trained[k].shape != pretrained[k].shape for k in trained if k.startswith(heads) and k.endswith("weight"))
