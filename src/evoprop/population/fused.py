"""A linear layer and its activation in one pass, where the backend can fuse them.

A population pass runs each shared layer as one (rows, width) GEMM followed by an
activation. Done apart, the bias and the activation are two more trips through memory
over every activation of the population: on a 2-core CPU they cost as much as the GEMM's
arithmetic leaves room for. oneDNN's linear applies bias and activation to each output tile
while it is still in cache; PyTorch exposes it as ``torch.ops.mkldnn._linear_pointwise``, the
op its own compiler (Inductor) emits for ``Linear`` + activation on CPU. It is private, so
it is probed once and everything falls back to ``addmm`` + the activation in place when it
is missing, on other devices, or for an activation it does not fuse.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

# module type -> (oneDNN post-op name, its scalars, its algorithm) for a module instance
_POST_OPS: dict[type[nn.Module], Callable[[nn.Module], tuple[str, list, str]]] = {
    nn.ReLU: lambda m: ("relu", [], ""),
    nn.Tanh: lambda m: ("tanh", [], ""),
    nn.Sigmoid: lambda m: ("sigmoid", [], ""),
    nn.GELU: lambda m: ("gelu", [], m.approximate),
    nn.LeakyReLU: lambda m: ("leaky_relu", [m.negative_slope], ""),
}


@functools.cache
def fusion_available(dtype: torch.dtype = torch.float32) -> bool:
    """Whether this PyTorch build and CPU run oneDNN's fused linear in ``dtype``.

    x86 and ARM CPU builds have the op; bfloat16 needs a CPU that oneDNN can run it on
    (AVX512-BF16 / AMX here: on an AVX2-only CPU it raises "could not create a primitive
    descriptor"), so each dtype is probed on its own.
    """
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return False
        x, w, b = torch.ones(2, 3, dtype=dtype), torch.ones(4, 3, dtype=dtype), torch.zeros(4, dtype=dtype)
        return bool(torch.equal(op(x, w, b, "relu", [], "").float(), torch.full((2, 4), 3.0)))
    except (AttributeError, RuntimeError):
        return False


def post_op(activation: nn.Module, device: torch.device, dtype: torch.dtype):
    """The fused post-op for ``activation`` on ``device``, or None where only the fallback applies."""
    make = _POST_OPS.get(type(activation))
    if make is None or device.type != "cpu" or dtype not in (torch.float32, torch.bfloat16):
        return None
    return make(activation) if fusion_available(dtype) else None


def linear_activation(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: nn.Module, fused=None
) -> torch.Tensor:
    """``activation(h @ weight.T + bias)``, fused when ``fused`` (from :func:`post_op`) is given.

    The unfused path applies ``activation`` to a fresh tensor, so an in-place activation is safe.
    """
    if fused is not None:
        return torch.ops.mkldnn._linear_pointwise(h, weight, bias, *fused)
    out = torch.addmm(bias, h, weight.T) if bias is not None else h @ weight.T
    return activation(out)
