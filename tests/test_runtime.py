import os

import pytest
import torch

from selfsup import SelfSupError
from selfsup.params import ComputeParams
from selfsup import runtime
from selfsup.runtime import Compute, Normalize, Runtime, predict, set_determinism


def test_compute_auto_on_cpu_and_impossible_choices_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for native, dtype in ((True, torch.bfloat16), (False, None)):  # bf16 only where the CPU has it natively
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
        auto = Compute.resolve(ComputeParams())
        assert auto.device.type == "cpu" and auto.dtype is dtype
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # a torch without the check: fp32
    assert Compute.resolve(ComputeParams()).dtype is None
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
    runtime = Runtime.plain({"mean": [0.5], "std": [0.2]})
    assert runtime.device == torch.device("cpu") and runtime.compute.dtype is None  # plain: fp32
    torch.testing.assert_close(predict(net, images, runtime, 3), predict(net, images, runtime, 10))

    class Two(torch.nn.Module):
        def both(self, x):
            return {"sum": x.sum((1, 2, 3)), "max": x.amax((1, 2, 3))}

    out = predict(Two(), images, runtime, 4, method="both")
    x = (images.float() / 255 - 0.5) / 0.2  # normalised as the runtime does; each batch's values in image order
    assert set(out) == {"sum", "max"}
    torch.testing.assert_close(out["sum"], x.sum((1, 2, 3)))
    torch.testing.assert_close(out["max"], x.amax((1, 2, 3)))



@pytest.fixture
def cuda_machine(monkeypatch):
    """A machine that says it has CUDA GPUs (monkeypatched), recording which GPU was asked its capability."""
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def capability(device=None):
        asked.append(device)
        return asked_capability[0]

    asked_capability = [(8, 0)]
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    return asked, asked_capability


def test_auto_precision_is_bf16_from_ampere_on_and_fp16_before(cuda_machine):
    asked, capability = cuda_machine
    assert Compute.resolve(ComputeParams()).dtype == torch.bfloat16
    capability[0] = (7, 5)  # a T4: bf16 only emulated, and slow; fp16 with a gradient scaler instead
    assert Compute.resolve(ComputeParams()).dtype == torch.float16
    gpu1 = torch.device("cuda", 1)
    assert Compute.resolve(ComputeParams(), gpu1).device == gpu1 and asked[-1] == gpu1  # this rank's GPU, not GPU 0


@pytest.mark.parametrize("version, allowed", [((2, 4), False), ((2, 5), False), ((2, 6), True)])
def test_mps_precision_by_torch_release(monkeypatch, version, allowed):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(runtime, "_torch_version", lambda: version)
    auto = Compute.resolve(ComputeParams())
    assert auto.device.type == "mps" and auto.dtype is None  # auto: fp32 on every release
    if allowed:
        assert Compute.resolve(ComputeParams(precision="bf16")).dtype == torch.bfloat16
    else:
        with pytest.raises(SelfSupError, match=r"bf16 on mps needs torch 2.6 or newer"):
            Compute.resolve(ComputeParams(precision="bf16"))


@pytest.fixture
def restore_backend_flags():
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved[2:6]
    if saved[6] is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def test_determinism_settings_on_cuda(restore_backend_flags, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    torch.use_deterministic_algorithms(False)
    set_determinism(torch.device("cpu"), True)  # the CPU is repeatable as it is: nothing changes
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    set_determinism(torch.device("cuda"), True)
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark and os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32  # fp32 is fp32
    set_determinism(torch.device("cuda"), False)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    assert not torch.backends.cudnn.allow_tf32
