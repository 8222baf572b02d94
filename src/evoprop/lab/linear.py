"""Linear classifiers with the bias trick: scores = W [x; 1], W of shape (C, D + 1).

For CIFAR-10 RGB, W is 10 x 3073: each row a class template over the 3,072 pixels, its
last column the class's bias. evoprop's depth-1 MLP is exactly this classifier (one
``nn.Linear``); :func:`weights_of` and :func:`set_weights` move between its (weight,
bias) and the single bias-trick matrix.

The losses and gradients here are derived by hand, as the CS231n notes derive them, and
are checked against numerical and autograd gradients in the tests. The column of ones
is never materialised (for CIFAR-10's 50,000 training images it would be a 615 MB copy):
``[x; 1] W^T`` is computed as ``x W[:, :D]^T + W[:, D]``, and the gradient's last column
is the sum over examples that the ones would have produced.
"""

from __future__ import annotations

import torch
from torch import nn

from evoprop.errors import ConfigError
from evoprop.lab.losses import SVM_DELTA
from evoprop.models import MLP, build_mlp


def linear_classifier(input_shape: tuple[int, ...], num_classes: int = 10) -> MLP:
    """The linear classifier for inputs of ``input_shape``: evoprop's depth-1 MLP (W is C x (D + 1))."""
    return build_mlp(input_shape, num_classes, depth=1)


def linear_layer(model: nn.Module) -> nn.Linear:
    """The single ``nn.Linear`` of a linear classifier (a depth-1 evoprop MLP)."""
    if not isinstance(model, MLP) or model.depth != 1 or model.layers[0].bias is None:
        raise ConfigError("a linear classifier here is a depth-1 evoprop MLP (one nn.Linear with a bias)")
    return model.layers[0]


def weights_of(model: nn.Module) -> torch.Tensor:
    """The bias-trick matrix W = [weight | bias] (C, D + 1) of a linear classifier (a copy)."""
    layer = linear_layer(model)
    return torch.cat([layer.weight.detach(), layer.bias.detach().unsqueeze(1)], dim=1)


@torch.no_grad()
def set_weights(model: nn.Module, W: torch.Tensor) -> None:
    """Write the bias-trick matrix W (C, D + 1) into a linear classifier's weight and bias."""
    layer = linear_layer(model)
    if W.shape != (layer.out_features, layer.in_features + 1):
        raise ConfigError(f"W must be {layer.out_features} x {layer.in_features + 1}, got {tuple(W.shape)}")
    layer.weight.copy_(W[:, :-1])
    layer.bias.copy_(W[:, -1])


def scores(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(N, C) class scores [x; 1] W^T for inputs x (N, ...) flattened to D features."""
    x = x.flatten(1)
    return torch.addmm(W[:, -1], x, W[:, :-1].T)


def _backward(coef: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """dL/dW = coef^T [x; 1] for dL/dscores = coef (N, C): the ones column gives the column sums."""
    x = x.flatten(1)
    return torch.cat([coef.T @ x, coef.sum(0).unsqueeze(1)], dim=1)


def svm_loss_grad(
    W: torch.Tensor, x: torch.Tensor, y: torch.Tensor, reg: float = 0.0, delta: float = SVM_DELTA
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multiclass SVM loss and its analytic gradient.

    L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_iy_i + delta) + reg * sum W^2.
    Per example, each class j != y_i whose margin is positive adds x_i to row j of the
    gradient, and row y_i gets -x_i once per such class: the coefficient of x_i is the
    indicator for j != y_i and minus the count of positive margins for j = y_i.
    """
    n = len(y)
    s = scores(W, x)
    rows = torch.arange(n, device=y.device)
    margins = (s - s[rows, y].unsqueeze(1) + delta).clamp_min(0)
    margins[rows, y] = 0
    positive = (margins > 0).to(W.dtype)
    positive[rows, y] = -positive.sum(1)
    loss = margins.sum() / n + reg * (W * W).sum()
    return loss, _backward(positive / n, x) + 2 * reg * W


def softmax_loss_grad(
    W: torch.Tensor, x: torch.Tensor, y: torch.Tensor, reg: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax cross-entropy loss and its analytic gradient.

    L = 1/N sum_i -log(e^{s_iy_i} / sum_j e^{s_ij}) + reg * sum W^2, and
    dL_i/ds_ij = p_ij - [j = y_i] with p the softmax probabilities (scores shifted by
    their row maximum first, for numerical stability: the shift cancels in p).
    """
    n = len(y)
    s = scores(W, x)
    s = s - s.max(dim=1, keepdim=True).values
    log_p = s - torch.logsumexp(s, dim=1, keepdim=True)
    rows = torch.arange(n, device=y.device)
    loss = -log_p[rows, y].sum() / n + reg * (W * W).sum()
    coef = log_p.exp()
    coef[rows, y] -= 1
    return loss, _backward(coef / n, x) + 2 * reg * W


ANALYTIC_GRADIENTS = {"svm": svm_loss_grad, "softmax": softmax_loss_grad}

