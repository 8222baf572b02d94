"""Models: the MLP family of the paper, with layers addressable by index, and a ResNet-18 (``MODELS``)."""

from evoprop.models.init import INITS, init_weights
from evoprop.models.mlp import ACTIVATIONS, MLP, build_mlp
from evoprop.models.resnet import ResNet, build_resnet18
from evoprop.models.zoo import MODELS, build_model, model_tag

__all__ = ["ACTIVATIONS", "INITS", "MLP", "MODELS", "ResNet", "build_mlp", "build_model", "build_resnet18", "model_tag",
           "init_weights"]
