import pytest
import torch

from pneumolib.models import networks as models
from pneumolib.models.networks import WeightsUnavailable, build_model


@pytest.mark.parametrize("channels", [1, 3])
def test_random_init_model_takes_its_channels_and_has_two_outputs(channels):
    m = build_model("resnet18", in_channels=channels).eval()
    assert m(torch.zeros(2, channels, 64, 64)).shape == (2, 2)


def test_pretrained_weights_missing_names_the_file_and_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv(models.WEIGHTS_ENV, raising=False)
    with pytest.raises(WeightsUnavailable) as e:
        build_model("resnet18", pretrained=True)
    msg = str(e.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in msg
    assert "download" in msg and models.WEIGHTS_ENV in msg and "\n" not in msg


@pytest.fixture
def fake_imagenet_file(tmp_path):
    # a stand-in for the ImageNet file: a torchvision resnet18 state dict with known conv1 weights
    ref = build_model("resnet18", in_channels=3)
    ref.fc = torch.nn.Linear(512, 1000)
    state = ref.state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path, state


def test_pretrained_weights_load_from_explicit_file(fake_imagenet_file):
    path, state = fake_imagenet_file
    m = build_model("resnet18", in_channels=3, pretrained=True, weights_path=path)
    assert torch.equal(m.conv1.weight, state["conv1.weight"])
    assert torch.equal(m.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    assert m.fc.out_features == 2


def test_pretrained_weights_load_from_torch_cache(fake_imagenet_file, monkeypatch):
    path, state = fake_imagenet_file
    hub = path.parent / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    path.rename(hub / "checkpoints" / path.name)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.delenv(models.WEIGHTS_ENV, raising=False)
    m = build_model("resnet18", in_channels=3, pretrained=True)
    assert torch.equal(m.bn1.weight, state["bn1.weight"])


def test_one_channel_conv1_is_the_sum_of_rgb_filters(fake_imagenet_file):
    path, state = fake_imagenet_file
    m1 = build_model("resnet18", in_channels=1, pretrained=True, weights_path=path).eval()
    m3 = build_model("resnet18", in_channels=3, pretrained=True, weights_path=path).eval()
    assert torch.allclose(m1.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    grey = torch.rand(1, 1, 64, 64)
    m1.fc = m3.fc
    assert torch.allclose(m1(grey), m3(grey.expand(1, 3, 64, 64)), atol=1e-5)


def test_unknown_model_and_channel_counts_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg_nope")
    with pytest.raises(ValueError, match="in_channels"):
        build_model("resnet18", in_channels=2)


def test_flip_tta_averages_the_image_and_its_mirror():
    from pneumolib.models.inference import predict_proba

    def p_pneumonia(model, x, tta=False):
        return torch.from_numpy(predict_proba(model, x, tta=tta))

    torch.manual_seed(0)
    model = build_model(in_channels=1).eval()
    x = torch.rand(3, 1, 64, 64)
    plain = p_pneumonia(model, x)
    mirrored = p_pneumonia(model, torch.flip(x, dims=[3]))
    assert torch.allclose(p_pneumonia(model, x, tta=True), (plain + mirrored) / 2, atol=1e-6)
    assert not torch.allclose(plain, mirrored, atol=1e-4)  # so the average is not the plain score by accident
    sym = torch.cat([x[..., :32], torch.flip(x[..., :32], dims=[3])], dim=3)  # a left-right symmetric image
    assert torch.allclose(p_pneumonia(model, sym, tta=True), p_pneumonia(model, sym), atol=1e-5)
