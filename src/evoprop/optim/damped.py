"""What Newton's method and Hessian-free share: a damped second-order step on one mini-batch.

Each step takes the gradient g of the batch loss, a direction d from the damped model
q(s) = gᵀs + ½ sᵀ(C + λI)s (C: the Hessian for ``newton``, the Gauss–Newton matrix for
``hessian-free``), backtracks along it until Armijo's sufficient decrease holds (Nocedal &
Wright 2006, §3.1), and adapts λ by the reduction ratio ρ = (f(θ + αd) − f(θ)) / (q(αd) − q(0))
of the undamped model: λ × boost when ρ < ¼, λ / boost when ρ > ¾ (Levenberg–Marquardt;
Nocedal & Wright §4.1, Martens 2010 §4.1). λ is optimizer state, so a resumed run goes on
with the λ it had reached.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.func import grad_and_value

from evoprop.errors import TrainingDiverged
from evoprop.optim.batch import BatchLoss, FlatParams, single_group

ARMIJO_C1 = 1e-4  # sufficient-decrease constant (Nocedal & Wright, §3.1)
BACKTRACK = 0.5  # α ← α / 2 per rejected trial
RHO_LOW, RHO_HIGH = 0.25, 0.75  # reduction-ratio thresholds for λ (Martens 2010, §4.1)


class DampedStep(torch.optim.Optimizer):
    """Base of :class:`~evoprop.optim.newton.Newton` and :class:`~evoprop.optim.hessian_free.HessianFree`:
    the shared hyperparameters (their defaults and checks), the flat view of the model's parameters,
    the gradient, and the line search with the λ rule. ``name`` is the optimizer's registry name (in messages).

    Args (every subclass takes these keywords, after its own):
        params: the parameters to optimize, one param group (normally ``model.parameters()``).
        model: the module they belong to (the loss is evaluated at trial weights through it).
        lr: γ, the first step length the line search tries (1: the full step).
        damping: the initial Levenberg–Marquardt λ.
        boost: the factor λ is multiplied or divided by (Martens 2010: 3/2).
        min_damping: the floor of λ.
        max_backtracks: halvings of the step the line search tries before giving up on the step.

    A subclass's ``__init__(self, params, model, *, its own keywords, **shared)`` passes
    ``{**self.shared_defaults, **shared}`` on;
    its signature (what ``make_optimizer`` accepts, and the registry's defaults) is its own keywords
    after these (:meth:`defaults`)."""

    needs_batch = True  # the trainer steps it with a BatchLoss
    name = "damped"
    #: a subclass's own defaults for some of the shared keywords (its signature shows them)
    shared_defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable[torch.nn.Parameter] | Iterable[dict], model: nn.Module, *, lr: float = 1.0,
                 damping: float = 1.0, boost: float = 1.5, min_damping: float = 1e-6, max_backtracks: int = 10):
        positive(lr, "lr")
        positive(damping, "damping")
        positive(min_damping, "min_damping")
        if not (isinstance(boost, (int, float)) and not isinstance(boost, bool) and boost > 1):
            raise ValueError(f"boost must be a number > 1, got {boost!r}")
        count(max_backtracks, "max_backtracks", minimum=0)
        super().__init__(params, dict(lr=lr, damping=damping))
        single_group(self, self.name)
        self.model = model
        self.boost = float(boost)
        self.min_damping = float(min_damping)
        self.max_backtracks = max_backtracks
        self.flat = FlatParams(list(self.param_groups[0]["params"]), model)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__.__signature__ = _with_shared_keywords(cls.__init__, cls.shared_defaults)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Every hyperparameter with its default, the shared ones first (the registry's defaults)."""
        return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
                if p.kind is p.KEYWORD_ONLY}

    def _state(self) -> dict:
        # optimizer-wide state with the first parameter (like torch.optim.LBFGS): state_dict carries it
        return self.state[self.flat.params[0]]

    @property
    def damping(self) -> float:
        """The current Levenberg–Marquardt λ."""
        return float(self._state().get("lambda", self.param_groups[0]["damping"]))

    def _gradient(self, batch: BatchLoss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(θ, g, f(θ)) on the batch; g is also written to ``.grad``, as after backward()."""
        theta = self.flat.vector()
        with torch.enable_grad():
            g, f0 = grad_and_value(lambda t: batch.loss(self.flat, t))(theta)
        if not torch.isfinite(f0):
            raise TrainingDiverged(f"{self.name}: the loss is {float(f0)}; lower lr or raise damping")
        self.flat.write_grad(g)
        return theta, g, f0

    def _take_step(self, batch: BatchLoss, theta: torch.Tensor, g: torch.Tensor, f0: torch.Tensor,
                   direction: torch.Tensor, predicted: Callable[[float], float], lam: float) -> dict[str, Any]:
        """Backtrack along ``direction`` (Armijo), write the accepted point, adapt λ by ρ.

        ``predicted(α)`` is q(α·direction) − q(0) of the undamped model. Returns the step's record
        (``rho``, ``alpha``, ``loss_after``), also kept as ``state["last"]``."""
        state = self._state()
        f_theta = float(f0)
        slope = float(g @ direction)  # gᵀd < 0: d is a descent direction of the damped model
        alpha, accepted, f_new = self.param_groups[0]["lr"], False, f_theta
        for _ in range(self.max_backtracks + 1):
            f_new = float(batch.loss(self.flat, theta + alpha * direction))
            if math.isfinite(f_new) and f_new <= f_theta + ARMIJO_C1 * alpha * slope:
                accepted = True
                break
            alpha *= BACKTRACK
        if accepted:
            change = predicted(alpha)
            rho = (f_new - f_theta) / change if change < 0 else 0.0
            self.flat.write(theta + alpha * direction)
        else:
            rho = 0.0  # no step: the model is not to be trusted at this λ
        if rho < RHO_LOW:
            lam *= self.boost
        elif rho > RHO_HIGH:
            lam /= self.boost
        state["lambda"] = max(lam, self.min_damping)
        state["step"] = int(state.get("step", 0)) + 1
        state["last"] = {"rho": rho, "alpha": alpha if accepted else 0.0, "loss_after": f_new if accepted else f_theta}
        return state["last"]


def _with_shared_keywords(init: Callable, overrides: dict[str, Any]) -> inspect.Signature:
    """``init``'s signature with its ``**shared`` replaced by DampedStep's keywords (with the subclass's
    ``overrides`` of their defaults), placed before its own."""
    own = inspect.signature(init).parameters.values()
    shared = [p.replace(default=overrides.get(p.name, p.default))
              for p in inspect.signature(DampedStep.__init__).parameters.values() if p.kind is p.KEYWORD_ONLY]
    positional = [p for p in own if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = [p for p in own if p.kind is p.KEYWORD_ONLY]
    return inspect.signature(init).replace(parameters=positional + shared + keywords)


def positive(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")


def count(value: Any, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
