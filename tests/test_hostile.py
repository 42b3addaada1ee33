"""Hostile input over every subcommand (issue #16): one line `cnnzoo: error: ...`, exit 2, nothing written.

CASES is the catalogue: (name, argv, expected text in the error). The argv is a shell-like string whose
{placeholders} name files of the `world` fixture (a tiny trained run, a malicious checkpoint, a CSV that
is not UTF-8, a file where a folder belongs, an earlier export...). Every case asserts: exit status 2,
the last stderr line starts with `cnnzoo: error:`, no traceback, the expected text, and the world's
files unchanged (no file left behind, earlier results intact: size, inode, mtime and, for small files,
the bytes). Cases run in-process through `cnnzoo.cli.main` (the parser refuses most before torch loads).

A new subcommand must get at least one row: `test_every_subcommand_has_a_case` enumerates the parser.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shlex
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnzoo.cli import build_parser, main, subcommands

R = "--model resnet18 --data digits"  # a valid start for train/transfer rows
CASES = [
    # -- list, info, tour, completion --------------------------------------------------------------------------------
    ("list bad sort", "list --sort bogus", "invalid choice"),
    ("list no match", "list 'zzz*'", "no model matches"),
    ("list no family", "list --family zzzz", "no model matches"),
    ("info unknown", "info nosuch", "unknown model"),
    ("info typo", "info resnt18", "did you mean"),
    ("info missing", "info", "required"),
    ("tour out is file", "tour --out {file}", "is a file"),
    ("tour out in proc", "tour --out /proc/cnnzoo-tour", "kernel file system"),
    ("tour out under file", "tour --out {file}/sub", "is a file, not a folder"),
    ("tour bad chapter", "tour --chapters bogus --out {tmp}/tour", "unknown tour chapter"),
    ("completion bad shell", "completion tcsh", "invalid choice"),
    ("completion missing", "completion", "required"),
    # -- profile, compare --------------------------------------------------------------------------------------------
    ("profile unknown", "profile nosuch", "unknown model"),
    ("profile size negative", "profile resnet18 --input-size -5", "expected"),
    ("profile size huge", "profile resnet18 --input-size 100000", "4096"),
    ("profile size word", "profile resnet18 --input-size abc", "expected a size"),
    ("profile size zero", "profile resnet18 --input-size 0x0", "sides from 1"),
    ("profile size 4d", "profile resnet18 --input-size 3x3x3x3", "expected a size"),
    ("profile many chans", "profile resnet18 --input-size 100x224x224", "channels"),
    ("profile batch zero", "profile resnet18 --batch-size 0", ">= 1"),
    ("profile batch negative", "profile resnet18 --batch-size -1", ">= 1"),
    ("profile depth zero", "profile resnet18 --depth 0", ">= 1"),
    ("profile bad only", "profile resnet18 --only bogus", "unknown row type"),
    ("profile bad dtype", "profile resnet18 --dtype float64", "invalid choice"),
    ("profile bad optimizer", "profile resnet18 --train-memory lbfgs", "invalid choice"),
    ("profile bad format", "profile resnet18 --format xml", "invalid choice"),
    ("compare unknown", "compare resnet18 nosuch", "unknown model"),
    ("compare batch zero", "compare resnet18 --batch-size 0", ">= 1"),
    ("compare size nan", "compare resnet18 --input-size nan", "expected a size"),
    ("compare plot is file", "compare resnet18 --plot {file}", "is a file"),
    ("compare plot in proc", "compare resnet18 --plot /proc/plots", "kernel file system"),
    ("compare plot under file", "compare resnet18 --plot {file}/charts", "is a file, not a folder"),
    ("compare bad format", "compare resnet18 --format xml", "invalid choice"),
    ("compare none", "compare", "required"),
    # -- data check, data split --------------------------------------------------------------------------------------
    ("data no action", "data", "required"),
    ("data check missing", "data check {tmp}/nope", "no such file"),
    ("data check csv not utf-8", "data check {badcsv}", "not UTF-8"),
    ("data check empty folder", "data check {empty}", "holds no class folders"),
    ("data check not csv", "data check {file}", "not a .csv"),
    ("data check bad synthetic", "data check synthetic:bogus=1", "bad synthetic option"),
    ("data list root is a file", "data list --data-root {file} --json", "not a folder"),
    ("split missing", "data split {tmp}/nope", "no such file"),
    ("split val big", "data split {classes} --val 1.5", "[0, 1)"),
    ("split val negative", "data split {classes} --val -0.1", "[0, 1)"),
    ("split test nan", "data split {classes} --test nan", "finite"),
    ("split seed negative", "data split {classes} --seed -5", ">= 0"),
    ("split seed float", "data split {classes} --seed 1e23", "whole number"),
    ("split seed huge", "data split {classes} --seed 99999999999", "<="),
    ("split out folder", "data split {classes} --out {empty}", "is a folder"),
    ("split out proc", "data split {classes} --out /proc/split.csv", "kernel file system"),
    ("split out under file", "data split {classes} --out {file}/x.csv", "is a file, not a folder"),
    ("split exists", "data split {classes}", "already exists"),
    ("split empty folder", "data split {empty} --out {tmp}/s.csv", "holds no class folders"),
    ("split of a file", "data split {file} --out {tmp}/s.csv", "not a folder"),
    # -- train -------------------------------------------------------------------------------------------------------
    ("train lr nan", "train {R} --lr nan", "finite"),
    ("train lr inf", "train {R} --lr inf", "finite"),
    ("train lr negative", "train {R} --lr -1", ">= 0"),
    ("train lr word", "train {R} --lr fast", "expected a number"),
    ("train wd nan", "train {R} --weight-decay nan", "finite"),
    ("train wd negative", "train {R} --weight-decay -1", ">= 0"),
    ("train smoothing 5", "train {R} --label-smoothing 5", "[0, 1)"),
    ("train smoothing negative", "train {R} --label-smoothing -0.1", "[0, 1)"),
    ("train scale-min 2", "train {R} --scale-min 2", "(0, 1]"),
    ("train scale-min 0", "train {R} --scale-min 0", "(0, 1]"),
    ("train crop-pct 0", "train {R} --crop-pct 0", "(0, 1]"),
    ("train crop-pct big", "train {R} --crop-pct 1.5", "(0, 1]"),
    ("train workers negative", "train {R} --workers -1", ">= 0"),
    ("train seed float", "train {R} --seed 1e23", "whole number"),
    ("train seed negative", "train {R} --seed -1", ">= 0"),
    ("train split-seed negative", "train {R} --split-seed -5", ">= 0"),
    ("train in-chans negative", "train {R} --in-chans -2", ">= 1"),
    ("train in-chans zero", "train {R} --in-chans 0", ">= 1"),
    ("train in-chans huge", "train {R} --in-chans 1000", "<= 64"),
    ("train std zero", "train {R} --std 0,0,0", "> 0"),
    ("train std nan", "train {R} --std 1,nan,1", "finite"),
    ("train std empty item", "train {R} --std 1,,1", "comma-separated"),
    ("train mean words", "train {R} --mean a,b", "expected a number"),
    ("train mean without std", "train {R} --mean 0.5 --out {tmp}/t", "needs --std"),
    ("train std without mean", "train {R} --std 0.5 --out {tmp}/t", "needs --mean"),
    ("train mean std lengths", "train {R} --mean 0.5,0.5 --std 0.5 --out {tmp}/t", "one per channel"),
    ("train epochs zero", "train {R} --epochs 0", ">= 1"),
    ("train epochs negative", "train {R} --epochs -3", ">= 1"),
    ("train batch zero", "train {R} --batch-size 0", ">= 1"),
    ("train batch float", "train {R} --batch-size 1.5", "whole number"),
    ("train momentum 2", "train {R} --momentum 2", "between 0 and 1"),
    ("train val 1", "train {R} --val 1", "[0, 1)"),
    ("train test negative", "train {R} --test -1", "[0, 1)"),
    ("train size huge", "train {R} --input-size 100000", "<= 4096"),
    ("train size zero", "train {R} --input-size 0", ">= 1"),
    ("train threads zero", "train {R} --threads 0", ">= 1"),
    ("train threads negative", "train {R} --threads -2", ">= 1"),
    ("train grad-clip zero", "train {R} --grad-clip 0", "> 0"),
    ("train step-gamma zero", "train {R} --step-gamma 0", "> 0"),
    ("train warmup negative", "train {R} --warmup-epochs -1", ">= 0"),
    ("train step-epochs zero", "train {R} --step-epochs 0", ">= 1"),
    ("train bad opt", "train {R} --opt lbfgs", "invalid choice"),
    ("train bad sched", "train {R} --sched bogus", "invalid choice"),
    ("train bad precision", "train {R} --precision fp8", "invalid choice"),
    ("train bad device", "train {R} --device tpu", "invalid choice"),
    ("train bad hflip", "train {R} --hflip maybe", "true or false"),
    ("train bad progress", "train {R} --progress maybe", "true or false"),
    ("train bad channels-last", "train {R} --channels-last maybe", "true or false"),
    ("train config missing", "train {R} --config {tmp}/nope.yaml", "no such file"),
    ("train config folder", "train {R} --config {empty}", "is a folder"),
    ("train config not yaml", "train {R} --config {badyaml} --out {tmp}/t", "not valid YAML"),
    ("train config unknown key", "train {R} --config {typoyaml} --out {tmp}/t", "unknown setting"),
    ("train resume missing", "train --resume {tmp}/nope", "no such file"),
    ("train resume not a run", "train --resume {empty}", "not a run folder"),
    ("train out is file", "train {R} --out {file}", "is a file"),
    ("train out in proc", "train {R} --out /proc/run", "kernel file system"),
    ("train out under file", "train {R} --out {file}/run", "is a file, not a folder"),
    ("train unknown model", "train --model nosuch --data digits --out {tmp}/t", "unknown model"),
    ("train data missing", "train --model resnet18 --data {tmp}/nope --out {tmp}/t", "does not exist"),
    ("train csv not utf-8", "train --model resnet18 --data {badcsv} --out {tmp}/t", "not UTF-8"),
    ("train evil weights", "train {R} --weights {evil} --out {tmp}/t", "calls posix.system"),
    ("train out of memory", "train {R} --input-size 4096 --batch-size 4096 --out {tmp}/t", "GiB is free"),
    # -- evaluate ----------------------------------------------------------------------------------------------------
    ("evaluate missing", "evaluate {tmp}/nope", "no such file"),
    ("evaluate nothing", "evaluate", "evaluate what?"),
    ("evaluate model without data", "evaluate --model resnet18 --weights imagenet", "needs --weights"),
    ("evaluate evil", "evaluate {evil}", "calls posix.system"),
    ("evaluate not a checkpoint", "evaluate {file}", "not a readable"),
    ("evaluate empty folder", "evaluate {empty}", "holds no checkpoint"),
    ("evaluate batch zero", "evaluate {run} --batch-size 0", ">= 1"),
    ("evaluate batch negative", "evaluate {run} --batch-size -1", ">= 1"),
    ("evaluate bad split", "evaluate {run} --split bogus", "invalid choice"),
    ("evaluate bad which", "evaluate {run} --which middle", "invalid choice"),
    ("evaluate out is file", "evaluate {run} --out {file}", "is a file"),
    ("evaluate out in proc", "evaluate {run} --out /proc/eval", "kernel file system"),
    ("evaluate csv not utf-8", "evaluate {run} --data {badcsv} --out {tmp}/e", "not UTF-8"),
    ("evaluate data missing", "evaluate {run} --data {tmp}/nope", "no such file"),
    ("evaluate bad device", "evaluate {run} --device tpu", "invalid choice"),
    # -- bench, recommend --------------------------------------------------------------------------------------------
    ("bench repeats zero", "bench resnet18 --repeats 0", ">= 1"),
    ("bench threads negative", "bench resnet18 --threads -2", ">= 1"),
    ("bench budget nan", "bench resnet18 --budget nan", "finite"),
    ("bench budget negative", "bench resnet18 --budget -1", "> 0"),
    ("bench warmup negative", "bench resnet18 --warmup -1", ">= 0"),
    ("bench batch zero", "bench resnet18 --batch-size 0", ">= 1"),
    ("bench batch empty item", "bench resnet18 --batch-size 1,,2", "comma-separated"),
    ("bench batch word", "bench resnet18 --batch-size a", "whole number"),
    ("bench size negative", "bench resnet18 --input-size -5", "expected"),
    ("bench size huge", "bench resnet18 --input-size 100000", "4096"),
    ("bench out is file", "bench resnet18 --out {file}", "is a file"),
    ("bench out in proc", "bench resnet18 --out /proc/bench", "kernel file system"),
    ("bench bad device", "bench resnet18 --device tpu", "invalid choice"),
    ("bench bad mode", "bench resnet18 --mode eval", "invalid choice"),
    ("bench unknown", "bench nosuch --out {tmp}/b", "unknown model"),
    ("bench no match", "bench 'zzz*' --out {tmp}/b", "no model matches"),
    ("bench out of memory", "bench resnet18 --input-size 4096 --batch-size 1024 --out {tmp}/b", "GiB is free"),
    ("recommend latency nan", "recommend --max-latency-ms nan", "finite"),
    ("recommend latency negative", "recommend --max-latency-ms -1", "> 0"),
    ("recommend params negative", "recommend --max-params -5", "positive count"),
    ("recommend params word", "recommend --max-params abc", "count like"),
    ("recommend gflops nan", "recommend --max-gflops nan", "finite"),
    ("recommend batch zero", "recommend --batch-size 0", ">= 1"),
    ("recommend repeats zero", "recommend --repeats 0", ">= 1"),
    ("recommend warmup negative", "recommend --warmup -1", ">= 0"),
    ("recommend threads zero", "recommend --threads 0", ">= 1"),
    ("recommend bench missing", "recommend --bench {tmp}/nope.json --out {tmp}/r", "no bench file"),
    ("recommend bench not bench", "recommend --bench {file} --out {tmp}/r", "not a cnnzoo bench file"),
    ("recommend out is file", "recommend --out {file}", "is a file"),
    ("recommend out in proc", "recommend --out /proc/rec", "kernel file system"),
    ("recommend size negative", "recommend --input-size -1", "expected"),
    ("recommend bad device", "recommend --device tpu", "invalid choice"),
    # -- weights convert, layers -------------------------------------------------------------------------------------
    ("weights no action", "weights", "required"),
    ("weights list no match", "weights list 'zzz*'", "no model matches"),
    ("weights list bad flag", "weights list --jsn", "unrecognized arguments"),
    ("convert missing", "weights convert {tmp}/nope.pth --model resnet18 --out {tmp}/w.safetensors", "do not exist"),
    ("convert evil", "weights convert {evil} --model resnet18 --out {tmp}/w.safetensors", "calls posix.system"),
    ("convert wrong architecture", "weights convert {mnv2} --model resnet18 --out {tmp}/w.safetensors",
     "another architecture"),
    ("convert not weights", "weights convert {file} --model resnet18 --out {tmp}/w.safetensors", "not a readable"),
    ("convert unknown model", "weights convert {mnv2} --model nosuch --out {tmp}/w.safetensors", "unknown model"),
    ("convert out folder", "weights convert {mnv2} --model mobilenet_v2 --out {empty}", "is a folder"),
    ("convert out proc", "weights convert {mnv2} --model mobilenet_v2 --out /proc/w.safetensors", "kernel file"),
    ("convert out under file", "weights convert {mnv2} --model mobilenet_v2 --out {file}/w.safetensors",
     "is a file, not a folder"),
    ("convert out suffix", "weights convert {mnv2} --model mobilenet_v2 --out {tmp}/w.pt", "must end in"),
    ("convert no out", "weights convert {mnv2} --model mobilenet_v2", "required"),
    ("layers size negative", "layers resnet18 --input-size -5", ">= 1"),
    ("layers size zero", "layers resnet18 --input-size 0", ">= 1"),
    ("layers size huge", "layers resnet18 --input-size 100000", "<= 4096"),
    ("layers size word", "layers resnet18 --input-size abc", "whole number"),
    ("layers unknown", "layers nosuch", "unknown model"),
    # -- transfer ----------------------------------------------------------------------------------------------------
    ("transfer no mode", "transfer", "required"),
    ("features C nan", "transfer features {R} --C nan", "finite"),
    ("features C zero", "transfer features {R} --C 0", "> 0"),
    ("features C negative", "transfer features {R} --C -1", "> 0"),
    ("features shots zero", "transfer features {R} --shots 0", ">= 1"),
    ("features lr nan", "transfer features {R} --lr nan", "finite"),
    ("features no weights", "transfer features {R} --out {tmp}/tr", "needs --weights"),
    ("features mean without std", "transfer features {R} --mean 0.5 --out {tmp}/tr", "needs --std"),
    ("linear shots negative", "transfer linear {R} --shots -1", ">= 1"),
    ("linear epochs zero", "transfer linear {R} --epochs 0", ">= 1"),
    ("linear config missing", "transfer linear {R} --config {tmp}/nope.yaml", "no such file"),
    ("linear out is file", "transfer linear {R} --out {file}", "is a file"),
    ("finetune backbone-lr nan", "transfer finetune {R} --backbone-lr nan", "finite"),
    ("finetune head-epochs negative", "transfer finetune {R} --head-epochs -1", ">= 0"),
    ("finetune in-chans zero", "transfer finetune {R} --in-chans 0", ">= 1"),
    ("finetune evil weights", "transfer finetune {R} --weights {evil} --out {tmp}/tr", "calls posix.system"),
    # -- export, predict, serve --------------------------------------------------------------------------------------
    ("export missing", "export {tmp}/nope.pt", "no such file"),
    ("export evil", "export {evil}", "calls posix.system"),
    ("export over a photo", "export {run} --out {photo}", "not a cnnzoo export"),
    ("export out folder", "export {run} --out {empty}", "is a folder"),
    ("export out proc", "export {run} --out /proc/m.onnx", "kernel file system"),
    ("export out under file", "export {run} --out {file}/m.onnx", "is a file, not a folder"),
    ("export images missing", "export {run} --out {tmp}/m.onnx --images {tmp}/nope.png", "no such file"),
    ("export images not images", "export {run} --out {tmp}/m.onnx --images {file}", "not an image"),
    ("export bad format", "export {run} --format tflite", "invalid choice"),
    ("export an onnx file", "export {onnx} --out {tmp}/m.onnx", "already an ONNX file"),
    ("predict batch negative", "predict {run} {img} --batch-size -1", ">= 1"),
    ("predict batch zero", "predict {run} {img} --batch-size 0", ">= 1"),
    ("predict top-k negative", "predict {run} {img} --top-k -1", ">= 1"),
    ("predict top-k zero", "predict {run} {img} --top-k 0", ">= 1"),
    ("predict bad backend", "predict {run} {img} --backend tpu", "invalid choice"),
    ("predict source missing", "predict {tmp}/nope.pt {img}", "no such file"),
    ("predict evil", "predict {evil} {img}", "calls posix.system"),
    ("predict not a checkpoint", "predict {file} {img}", "not a readable"),
    ("predict no images", "predict {run}", "required"),
    ("predict out of memory", "predict {run} {img} --batch-size 100000000000", "GiB is free"),
    ("serve port too big", "serve {run} --port 99999", "between 0 and 65535"),
    ("serve port negative", "serve {run} --port -1", "between 0 and 65535"),
    ("serve port word", "serve {run} --port http", "whole number"),
    ("serve batch zero", "serve {run} --max-batch 0", ">= 1"),
    ("serve wait negative", "serve {run} --max-wait-ms -1", ">= 0"),
    ("serve wait nan", "serve {run} --max-wait-ms nan", "finite"),
    ("serve upload zero", "serve {run} --max-upload-mb 0", "> 0"),
    ("serve upload nan", "serve {run} --max-upload-mb nan", "finite"),
    ("serve pixels zero", "serve {run} --max-megapixels 0", "> 0"),
    ("serve pixels inf", "serve {run} --max-megapixels inf", "finite"),
    ("serve bad backend", "serve {run} --backend tpu", "invalid choice"),
    ("serve missing", "serve {tmp}/nope.pt", "no such file"),
    ("serve evil", "serve {evil}", "calls posix.system"),
    ("serve port taken", "serve {run} --backend eager --port {taken}", "cannot listen"),
    # -- explain, filters, activations (the run is mobilenet_v1_025 at 8 px) ------------------------------------------
    ("explain unknown layer", "explain {run} {img} --layer layer9 --out {tmp}/x", "no layer"),
    ("explain pooled layer", "explain {run} {img} --layer pool --out {tmp}/x", "spatial map"),
    ("explain gradcam++", "explain {run} {img} --method gradcam++ --out {tmp}/x", "gradcam++"),
    ("explain missing image", "explain {run} {tmp}/nope.png --out {tmp}/x", "no such file"),
    ("explain unknown class", "explain {run} {img} --target zebra --out {tmp}/x", "unknown class"),
    ("explain class out of range", "explain {run} {img} --target 12 --out {tmp}/x", "out of range"),
    ("explain layer on saliency", "explain {run} {img} --method saliency --layer features.1 --out {tmp}/x",
     "gradcam only"),
    ("explain an onnx file", "explain {onnx} {img} --out {tmp}/x", "onnx"),
    ("explain an architecture", "explain resnet18 {img} --out {tmp}/x", "not a trained model"),
    ("explain evil", "explain {evil} {img} --out {tmp}/x", "calls posix.system"),
    ("explain out in proc", "explain {run} {img} --out /proc/cnnzoo-x", "kernel file system"),
    ("filters missing", "filters {tmp}/nope --out {tmp}/f.png", "does not exist"),
    ("filters evil", "filters {evil} --out {tmp}/f.png", "calls posix.system"),
    ("filters out in proc", "filters {run} --out /proc/f.png", "kernel file system"),
    ("activations unknown layer", "activations {run} {img} --layer layer9 --out {tmp}/a.png", "no layer"),
    ("activations pooled layer", "activations {run} {img} --layer pool --out {tmp}/a.png", "not a map"),
    ("activations missing image", "activations {run} {tmp}/nope.png --layer features.1 --out {tmp}/a.png",
     "no such file"),
    # -- ensembles and multi-crop testing ----------------------------------------------------------------------------
    ("evaluate bad tta", "evaluate {run} --tta 3crop", "invalid choice"),
    ("evaluate same run twice", "evaluate {run} {run}", "twice"),
    ("evaluate flips for a no-flip run", "evaluate {run} --tta 10crop", "flip"),
    ("predict onnx member", "predict {run} {onnx} {img}", "ONNX"),
    ("predict runs without images", "predict {run} {run}", "image"),
    ("evaluate several with model", "evaluate {run} {run} --model resnet18", "one model"),
    # -- training options --------------------------------------------------------------------------------------------
    ("train ema above one", f"train {R} --ema 1.5 --out {{tmp}}/r", "ema"),
    ("train patience negative", f"train {R} --patience -1 --out {{tmp}}/r", "patience"),
    ("train accum zero", f"train {R} --accum-steps 0 --out {{tmp}}/r", "accum"),
    ("train mixup negative", f"train {R} --mixup -1 --out {{tmp}}/r", "mixup"),
    ("train cutmix nan", f"train {R} --cutmix nan --out {{tmp}}/r", "cutmix"),
    # -- lr-find, named data sets, augmentation ---------------------------------------------------------------------
    ("lr-find steps zero", "lr-find --model resnet18 --data digits --steps 0", ">= 1"),
    ("lr-find start negative", "lr-find --model resnet18 --data digits --start-lr -1", "> 0"),
    ("lr-find no model", "lr-find --data digits", "model"),
    ("train data misspelt", f"train --model resnet18 --data cifar-10 --out {{tmp}}/r", "did you mean cifar10"),
    ("train data not in root", f"train --model resnet18 --data cifar10 --data-root {{tmp}}/none --out {{tmp}}/r",
     "cifar-10-batches-py"),
    ("train bad aug", f"train {R} --aug cutout", "invalid choice"),
    ("train erasing above one", f"train {R} --random-erasing 1.5", "between 0 and 1"),
    # -- weights by name ---------------------------------------------------------------------------------------------
    ("weights list bracket", "weights list '['", "no model matches"),
    ("predict imagenet bare colon", "predict resnet18 --weights imagenet: {img}", "tag"),
    ("predict imagenet unknown tag", "predict resnet18 --weights imagenet:v9 {img}", "no weights tagged"),
    ("predict no published weights", "predict zfnet --weights imagenet {img}", "no published ImageNet weights"),
    ("bench takes no weights", "bench resnet18 --weights imagenet", "unrecognized"),
    ("train imagenet without model", "train --data digits --weights imagenet --out {tmp}/r", "model"),

]


def _digit_png(path: Path) -> None:
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(path)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cnnzoo-pwned",))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files the cases name: a tiny run (1 epoch of digits, 8 px), its ONNX export, hostile files."""
    import torch

    from cnnzoo.deploy.export import export_run
    from cnnzoo.models import create_model
    from cnnzoo.train import train

    w = tmp_path_factory.mktemp("world")
    with contextlib.redirect_stdout(None):
        train(model="mobilenet_v1_025", data="digits", out=str(w / "run"), epochs=1, input_size=8, seed=0,
              progress=False, tensorboard=False, threads=1, workers=0)
        export_run(w / "run", "onnx", w / "good.onnx")
    (w / "notes.txt").write_text("not an image, not a checkpoint\n")
    (w / "empty").mkdir()
    (w / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 a holiday photo")
    (w / "bad.csv").write_bytes("path,label\n\xe9t\xe9.png,chat\n".encode("latin-1"))
    (w / "bad.yaml").write_text("lr: [unclosed\n")
    (w / "typo.yaml").write_text("learning_rat: 0.1\n")
    torch.save({"model": "resnet18", "state_dict": Evil()}, w / "evil.pt")
    torch.save(create_model("mobilenet_v2").state_dict(), w / "mnv2.pth")
    for c in ("a", "b"):
        (w / "classes" / c).mkdir(parents=True)
        for i in range(3):
            _digit_png(w / "classes" / c / f"{i}.png")
    (w / "classes" / "split.csv").write_text("path,label,split\n")  # an earlier result
    _digit_png(w / "digit.png")
    (w / "cwd").mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    names = {"tmp": w, "run": w / "run", "file": w / "notes.txt", "empty": w / "empty", "photo": w / "photo.jpg",
             "badcsv": w / "bad.csv", "badyaml": w / "bad.yaml", "typoyaml": w / "typo.yaml", "evil": w / "evil.pt",
             "mnv2": w / "mnv2.pth", "classes": w / "classes", "img": w / "digit.png", "onnx": w / "good.onnx",
             "taken": listener.getsockname()[1]}
    yield w, {k: str(v) for k, v in names.items()}
    listener.close()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder below `root`: size, inode, mtime, and the bytes' hash for small files."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        small = p.is_file() and st.st_size < 2**20
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_ino, st.st_mtime_ns,
                                         hashlib.sha256(p.read_bytes()).hexdigest() if small else None)
    return out


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


