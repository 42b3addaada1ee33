"""Augmentation (--aug, --random-erasing), the learning-rate range test (lr-find) and `evaluate --json`."""
from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from torchvision.transforms import v2

from cnnzoo.cli import main
from cnnzoo.data.transforms import TrainPreset, train_transform
from cnnzoo.errors import CnnzooError
from cnnzoo.train import lr_find, range_test
from cnnzoo.train.config import build_config

from test_data_named import make_mnist

POLICIES = {"randaugment": v2.RandAugment, "trivialaugment": v2.TrivialAugmentWide, "autoaugment": v2.AutoAugment}


def image(chans: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (chans, 32, 32), generator=g, dtype=torch.uint8)


def outputs(tf, x, n: int = 8) -> torch.Tensor:
    torch.manual_seed(7)
    return torch.stack([tf(x) for _ in range(n)])


@pytest.mark.parametrize("aug", sorted(POLICIES))
def test_each_policy_is_in_the_pipeline_and_changes_the_images(aug):
    tf = train_transform(32, [0.5] * 3, [0.25] * 3, aug=aug, scale=(1.0, 1.0), hflip=False)
    assert isinstance(tf, TrainPreset) and isinstance(tf.policy, POLICIES[aug])
    basic = train_transform(32, [0.5] * 3, [0.25] * 3, aug="basic", scale=(1.0, 1.0), hflip=False)
    x = image()
    assert not torch.equal(outputs(tf, x), outputs(basic, x))  # same seed, same crops: only the policy differs
    assert outputs(tf, image(1)[None][0]).shape[1:] == (3, 32, 32)  # grey input, repeated to 3 channels


def test_none_is_deterministic_and_basic_is_not():
    x = image()
    none = train_transform(24, [0.5] * 3, [0.25] * 3, aug="none", crop_pct=1.0)
    a, b = outputs(none, x), outputs(none, x, 8)
    assert torch.equal(a[0], a[1]) and torch.equal(a, b)
    basic = outputs(train_transform(24, [0.5] * 3, [0.25] * 3, aug="basic"), x)
    assert not torch.equal(basic[0], basic[1])


def test_random_erasing_zeroes_a_rectangle():
    x = torch.full((3, 32, 32), 255, dtype=torch.uint8)  # normalised to 2.0 everywhere
    tf = train_transform(32, [0.5] * 3, [0.25] * 3, aug="basic", scale=(1.0, 1.0), random_erasing=1.0)
    y = tf(x)
    erased = (y == 0).all(0)
    rows, cols = erased.any(1).nonzero(), erased.any(0).nonzero()
    assert erased.sum() > 0 and torch.all(y[:, ~erased] == 2.0)
    box = erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # one rectangle
    assert (train_transform(32, [0.5] * 3, [0.25] * 3, scale=(1.0, 1.0))(x) == 2.0).all()  # off by default


