"""`torchrun --nproc-per-node 2 -m cnnzoo train`: two gloo processes against one, same global batch.

Whatever the number of processes, the data order and each sample's augmentation are the same, and
the two processes' batches of 16 together are the one process's batch of 32; DDP averages the two
gradients, which is the gradient of the mean loss over the 32. So:

- without batch norm the runs agree up to the order of floating-point sums (all-reduce): we allow a
  relative difference of 1e-5 (measured: ~5e-7);
- with batch norm each process normalises its 16 images with their own mean and variance instead of
  the 32 images' (and rank 0's running statistics are the ones kept), which perturbs every gradient.
  We allow a difference of 25% of the distance the weights travelled from their initialisation
  (measured: ~9% after 16 steps).

The test networks are defined in a launcher script, so they never enter this process's registry.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

from cnnzoo.deploy.serve import free_port
from cnnzoo.train import read_checkpoint, read_metrics

LAUNCHER = textwrap.dedent('''
    import sys
    from torch import nn
    from cnnzoo.models import Card, ZooModel, register_model
    from cnnzoo.models.base import classifier

    CARD = Card(name="", family="TinyNet", paper="a test network", authors="", year=2026, venue="", url="")

    class TinyNet(ZooModel):
        def __init__(self, num_classes=10, in_chans=3, bn=False):
            super().__init__()
            norm = nn.BatchNorm2d if bn else (lambda c: nn.Identity())
            self.features = nn.Sequential(nn.Conv2d(in_chans, 16, 3, 2, 1), norm(16), nn.ReLU(),
                                          nn.Conv2d(16, 32, 3, 2, 1), norm(32), nn.ReLU())
            self.num_features, self.num_classes = 32, num_classes
            self.fc = classifier(32, num_classes)

        def forward_features(self, x):
            return self.features(x)

        def forward_head(self, x, pre_logits=False):
            x = x.mean((2, 3))
            return x if pre_logits else self.fc(x)

    @register_model(CARD)
    def tinynet(**kw):
        return TinyNet(**kw)

    @register_model(CARD)
    def tinynet_bn(**kw):
        return TinyNet(bn=True, **kw)

    if __name__ == "__main__":
        if sys.argv[1] == "--dump-init":  # the weights `cnnzoo train --seed 0` starts from
            import torch
            from cnnzoo import create_model

            torch.manual_seed(0)
            torch.save(create_model(sys.argv[2], num_classes=10, in_chans=1).state_dict(), sys.argv[3])
            sys.exit(0)
        from cnnzoo.cli import main

        sys.exit(main())
''')
ARGS = ["--data", "synthetic:n=320,size=32,chans=1", "--epochs", "2", "--batch-size", "32", "--threads", "1",
        "--progress", "false", "--precision", "fp32"]


def _run(*cmd: str) -> None:
    env = {**os.environ, "CNNZOO_DIST_TIMEOUT_MIN": "3", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _flat(state_dict: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for k, v in state_dict.items() if v.is_floating_point() and "running" not in k])


def test_two_gloo_processes_match_one_process(tmp_path):
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    py = sys.executable
    for model in ("tinynet", "tinynet_bn"):
        _run(py, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-addr",
             "127.0.0.1", "--master-port", str(free_port()), str(launcher), "train", "--model", model, *ARGS,
             "--out", str(tmp_path / f"{model}-ddp"))
        _run(py, str(launcher), "train", "--model", model, *ARGS, "--out", str(tmp_path / f"{model}-one"))
        _run(py, str(launcher), "--dump-init", model, str(tmp_path / f"{model}-init.pt"))

    # Only rank 0 wrote: the same files as one process, one header line, 16 steps of 2 x 16 images.
    names = lambda run: sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert names(tmp_path / "tinynet-ddp") == names(tmp_path / "tinynet-one")
    log = (tmp_path / "tinynet-ddp" / "log.txt").read_text()
    assert log.count("tinynet (0.01 M parameters)") == 1 and "2 process(es)" in log
    assert [r["step"] for r in read_metrics(tmp_path / "tinynet-ddp")] == [8, 16]

    gaps = {}
    for model in ("tinynet", "tinynet_bn"):
        ddp, one = (_flat(read_checkpoint(tmp_path / f"{model}-{n}", "last")["state_dict"]) for n in ("ddp", "one"))
        init = _flat(torch.load(tmp_path / f"{model}-init.pt", weights_only=True))
        gaps[model] = (float((ddp - one).abs().max() / one.abs().max()), float((ddp - one).norm() / (one - init).norm()))
    assert gaps["tinynet"][0] < 1e-5, gaps  # no batch norm: the same run, up to summation order
    assert gaps["tinynet_bn"][1] < 0.25, gaps  # per-process batch statistics: a small perturbation
    assert gaps["tinynet_bn"][1] > 1e-3, gaps  # ... that is really there (else the test would test nothing)
