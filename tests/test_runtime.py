import pytest
import torch

from selfsup import SelfSupError
from selfsup.params import ComputeParams
from selfsup.runtime import Compute, Normalize, predict


def test_compute_auto_on_cpu_and_impossible_choices_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    auto = Compute.resolve(ComputeParams())
    assert auto.device.type == "cpu" and auto.dtype in (None, torch.bfloat16)
    assert Compute.resolve(ComputeParams(precision="fp32")).dtype is None
    with pytest.raises(SelfSupError, match=r"compute.device is 'cuda' but this machine has no cuda"):
        Compute.resolve(ComputeParams(device="cuda"))
    with pytest.raises(SelfSupError, match=r"fp16 needs a CUDA device"):
        Compute.resolve(ComputeParams(device="cpu", precision="fp16"))


def test_normalize_standardises_uint8_images_channel_by_channel():
    norm = Normalize([0.5, 0.25], [0.5, 0.25], torch.device("cpu"))
    images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).repeat(1, 2, 1, 1)
    x = norm(norm.unit(images))
    torch.testing.assert_close(x[:, 0].flatten(), torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(x[:, 1].flatten(), torch.tensor([-1.0, 3.0]))


def test_predict_batches_give_what_one_batch_gives_and_dicts_are_concatenated():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    norm = Normalize([0.5], [0.2], torch.device("cpu"))
    torch.testing.assert_close(predict(net, images, norm, 3), predict(net, images, norm, 10))

    class Two(torch.nn.Module):
        def both(self, x):
            return {"sum": x.sum((1, 2, 3)), "max": x.amax((1, 2, 3))}

    out = predict(Two(), images, norm, 4, method="both")
    assert set(out) == {"sum", "max"} and out["sum"].shape == (10,)