def test_config_checks_the_augmentation_settings():
    assert build_config(aug="trivialaugment", random_erasing="0.25").random_erasing == 0.25
    with pytest.raises(CnnzooError, match="aug must be one of"):
        build_config(aug="mixup")
    with pytest.raises(CnnzooError, match="random_erasing"):
        build_config(random_erasing=1.5)
    from cnnzoo.cli import build_parser

    args = build_parser().parse_args(["train", "--download", "--hflip", "false", "--aug", "none"])
    assert (args.download, args.hflip, args.aug) == (True, False, "none")  # a bare boolean flag means true
    for bad in (["--aug", "cutout"], ["--random-erasing", "2"], ["--random-erasing", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", *bad])


def test_train_on_a_named_set_records_augmentation_and_evaluate_json(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CNNZOO_DATA", raising=False)
    root = make_mnist(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["train", "--model", "resnet18", "--data", "mnist", "--data-root", str(root),
                 "--epochs", "1", "--batch-size", "16", "--aug", "randaugment", "--random-erasing", "0.5",
                 "--precision", "fp32", "--out", str(out), "--tensorboard", "false", "--threads", "1"])
    monkeypatch.delenv("CNNZOO_DATA", raising=False)
    assert code == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert (cfg["aug"], cfg["random_erasing"], cfg["data_root"]) == ("randaugment", 0.5, str(root))
    assert cfg["mean"] == [0.1307] and cfg["std"] == [0.3081] and cfg["in_chans"] == 1  # MNIST's own statistics
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--device", "cpu"]) == 0  # finds the data in the run's data_root
    report = json.loads(capsys.readouterr().out)  # stdout is the JSON alone
    assert report["images"] == 10 and report["split"] == "test" and 0 <= report["top1"] <= 1
    assert report["json"] == str(out / "eval-test.json")


# --- lr-find -----------------------------------------------------------------------------------------------

def toy_loader(n: int = 64, batch: int = 16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, n, batch)]


def toy_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_range_test_rises_exponentially_stops_on_divergence_and_restores_the_model():
    model = toy_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    f = range_test(model, toy_loader(), opt, torch.nn.functional.cross_entropy, start_lr=1e-4, end_lr=1e4, steps=100)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # weights and BN buffers
    ratios = [b / a for a, b in zip(f.lrs, f.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios)) and ratios[0] == pytest.approx(1e8 ** (1 / 99))
    assert len(f.lrs) < 100 and "stopped" in f.stopped  # lr 1e4 diverges long before the end
    assert f.smoothed[-1] > 4 * min(f.smoothed[:-1]) or not math.isfinite(f.smoothed[-1])
    assert f.method == "steepest" and f.suggestion == f.steepest
    assert f.min_div10 == pytest.approx(f.lrs[min(range(len(f.lrs)), key=f.smoothed.__getitem__)] / 10)
    assert 1e-4 < f.suggestion < f.lrs[-1]


def test_too_few_points_fall_back_to_min_over_ten():
    model = toy_model()
    f = range_test(model, toy_loader(), torch.optim.SGD(model.parameters(), lr=0), torch.nn.functional.cross_entropy,
                   start_lr=1e-4, end_lr=1e-2, steps=8)
    assert (f.method, f.steepest, len(f.lrs)) == ("min/10", None, 8) and f.suggestion == f.min_div10


def test_lr_find_command(tmp_path, capsys):
    chart = tmp_path / "lr.png"
    code = main(["lr-find", "--model", "mobilenet_v1_025", "--data", "synthetic:n=100,classes=4,size=32",
                 "--steps", "12", "--batch-size", "8", "--chart", str(chart), "--json", "--threads", "1", "--precision", "fp32"])
    assert code == 0
    found = json.loads(capsys.readouterr().out)
    assert chart.stat().st_size > 5000 and chart.read_bytes()[:4] == b"\x89PNG"
    assert len(found["lrs"]) <= 12 and found["lrs"][0] == pytest.approx(1e-7) and found["suggestion"] > 0
    assert list(tmp_path.iterdir()) == [chart]  # no temporary file left


def test_lr_find_library_needs_model_and_data():
    with pytest.raises(CnnzooError, match="--model and --data"):
        lr_find(data="digits")


def test_the_training_loader_uses_the_configured_augmentation(tmp_path):
    from cnnzoo.data import load_data
    from cnnzoo.train.distributed import DistEnv
    from cnnzoo.train.prepare import build_loaders, resolve

    source = load_data("synthetic:n=40,classes=2,size=32")
    cfg = resolve(build_config(model="resnet18", data="synthetic", aug="autoaugment", random_erasing=0.3,
                               precision="fp32", out=str(tmp_path / "r")), source, torch.device("cpu"))
    tf = build_loaders(cfg, source, DistEnv())["train"].dataset.transform
    assert isinstance(tf.policy, v2.AutoAugment) and tf.erasing.p == 0.3