def assert_refused(rc: int, err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert rc == 2, f"exit {rc}: {err[-2000:]}"
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith("cnnzoo: error:"), err
    assert expected.lower() in lines[-1].lower(), lines[-1]


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_hostile(world, name, argv, expected, capsys, monkeypatch):
    root, names = world
    monkeypatch.chdir(root / "cwd")  # default outputs (runs/...) land here, and must not appear
    before = snapshot(root)
    rc, err = run_cli([a.format(**names) for a in shlex.split(argv.replace("{R}", R))], capsys)
    assert_refused(rc, err, expected)
    assert snapshot(root) == before, "files were written, changed or left behind"
    assert not os.path.exists("/tmp/cnnzoo-pwned")


def test_catalogue_size_and_every_subcommand_has_a_case():
    assert len(CASES) >= 150 and len({c[0] for c in CASES}) == len(CASES)
    first_words = [shlex.split(c[1]) for c in CASES]
    for words, _ in subcommands(build_parser()):
        n = len(words.split())
        assert any(w[:n] == words.split() for w in first_words), f"no hostile-input case for `cnnzoo {words}`"


@contextlib.contextmanager
def file_size_limit(nbytes: int):
    """`ulimit -f` for this process (the soft limit; restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_export_over_an_export_under_a_file_size_limit_keeps_the_old_one(world, capsys):
    import onnx

    root, names = world
    before = snapshot(root)
    with file_size_limit(64 * 1024):  # the model is larger: the write fails part-way (EFBIG)
        rc, err = run_cli(["export", names["run"], "--out", names["onnx"]], capsys)
    assert_refused(rc, err, "cannot write")
    assert "File too large" in err
    assert snapshot(root) == before  # no temporary file left, the old export untouched ...
    onnx.checker.check_model(onnx.load(names["onnx"]))  # ... and loadable


@pytest.mark.parametrize("argv", [
    "weights convert {run} --model mobilenet_v1_025 --out {tmp}/w.safetensors",
    "data split {classes} --force --out {classes}/split.csv",
    "evaluate {run} --out {tmp}/eval",
])
def test_writes_under_a_file_size_limit_leave_nothing(world, argv, capsys):
    root, names = world
    before = snapshot(root)
    with file_size_limit(64):
        rc, err = run_cli([a.format(**names) for a in shlex.split(argv)], capsys)
    assert_refused(rc, err, "cannot write")
    after = snapshot(root)
    assert {k: v for k, v in after.items() if not (root / k).is_dir()} == \
        {k: v for k, v in before.items() if not (root / k).is_dir()}


def test_atomic_write_removes_the_temporary_file_on_any_failure(tmp_path):
    from cnnzoo.errors import CnnzooError
    from cnnzoo.fileio import atomic_write, write_text

    target = tmp_path / "out.json"
    write_text(target, "old")

    def full_disk(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    def torch_save_on_a_full_disk(f):  # torch.save raises RuntimeError("... unexpected pos ...") from the OSError
        try:
            full_disk(f)
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 11394304 vs 11394192")

    for writer in (full_disk, torch_save_on_a_full_disk):
        with pytest.raises(CnnzooError, match="cannot write .*out.json: No space left on device"):
            atomic_write(target, writer)
    with pytest.raises(ValueError):
        atomic_write(target, lambda f: f.write(b"x"), verify=lambda p: (_ for _ in ()).throw(ValueError("bad")))
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == 0o666 & ~mask  # not tempfile's 0600


def test_a_checkpoint_on_a_full_disk_is_one_line_and_the_last_one_stays(tmp_path, monkeypatch):
    from cnnzoo.errors import CnnzooError
    from cnnzoo.train import checkpoint

    checkpoint.save_checkpoint({"epoch": 1}, tmp_path, best=True)

    def full_disk_save(obj, f):
        try:
            raise OSError(28, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk_save)
    with pytest.raises(CnnzooError, match="cannot write .*last.pt: No space left on device"):
        checkpoint.save_checkpoint({"epoch": 2}, tmp_path, best=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    assert checkpoint.read_checkpoint(tmp_path / "last.pt")["epoch"] == 1
