"""Training parts, in process: metrics, schedules, the GoogLeNet loss, config, checkpoints (atomic, safe)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from cnnzoo import create_model
from cnnzoo.errors import CnnzooError
from cnnzoo.train import (AUX_WEIGHT, TrainConfig, atomic_save, build_config, confusion_matrix, load_checkpoint,
                          per_class_accuracy, read_checkpoint, save_checkpoint, topk_correct)
from cnnzoo.train.checkpoint import rng_state, set_rng_state
from cnnzoo.train.config import read_yaml, save_yaml
from cnnzoo.train.loop import loss_of
from cnnzoo.train.optim import Schedule, build_optimizer

# --- metrics -----------------------------------------------------------------------------------------------

def test_topk_and_confusion_by_hand():
    logits = torch.tensor([[0.1, 0.9, 0.0],   # label 1: ranked first
                           [0.8, 0.0, 0.1],   # label 2: ranked second
                           [0.3, 0.6, 0.1],   # label 0: ranked second
                           [0.2, 0.1, 0.7]])  # label 2: ranked first
    target = torch.tensor([1, 2, 0, 2])
    assert topk_correct(logits, target, ks=(1, 2, 5)) == [2, 4, 4]  # top-5 is capped at 3 classes
    assert topk_correct(logits[:1, [0, 2, 1]], target[:1], ks=(1, 2)) == [0, 0]  # label 1 now ranked last
    cm = confusion_matrix(logits.argmax(1), target, 3)
    assert cm.tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert per_class_accuracy(cm) == [0.0, 1.0, 0.5]
    assert per_class_accuracy(torch.zeros(2, 2, dtype=torch.long)) == [None, None]


# --- schedules ---------------------------------------------------------------------------------------------

def _schedule(sched: str, **kw) -> Schedule:
    cfg = TrainConfig(epochs=10, lr=1.0, sched=sched, weight_decay=0.0, **kw)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    return Schedule(opt, cfg, steps_per_epoch=10)


def test_onecycle_is_pytorchs_one_cycle():
    s = _schedule("onecycle", warmup_epochs=2.5)
    ref_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=1.0, total_steps=100, pct_start=0.25,
                                              cycle_momentum=False)
    ours, theirs = [], []
    for t in range(100):
        ours.append(s.optimizer.param_groups[0]["lr"])
        theirs.append(ref_opt.param_groups[0]["lr"])
        s.step()
        ref_opt.step()
        if t < 99:
            ref.step()
    assert ours == pytest.approx(theirs, abs=1e-12)  # 1/25 -> 1 (at step 24) -> 1/(25 * 1e4)
    assert max(ours) == 1.0 and ours.index(1.0) == 24 and ours[-1] == pytest.approx(1 / 25e4)


def test_cosine_and_step_with_warmup():
    s = _schedule("cosine", warmup_epochs=1)
    assert [round(s.factor(t), 3) for t in (0, 4, 9, 10)] == [0.091, 0.455, 0.909, 1.0]
    assert s.factor(55) == pytest.approx(0.5)  # half way through the cosine
    s = _schedule("step", warmup_epochs=0, step_epochs=3, step_gamma=0.1)
    assert [s.factor(t) for t in (0, 29, 30, 60, 99)] == pytest.approx([1, 1, 0.1, 0.01, 0.001])


def test_schedule_state_round_trip():
    s = _schedule("cosine", warmup_epochs=1)
    for _ in range(37):
        s.step()
    t = _schedule("cosine", warmup_epochs=1)
    t.load_state_dict(s.state_dict())
    assert t.lr() == s.lr() == t.optimizer.param_groups[0]["lr"]


def test_no_weight_decay_on_biases_and_norms():
    model = create_model("resnet18", num_classes=3)
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=5e-4))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) == 21  # 20 convolutions + fc.weight


# --- GoogLeNet's auxiliary losses --------------------------------------------------------------------------

def test_auxiliary_losses_weigh_0_3():
    out_t = namedtuple("Out", "logits aux1 aux2")
    logits, a1, a2 = torch.randn(3, 4, 5).unbind(0)
    y = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.CrossEntropyLoss()
    expected = ce(logits, y) + 0.3 * (ce(a1, y) + ce(a2, y))
    assert AUX_WEIGHT == 0.3
    assert torch.allclose(loss_of(out_t(logits, a1, a2), y, ce), expected)
    assert torch.allclose(loss_of(logits, y, ce), ce(logits, y))


def test_googlenet_training_output_gets_aux_losses():
    model = create_model("googlenet", num_classes=4).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out._fields[:3] == ("logits", "aux1", "aux2")
    y = torch.tensor([1, 3])
    ce = torch.nn.CrossEntropyLoss()
    assert torch.allclose(loss_of(out, y, ce), ce(out.logits, y) + 0.3 * ce(out.aux1, y) + 0.3 * ce(out.aux2, y))


# --- config ------------------------------------------------------------------------------------------------

def test_yaml_then_command_line(tmp_path):
    (tmp_path / "run.yaml").write_text("epochs: 7\nbatch-size: 32\nlr: 0.05\nchannels_last: false\nmean: [0.5]\nstd: [0.25]\n")
    cfg = build_config(str(tmp_path / "run.yaml"), lr=0.2, model="resnet18", opt=None)
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.channels_last, cfg.mean, cfg.opt) == (7, 32, 0.2, False, [0.5], "adamw")
    save_yaml(cfg, tmp_path / "saved.yaml")
    assert TrainConfig(**read_yaml(tmp_path / "saved.yaml")) == cfg


@pytest.mark.parametrize("text, message", [
    ("epoch: 3\n", "unknown setting 'epoch'; did you mean epochs?"),
    ("opt: adam\n", "opt must be one of adamw, sgd"),
    ("epochs: 2.5\n", "epochs = 2.5 is not a valid int"),
    ("- 1\n", "must hold a mapping"),
])
def test_bad_yaml(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(CnnzooError, match=message.replace("?", r"\?")):
        build_config(str(tmp_path / "bad.yaml"))


# --- checkpoints -------------------------------------------------------------------------------------------

def _state(model: torch.nn.Module, name: str, epoch: int) -> dict:
    return {"model": name, "num_classes": 3, "in_chans": 1, "input_size": 32, "mean": [0.5], "std": [0.25],
            "crop_pct": 1.0, "classes": ["a", "b", "c"], "state_dict": model.state_dict(), "epoch": epoch,
            "step": 10 * epoch, "best_top1": 0.5, "best_epoch": epoch, "history": [], "config": {"data": "x"},
            "rng": rng_state()}


def test_checkpoint_round_trip_and_best_link(tmp_path):
    model = create_model("mobilenet_v1_025", num_classes=3, in_chans=1)
    save_checkpoint(_state(model, "mobilenet_v1_025", 1), tmp_path / "checkpoints", best=True)
    save_checkpoint(_state(model, "mobilenet_v1_025", 2), tmp_path / "checkpoints", best=False)
    assert read_checkpoint(tmp_path, "last")["epoch"] == 2 and read_checkpoint(tmp_path, "best")["epoch"] == 1
    loaded, info = load_checkpoint(tmp_path)  # a run folder: its best.pt
    assert not loaded.training and info["classes"] == ["a", "b", "c"] and info["input_size"] == 32
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert list((tmp_path / "checkpoints").iterdir()) and not list((tmp_path / "checkpoints").glob(".*"))


def test_checkpoint_of_another_architecture_fails_in_one_line(tmp_path):
    model = create_model("resnet18", num_classes=3, in_chans=1)
    state = _state(model, "resnet18", 1)
    save_checkpoint(state, tmp_path, best=False)
    with pytest.raises(CnnzooError, match="holds a resnet18, not a resnet34"):
        load_checkpoint(tmp_path / "last.pt", expect_model="resnet34")
    atomic_save({**state, "format": "cnnzoo-checkpoint-1", "model": "resnet34"}, tmp_path / "lie.pt")
    with pytest.raises(CnnzooError, match="holds resnet34 weights that do not fit") as exc:
        load_checkpoint(tmp_path / "lie.pt")
    assert "\n" not in str(exc.value)


def test_unsafe_or_foreign_files_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(1), "code": Path("x")}, tmp_path / "pickle.pt")  # needs unpickling a class
    with pytest.raises(CnnzooError, match="was refused: it calls pathlib.PosixPath"):
        read_checkpoint(tmp_path / "pickle.pt")
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(CnnzooError, match="not a cnnzoo checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CnnzooError, match="is not a readable PyTorch weights file"):
        read_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CnnzooError, match="holds no checkpoint"):
        read_checkpoint(tmp_path / "empty_run")


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(state)
    assert (random.random(), np.random.rand()) == a[:2] and torch.equal(torch.rand(1), a[2])


CRASH = textwrap.dedent("""
    import os, sys, torch
    from cnnzoo.train import checkpoint as ck
    real_save = torch.save
    def dying_save(obj, f, *a, **k):
        f.write(b"PK\\x03\\x04 half a checkpoint")  # some bytes reach the temporary file ...
        f.flush()
        os._exit(9)                               # ... then the process dies, mid-write
    torch.save = dying_save
    ck.save_checkpoint({"epoch": 2, "state_dict": {"w": torch.ones(3)}}, sys.argv[1], best=True)
