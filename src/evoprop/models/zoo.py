"""The model zoo: a model by name, built for a data set's input shape and number of classes."""

from __future__ import annotations

from torch import nn

from evoprop.errors import ConfigError
from evoprop.models.mlp import build_mlp
from evoprop.models.resnet import build_resnet18

#: name -> one-line description. The evolution strategies search an MLP's layers by index, so
#: methods hybrid and es need the MLP; the ResNet is trained by gradient alone.
MODELS = {
    "mlp": "the paper's MLP: depth weight layers, width units per hidden layer (--depth, --width)",
    "resnet18": "ResNet-18 with a CIFAR-style stem, resnet_width channels in its first stage (--resnet-width)",
}


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, *, depth: int = 1, width: int = 200,
                activation: str = "relu", init: str = "glorot", resnet_width: int = 64) -> nn.Module:
    """Model ``name`` for inputs of ``input_shape``; seed torch before calling for a reproducible init."""
    if name == "mlp":
        return build_mlp(input_shape, num_classes, depth, width, activation, init)
    if name == "resnet18":
        return build_resnet18(input_shape, num_classes, resnet_width)
    raise ConfigError(f"unknown model '{name}'; valid: {', '.join(MODELS)}")


def check_model_settings(config) -> None:
    """The model group's rule across settings (called by ``TrainConfig.validate``)."""
    if config.model != "mlp" and config.method != "gradient":
        raise ConfigError(f"method {config.method} searches MLP layers by index; model {config.model} trains with "
                          "--method gradient only")


def model_tag(name: str, depth: int, resnet_width: int = 64) -> str:
    """A short name of the network, for run-directory names and report labels: "d10" (an MLP of
    10 weight layers), "resnet18", or "resnet18-w16" for a narrower ResNet-18."""
    if name == "mlp":
        return f"d{depth}"
    return name if name != "resnet18" or resnet_width == 64 else f"{name}-w{resnet_width}"
