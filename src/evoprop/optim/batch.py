"""The mini-batch loss as a function of a flat parameter vector: what second-order optimizers differentiate.

torch.optim's first-order optimizers read ``.grad``; Newton's method and Hessian-free
optimization need the loss itself, evaluated at trial weights and differentiated twice.
``BatchLoss`` is the closure they are stepped with:

    opt.step(BatchLoss(model, x, y))

It is a valid torch.optim closure for any optimizer (calling it zeroes the gradients,
runs forward and backward and returns the loss), and it also exposes the batch as pure
functions of θ, the optimizer's parameters flattened in order (``torch.func``'s
``functional_call``): ``loss(θ, rows)`` and ``logits(θ, rows)``, ``rows`` a slice of the batch
(the curvature mini-batch of Martens 2010 §4.3, or of subsampled Newton, Byrd et al. 2011).
The loss is ``loss_fn(model(x), y)``: by default the mean cross-entropy of the logits, every
evoprop trainer's loss (Hessian-free's Gauss–Newton matrix assumes it; Newton takes any loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call


@dataclass
class BatchLoss:
    """``loss_fn(model(inputs), targets)`` (mean cross-entropy): a closure and a function of θ."""

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy

    def __call__(self) -> torch.Tensor:
        """torch.optim's closure: zero the gradients, forward, backward; returns the loss."""
        self.model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = self.loss_fn(self.model(self.inputs), self.targets)
            loss.backward()
        return loss.detach()

    def __len__(self) -> int:
        return len(self.targets)

    def logits(self, flat: "FlatParams", theta: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """The model's output (logits) at θ on the first ``rows`` examples (all when None)."""
        x = self.inputs if rows is None else self.inputs[:rows]
        return functional_call(self.model, flat.unflatten(theta), (x,))

    def loss(self, flat: "FlatParams", theta: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """The loss at θ on the first ``rows`` examples (all when None)."""
        y = self.targets if rows is None else self.targets[:rows]
        return self.loss_fn(self.logits(flat, theta, rows), y)


class FlatParams:
    """An optimizer's parameters as one vector θ: their names in the model, flatten and unflatten."""

    def __init__(self, params: list[torch.nn.Parameter], model: nn.Module):
        names = {id(p): name for name, p in model.named_parameters()}
        missing = [tuple(p.shape) for p in params if id(p) not in names]
        if missing:
            raise ValueError(f"every optimized parameter must belong to the model; not found: shapes {missing}")
        self.params = params
        self.names = [names[id(p)] for p in params]
        self.shapes = [p.shape for p in params]
        self.sizes = [p.numel() for p in params]
        self.dim = sum(self.sizes)

    def vector(self) -> torch.Tensor:
        """θ: a detached copy of the current parameters, flattened."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, torch.split(theta, self.sizes), self.shapes)}

    @torch.no_grad()
    def write(self, theta: torch.Tensor) -> None:
        """Put θ into the parameters, in place."""
        for p, t in zip(self.params, torch.split(theta, self.sizes)):
            p.copy_(t.view_as(p))

    @torch.no_grad()
    def write_grad(self, grad: torch.Tensor) -> None:
        """Put a flat gradient into the parameters' ``.grad`` (as after backward)."""
        for p, t in zip(self.params, torch.split(grad, self.sizes)):
            p.grad = t.view_as(p).clone()


def single_group(optimizer: torch.optim.Optimizer, name: str) -> dict:
    """The only param group of ``optimizer``; these methods treat all parameters as one vector."""
    if len(optimizer.param_groups) != 1:
        raise ValueError(f"{name} optimizes all its parameters as one vector: give it one param group, "
                         f"got {len(optimizer.param_groups)}")
    return optimizer.param_groups[0]


def require_batch_loss(closure, name: str) -> BatchLoss:
    if not isinstance(closure, BatchLoss):
        raise TypeError(f"{name} needs the mini-batch: call step(evoprop.optim.BatchLoss(model, x, y)), "
                        f"got {type(closure).__name__}")
    return closure
