"""Transfer learning: the task carved out of a data set, the layers offered as features, the three modes'
run folders, and the pretrain-on-0-4, transfer-to-5-9 experiment on real handwritten digits."""
from __future__ import annotations

import json
import numpy as np
import pytest
import torch
import yaml

from cnnzoo import CnnzooError, create_model, get_card, list_models
from cnnzoo.cli import main
from cnnzoo.data import load_data
from cnnzoo.train import load_checkpoint, read_metrics
from cnnzoo.transfer import Extractor, aliases, list_layers, parse_classes, resolve_layer, select
from cnnzoo.transfer.experiment import digits_experiment, format_table, summarize
from cnnzoo.transfer.run import _optimizer, _ScaledSchedule
from cnnzoo.weights import fit_state_dict, head_modules

FAST = {"model": "resnet18", "data": "digits", "input_size": 32, "threads": 1, "precision": "fp32", "quiet": True}


# --- the task ------------------------------------------------------------------------------------------------

def test_select_keeps_classes_relabels_and_draws_shots():
    full = load_data("digits")
    task = select(full, "5-9", shots=3, seed=1)
    assert task.classes == ["5", "6", "7", "8", "9"] and set(task.splits) == {"train", "test"}  # no val: few-shot
    assert sorted(task.splits["train"].labels) == [c for c in range(5) for _ in range(3)]
    test = full.splits["test"]
    assert len(task.splits["test"]) == sum(y >= 5 for y in test.labels)
    first_eight = next(i for i, y in enumerate(test.labels) if y == 8)
    j = task.splits["test"].labels.index(3)  # digit 8 is label 3 of the new task
    assert torch.equal(task.splits["test"].images[j], test.images[first_eight])
    other = select(full, "5-9", shots=3, seed=2).splits["train"].images
    assert not torch.equal(other, task.splits["train"].images)  # a seed draws other images
    assert select(full, "9,3").classes == ["9", "3"] and "val" in select(full, "9,3").splits
    assert parse_classes(range(2, 5), full.classes) == [2, 3, 4]
    for bad, message in (("5-9,7", "each once"), ("x", "no class 'x'"), ("4", "at least two")):
        with pytest.raises(CnnzooError, match=message):
            parse_classes(bad, full.classes)
    with pytest.raises(CnnzooError, match="fewer than --shots 500"):
        select(full, "0-1", shots=500)


# --- layers -----------------------------------------------------------------------------------------------------

def test_lecture_layer_names_and_extraction():
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=5, in_chans=1).eval()
    assert {k: v[0] for k, v in aliases(model).items()} == {
        "pool": "pool", "fc6": "classifier.2", "fc7": "pool", "fc8": "classifier.6"}
    x = torch.randn(2, 1, 63, 63)
    with torch.no_grad():
        h = model.avgpool(model.features(x)).flatten(1)
        fc6 = torch.relu(model.classifier[1](h))
        fc7 = torch.relu(model.classifier[4](fc6))
        torch.testing.assert_close(Extractor(model, "fc6")(x), fc6)
        torch.testing.assert_close(Extractor(model, "fc7")(x), fc7)  # fc7 after ReLU = the input of fc8
        torch.testing.assert_close(Extractor(model, "fc8")(x), model(x))
        conv = model.features[3](model.features[2](model.features[1](model.features[0](x))))
        torch.testing.assert_close(Extractor(model, "features.3")(x), conv.mean((2, 3)))  # maps: averaged
    with pytest.raises(CnnzooError, match="no layer 'fc9'; did you mean fc8, fc7, fc6"):
        resolve_layer(model, "fc9")
    with torch.device("meta"):
        vgg = [layer.name for layer in list_layers(create_model("vgg11_bn"), 32)]
    assert vgg[:4] == ["pool", "fc6", "fc7", "fc8"] and "features.0" in vgg


def _smallest_per_family() -> list[str]:
    by_family: dict[str, list[str]] = {}
    for name in list_models():
        by_family.setdefault(get_card(name).family, []).append(name)
    return [min(names, key=len) for names in by_family.values()]