""")


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    save_checkpoint({"epoch": 1, "model": "m", "state_dict": {"w": torch.zeros(3)}}, folder, best=True)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(folder)], capture_output=True, timeout=120)
    assert proc.returncode == 9
    leftovers = sorted(p.name for p in folder.iterdir())
    assert leftovers[0].startswith(".last.pt.tmp-")  # the crash's debris, not last.pt
    for name, data in before.items():
        assert (folder / name).read_bytes() == data
    assert read_checkpoint(folder / "last.pt")["epoch"] == 1 and read_checkpoint(folder / "best.pt")["epoch"] == 1
    save_checkpoint({"epoch": 3, "model": "m", "state_dict": {"w": torch.ones(3)}}, folder, best=False)
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]  # the next save clears it
    assert read_checkpoint(folder / "last.pt")["epoch"] == 3


# --- resolved defaults -------------------------------------------------------------------------------------

def test_resolve_fills_in_the_data_sets_and_devices_defaults():
    from cnnzoo.data import load_data
    from cnnzoo.train.prepare import resolve

    digits = load_data("digits")
    cfg = resolve(build_config(model="resnet18", data="digits", batch_size=128), digits, torch.device("cpu"))
    assert (cfg.in_chans, cfg.input_size, cfg.hflip, cfg.crop_pct, cfg.normalize) == (1, 32, False, 1.0, "dataset")
    assert cfg.lr == pytest.approx(4e-3) and cfg.weight_decay == 0.05 and cfg.warmup_epochs == 5.0  # AdamW, 2e-3 per 64; a quarter of 20 epochs
    sgd = resolve(build_config(model="resnet18", data="digits", batch_size=128, opt="sgd"), digits, torch.device("cpu"))
    assert sgd.lr == pytest.approx(0.1) and sgd.weight_decay == 5e-4  # 0.05 per 64
    # Large unnormalised fully connected heads get the lower rate (at 2e-3 ZFNet's ReLUs die in the first epoch)
    assert resolve(build_config(model="zfnet", data="digits"), digits, torch.device("cpu")).lr == pytest.approx(3e-4)
    assert resolve(build_config(model="vgg11_bn", data="digits", batch_size=32), digits,
                   torch.device("cpu")).lr == pytest.approx(1.5e-4)
    # Depthwise-convolution networks get twice the rate (at 2e-3 mobilenet_v2 on a small folder generalised by the seed)
    for mobile in ("mobilenet_v1", "mobilenet_v2", "shufflenet_v1_g3_x1_0", "shufflenet_v2_x1_0"):
        assert resolve(build_config(model=mobile, data="digits", batch_size=32), digits,
                       torch.device("cpu")).lr == pytest.approx(2e-3)
    assert cfg.mean == pytest.approx([digits.splits["train"].images.mean().item()], abs=1e-3)
    assert cfg.channels_last == (cfg.precision == "bf16") and cfg.out.startswith("runs/resnet18-digits")
    assert resolve(build_config(model="alexnet", data="digits"), digits, torch.device("cpu")).input_size == 63
    with pytest.raises(CnnzooError, match="alexnet needs inputs of at least 63 pixels"):
        resolve(build_config(model="alexnet", data="digits", input_size=32), digits, torch.device("cpu"))
    with pytest.raises(CnnzooError, match="unknown model 'resnet19'"):
        resolve(build_config(model="resnet19", data="digits"), digits, torch.device("cpu"))
