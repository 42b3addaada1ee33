"""The loop's options and safeguards (#14, #16): precise BN, config validation, EMA, early stopping,
gradient accumulation, MixUp/CutMix, non-finite validation loss, half-written run folders."""
from __future__ import annotations

import math

import pytest
import torch

from cnnzoo.errors import CnnzooError
from cnnzoo.train import load_checkpoint, read_checkpoint, read_metrics, train
from cnnzoo.train.config import build_config
from cnnzoo.train.extras import make_mixer
from cnnzoo.train.loop import Trainer
from cnnzoo.train.precise_bn import recompute_bn_stats

TINY = dict(model="mobilenet_v1_025", threads=1, progress=False, tensorboard=False, batch_size=16)
DATA = "synthetic:n=80,classes=4,size=32,chans=1"  # 64 train / 8 val / 8 test: 4 batches of 16


@pytest.mark.parametrize("setting, value", [("lr", math.nan), ("lr", math.inf), ("lr", -1.0),
                                            ("weight_decay", math.nan), ("label_smoothing", 1.0),
                                            ("label_smoothing", -0.1), ("ema", 1.0), ("accum_steps", 0),
                                            ("patience", 0), ("mixup", -1.0), ("scale_min", 2.0), ("workers", -1),
                                            ("crop_pct", 0.0), ("in_chans", 0), ("std", [0.0])])
def test_nonsense_is_refused_when_the_config_is_resolved(setting, value):
    with pytest.raises(CnnzooError, match=setting):
        build_config(model="resnet18", data="digits", **{setting: value}, **({"mean": [0.5]} if setting == "std" else {}))


def test_mean_without_std_is_refused():
    with pytest.raises(CnnzooError, match="go together"):
        build_config(model="resnet18", mean=[0.5])


def test_precise_bn_makes_eval_mode_match_batch_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Dropout(0.5))
    x = 3 + 2 * torch.randn(64, 3, 12, 12)
    net[1].running_mean.fill_(-5.0)  # stale statistics, as after a run with few steps
    with torch.no_grad():
        stale = net.eval()(x)
        assert recompute_bn_stats(net, [x[:32], x[32:]]) == 64
        fresh = net.eval()(x)
        bn = net[1]
        bn.train()  # BN with the whole set's statistics, dropout off
        target = net(x)
    assert not net[3].training and bn.momentum == 0.1
    assert not torch.allclose(stale, target, atol=0.1) and torch.allclose(fresh, target, atol=0.05)


def test_mixup_and_cutmix_change_the_targets():
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 4
    for mixer in (make_mixer(0.4, 0.0, 4), make_mixer(0.0, 1.0, 4), make_mixer(0.4, 1.0, 4)):
        mx, my = mixer(x, y)
        assert my.shape == (8, 4) and not torch.equal(my, torch.nn.functional.one_hot(y, 4).float())
    assert make_mixer(0.0, 0.0, 4) is None


