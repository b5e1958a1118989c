import pytest
import torch
from torch import nn

from selfsup import SelfSupError
from selfsup.models import (FEATURE_DIM, TTA, CifarNet, Classifier, FastLRN, load_backbone_into, load_checkpoint,
                            save_checkpoint)
from selfsup.params import ModelParams


@pytest.mark.parametrize("norm", ["batch", "lrn", "none"])
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32), (3, 64)])
def test_backbone_returns_192_features(norm, channels, size):
    net = CifarNet(channels, size, norm=norm).eval()
    out = net(torch.randn(2, channels, size, size))
    assert out.shape == (2, FEATURE_DIM)
    assert (out >= 0).all()  # fc4 ends in a ReLU


def test_parameter_count_matches_tf_slim_cifarnet():
    # TF-slim CifarNet on 32×32×3 with LRN: conv1 5·5·3·64+64, conv2 5·5·64·64+64, fc3 8·8·64·384+384,
    # fc4 384·192+192 (logits excluded).
    expected = (5 * 5 * 3 * 64 + 64) + (5 * 5 * 64 * 64 + 64) + (8 * 8 * 64 * 384 + 384) + (384 * 192 + 192)
    assert sum(p.numel() for p in CifarNet(3, 32, norm="lrn").parameters()) == expected


def test_lrn_matches_tensorflows_formula():
    x = torch.rand(2, 64, 5, 5)
    lrn = CifarNet(1, 28, norm="lrn").conv[3]
    # tf.nn.lrn: x / (bias + alpha * sum_{|d'-d| <= 4} x_{d'}^2) ** beta, bias 1, alpha 0.001/9, beta 0.75
    sq = torch.nn.functional.pad(x.pow(2), (0, 0, 0, 0, 4, 4))
    window = torch.stack([sq[:, d : d + 9].sum(1) for d in range(64)], 1)
    expected = x / (1 + 0.001 / 9 * window) ** 0.75
    torch.testing.assert_close(lrn(x), expected)


def test_same_padding_keeps_spatial_size_before_pooling():
    net = CifarNet(1, 28, norm="none")
    assert net.conv[0](torch.zeros(1, 1, 28, 28)).shape[-2:] == (28, 28)


def test_size_not_divisible_by_four_is_rejected():
    with pytest.raises(ValueError, match="multiple of 4"):
        CifarNet(1, 30)


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    torch.manual_seed(0)
    net = CifarNet(1, 28)
    save_checkpoint(tmp_path / "b.pt", net, pretext="none", config={"model": {"norm": "batch"}})
    ckpt = load_checkpoint(tmp_path / "b.pt")
    assert ckpt["pretext"] == "none" and ckpt["config"] == {"model": {"norm": "batch"}}
    for key, value in net.state_dict().items():
        assert torch.equal(ckpt["state_dict"][key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["b.pt"]


def test_checkpoint_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"arch": "cifarnet", "state_dict": {}, "evil": nn.ReLU()}, tmp_path / "x.pt")
    with pytest.raises(SelfSupError, match="unreadable"):
        load_checkpoint(tmp_path / "x.pt")


def test_foreign_checkpoint_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "x.pt")
    with pytest.raises(SelfSupError, match="not a cifarnet checkpoint"):
        load_checkpoint(tmp_path / "x.pt")


def test_backbone_transfer_checks_missing_keys():
    torch.manual_seed(0)
    pretrained = CifarNet(1, 28)
    model = Classifier(CifarNet(1, 28), 10)
    load_backbone_into(model, pretrained.state_dict())
    for key, value in pretrained.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    with pytest.raises(SelfSupError, match=r"does not fit the classifier: missing \['backbone.conv.1.bias'"):
        load_backbone_into(model, CifarNet(1, 28, norm="lrn").state_dict())


def test_backbone_of_another_image_size_is_refused():
    model = Classifier(CifarNet(1, 28), 10)
    with pytest.raises(SelfSupError, match=r"does not fit the classifier \(.*fc3.weight"):
        load_backbone_into(model, CifarNet(1, 32).state_dict())


