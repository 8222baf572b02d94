"""Models: the MLP family of the paper, with layers addressable by index."""

from evoprop.models.init import INITS, init_weights
from evoprop.models.mlp import ACTIVATIONS, MLP, build_mlp

__all__ = ["ACTIVATIONS", "INITS", "MLP", "build_mlp", "init_weights"]