@pytest.mark.parametrize("name", _smallest_per_family())
def test_every_architecture_offers_layers_and_a_new_head(name):
    """What the three modes need from a model, on the meta device: the layers, the head, the frozen forward."""
    size = max(32, get_card(name).min_input_size)
    with torch.device("meta"):
        model = create_model(name, num_classes=5, in_chans=1).eval()
        layers = list_layers(model, size)
        assert layers[0].name == "pool" and layers[0].shape == (model.num_features,)
        assert len(layers) > 10 and all(layer.shape for layer in layers)
        x = torch.empty(2, 1, size, size)
        assert model.get_classifier()(model.forward_head(model.forward_features(x), pre_logits=True)).shape == (2, 5)
        assert Extractor(model, layers[len(layers) // 2].name)(x).shape[0] == 2
    sd, reinit, notes = fit_state_dict(model, model.state_dict(), new_head=True)
    heads = head_modules(model)
    assert reinit and all(k.rpartition(".")[0] in heads for k in reinit) and "for the new task" in notes[0]


def test_discriminative_learning_rates_follow_the_schedule():
    from cnnzoo.train.config import TrainConfig

    model = create_model("resnet18", num_classes=3)
    cfg = TrainConfig(lr=0.2, weight_decay=1e-4, epochs=4, sched="constant", warmup_epochs=0, opt="sgd")
    scales = {n: 1.0 if n.startswith("fc.") else 0.1 for n, _ in model.named_parameters()}
    opt = _optimizer(model, cfg, scales)
    _ScaledSchedule(opt, cfg, steps_per_epoch=2)
    lrs = {(g["lr_scale"], g["weight_decay"]): round(g["lr"], 6) for g in opt.param_groups}
    assert lrs == {(1.0, 1e-4): 0.2, (1.0, 0.0): 0.2, (0.1, 1e-4): 0.02, (0.1, 0.0): 0.02}
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


# --- the experiment: pretrain on digits 0-4, transfer to 5-9 with one labelled image per class ----------------

ARMS = {"scratch": ("finetune", {"weights": None}), "pixels": None,
        "features": ("features", {"layer": "layer3"}), "features (pool)": ("features", {"layer": "pool"}),
        "linear": ("linear", {}), "finetune": ("finetune", {"backbone_lr": 0.1, "head_epochs": 5}),
        "finetune (frozen BN)": ("finetune", {"backbone_lr": 1.0, "freeze_bn": True})}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """ResNet-18 trained on digits 0-4 for 3 epochs (about 97% on their test images), then every arm on
    digits 5-9 with 1 image per class: 20 epochs of one batch each, over 3 seeds."""
    out = tmp_path_factory.mktemp("transfer")
    settings = {k: v for k, v in FAST.items() if k not in ("model", "data", "quiet")}
    result = digits_experiment("resnet18", shots=(1,), seeds=(0, 1, 2), pretrain_epochs=3, epochs=20, arms=ARMS,
                               out=out, pretrain_settings={"batch_size": 16, "lr": 0.0125}, batch_size=5,
                               opt="sgd", lr=0.05 * 5 / 64, log=lambda m: None,
                               **settings)
    return out, result


@pytest.mark.xdist_group("transfer-experiment")  # one worker builds the experiment once
def test_transfer_beats_scratch_with_one_image_per_class(experiment):
    out, result = experiment
    assert result["pretrain"]["test_top1"] > 0.9  # the network learnt digits 0-4
    means = {arm: mean for (_, arm), (mean, _, _) in summarize(result).items()}
    assert means["scratch"] < 0.45  # five images and 20 steps: scratch barely learns
    for arm in ("features", "features (pool)", "linear", "finetune", "finetune (frozen BN)"):
        assert means[arm] > means["scratch"] + 0.05, (arm, means)
    table = format_table(result)
    assert len(table.splitlines()) == len(ARMS) + 4 and "\n| finetune | " in table


@pytest.mark.xdist_group("transfer-experiment")
def test_run_folders_read_like_cnnzoo_train(experiment):
    out, _ = experiment
    pre = out / "pretrain"
    features, linear, finetune = (out / "1-shot" / f"{arm}-seed0" for arm in ("features-pool", "linear", "finetune"))
    for run in (features, linear, finetune):
        assert {"config.yaml", "classes.json", "metrics.jsonl", "log.txt", "results.json"} <= set(
            p.name for p in run.iterdir())
        assert json.loads((run / "classes.json").read_text()) == ["5", "6", "7", "8", "9"]
        assert yaml.safe_load((run / "config.yaml").read_text())["transfer"]["weights"] == str(pre)
    log = (linear / "log.txt").read_text()
    assert "classifier re-initialised (for the new task): fc" in log and "loaded 120 tensors" in log
    # linear: everything below the new head is the pretrained network, batch-norm statistics included
    _, pre_info = load_checkpoint(pre)
    model, info = load_checkpoint(linear)
    before = torch.load(pre / "checkpoints" / "best.pt", weights_only=True)["state_dict"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]) != k.startswith("fc."), k
    assert info["mean"] == pre_info["mean"] and info["classes"] == ["5", "6", "7", "8", "9"]
    # finetune: the head alone for 5 epochs, then every layer
    phases = [row["phase"] for row in read_metrics(finetune)]
    assert phases == ["head"] * 5 + ["all"] * 15
    tuned, _ = load_checkpoint(finetune)
    assert not torch.equal(tuned.state_dict()["layer1.0.bn1.running_mean"], before["layer1.0.bn1.running_mean"])
    # frozen batch norm: its statistics stay the pretrained ones while every weight moves
    frozen = load_checkpoint(out / "1-shot" / "finetune-frozen-BN-seed0")[0].state_dict()
    assert all(torch.equal(frozen[k], before[k]) for k in frozen if "running" in k)
    assert not torch.equal(frozen["layer1.0.conv1.weight"], before["layer1.0.conv1.weight"])
    # features: the logistic regression folded into the last layer classifies the test images as it did
    saved = {name: np.load(features / f"{name}.npy") for name in ("features-test", "labels-test", "features-train")}
    assert saved["features-train"].shape == (5, 512)
    model, info = load_checkpoint(features)
    with torch.no_grad():
        pred = model.fc(torch.from_numpy(saved["features-test"])).argmax(1).numpy()
    result = json.loads((features / "results.json").read_text())
    assert np.mean(pred == saved["labels-test"]) == pytest.approx(result["test_top1"])


@pytest.mark.xdist_group("transfer-experiment")
def test_cli_transfer_and_layers(experiment, tmp_path, capsys, monkeypatch):
    out, _ = experiment
    monkeypatch.chdir(tmp_path)
    args = ["--weights", str(out / "pretrain"), "--model", "resnet18", "--data", "digits", "--classes", "5-9",
            "--shots", "1", "--epochs", "2", "--batch-size", "5", "--threads", "1", "--precision", "fp32"]
    assert main(["transfer", "linear", *args, "--out", "lin"]) == 0
    printed = capsys.readouterr().out
    assert "transfer linear: resnet18 on digits (classes 5, 6, 7, 8, 9; train 5, test 179)" in printed
    assert "test: top-1" in printed and (tmp_path / "lin" / "checkpoints" / "best.pt").is_file()
    assert main(["transfer", "finetune", *args, "--freeze-bn", "--backbone-lr", "0.5", "--out", "ft"]) == 0
    config = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["transfer"]
    assert config["freeze_bn"] is True and config["backbone_lr"] == 0.5
    capsys.readouterr()
    assert main(["transfer", "features", *args, "--layer", "fc7", "--out", "feat"]) == 2
    assert "resnet18 has no layer 'fc7'" in capsys.readouterr().err and not (tmp_path / "feat").exists()
    assert main(["transfer", "features", "--model", "resnet18", "--data", "digits", "--out", "none"]) == 2
    assert "transfer features needs --weights" in capsys.readouterr().err and not (tmp_path / "none").exists()
    assert main(["layers", "alexnet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[3].split()[:3] == ["fc7", "4096", "4096"] and any(l.split()[0] == "features.0" for l in lines[5:])
