"""The ResNet-18 of the model zoo: shapes on 1- and 3-channel images, width, and a real training run."""

import pytest
import torch

from evoprop.config import TrainConfig
from evoprop.errors import ConfigError
from evoprop.models import build_model
from evoprop.runs import run_training


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 8, 8)])
def test_forward_gives_one_logit_per_class_on_gray_and_colour_images(shape):
    torch.manual_seed(0)
    model = build_model("resnet18", shape, 10, resnet_width=4)
    out = model(torch.rand(5, *shape))
    assert out.shape == (5, 10) and torch.isfinite(out).all()


def test_width_64_is_resnet18_and_width_scales_the_channels():
    full = build_model("resnet18", (3, 32, 32), 10, resnet_width=64)
    assert sum(p.numel() for p in full.parameters()) == 11_173_962  # ResNet-18 for CIFAR-10
    narrow = build_model("resnet18", (3, 32, 32), 10, resnet_width=16)
    assert narrow.fc.in_features == 128 and narrow.stem[0].out_channels == 16
    assert sum(len(stage) for stage in full.stages) == 8  # 4 stages of 2 basic blocks: 16 conv layers + stem + fc


def test_too_small_images_are_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        build_model("resnet18", (1, 4, 4), 10)


def test_a_resnet_trains_under_a_schedule_with_the_gradient_method(data_dir, tmp_path):
    cfg = TrainConfig(dataset="mnist", data_dir=str(data_dir), limit_train=128, limit_test=64, model="resnet18",
                      resnet_width=4, lr=0.05, batch_size=32, epochs=2, schedule="batch-growth", stage_epochs=1,
                      noise_sample=64, device="cpu")
    summary, run = run_training(cfg, out=tmp_path / "r", echo=lambda line: None)
    history = run.read_metrics()
    assert summary["model"] == "resnet18" and [h["batch_size"] for h in history] == [32, 64]
    assert all(h["noise_c"] > 0 and h["delta"] > 0 for h in history)
    assert "stem.0.weight" in run.load_checkpoint()["trainer"]["model"]
