"""ImageNet VGG16 weights: torchvision's weights API, local files, and the offline message."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from dmt_core import DMT, DMTConfig, create_model
from dmt_core.model.encoder import TORCHVISION_CONV_INDICES, VGG16Encoder
from dmt_core.weights import WEIGHTS

VGG16_FILENAME = WEIGHTS["vgg16-imagenet"].filename


@pytest.fixture(scope="module")
def vgg_features_sd():
    """A torchvision VGG16 state dict (``features.*`` only; random init, 59 MB)."""
    torch.manual_seed(0)
    feats = torchvision.models.vgg16().features
    return {f"features.{k}": v for k, v in feats.state_dict().items()}


def _assert_loaded(model: DMT, sd: dict) -> None:
    assert torch.equal(model.encoder.conv1_1.weight, sd["features.0.weight"])
    assert torch.equal(model.encoder.conv5_3.bias, sd["features.28.bias"])
    assert torch.equal(model.encoder.conv3_2.weight, sd["features.12.weight"])


def test_encoder_levels_match_torchvision_vgg16(vgg_features_sd):
    enc = VGG16Encoder()
    enc.load_torchvision_vgg16(vgg_features_sd)
    tv = torchvision.models.vgg16().features
    tv.load_state_dict({k[len("features.") :]: v for k, v in vgg_features_sd.items()})
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = enc(x)
        # conv5_3 + ReLU is features[:30]; conv4_3 + ReLU is features[:23]
        torch.testing.assert_close(feats["conv5_3"], tv[:30](x))
        torch.testing.assert_close(feats["conv4_3"], tv[:23](x))
    assert [f.shape[1] for f in feats.values()] == [64, 128, 256, 512, 512]
    assert len(TORCHVISION_CONV_INDICES) == 13


def test_pretrained_from_a_local_file(tmp_path, vgg_features_sd, monkeypatch):
    path = tmp_path / VGG16_FILENAME
    torch.save(vgg_features_sd, path)
    _assert_loaded(create_model(DMTConfig.paper(), pretrained=path), vgg_features_sd)
    monkeypatch.setenv("DMT_VGG16_WEIGHTS", str(path))
    _assert_loaded(create_model(DMTConfig.paper(), pretrained=True), vgg_features_sd)


def test_pretrained_true_uses_torchvision_cache(tmp_path, vgg_features_sd, monkeypatch):
    """The weights API finds the file in $TORCH_HOME/hub/checkpoints without downloading."""
    monkeypatch.delenv("DMT_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(vgg_features_sd, cache / VGG16_FILENAME)

    def no_network(*a, **k):
        raise AssertionError("must not download when the file is cached")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    _assert_loaded(create_model(DMTConfig.paper(), pretrained=True), vgg_features_sd)


def test_offline_pretrained_says_how_to_provide_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("DMT_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError) as e:
        create_model(DMTConfig.paper(), pretrained=True)
    msg = str(e.value)
    assert VGG16_FILENAME in msg and "DMT_VGG16_WEIGHTS" in msg
    assert str(tmp_path / "hub" / "checkpoints" / VGG16_FILENAME) in msg


def test_bad_local_weights_are_named(tmp_path, vgg_features_sd):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        create_model(DMTConfig.paper(), pretrained=tmp_path / "nothere.pth")
    bad = tmp_path / "partial.pth"
    torch.save({k: v for k, v in vgg_features_sd.items() if "28" not in k}, bad)
    with pytest.raises(ValueError, match="partial.pth: missing key 'features.28.weight'"):
        create_model(DMTConfig.paper(), pretrained=bad)
    with pytest.raises(ValueError, match=r"features.0.weight has shape \(64, 3, 3, 3\), expected"):
        create_model(DMTConfig.tiny(), pretrained=bad)


def test_vgg16_bn_variant_matches_torchvision_vgg16_bn(tmp_path, monkeypatch):
    """``encoder_bn``: BN after every conv; torchvision's vgg16_bn weights load into it."""
    torch.manual_seed(0)
    tv = torchvision.models.vgg16_bn().features.eval()
    for m in tv.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    sd = {f"features.{k}": v for k, v in tv.state_dict().items()}
    path = tmp_path / "vgg16_bn-6c64b313.pth"
    torch.save(sd, path)
    model = create_model(DMTConfig.paper(encoder_bn=True), pretrained=path).eval()
    assert torch.equal(model.encoder.bn5_3.running_var, sd["features.41.running_var"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        # conv5_3 + BN + ReLU is features[:43] of vgg16_bn
        torch.testing.assert_close(model.encoder(x)["conv5_3"], tv[:43](x))
    # conv5_3 and its BN train, the rest is frozen (the paper's "last")
    trainable = {n for n, p in model.encoder.named_parameters() if p.requires_grad}
    assert trainable == {"conv5_3.weight", "conv5_3.bias", "bn5_3.weight", "bn5_3.bias"}
    # the offline message names the BN file
    monkeypatch.delenv("DMT_VGG16_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(RuntimeError, match="vgg16_bn-6c64b313.pth"):
        create_model(DMTConfig.paper(encoder_bn=True), pretrained=True)
    with pytest.raises(ValueError, match="VGG16-BN state dict.*missing key 'features.41"):
        model.encoder.load_torchvision_vgg16({k: v for k, v in sd.items() if "41" not in k})


def test_frozen_batch_norms_keep_their_statistics():
    """With trainable="last", a training step leaves the frozen BNs untouched."""
    enc = VGG16Encoder((8, 8, 8, 8, 8), trainable="last", batch_norm=True).train()
    assert not enc.bn1_1.training and not enc.bn5_2.training and enc.bn5_3.training
    before = enc.bn1_1.running_mean.clone()
    enc(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert torch.equal(enc.bn1_1.running_mean, before)
    assert not torch.equal(enc.bn5_3.running_mean, torch.zeros(8))
    assert VGG16Encoder((8,) * 5, trainable="all", batch_norm=True).train().bn1_1.training
