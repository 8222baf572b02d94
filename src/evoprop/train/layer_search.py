"""Evolutionary search over some of a model's parameters, as a drop-in for any training loop.

    search = LayerSearch(model, layers=[0], popsize=200)   # the first weight layer of an MLP
    for x, y in loader:
        search.step(x, y)          # one generation: sample, evaluate all at once, update, write the best
        ...                        # your usual gradient step, if any

Each ``step`` asks the strategy for P candidate vectors, evaluates all of them on the
mini-batch at once (:class:`~evoprop.population.PopulationEvaluator`), tells it the
losses, and writes a candidate into the model: the generation's best (the paper's
Algorithm 2, step 5) or the distribution's mean.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evoprop.device import parse_bytes
from evoprop.enums import SYNCED, resolve_combine
from evoprop.errors import ConfigError, TrainingDiverged
from evoprop.es import STRATEGIES, make_strategy
from evoprop.population import PopulationEvaluator, available_memory, es_loss
from evoprop.population.evaluator import LossFn
from evoprop.train import sharded

# A full d x d covariance (float64) with its eigenvectors and a working copy: ~3 d^2 doubles.
FULL_COVARIANCE_BYTES_PER_D2 = 3 * 8
# Share of free memory the strategy's state may take before "auto" picks a scalable strategy.
STRATEGY_MEMORY_FRACTION = 0.5
FULL_COVARIANCE = ("paper", "cma", "ipop")
WRITE_MODES = ("best", "mean")
ELITIST = ("elitist", "inject")  # the model's layer competes; a challenger must beat it on the acceptance batch


def check_evolution_settings(config) -> None:
    """The evolution group of a TrainConfig (called by ``TrainConfig.validate``): what depends on several
    settings (each one's type, range and choices are checked from its metadata first)."""
    if config.es_layers is not None:
        if not config.es_layers:
            raise ConfigError("es_layers must be a non-empty list of layer indices, got []")
        bad = [i for i in config.es_layers if not -config.depth <= i < config.depth]
        if bad:
            raise ConfigError(f"es_layers {bad} do not exist in a network of depth {config.depth} "
                              f"(indices 0..{config.depth - 1})")
        resolved = [i % config.depth for i in config.es_layers]
        twice = sorted({i for i in resolved if resolved.count(i) > 1})
        if twice:
            raise ConfigError(f"es_layers names layer(s) {', '.join(map(str, twice))} more than once "
                              f"(got {config.es_layers}); give each layer once")
    if config.max_memory is not None:
        parse_bytes(config.max_memory)
    if resolve_combine(config.combine, config.sync_mean) != "paper" and config.method == "es":
        raise ConfigError(f"combine '{config.combine}' combines the ES with a gradient optimizer: use it with method hybrid")


def choose_strategy(name: str, dim: int, device: torch.device, *, distributed: bool = False) -> str:
    """``auto`` -> standard CMA-ES when its full covariance fits in memory, else separable CMA-ES.

    Never the paper's variant: as printed, its step size is not damped and collapses or
    explodes (see :mod:`evoprop.es.paper`); it stays available by name, for the reproduction.
    Over several processes (``distributed``) always separable CMA-ES: its update exchanges O(S·d)
    values per generation, cma's O(S·d²) (139 MB per slice at d = 7,850, :mod:`evoprop.es.cma`),
    so cma runs over processes only when asked for by name.
    """
    if name == "auto" and distributed:
        return "sep"
    if name != "auto":
        if name not in STRATEGIES:
            raise ConfigError(f"unknown strategy '{name}'; valid: auto, {', '.join(STRATEGIES)}")
        return name
    need = FULL_COVARIANCE_BYTES_PER_D2 * dim * dim
    return "cma" if need <= STRATEGY_MEMORY_FRACTION * available_memory(device) else "sep"


def default_sigma0(x0: torch.Tensor) -> float:
    """The spread of the initial weights: a step of the same scale as the weights themselves."""
    std = float(x0.float().std()) if x0.numel() > 1 else 0.0
    return std if math.isfinite(std) and std > 0 else 0.1


class LayerSearch:
    """One evolution strategy bound to a model's searched parameters.

    ``layers`` are indices into an evoprop MLP's ``model.layers``; ``params`` any list of the
    model's parameters instead. ``strategy`` is a name from ``evoprop.es.STRATEGIES`` or
    ``"auto"``; ``sigma0`` defaults to the standard deviation of the initial weights;
    further keyword options go to the strategy. ``write`` says what lands in the model after
    each generation: ``"best"`` candidate or the strategy's ``"mean"``. ``combine`` says how a
    generation meets the weights the model holds (e.g. after gradient steps):

    * ``"paper"`` (the paper's Algorithm 2): the strategy follows its own path and what
      ``write`` names is written in unconditionally;
    * ``"sync"``: each step first moves the mean to the model's weights, so the search explores
      around what the gradient optimizer made of the layer (``sync_mean=True`` is its alias);
    * ``"elitist"``: as ``sync``, and the model's weights are evaluated with the population (as
      its first row, a zero step); the best sampled candidate is written in only if it has a
      lower loss than the model's weights on the *acceptance* batch given to ``step`` (ESGD's
      "the best fitness never degrades", Cui et al. 2018, arXiv:1810.06773), so a winner that
      was lucky on the ES batch cannot replace better weights;
    * ``"inject"``: the strategy keeps its own mean, the model's weights are injected into its
      population (:meth:`evoprop.es.Strategy.inject`, Hansen 2011, arXiv:1110.4181), so mean and
      covariance learn from the gradient (as CEM-RL, Pourchot & Sigaud 2019), with the acceptance
      of ``elitist``;
    * ``"disjoint"``: as ``paper`` here; the trainer leaves the searched layer out of the gradient
      optimizer, so the ES alone trains it (Lenc et al. 2019, arXiv:1906.03139). ``precision``
    ``"bfloat16"`` evaluates the candidates in bfloat16 (see :mod:`evoprop.population.evaluator`):
    about twice as fast where the hardware has native bfloat16, with the same ranking to ~1e-4;
    ``"auto"`` (the default) takes it there for an MLP layer with layers after it (the fast path's
    shared layers are what runs in bfloat16), and float32 elsewhere. The strategy and the weights
    written into the model stay float32 either way. ``loss`` is what the ES minimises on its
    mini-batch (and the acceptance test compares): ``"nll"`` (cross-entropy), ``"error"``
    (1 − accuracy) or ``"f1"`` (1 − macro-F1), see :mod:`evoprop.population.losses`; a
    gradient optimizer beside it keeps its own (differentiable) loss. ``weight_decay`` λ adds
    (λ/2)‖θ‖² of the searched parameters to each candidate's loss (and to both sides of the
    acceptance test): the fitness of a mini-batch the searched layer separates then has a finite
    minimiser instead of its infimum at ‖θ‖ → ∞, which the step-size control would chase (ES with
    an L2 term: Salimans et al. 2017, arXiv:1703.03864, their "L2 coefficient").
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | None = (0,),
        params: Sequence[nn.Parameter] | None = None,
        *,
        strategy: str = "auto",
        popsize: int | None = None,
        sigma0: float | None = None,
        seed: int | None = 0,
        write: str = "best",
        combine: str = "paper",
        sync_mean: bool = False,
        loss: str = "nll",
        weight_decay: float = 0.0,
        max_memory: int | None = None,
        precision: str = "auto",
        distributed: bool | None = None,
        **strategy_options: Any,
    ):
        if write not in WRITE_MODES:
            raise ConfigError(f"unknown write mode '{write}'; valid: {', '.join(WRITE_MODES)}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ConfigError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        self.evaluator = PopulationEvaluator(model, None if params is not None else layers, params,
                                             max_memory=max_memory, precision=precision)
        x0 = self.evaluator.get_vector()
        # distributed (None: whether torchrun started this process and evoprop.distributed.init() ran):
        # each process evaluates its slices of the population (see evoprop.train.sharded)
        distributed = sharded.world_size() > 1 if distributed is None else distributed
        self.strategy_name = choose_strategy(strategy, x0.numel(), x0.device, distributed=distributed)
        self.sigma0 = float(sigma0) if sigma0 is not None else default_sigma0(x0)
        if distributed:
            strategy_options = sharded.strategy_options(self.strategy_name, strategy_options)
        self.strategy = make_strategy(self.strategy_name, x0, self.sigma0, popsize, seed=seed, **strategy_options)
        if distributed:
            sharded.shard(self.strategy)
        self.write = write
        self.combine = resolve_combine(combine, sync_mean)
        # nll: the evaluator's own batched cross-entropy (None); error, f1: vmapped over candidates
        self.loss = loss
        self._loss_fn = None if loss == "nll" else es_loss(loss)
        self.weight_decay = float(weight_decay)
        self._population: torch.Tensor | None = None  # reused by every ask(): see Strategy.ask

    @property
    def model(self) -> nn.Module:
        return self.evaluator.model

    @property
    def sync(self) -> bool:
        """Whether each step first moves the strategy's mean to the model's weights."""
        return self.combine in SYNCED

    @property
    def elitist(self) -> bool:
        """Whether the model's weights compete and a challenger must pass the acceptance batch."""
        return self.combine in ELITIST

    @torch.no_grad()
    def step(self, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn | None = None,
             accept: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
        """One generation on this mini-batch; writes the result into the model and returns its figures.

        ``accept`` is the (inputs, targets) acceptance batch of the ``elitist`` and ``inject``
        rules (without it they accept on the ES batch itself); the other rules ignore it.
        ``loss_fn`` (``loss_fn(outputs, targets) -> scalar``) overrides the search's ``loss``.
        """
        loss_fn = loss_fn if loss_fn is not None else self._loss_fn
        if self.sync:
            self.sync_mean()
        incumbent = None
        if self.elitist:
            incumbent = self.evaluator.get_vector()
            self.strategy.inject(incumbent)
        candidates = self.strategy.ask(out=self._population_buffer())  # this process's rows
        losses = sharded.evaluate(self.strategy, self.evaluator, candidates, inputs, targets, loss_fn)  # all P
        if self.weight_decay:
            losses = losses + sharded.per_row(self.strategy, candidates, self._penalty)  # all P, as the losses
        finite = torch.isfinite(losses)
        if not finite.any():
            raise TrainingDiverged(
                f"every candidate's loss is non-finite at generation {self.strategy.generation + 1}; "
                "lower sigma0 or check the inputs"
            )
        ranked = torch.where(finite, losses, torch.full_like(losses, math.inf))
        if incumbent is None:
            best = int(ranked.argmin())
            winner = sharded.row(self.strategy, candidates, best) if self.write == "best" else None
            self.strategy.tell(candidates, losses)
            self.evaluator.set_vector(winner if winner is not None else self.strategy.mean)
            sharded.check(self.strategy, self.model)
            return {"best": float(losses[best]), "median": float(ranked.median()), "sigma": float(self.strategy.sigma)}
        # elitist / inject: row 0 is the model's weights; the challenger is the best sampled candidate
        best = 1 + int(ranked[1:].argmin())
        challenger = sharded.row(self.strategy, candidates, best)  # a copy: the buffer is reused by the next ask
        self.strategy.tell(candidates, losses)
        if self.write == "mean":
            challenger = self.strategy.mean
        xa, ya = accept if accept is not None else (inputs, targets)
        loss_fn = loss_fn or F.cross_entropy
        incumbent_loss = self._model_loss(incumbent, xa, ya, loss_fn) + float(self._penalty(incumbent))
        challenger_loss = self._model_loss(challenger, xa, ya, loss_fn) + float(self._penalty(challenger))
        accepted = challenger_loss < incumbent_loss
        if not accepted:
            self.evaluator.set_vector(incumbent)
        sharded.check(self.strategy, self.model)
        return {"best": float(losses[best]), "median": float(ranked.median()), "sigma": float(self.strategy.sigma),
                "incumbent": float(losses[0]), "accepted": accepted,
                "accept_incumbent_loss": incumbent_loss, "accept_challenger_loss": challenger_loss}

    def _penalty(self, rows: torch.Tensor) -> torch.Tensor:
        """The fitness's L2 term (λ/2)‖θ‖² of each row of ``rows`` (or of one vector), float32."""
        return 0.5 * self.weight_decay * rows.float().square().sum(dim=-1)

    def _model_loss(self, vector: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn) -> float:
        """``loss_fn`` of the model itself (float32, its own forward, eval mode as the evaluator's) with
        ``vector`` written in."""
        self.evaluator.set_vector(vector)
        was_training = self.model.training
        self.model.eval()
        try:
            return float(loss_fn(self.model(inputs), targets))
        finally:
            self.model.train(was_training)

    def _population_buffer(self) -> torch.Tensor:
        shape = (getattr(self.strategy, "local_popsize", self.strategy.popsize), self.strategy.dim)
        if self._population is None or tuple(self._population.shape) != shape:
            self._population = None  # free the old one first
            x0 = self.evaluator.params[0]
            self._population = torch.empty(shape, dtype=x0.dtype, device=x0.device)
        return self._population

    def sync_mean(self) -> None:
        """Move the strategy's mean to the model's current weights (e.g. after gradient steps)."""
        self.strategy.mean = self.evaluator.get_vector()

    def state_dict(self) -> dict:
        return {"strategy": self.strategy.state_dict(), "strategy_name": self.strategy_name, "sigma0": self.sigma0}

    def load_state_dict(self, state: dict) -> None:
        if state["strategy_name"] != self.strategy_name:
            raise ConfigError(f"checkpoint holds strategy '{state['strategy_name']}', not '{self.strategy_name}'")
        self.strategy.load_state_dict(state["strategy"])
