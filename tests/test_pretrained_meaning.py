"""What published weights mean: the preprocessing a set records is the one that makes cnnzoo's network compute
what the publisher's computed, and docs/weights.md is the current table."""
from __future__ import annotations


import torch
import torchvision

from cnnzoo import create_model
from cnnzoo.pretrained import tables



def test_googlenet_weights_record_the_caffe_normalisation(tmp_path):
    """torchvision's googlenet re-normalises inside the model (transform_input); cnnzoo's does not, so the recorded
    mean/std must turn an image into what torchvision's network sees after its own step."""
    torch.manual_seed(0)
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False, transform_input=True).eval()
    torch.save(tv.state_dict(), tmp_path / "googlenet.pth")
    ours = create_model("googlenet", pretrained=str(tmp_path / "googlenet.pth")).eval()
    p = tables.default("googlenet")
    image = torch.rand(2, 3, 64, 64)

    def norm(mean, std):
        return (image - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)

    with torch.no_grad():
        want = tv(norm(tables.MEAN, tables.STD))
        got = ours(norm(p.mean, p.std))
    # random weights give small logits: compare relative to their scale (ImageNet's mean/std are off by ~1e-4 of it)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))
    assert tables.default("resnet18").mean == tables.MEAN  # the others keep torchvision's own


def test_whole_weights_skip_the_random_initialisation(tmp_path, monkeypatch):
    """Weights that fill the model are assigned to a model built on the meta device: no random initialisation runs
    (it would cost as much as reading the file), and the model computes the file's logits and trains."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet18().eval()
    torch.save({k: v for k, v in tv.state_dict().items() if "num_batches" not in k}, tmp_path / "r18.pth")

    def no_init(tensor, *args, **kwargs):
        assert tensor.is_meta, "a random initialisation ran on real memory"
        return tensor

    with monkeypatch.context() as m:
        m.setattr(torch.nn.init, "kaiming_normal_", no_init)
        m.setattr(torch.nn.init, "kaiming_uniform_", no_init)
        model = create_model("resnet18", pretrained=str(tmp_path / "r18.pth"), log=lambda line: None).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), rtol=0, atol=0)
    assert int(model.bn1.num_batches_tracked) == 0 and all(p.requires_grad for p in model.parameters())
    model.train()(x).sum().backward()
    assert model.conv1.weight.grad is not None
    head = create_model("resnet18", num_classes=3, pretrained=str(tmp_path / "r18.pth"), log=lambda line: None)
    assert not any(t.is_meta for t in head.state_dict().values())  # a new head: built and initialised as usual
