"""Record on which side of its kinks every non-differentiable operation of a forward pass is.

A kink is a point where a function's slope jumps: ReLU at 0, a clamp at its bounds, |x| at
0, max(a, b) where a = b, max pooling where the largest entry of a window changes. Two
evaluations of a network (at theta + h and theta - h, say) with the same recorded pattern
lie on the same linear piece of every such operation, so a finite difference between them
measures a true slope; a changed pattern means a kink lies between them.

:class:`KinkRecorder` sees the operations through PyTorch's ``TorchFunctionMode``, so it
catches them however they are called: as modules (``nn.ReLU``), as functions
(``F.relu(x)``, as evoprop's ResNet does), or as tensor methods (``x.clamp_min(0)``, as
the SVM loss does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def _arg(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _sides(x: torch.Tensor, *points) -> list[torch.Tensor]:
    """Which side of each kink point every element of x is on (points may be numbers or tensors)."""
    return [x > p for p in points if p is not None]


def _relu(args, kwargs):
    return _sides(args[0], 0.0)


def _hardtanh(args, kwargs):
    return _sides(args[0], _arg(args, kwargs, 1, "min_val", -1.0), _arg(args, kwargs, 2, "max_val", 1.0))


def _relu6(args, kwargs):
    return _sides(args[0], 0.0, 6.0)


def _clamp(args, kwargs):
    return _sides(args[0], _arg(args, kwargs, 1, "min"), _arg(args, kwargs, 2, "max"))


def _clamp_min(args, kwargs):
    return _sides(args[0], _arg(args, kwargs, 1, "min"))


def _clamp_max(args, kwargs):
    return _sides(args[0], _arg(args, kwargs, 1, "max"))


def _pair(args, kwargs):
    return [args[0] > args[1]]


def _max_pool(pool):
    def record(args, kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k != "return_indices"}
        return [pool(*args, **kwargs, return_indices=True)[1]]

    return record


# operation -> function of its (args, kwargs) giving the side patterns of its input
_KINKED = {
    F.relu: _relu, F.relu_: _relu, torch.relu: _relu, torch.relu_: _relu,
    torch.Tensor.relu: _relu, torch.Tensor.relu_: _relu,
    F.leaky_relu: _relu, F.leaky_relu_: _relu, F.prelu: _relu, F.rrelu: _relu,
    F.hardtanh: _hardtanh, F.hardtanh_: _hardtanh, F.relu6: _relu6,
    torch.clamp: _clamp, torch.clip: _clamp, torch.Tensor.clamp: _clamp, torch.Tensor.clip: _clamp,
    torch.clamp_min: _clamp_min, torch.Tensor.clamp_min: _clamp_min,
    torch.clamp_max: _clamp_max, torch.Tensor.clamp_max: _clamp_max,
    torch.abs: _relu, torch.Tensor.abs: _relu,
    torch.maximum: _pair, torch.minimum: _pair, torch.Tensor.maximum: _pair, torch.Tensor.minimum: _pair,
    F.max_pool1d: _max_pool(F.max_pool1d), F.max_pool2d: _max_pool(F.max_pool2d),
    F.max_pool3d: _max_pool(F.max_pool3d),
}


class KinkRecorder(TorchFunctionMode):
    """Inside ``with KinkRecorder() as rec:``, ``rec.patterns`` collects every kinked operation's side pattern."""

    def __init__(self):
        super().__init__()
        self.patterns: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        record = _KINKED.get(func)
        if record is not None and args and isinstance(args[0], torch.Tensor):
            # recorded before the call: an in-place operation (relu_) would overwrite its input
            with torch.no_grad():
                self.patterns.extend(p.detach().clone() for p in record(args, kwargs))
        return func(*args, **kwargs)


def same_side(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    """True when two recorded passes crossed no kink between them."""
    return len(a) == len(b) and all(u.shape == v.shape and torch.equal(u, v) for u, v in zip(a, b))