def test_ema_is_validated_saved_used_for_inference_and_resumes_bitwise(tmp_path, monkeypatch):
    kw = dict(TINY, data=DATA, epochs=2, ema=0.5, mixup=0.2, accum_steps=2)
    train(out=str(tmp_path / "full"), **kw)
    full = read_checkpoint(tmp_path / "full", "last")
    assert full["step"] == 4 and full["config"]["ema"] == 0.5  # 4 batches per epoch, 2 per optimizer step
    assert any(not torch.equal(v, full["state_dict"][k]) for k, v in full["ema_state_dict"].items())
    model, info = load_checkpoint(tmp_path / "full", which="last")
    assert info["ema"] and all(torch.equal(v, full["ema_state_dict"][k]) for k, v in model.state_dict().items())
    assert "raw_val_top1" in read_metrics(tmp_path / "full")[0]
    assert "val_top5" not in (tmp_path / "full" / "log.txt").read_text()  # 4 classes: top-5 means nothing

    real_end = Trainer._end_epoch

    def end_then_die(self, epoch, t0):
        real_end(self, epoch, t0)
        raise KeyboardInterrupt  # killed after epoch 1's checkpoint

    monkeypatch.setattr(Trainer, "_end_epoch", end_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(out=str(tmp_path / "cut"), **kw)
    monkeypatch.setattr(Trainer, "_end_epoch", real_end)
    train(resume=str(tmp_path / "cut"), progress=False)
    cut = read_checkpoint(tmp_path / "cut", "last")
    for key in ("state_dict", "ema_state_dict"):
        assert all(torch.equal(v, cut[key][k]) for k, v in full[key].items()), key
    assert torch.equal(full["ema_n_averaged"], cut["ema_n_averaged"])


def test_patience_stops_at_the_right_epoch(tmp_path, monkeypatch):
    scripted = iter([0.5, 0.75, 0.5, 0.625, 1.0, 1.0])  # best at epoch 2; no improvement in 3 and 4

    def fake_validate(self, split="val", model=None):
        return {"loss": 1.0, "top1": next(scripted), "top5": 1.0, "images": 8, "skipped": []}

    monkeypatch.setattr(Trainer, "_validate", fake_validate)
    train(out=str(tmp_path / "p"), **dict(TINY, data=DATA, epochs=6, patience=2, precise_bn=0))
    assert [r["epoch"] for r in read_metrics(tmp_path / "p")] == [1, 2, 3, 4]
    assert "stopping early" in (tmp_path / "p" / "log.txt").read_text()


def test_nan_validation_loss_stops_and_leaves_no_half_written_run(tmp_path, monkeypatch):
    monkeypatch.setattr(Trainer, "_validate", lambda self, split="val", model=None:
                        {"loss": math.nan, "top1": 0.0, "top5": 0.0, "images": 8, "skipped": []})
    run = tmp_path / "run"
    with pytest.raises(CnnzooError, match="validation loss became nan"):
        train(out=str(run), **dict(TINY, data=DATA, epochs=1, precise_bn=0))
    assert not run.exists()  # the same --out can be used again
    (run / "checkpoints").mkdir(parents=True)  # as an older version left it
    (run / "config.yaml").write_text("model: mobilenet_v1_025\n")
    with pytest.raises(CnnzooError, match="holds no checkpoint to resume"):
        train(resume=str(run))


def test_threads_follow_omp_num_threads_and_the_callers_setting_comes_back(tmp_path, monkeypatch):
    from cnnzoo.threads import usable_cores
    from cnnzoo.train.distributed import DistEnv
    from cnnzoo.train.prepare import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(DistEnv()) == 3  # as torch itself reads it
    # under torchrun (which sets OMP_NUM_THREADS=1 for its workers) the cores are shared among the processes
    assert default_threads(DistEnv(local_world_size=2)) == max(1, usable_cores() // 2)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads(DistEnv()) == usable_cores()
    before = torch.get_num_threads()
    seen = []
    real_epoch = Trainer._train_epoch
    monkeypatch.setattr(Trainer, "_train_epoch", lambda self, e: (seen.append(torch.get_num_threads()),
                                                                  real_epoch(self, e)))
    train(out=str(tmp_path / "t"), **dict(TINY, data=DATA, epochs=1, threads=before + 1))
    assert seen == [before + 1] and torch.get_num_threads() == before  # a library call leaves no global change


def test_precise_bn_reads_training_images_as_evaluation_presents_them():
    # Statistics of augmented crops left vgg11_bn at 50% in eval mode on the shapes folder (FixRes's discrepancy)
    from cnnzoo.data import load_data
    from cnnzoo.train.distributed import DistEnv
    from cnnzoo.train.prepare import build_loaders, resolve

    source = load_data(DATA)
    cfg = resolve(build_config(**dict(TINY, data=DATA, aug="trivialaugment")), source, torch.device("cpu"))
    loaders = build_loaders(cfg, source, DistEnv())
    stats, val = loaders["bn_stats"].dataset, loaders["val"].dataset
    assert stats.split is source.splits["train"] and stats.transform is val.transform
    assert torch.equal(stats[(0, 3)][0], stats[(1, 3)][0])  # the same image in every epoch: no augmentation


def test_compile_traces_the_training_step_and_saves_plain_weights(tmp_path, monkeypatch):
    # Dynamo with its "eager" backend: the same graph capture as Inductor, without a minute of C++ code generation
    # (Inductor's speed is measured in benchmarks/train_speed.py --compile)
    from torch._dynamo.utils import counters

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module: real_compile(module, backend="eager"))
    torch._dynamo.reset()
    counters.clear()
    kw = dict(TINY, data=DATA, epochs=1, precision="fp32", precise_bn=0)
    train(out=str(tmp_path / "compiled"), compile=True, **kw)
    assert counters["stats"]["unique_graphs"] >= 1
    train(out=str(tmp_path / "eager"), **kw)
    compiled, eager = (read_checkpoint(tmp_path / run, "last")["state_dict"] for run in ("compiled", "eager"))
    assert list(compiled) == list(eager)  # no "_orig_mod." prefixes: the checkpoint loads into a plain model
    assert all(torch.allclose(compiled[k].float(), eager[k].float(), atol=1e-5) for k in eager)
