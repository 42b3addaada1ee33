"""Checks that a cnnzoo model computes what a reference model (torchvision's) computes, given its weights."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm non-trivial statistics and affine terms, so a swapped or missing norm shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)


def _tensors(out) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for t in out if t is not None]


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest absolute difference, relative to the largest magnitude in the reference."""
    return ((a - b).abs().max() / b.abs().max().clamp(min=1e-12)).item()


def assert_parity(
    ours: nn.Module,
    reference: nn.Module,
    input_size: Sequence[int] = (3, 64, 64),
    batch: int = 2,
    tol: float = 1e-5,
    train_outputs: Callable[[object], list[torch.Tensor]] | None = None,
    reference_train_outputs: Callable[[object], list[torch.Tensor]] | None = None,
) -> None:
    """Strict state_dict load, then eval logits within `tol` and train-mode gradients within `tol`.

    `train_outputs` / `reference_train_outputs` map a train-mode output to a list of tensors in the same
    order (GoogLeNet returns its auxiliary logits in a different order from torchvision's).
    """
    randomize_batchnorm(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(1))

    ours.eval(), reference.eval()
    with torch.no_grad():
        a, b = ours(x), reference(x)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert max_rel_diff(a, b) <= tol, f"eval logits differ by {max_rel_diff(a, b):.3g} (relative)"

    ours.train(), reference.train()
    torch.manual_seed(2)  # the same dropout masks, drawn in the same order
    outs_a = (train_outputs or _tensors)(ours(x))
    torch.manual_seed(2)
    outs_b = (reference_train_outputs or _tensors)(reference(x))
    assert len(outs_a) == len(outs_b)
    weights = [torch.randn(o.shape, generator=torch.Generator().manual_seed(3 + i)) for i, o in enumerate(outs_b)]
    sum((o * w).sum() for o, w in zip(outs_a, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_b, weights)).backward()
    ref_params = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        q = ref_params[name]
        if q.grad is None:
            assert p.grad is None or not p.grad.any(), f"{name}: gradient where the reference has none"
            continue
        assert p.grad is not None, f"{name}: no gradient"
        assert max_rel_diff(p.grad, q.grad) <= tol, f"{name}: gradients differ by {max_rel_diff(p.grad, q.grad):.3g}"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
