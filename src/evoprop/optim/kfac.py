"""The natural gradient (Amari 1998) in its practical form: K-FAC (Martens & Grosse 2015).

The natural gradient preconditions the gradient by the inverse Fisher information
matrix F. For a network of 10⁵–10⁶ weights F cannot even be stored, so K-FAC keeps,
for every ``nn.Linear`` layer s = W a + b, two small matrices whose Kronecker product
approximates that layer's block of F:

    A = E[ā āᵀ]   (ā = [a, 1]: the layer input with a homogeneous coordinate for the bias)
    G = E[g gᵀ]   (g = ∂ℓ/∂s: the gradient of one example's loss w.r.t. the layer output)

    F_layer ≈ A ⊗ G,  so  F_layer⁻¹ vec(∇W̄) ≈ vec(G⁻¹ ∇W̄ A⁻¹)   with W̄ = [W, b].

Choices made here (each is an option):

* **Fisher** — ``fisher="true"`` (default): g comes from labels *sampled from the model's
  own predictive distribution* softmax(logits), which is what makes E[g gᵀ] the Fisher. The
  optimizer remembers the model's last input with gradients enabled — the training batch; a
  forward pre-hook — and, on a factor-update step, runs one extra forward pass and one backward pass of
  Σ CE(logits, ŷ), ŷ ~ softmax(logits), inside ``step()``; the trainer's own gradients are
  untouched. ``fisher="empirical"`` uses the trainer's own backward pass (the true labels)
  instead: cheaper, but not the Fisher of the model (Kunstner et al. 2019), and it assumes
  the loss is the *mean* over the batch rows, as ``F.cross_entropy`` gives by default.
  The true Fisher assumes the model returns logits of a categorical distribution (classes on
  the last dimension), as every evoprop model does.
* **Running averages** — A and G are exponential moving averages with decay ``stat_decay``,
  started as plain means: the k-th update uses weight min(stat_decay, 1 − 1/k) on the old
  value, so no arbitrary initial value lingers (``stat_decay=1`` averages all batches equally).
  They are refreshed every ``factor_every`` steps.
* **Damping** (Tikhonov, λ = ``damping``) and **inverses**, refreshed every ``inverse_every``
  steps and reused in between, in the parameters' dtype (where rounding leaves a factor too
  indefinite for its Cholesky factorization — a tiny λ, and MNIST's always-black border pixels —
  it is inverted through its eigenvalues clamped at zero, in float64):

  - ``damping_mode="factored"`` (default; Martens & Grosse 2015, §6.3): invert
    (A + π√λ I) ⊗ (G + √λ/π I) by two Cholesky inverses, where π² = (tr A / dim A) /
    (tr G / dim G) splits λ between the factors in proportion to their mean eigenvalues.
    This approximates (A ⊗ G + λ I)⁻¹ with cross terms √λ(π I ⊗ G + A ⊗ I/π) added, so the
    same λ damps more strongly than exact damping. Per step: two matrix products per layer.
  - ``damping_mode="exact"``: eigendecompose A = U_A diag(α) U_Aᵀ and G = U_G diag(γ) U_Gᵀ and
    apply (A ⊗ G + λ I)⁻¹ exactly: d = U_G [(U_Gᵀ ∇W̄ U_A) / (γ αᵀ + λ)] U_Aᵀ. Per step: four
    matrix products per layer, and an eigendecomposition costs more than a Cholesky inverse.
* **Step** — d = G⁻¹ ∇W̄ A⁻¹ per layer; optional KL clipping (Ba et al. 2017) scales every
  d by ν = min(1, √(kl_clip / Σ lr² ⟨d, ∇W̄⟩)) so that the step's predicted change of the
  model's output distribution stays small; then heavy-ball momentum (torch.optim.SGD's form:
  buf ← m·buf + ν d) and w ← w − lr·buf.

Defaults (tuned on MNIST 10 × 200, batch 64, 3 epochs; see BENCHMARKS.md): lr 5e-4, momentum
0.9, λ 0.01, factors every 10 steps (the extra true-Fisher pass then costs a tenth of a step),
inverses every 20. ``kl_clip=1e-3`` is a safety net that never triggered at that lr. A tight
clip makes ``lr`` irrelevant: at lr 0.01, clips of 3e-5 to 3e-4 scaled every step (ν ≈ 0.08)
and reached test F1 0.954–0.967 in 3 epochs, against 0.969 for lr 5e-4 unclipped.

Parameters it cannot precondition — anything that is not the weight or bias of an
``nn.Linear`` in ``model`` (convolutions, norms, embeddings, free tensors) — get plain SGD
with the group's lr and momentum, and are not part of the KL clipping. An lr that suits the
natural gradient is small for SGD: put such parameters in a param group of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from evoprop.errors import TrainingDiverged
from evoprop.optim.registry import register_optimizer

FISHERS = ("true", "empirical")
DAMPING_MODES = ("factored", "exact")


@dataclass
class _Capture:
    """What the hooks of one preconditioned layer collected for the next factor update."""

    inputs: list[torch.Tensor] = field(default_factory=list)
    output_grads: list[torch.Tensor] = field(default_factory=list)

    def clear(self) -> None:
        self.inputs.clear()
        self.output_grads.clear()


@dataclass(eq=False)  # compared and hashed by identity: used as a dict key
class _Layer:
    """A preconditioned ``nn.Linear``: its module, its parameters in the optimizer, its captures."""

    name: str
    module: nn.Linear
    weight: torch.nn.Parameter
    bias: torch.nn.Parameter | None  # None: no bias, or a bias this optimizer does not train
    capture: _Capture = field(default_factory=_Capture)


class KFAC(torch.optim.Optimizer):
    """K-FAC natural-gradient descent for the ``nn.Linear`` layers of ``model``; plain SGD for the rest.

    Args:
        params: parameters to optimize (or param groups), normally ``model.parameters()``.
        model: the module whose forward pass produces the logits; its ``nn.Linear`` layers whose
            weight is in ``params`` are preconditioned.
        lr: learning rate (per group).
        momentum: heavy-ball momentum (per group); 0 disables it.
        damping: Tikhonov damping λ (per group).
        damping_mode: ``"factored"`` (λ split between A and G, Cholesky inverses) or ``"exact"``
            ((A ⊗ G + λI)⁻¹ through eigendecompositions).
        stat_decay: decay of the running averages of A and G, in (0, 1].
        factor_every: update A and G every this many steps.
        inverse_every: recompute the damped inverses every this many steps.
        kl_clip: bound on the step's predicted KL change (Ba et al. 2017); None disables clipping.
        fisher: ``"true"`` (labels sampled from the model) or ``"empirical"`` (the training labels).
        seed: seed of the generator that samples the labels of the true Fisher; None (default):
            drawn from torch's global generator, so ``torch.manual_seed`` (a run's ``--seed``) sets it.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict],
        model: nn.Module,
        lr: float = 5e-4,
        momentum: float = 0.9,
        damping: float = 0.01,
        damping_mode: str = "factored",
        stat_decay: float = 0.95,
        factor_every: int = 10,
        inverse_every: int = 20,
        kl_clip: float | None = 1e-3,
        fisher: str = "true",
        seed: int | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        _check(lr, "lr", lambda v: v >= 0, ">= 0")
        _check(momentum, "momentum", lambda v: 0 <= v < 1, "in [0, 1)")
        _check(damping, "damping", lambda v: v > 0, "> 0")
        _check(stat_decay, "stat_decay", lambda v: 0 < v <= 1, "in (0, 1]")
        for name, value in (("factor_every", factor_every), ("inverse_every", inverse_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if kl_clip is not None:
            _check(kl_clip, "kl_clip", lambda v: v > 0, "> 0 (or null to disable)")
        if damping_mode not in DAMPING_MODES:
            raise ValueError(f"damping_mode must be one of {', '.join(DAMPING_MODES)}, got {damping_mode!r}")
        if fisher not in FISHERS:
            raise ValueError(f"fisher must be one of {', '.join(FISHERS)}, got {fisher!r}")
        if seed is None:
            seed = int(torch.randint(2**62, ()))
        elif isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, damping=damping))
        self.model = model
        self.damping_mode = damping_mode
        self.stat_decay = stat_decay
        self.factor_every = factor_every
        self.inverse_every = inverse_every
        self.kl_clip = kl_clip
        self.fisher = fisher
        self.seed = seed
        self._layers = self._find_layers(model)
        self._last_input: tuple[tuple, dict] | None = None
        self._fisher_pass = False  # True while step() runs its own forward/backward
        self._generator: torch.Generator | None = None
        self._hooks = [model.register_forward_pre_hook(self._remember_input, with_kwargs=True)]
        self._hooks += [layer.module.register_forward_hook(self._capture_hook(layer)) for layer in self._layers]

    # ----------------------------------------------------------------------------- layers and hooks

    def _find_layers(self, model: nn.Module) -> list[_Layer]:
        trained = {p for group in self.param_groups for p in group["params"]}
        group_index = {p: i for i, group in enumerate(self.param_groups) for p in group["params"]}
        layers = []
        for name, module in model.named_modules():
            if not isinstance(module, nn.Linear) or module.weight not in trained:
                continue
            bias = module.bias if module.bias is not None and module.bias in trained else None
            if bias is not None and group_index[bias] != group_index[module.weight]:
                raise ValueError(f"the weight and bias of layer '{name}' must be in the same param group")
            layers.append(_Layer(name, module, module.weight, bias))
        return layers

    @property
    def preconditioned(self) -> list[str]:
        """Names (in ``model``) of the ``nn.Linear`` layers this optimizer preconditions."""
        return [layer.name for layer in self._layers]

    def remove_hooks(self) -> None:
        """Detach the optimizer from the model (it can no longer update its factors)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def _remember_input(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        # only passes that build a graph: evaluation and population passes (no_grad) keep the batch
        if not self._fisher_pass and torch.is_grad_enabled():
            self._last_input = (args, kwargs)

    def _capturing(self, module: nn.Module) -> bool:
        if self._fisher_pass:
            return True
        # empirical Fisher: the trainer's own pass, when the coming step() updates the factors
        return (self.fisher == "empirical" and torch.is_grad_enabled()
                and self._step_count_so_far() % self.factor_every == 0)

    def _capture_hook(self, layer: _Layer) -> Callable:
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if not self._capturing(module) or not output.requires_grad:
                return
            layer.capture.inputs.append(args[0].detach())
            # a tensor hook receives ∂loss/∂output even if the output is later changed in place
            output.register_hook(lambda grad: layer.capture.output_grads.append(grad.detach()))

        return hook

    # ----------------------------------------------------------------------------- global state

    def _global_state(self) -> dict:
        # like torch.optim.LBFGS: optimizer-wide state lives with the first parameter, so that
        # state_dict() / load_state_dict() carry it
        return self.state[self.param_groups[0]["params"][0]]

    def _step_count_so_far(self) -> int:
        return int(self._global_state().get("kfac_step", 0))

    def _sampling_generator(self, device: torch.device) -> torch.Generator:
        state = self._global_state()
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            if "kfac_rng" in state:
                self._generator.set_state(torch.frombuffer(bytearray(state["kfac_rng"]), dtype=torch.uint8))
            else:
                self._generator.manual_seed(self.seed)
        return self._generator

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._generator = None  # re-created from the loaded "kfac_rng" at the next factor update
        for layer in self._layers:
            layer.capture.clear()

    # ----------------------------------------------------------------------------- the step

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One natural-gradient step from the gradients in ``.grad`` (``closure``: recompute them)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # looked up at every step: load_state_dict() replaces the group dicts, and schedules edit them
        self._group_of = {p: group for group in self.param_groups for p in group["params"]}
        state = self._global_state()
        step = self._step_count_so_far()
        if step % self.factor_every == 0:
            if self.fisher == "true":
                self._true_fisher_pass()
            self._update_factors()
        if step % self.inverse_every == 0:
            self._refresh_inverses()
        state["kfac_step"] = step + 1

        directions = self._natural_directions()
        scale = self._kl_scale(directions)
        done = set()
        for layer, (d_weight, d_bias) in directions.items():
            group = self._group_of[layer.weight]
            self._apply(layer.weight, d_weight if scale == 1.0 else d_weight.mul_(scale), group)
            done.add(layer.weight)
            if layer.bias is not None:
                self._apply(layer.bias, d_bias if scale == 1.0 else d_bias.mul_(scale), group)
                done.add(layer.bias)
        for group in self.param_groups:  # the fallback: plain SGD
            for p in group["params"]:
                if p not in done and p.grad is not None:
                    self._apply(p, p.grad.clone(), group)
        return loss

    def _true_fisher_pass(self) -> None:
        """Forward the last training batch again and backpropagate labels sampled from the model."""
        if self._last_input is None:
            raise RuntimeError("K-FAC (fisher='true') found no training forward pass of the model before step()")
        args, kwargs = self._last_input
        self._fisher_pass = True
        try:
            for layer in self._layers:
                layer.capture.clear()
            with torch.enable_grad():
                logits = self.model(*args, **kwargs)
                flat = logits.reshape(-1, logits.shape[-1])
                probs = torch.softmax(flat.detach().double(), dim=-1)
                if not torch.isfinite(probs).all():  # multinomial would fail with a less helpful message
                    raise TrainingDiverged("K-FAC: the model's outputs are not finite; lower the learning rate")
                sampled = torch.multinomial(probs, 1, generator=self._sampling_generator(flat.device)).squeeze(1)
                # summed, not averaged: each row's g is then the per-example gradient the Fisher is made of
                loss = F.cross_entropy(flat, sampled, reduction="sum")
                # gradients w.r.t. the weights run the whole backward pass (so every output hook
                # fires) without touching the .grad the trainer computed
                weights = [layer.weight for layer in self._layers if layer.weight.requires_grad]
                if weights and loss.requires_grad:
                    torch.autograd.grad(loss, weights, allow_unused=True)
        finally:
            self._fisher_pass = False
            self._last_input = None
        # kept as bytes: load_state_dict() casts every tensor in a parameter's state to its dtype
        self._global_state()["kfac_rng"] = bytes(self._generator.get_state().numpy())

    def _update_factors(self) -> None:
        for layer in self._layers:
            cap = layer.capture
            if not cap.inputs or len(cap.output_grads) != len(cap.inputs):
                cap.clear()
                continue  # the layer took no part in this pass (or no gradient reached it)
            a = torch.cat([x.reshape(-1, x.shape[-1]) for x in cap.inputs])
            # output grads arrive in reverse order of the forward calls
            g = torch.cat([x.reshape(-1, x.shape[-1]) for x in reversed(cap.output_grads)])
            cap.clear()
            rows = a.shape[0]
            if layer.bias is not None:
                a = torch.cat([a, a.new_ones(rows, 1)], dim=1)
            if self.fisher == "empirical":
                g = g * rows  # the batch-mean loss scaled each row's gradient by 1/rows
            state = self.state[layer.weight]
            count = state.get("factor_updates", 0) + 1
            keep = min(self.stat_decay, 1.0 - 1.0 / count)
            for key, x in (("A", a), ("G", g)):
                new = x.T @ x / rows
                state[key] = new if key not in state else state[key].mul_(keep).add_(new, alpha=1.0 - keep)
            state["factor_updates"] = count

    def _refresh_inverses(self) -> None:
        for layer in self._layers:
            state = self.state[layer.weight]
            if "A" not in state:
                continue
            a, g = state["A"], state["G"]
            damping = self._group_of[layer.weight]["damping"]
            if not (torch.isfinite(a).all() and torch.isfinite(g).all()):
                raise TrainingDiverged(
                    f"K-FAC: the curvature factors of layer '{layer.name}' are not finite; lower the learning rate"
                )
            if self.damping_mode == "exact":
                # eigenvalues of a PSD matrix, clamped: rounding can make the smallest slightly negative
                for key, m in (("A", a), ("G", g)):
                    values, vectors = torch.linalg.eigh(m)
                    state[f"{key}_eigvals"], state[f"{key}_eigvecs"] = values.clamp_(min=0), vectors
                continue
            mean_a, mean_g = float(a.trace()) / a.shape[0], float(g.trace()) / g.shape[0]
            pi = math.sqrt(mean_a / mean_g) if mean_a > 0 and mean_g > 0 else 1.0
            root = math.sqrt(damping)
            state["A_inv"] = _spd_inverse(a, pi * root)
            state["G_inv"] = _spd_inverse(g, root / pi)

    def _natural_directions(self) -> dict[_Layer, tuple[torch.Tensor, torch.Tensor | None]]:
        """G⁻¹ ∇W̄ A⁻¹ for every layer with a gradient and inverses, split back into (weight, bias)."""
        out = {}
        for layer in self._layers:
            state = self.state[layer.weight]
            ready = "A_eigvecs" if self.damping_mode == "exact" else "A_inv"
            if layer.weight.grad is None or ready not in state:
                continue
            grad = layer.weight.grad
            if layer.bias is not None:
                bias_grad = layer.bias.grad if layer.bias.grad is not None else torch.zeros_like(layer.bias)
                grad = torch.cat([grad, bias_grad.unsqueeze(1)], dim=1)
            if self.damping_mode == "exact":
                u_a, u_g = state["A_eigvecs"], state["G_eigvecs"]
                damping = self._group_of[layer.weight]["damping"]
                scaled = (u_g.T @ grad @ u_a).div_(torch.outer(state["G_eigvals"], state["A_eigvals"]).add_(damping))
                d = u_g @ scaled @ u_a.T
            else:
                d = state["G_inv"] @ grad @ state["A_inv"]
            out[layer] = (d[:, : layer.weight.shape[1]], d[:, -1] if layer.bias is not None else None)
        return out

    def _kl_scale(self, directions: dict) -> float:
        if self.kl_clip is None or not directions:
            return 1.0
        predicted = sum(
            self._group_of[layer.weight]["lr"] ** 2
            * ((d_w * layer.weight.grad).sum() + (0 if d_b is None or layer.bias.grad is None
                                                   else (d_b * layer.bias.grad).sum()))
            for layer, (d_w, d_b) in directions.items()
        )
        predicted = float(predicted)  # lr² dᵀ F d = lr² ⟨d, ∇⟩ for d = F⁻¹∇: the step's KL to 2nd order
        return min(1.0, math.sqrt(self.kl_clip / predicted)) if predicted > 0 else 1.0

    def _apply(self, p: torch.Tensor, direction: torch.Tensor, group: dict) -> None:
        if group["momentum"]:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = buf = direction.clone()
            else:
                buf.mul_(group["momentum"]).add_(direction)
            direction = buf
        p.add_(direction, alpha=-group["lr"])


def _spd_inverse(matrix: torch.Tensor, damping: float) -> torch.Tensor:
    """(matrix + damping·I)⁻¹ for a symmetric positive semi-definite ``matrix``, by Cholesky in its own dtype."""
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
    factor, info = torch.linalg.cholesky_ex(matrix + damping * eye)
    if info.item() == 0:
        return torch.cholesky_inverse(factor)  # 785 x 785 float32 on the 2-core CPU: 3 + 6 ms
    # rounding left the factor slightly indefinite and the damping is too small to cover it:
    # invert through its eigenvalues, clamped at zero, in float64
    values, vectors = torch.linalg.eigh(matrix.double())
    return ((vectors / (values.clamp(min=0) + damping)) @ vectors.T).to(matrix.dtype)


def _check(value: Any, name: str, ok: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{name} must be a number {expected}, got {value!r}")


def _register() -> None:
    register_optimizer(
        "natural",
        KFAC,
        {"lr": 5e-4, "momentum": 0.9, "damping": 0.01, "stat_decay": 0.95, "factor_every": 10,
         "inverse_every": 20, "kl_clip": 1e-3, "fisher": "true", "damping_mode": "factored"},
        "natural gradient by K-FAC (Martens & Grosse 2015) on nn.Linear layers, plain SGD elsewhere",
        needs_model=True,
    )


_register()