@pytest.mark.parametrize("size", [4, 5, 9])
def test_fast_lrn_equals_torch_local_response_norm(size):
    x = torch.randn(3, 64, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    ours, theirs = FastLRN(size, 0.001, 0.75, 1.0)(x), nn.LocalResponseNorm(size, 0.001, 0.75, 1.0)(x)
    torch.testing.assert_close(ours, theirs)
    grad_ours, = torch.autograd.grad(ours.square().sum(), x)
    grad_theirs, = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(grad_ours, grad_theirs)


def test_layer_features_are_flat_per_layer_and_end_in_the_backbone_output():
    net = CifarNet(3, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = net.layer_features(x)
    assert {k: v.shape[1] for k, v in feats.items()} == {"conv1": 64 * 8 * 8, "conv2": 64 * 8 * 8, "fc3": 384, "fc4": 192}
    torch.testing.assert_close(feats["fc4"], net(x))



@pytest.mark.parametrize("norm", ["batch", "lrn", "none"])
def test_a_head_on_a_convolution_sees_that_layers_probe_features_and_survives_a_checkpoint(norm, tmp_path):
    from selfsup.models import build_classifier, load_classifier

    torch.manual_seed(0)
    net = CifarNet(3, 32, norm=norm).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = net.layer_features(x)
    for layer in ("conv1", "conv2", "fc4"):
        torch.testing.assert_close(net.features_at(x, layer), feats[layer])
    data = {"channels": 3, "image_size": 32}
    model = build_classifier(ModelParams(norm=norm), data, 5, "conv2").eval()
    assert model.logits.in_features == 64 * 8 * 8 and model.unused() == [model.backbone.fc3, model.backbone.fc4]
    save_checkpoint(tmp_path / "m.pt", model, classes=list("abcde"), config={"model": {"norm": norm, "dropout": 0.5}},
                    data=data, layer=model.layer)
    again = load_classifier(load_checkpoint(tmp_path / "m.pt", "classifier")).eval()
    assert again.layer == "conv2"
    torch.testing.assert_close(again(x), model(x))
    with pytest.raises(ValueError, match="no features at 'fc3'; valid: conv1, conv2, fc4"):
        Classifier(net, 5, "fc3")


@pytest.mark.parametrize("autocast", [False, True])
def test_lrn_in_half_precision_matches_fp32_at_large_activations(autocast):
    """The window's sum of squares overflows fp16 above activations of about 85: computed in fp32 inside,
    the half-precision output is the fp32 one, rounded."""
    lrn = FastLRN(size=9, alpha=0.001, beta=0.75, k=1.0)
    x = torch.full((1, 64, 2, 2), 90.0)
    x[..., 1, 1] = 260.0
    expected = nn.LocalResponseNorm(9, 0.001, 0.75, 1.0)(x)
    if autocast:
        with torch.autocast("cpu", dtype=torch.float16):
            out = lrn(x.half())
    else:
        out = lrn(x.half())
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), expected, rtol=2e-3, atol=0)
    assert expected[0, 32, 0, 0].item() == pytest.approx(17.2, abs=0.1)  # the example: 90 -> 17.2


def test_flip_average_is_the_mean_of_both_mirror_images_and_blind_to_mirroring():
    torch.manual_seed(0)
    model = Classifier(CifarNet(1, 28), 10).eval()
    x = torch.randn(4, 1, 28, 28)
    averaged = TTA["flip"](model)
    with torch.no_grad():
        assert torch.allclose(averaged(x), (model(x) + model(x.flip(-1))) / 2)
        assert torch.allclose(averaged(x.flip(-1)), averaged(x), atol=1e-6)
        assert not torch.allclose(model(x.flip(-1)), model(x), atol=1e-3)  # the plain model is not
    assert TTA["none"](model) is model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_conv1_head_pools_as_the_adaptive_pool_did_forward_and_backward(dtype):
    """_half is avg_pool2d (deterministic on CUDA, unlike adaptive_avg_pool2d's backward) and gives the adaptive
    pool's numbers bit for bit, so no committed conv1 feature or probe moved."""
    import torch.nn.functional as F

    from selfsup.models import _half

    for size, channels_last in [(14, False), (16, True)]:  # Fashion-MNIST's first block, and DeepFashion's at 32 px
        x = torch.randn(5, 8, size, size, generator=torch.Generator().manual_seed(size)).to(dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        got, want = _half(ours), F.adaptive_avg_pool2d(theirs, size // 2).flatten(1)
        grad = torch.randn(got.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
        got.backward(grad)
        want.backward(grad)
        assert torch.equal(got, want) and torch.equal(ours.grad, theirs.grad)
