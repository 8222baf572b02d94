"""Gradient checks: a model's analytic (autograd) gradient against numerical finite differences.

For a coordinate theta_i and a step h (default 1e-5, as in the CS231n notes on gradient checks),

    forward difference  (L(theta + h e_i) - L(theta)) / h             error O(h)
    centred difference  (L(theta + h e_i) - L(theta - h e_i)) / 2h    error O(h^2): the one to trust

and the relative error |a - n| / max(|a|, |n|) (CS231n's measure; 0 when both are 0) is
reported, per parameter tensor, as its maximum over the coordinates checked.

Tiny components. The finite difference carries the rounding error of L, about
1e-16 |L| / h ~ 1e-11 in float64, whatever the gradient's size; for a component of 1e-7
(they occur: gradients pass through zero) that alone is a relative error of 1e-4, with
nothing wrong. So the denominator is floored at ``floor`` times the tensor's largest
gradient component (default 1 %): a component far smaller than its tensor's gradient is
judged on the tensor's scale, every other one on its own. Large models
are checked on a random subset of coordinates per tensor. The check runs in float64 by
default: in float32 the rounding error of L, ~1e-7 L, divided by h = 1e-5 swamps the
comparison (try ``dtype=torch.float32`` to see it).

Kinks. ReLU units and the SVM hinge are not differentiable at 0. When theta +- h puts some
unit (or margin) on the other side of its kink than theta does, the finite difference
measures a mix of two slopes and disagrees with the (correct) one-sided analytic
gradient. Every evaluation records which side of its kinks every ReLU, clamp, hinge,
max and max-pooling of the forward pass and the loss is on
(:class:`~evoprop.lab.kinks.KinkRecorder`); a coordinate whose differences crossed a kink
is counted in ``kinks`` and left out of the maximum, as CS231n advises.

:func:`run_gradcheck` is the whole check of ``evoprop gradcheck`` on a problem, in a
:class:`GradCheckRun` that prints itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from evoprop.errors import ConfigError
from evoprop.lab.kinks import KinkRecorder, same_side
from evoprop.lab.linear import ANALYTIC_GRADIENTS, linear_layer, weights_of
from evoprop.lab.losses import Loss, LossSettings, get_loss, l2_penalty
from evoprop.lab.problem import Problem
from evoprop.lab.settings import lab_setting

METHODS = ("centred", "forward")
DEFAULT_H = 1e-5
# Relative errors of a correct gradient in float64 with centred differences and h = 1e-5
# are ~1e-6 or below on evoprop's models (10 layers included); a wrong gradient gives
# ~1e-2 or more. CS231n: "1e-7 and less you should be happy"; above 1e-4 is suspicious.
DEFAULT_THRESHOLD = 1e-5
# Denominator floor, as a fraction of the tensor's largest analytic gradient component.
DEFAULT_FLOOR = 1e-2

#: Gradient function: (model, x, y) -> {parameter name: gradient} for the loss being checked.
GradientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


@dataclass
class TensorCheck:
    """The comparison for one parameter tensor."""

    name: str
    shape: tuple[int, ...]
    checked: int  # coordinates compared (kinked ones excluded)
    kinks: int  # coordinates whose differences crossed a kink
    max_rel_centred: float
    max_rel_forward: float
    worst: int | None  # flat index of the coordinate with the largest error of the chosen method
    max_abs_gradient: float  # the tensor's largest analytic component (all coordinates)

    def error(self, method: str) -> float:
        return self.max_rel_centred if method == "centred" else self.max_rel_forward


@dataclass
class GradCheck:
    """Every tensor's result and the verdict: passed when each tensor's maximum is within threshold."""

    tensors: list[TensorCheck]
    method: str
    threshold: float
    h: float
    dtype: torch.dtype
    examples: int
    loss: float
    notes: list[str] = field(default_factory=list)

    @property
    def max_error(self) -> float:
        return max((t.error(self.method) for t in self.tensors if t.checked), default=float("nan"))

    def tensor_passed(self, t: TensorCheck) -> bool:
        """Within the threshold; a tensor none of whose coordinates could be compared (all at kinks) is not failed."""
        return t.checked == 0 or t.error(self.method) <= self.threshold

    @property
    def unchecked(self) -> list[str]:
        """Tensors whose every drawn coordinate crossed a kink (try fewer examples or a smaller h)."""
        return [t.name for t in self.tensors if t.checked == 0]

    @property
    def passed(self) -> bool:
        """Every compared tensor within the threshold, and at least one coordinate compared."""
        return any(t.checked for t in self.tensors) and all(self.tensor_passed(t) for t in self.tensors)


def relative_error(analytic: torch.Tensor, numerical: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """|a - n| / max(|a|, |n|, floor), elementwise (0 where a and n are both 0)."""
    denom = torch.maximum(analytic.abs(), numerical.abs()).clamp_min(floor)
    return torch.where(denom > 0, (analytic - numerical).abs() / denom.clamp_min(torch.finfo(denom.dtype).tiny),
                       torch.zeros_like(denom))


def autograd_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, reg: float) -> dict[str, torch.Tensor]:
    """The gradient of loss(model(x), y) + reg ||theta||^2 by backpropagation, per parameter name."""
    params = dict(model.named_parameters())
    for p in params.values():
        p.grad = None
    value = loss(model(x), y)
    if reg:
        value = value + l2_penalty(params.values(), reg)
    value.backward()
    grads = {name: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for name, p in params.items()}
    for p in params.values():
        p.grad = None
    return grads


def check_gradients(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str | Loss = "softmax",
    reg: float = 0.0,
    *,
    h: float = DEFAULT_H,
    coords: int | None = 10,
    threshold: float = DEFAULT_THRESHOLD,
    method: str = "centred",
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    gradient: GradientFn | None = None,
    floor: float = DEFAULT_FLOOR,
) -> GradCheck:
    """Compare ``gradient`` (default: autograd) of loss(model(x), y) + reg ||theta||^2 with finite differences.

    ``coords`` coordinates per tensor are drawn at random (``seed``); None or 0 checks every
    coordinate. ``floor`` is the denominator's floor as a fraction of each tensor's largest
    gradient component (see the module's notes). The model is copied and cast to ``dtype``;
    the original is untouched.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown difference method '{method}'; valid: {', '.join(METHODS)}")
    if not h > 0:
        raise ConfigError(f"the step h must be positive, got {h}")
    if not threshold > 0:
        raise ConfigError(f"the threshold must be positive, got {threshold}")
    if not 0 <= floor < 1:
        raise ConfigError(f"the floor is a fraction of the largest gradient component in [0, 1), got {floor}")
    if coords is not None and coords < 0:
        raise ConfigError(f"coords must be a positive number of coordinates per tensor (0: all), got {coords}")
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    model = copy.deepcopy(model).to(dtype)
    model.eval()
    x = x.to(dtype)
    named = dict(model.named_parameters())

    def evaluate() -> tuple[float, list[torch.Tensor]]:
        with KinkRecorder() as recorder, torch.no_grad():
            value = loss_fn(model(x), y)
            if reg:
                value = value + l2_penalty(named.values(), reg)
        return float(value), recorder.patterns

    analytic = gradient(model, x, y) if gradient is not None else autograd_gradients(model, x, y, loss_fn, reg)
    missing = set(named) - set(analytic)
    if missing:
        raise ConfigError(f"the gradient function gave no gradient for {', '.join(sorted(missing))}")
    f0, pattern0 = evaluate()
    generator = torch.Generator().manual_seed(seed)
    results = []
    with torch.no_grad():
        for name, p in named.items():
            flat = p.view(-1)
            n = flat.numel()
            chosen = torch.randperm(n, generator=generator)[: coords] if coords else torch.arange(n)
            a_all = analytic[name].reshape(-1).to(dtype)
            centred, forward, ana, kinks, kept = [], [], [], 0, []
            for i in chosen.tolist():
                old = flat[i].item()
                flat[i] = old + h
                f_plus, pattern_plus = evaluate()
                flat[i] = old - h
                f_minus, pattern_minus = evaluate()
                flat[i] = old
                if not (same_side(pattern_plus, pattern0) and same_side(pattern_minus, pattern0)):
                    kinks += 1
                    continue
                centred.append((f_plus - f_minus) / (2 * h))
                forward.append((f_plus - f0) / h)
                ana.append(float(a_all[i]))
                kept.append(i)
            scale = float(a_all.abs().max()) if n else 0.0
            results.append(_tensor_result(name, tuple(p.shape), kept, kinks, ana, centred, forward, method,
                                          floor * scale, scale))
    return GradCheck(results, method, float(threshold), float(h), dtype, len(y), f0)


def _tensor_result(name, shape, kept, kinks, ana, centred, forward, method, floor, scale) -> TensorCheck:
    if not kept:
        return TensorCheck(name, shape, 0, kinks, float("nan"), float("nan"), None, scale)
    a = torch.tensor(ana, dtype=torch.float64)
    rel_c = relative_error(a, torch.tensor(centred, dtype=torch.float64), floor)
    rel_f = relative_error(a, torch.tensor(forward, dtype=torch.float64), floor)
    worst = int(torch.argmax(rel_c if method == "centred" else rel_f))
    return TensorCheck(name, shape, len(kept), kinks, float(rel_c.max()), float(rel_f.max()), kept[worst], scale)


# -- the check of ``evoprop gradcheck`` -------------------------------------------------
GRADIENTS = ("autograd", "analytic")
#: The precisions a check runs in (float32 shows why it is not used).
DTYPES = ("float64", "float32")


@dataclass
class GradCheckSettings(LossSettings):
    """What :func:`run_gradcheck` checks (the options of ``evoprop gradcheck``)."""

    examples: int = lab_setting(32, "Training examples the loss is taken over (few: fewer kinks, faster).",
                                check="positive")
    coords: int = lab_setting(20, "Coordinates checked per parameter tensor, drawn at random (0: all of them).",
                              check="non-negative")
    h: float = lab_setting(DEFAULT_H, "Finite-difference step.")
    method: str = lab_setting(
        "centred", "Difference that decides pass/fail (both are reported): centred (L(w+h)-L(w-h))/2h, error "
                   "O(h^2), or forward (L(w+h)-L(w))/h, error O(h).", choices=METHODS)
    threshold: float = lab_setting(DEFAULT_THRESHOLD, "Pass when every tensor's maximum relative error is at most X.")
    floor: float = lab_setting(
        DEFAULT_FLOOR, "Relative errors of components smaller than X times their tensor's largest are measured on "
                       "that scale (their finite differences are mostly rounding).")
    dtype: str = lab_setting(
        "float64", "Precision of the check (float32 shows why it is not used: rounding swamps h = 1e-5).",
        choices=DTYPES)
    gradient: str = lab_setting(
        "autograd", "Gradient under test: autograd (backpropagation), or analytic (the hand-derived SVM/softmax "
                    "gradient of a linear classifier, --depth 1).", choices=GRADIENTS)
    seed: int = lab_setting(0, "Seed of the coordinates drawn.", flag="--check-seed", check="seed")


@dataclass
class GradCheckRun:
    """A check with what it was run on."""

    description: str  # the model and data
    settings: GradCheckSettings
    check: GradCheck

    @property
    def passed(self) -> bool:
        return self.check.passed

    def summary(self) -> str:
        """What ``evoprop gradcheck`` prints: the setting, a row per tensor and the verdict."""
        s, check = self.settings, self.check
        lines = [f"{self.description}\n{s.gradient} gradient of the {s.loss} loss{f' + {s.reg:g} L2' if s.reg else ''} "
                 f"on {check.examples} training examples (loss {check.loss:.6g}), {s.dtype}, h = {s.h:g}"]
        width = max(len(t.name) for t in check.tensors)
        lines.append(f"{'tensor':<{width}}  {'shape':>12}  {'checked':>7}  {'kinks':>5}  {'centred':>9}  "
                     f"{'forward':>9}  {'|grad| max':>10}")
        for t in check.tensors:
            verdict = "not checked (kinks)" if not t.checked else "ok" if check.tensor_passed(t) else "FAIL"
            shape = "x".join(str(n) for n in t.shape)
            lines.append(f"{t.name:<{width}}  {shape:>12}  {t.checked:>7}  {t.kinks:>5}  {t.max_rel_centred:>9.2e}  "
                         f"{t.max_rel_forward:>9.2e}  {t.max_abs_gradient:>10.3e}  {verdict}")
        lines.append(f"{'PASS' if check.passed else 'FAIL'}: largest {s.method} relative error {check.max_error:.2e} "
                     f"(threshold {s.threshold:g}) over {sum(t.checked for t in check.tensors)} coordinates, "
                     f"{sum(t.kinks for t in check.tensors)} left out at kinks")
        if check.unchecked:
            lines.append(f"not checked: {', '.join(check.unchecked)}: every coordinate drawn crossed a kink between "
                         "w - h and w + h; try fewer --examples or a smaller --h")
        return "\n".join(lines)


def run_gradcheck(problem: Problem, settings: GradCheckSettings) -> GradCheckRun:
    """Check ``problem``'s model's gradient (autograd, or the hand-derived one of a linear classifier)."""
    s = settings
    if s.gradient not in GRADIENTS:
        raise ConfigError(f"unknown gradient '{s.gradient}'; valid: {', '.join(GRADIENTS)}")
    x, y = problem.tensors("train", s.examples)
    gradient_fn = analytic_gradient(problem.model, s.loss, s.reg) if s.gradient == "analytic" else None
    check = check_gradients(problem.model, x, y, s.loss, s.reg, h=s.h, coords=s.coords, threshold=s.threshold,
                            method=s.method, dtype=getattr(torch, s.dtype), seed=s.seed, gradient=gradient_fn,
                            floor=s.floor)
    return GradCheckRun(problem.description, s, check)


def analytic_gradient(model: nn.Module, loss: str, reg: float) -> GradientFn:
    """The hand-derived gradient of a linear classifier, as check_gradients' gradient function."""
    try:
        linear_layer(model)
    except ConfigError:
        raise ConfigError("--gradient analytic is the linear classifier's hand-derived gradient: use --depth 1") from None
    analytic = ANALYTIC_GRADIENTS[loss]

    def gradient(m, xs, ys):
        _, dW = analytic(weights_of(m), xs, ys, reg)
        return {"layers.0.weight": dW[:, :-1], "layers.0.bias": dW[:, -1]}

    return gradient
