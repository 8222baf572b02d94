"""Evaluate many candidate values of some of a model's parameters on one mini-batch, batched.

A candidate is one flat vector holding the searched parameters in order (for an
``nn.Linear``: weight row-major, then bias — the paper's layer-1 "(weight, bias)").

Two paths compute the same P losses:

* **fast** — one searched ``nn.Linear`` of an :class:`~evoprop.models.MLP` (the paper's
  case). The layers before it are shared by all candidates and run once; the searched
  layer for a group of candidates is ONE batched matrix product (``baddbmm``, reading each
  candidate's weights in place and fusing its bias) whose (G, B, out) output is already
  the (G·B, out) input of the shared layers after it, which then run as a single pass
  over G·B rows, each layer's GEMM fused with its bias and activation where the backend
  can (see :mod:`evoprop.population.fused`). No per-candidate Python work, no copy of the
  candidates. On a CPU the group is small enough for a layer's activations to stay in
  cache for the next (~100 % of the matmul rate, against ~80 % for one pass over all P·B
  rows); on a GPU it is the whole population, or as much as the memory budget allows.
* **general** — any module and any parameter subset, through ``torch.func.functional_call``
  vectorised over candidates with ``vmap``.

The population is processed in chunks sized to a memory budget, so P is bounded by
time, not memory; a budget that cannot hold even one candidate is a clear error.

``precision="bfloat16"`` runs the candidates' forward pass with bfloat16 inputs (products
accumulate in float32, logits and losses are float32): on hardware with native bfloat16
matrix units (recent x86 CPUs with AVX512-BF16/AMX, NVIDIA Ampere and later) about twice
the float32 throughput. The losses only rank candidates, and the error it adds (~1e-4 on a
loss) is ~500x below the sampling noise of a 256-example mini-batch's loss (~0.05).
``"auto"`` picks bfloat16 where it pays: on the fast path with layers after the searched one,
on hardware with native bfloat16; float32 everywhere else. This class defaults to exact
float32, the trainers (:class:`~evoprop.train.LayerSearch`) to ``"auto"``.
On the fast path the searched layer itself stays float32 (it reads the candidates in
place; converting P·d values would cost more than it saves) and the shared layers after
it run in bfloat16.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from evoprop.device import available_memory
from evoprop.errors import ConfigError
from evoprop.models import MLP
from evoprop.population.fused import linear_activation, post_op

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Share of the free memory a chunk may use when no budget is given: the rest is left to
# the model, the data set on the device and the strategy's own state.
DEFAULT_MEMORY_FRACTION = 0.25
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# Searched layers with at most this many outputs are evaluated as one wide GEMM (see _fast).
PACK_MAX_WIDTH = 16
# Activations one CPU pass holds per layer (16 MiB in float32, a share of a server CPU's L3):
# in groups this small the P·B-row pass ran at ~100 % of the matmul rate instead of ~80 %.
CPU_TILE_ELEMENTS = 1 << 22


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices in hardware (faster than float32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)  # Ampere and later
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so probed
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
    return False


class PopulationEvaluator:
    """Losses of candidate vectors for ``model``'s searched parameters.

    ``layers`` are indices into ``model.layers`` (an evoprop MLP); or give ``params``, any
    list of the model's parameters. ``max_memory`` caps the bytes a chunk of candidates may
    use (default: a quarter of the free memory of the model's device). ``path`` forces
    ``"fast"`` or ``"general"``; ``"auto"`` takes the fast path whenever it applies.
    ``precision`` is ``"float32"`` (exact), ``"bfloat16"`` or ``"auto"`` (see the module's notes).
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[int] | None = None,
        params: Sequence[nn.Parameter] | None = None,
        *,
        max_memory: int | None = None,
        path: str = "auto",
        precision: str = "float32",
    ):
        if (layers is None) == (params is None):
            raise ConfigError("give exactly one of layers (indices into model.layers) or params")
        self.model = model
        if layers is not None:
            if not isinstance(model, MLP):
                raise ConfigError("layers=... needs an evoprop MLP; for other models pass params=[...]")
            n = len(model.layers)
            bad = [i for i in layers if not -n <= i < n]
            if bad or not layers:
                raise ConfigError(f"layer indices {list(layers)} are not in 0..{n - 1}")
            layers = sorted({i % n for i in layers})
            params = [p for i in layers for p in model.layers[i].parameters()]
        self.layers = layers
        self.params = list(params)
        names = {id(p): name for name, p in model.named_parameters()}
        missing = [p for p in self.params if id(p) not in names]
        if missing or not self.params:
            raise ConfigError("params must be a non-empty list of the model's own parameters")
        self.names = [names[id(p)] for p in self.params]
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        fast_ok = layers is not None and len(layers) == 1
        if path not in ("auto", "fast", "general"):
            raise ConfigError(f"unknown evaluation path '{path}'; valid: auto, fast, general")
        if path == "fast" and not fast_ok:
            raise ConfigError("the fast path needs exactly one searched layer of an evoprop MLP")
        self.path = "fast" if fast_ok and path != "general" else "general"
        if precision == "auto":
            # bfloat16 pays off in the fast path's shared layers, the only place it runs there; the
            # general path's vmap under autocast was 2x slower than float32 on CPU (P = 1,000)
            precision = "bfloat16" if self.shared_after and native_bfloat16(self.device) else "float32"
        elif precision not in PRECISIONS:
            raise ConfigError(f"unknown evaluation precision '{precision}'; valid: auto, {', '.join(PRECISIONS)}")
        self.precision = precision
        self.max_memory = max_memory
        self._activations_per_example: int | None = None
        self._output_buffer: torch.Tensor | None = None
        self._packed_buffer: torch.Tensor | None = None

    # -- the searched parameters as one vector ------------------------------------------
    @property
    def dim(self) -> int:
        return sum(self.sizes)

    @property
    def shared_after(self) -> bool:
        """Whether the fast path runs shared layers after the searched one (what bfloat16 and
        cache-sized groups speed up)."""
        return self.path == "fast" and self.layers[0] < len(self.model.layers) - 1

    @property
    def device(self) -> torch.device:
        return self.params[0].device

    def get_vector(self) -> torch.Tensor:
        """The model's current values of the searched parameters, flattened (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    @torch.no_grad()
    def set_vector(self, vector: torch.Tensor) -> None:
        """Write a candidate vector into the model's searched parameters."""
        self._check(vector.reshape(1, -1))
        for p, part in zip(self.params, vector.split(self.sizes)):
            p.copy_(part.view(p.shape))

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self, candidates: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None = None
    ) -> torch.Tensor:
        """The loss of each of the P candidates on (x, y): a (P,) tensor.

        ``loss_fn(outputs, targets) -> scalar`` defaults to the mean cross-entropy (NLL of
        softmax); any other is vectorised over candidates with ``vmap``.
        """
        self._check(candidates)
        chunk = min(self.chunk_size(len(candidates), x), self.group_size(x))
        was_training = self.model.training
        self.model.eval()
        try:
            evaluate = self._fast if self.path == "fast" else self._general
            dtype = self.params[0].dtype
            parts = [evaluate(c.to(self.device, dtype), x, y, loss_fn) for c in candidates.split(chunk)]
        finally:
            self.model.train(was_training)
        return torch.cat(parts)

    def chunk_size(self, popsize: int, x: torch.Tensor) -> int:
        """How many candidates one pass over the mini-batch ``x`` may hold under the memory budget."""
        budget = self.max_memory if self.max_memory is not None else int(
            DEFAULT_MEMORY_FRACTION * available_memory(self.device))
        batch = len(x)
        per_candidate = self.bytes_per_candidate(x)
        fit = budget // per_candidate
        if fit < 1:
            raise ConfigError(
                f"one candidate needs ~{_mib(per_candidate)} for a mini-batch of {batch} but the memory budget "
                f"is {_mib(budget)}; use a smaller ES mini-batch or raise --max-memory"
            )
        return int(min(popsize, fit))

    def group_size(self, x: torch.Tensor) -> int:
        """Candidates per pass on the CPU fast path: few enough that the pass's activations stay
        in cache from one layer to the next (a GPU wants the largest pass that fits instead)."""
        if not self.shared_after or self.device.type != "cpu":
            return 1 << 62  # (a searched last layer has no activations to pass on: one wide GEMM is best)
        widest = max(layer.out_features for layer in self.model.layers[self.layers[0]:])
        return max(1, CPU_TILE_ELEMENTS // (len(x) * widest))

    def bytes_per_candidate(self, x: torch.Tensor) -> int:
        """Peak bytes one candidate adds to a pass over ``x``: its parameters plus its activations."""
        itemsize = self.params[0].element_size()
        batch = len(x)
        if self.path == "fast":
            # live at once: the candidate's slice of the searched layer, and two activation
            # tensors of the widest layer from there on (input and output of a shared layer)
            k = self.layers[0]
            widest = max(layer.out_features for layer in self.model.layers[k:])
            packed = self.model.layers[k].out_features <= PACK_MAX_WIDTH  # a copy of its weights too
            return itemsize * ((2 if packed else 1) * self.dim + 2 * batch * widest)
        if self._activations_per_example is None:
            self._activations_per_example = self._count_activations(x[:1])
        # parameters (and vmap's working copy of them) plus every module output for the batch
        return itemsize * (2 * self.dim + batch * self._activations_per_example)

    # -- the two paths ------------------------------------------------------------------
    def _fast(self, cand: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None) -> torch.Tensor:
        model: MLP = self.model  # type: ignore[assignment]
        k = self.layers[0]
        layer = model.layers[k]
        act = _in_place(model.activation)
        h = x.flatten(1)
        for shared in model.layers[:k]:  # layers before the searched one: once for all candidates
            h = act(shared(h))
        P, (out_f, in_f) = len(cand), layer.weight.shape
        B = h.shape[0]
        weights = cand[:, : out_f * in_f].unflatten(1, (out_f, in_f))  # (P, out, in) views, no copy
        bias = cand[:, out_f * in_f :] if layer.bias is not None else None
        # The searched layer's output lands in a buffer kept across calls: a fresh tensor each
        # call would be newly mapped, page-faulted memory.
        out = self._buffer(P * B * out_f, h.dtype)
        example_major = out_f <= PACK_MAX_WIDTH
        if example_major:
            # A narrow searched layer (softmax regression's 10 outputs) would make P thin GEMMs
            # running at a fraction of the matmul rate: copied into one (P·out, in) matrix, the
            # P products are ONE wide GEMM whose rows are examples. 2x at out = 10, a loss from ~32.
            packed = self._packed(P * out_f * in_f, h.dtype).view(P, out_f, in_f).copy_(weights)
            out = out.view(B, P * out_f)
            if bias is not None:
                torch.addmm(bias.reshape(-1), h, packed.view(P * out_f, in_f).T, out=out)
            else:
                torch.mm(h, packed.view(P * out_f, in_f).T, out=out)
        else:
            # x is shared by all candidates through a stride-0 expand, and the bias is fused
            # into the batched GEMM, which reads each candidate's weights in place.
            xs = h.expand(P, *h.shape)
            out = out.view(P, B, out_f)
            if bias is not None:
                torch.baddbmm(bias.unsqueeze(1), xs, weights.transpose(1, 2), out=out)
            else:
                torch.bmm(xs, weights.transpose(1, 2), out=out)
        # rows are (candidate, example) pairs — or (example, candidate): the shared layers don't care
        h = out.view(P * B, out_f)
        rest = model.layers[k + 1 :]
        if rest:
            low = PRECISIONS[self.precision]
            h = act(h).to(low)  # the shared layers run in the evaluation precision
            fused = post_op(model.activation, h.device, low)
            for shared in rest[:-1]:
                bias_low = shared.bias.to(low) if shared.bias is not None else None
                h = linear_activation(h, shared.weight.to(low), bias_low, act, fused)
            last = rest[-1]
            h = F.linear(h, last.weight.to(low), last.bias.to(low) if last.bias is not None else None)
        logits = (h.view(B, P, -1).transpose(0, 1) if example_major else h.view(P, B, -1)).to(cand.dtype)
        if loss_fn is None:
            return _cross_entropy_per_candidate(logits, y)
        return vmap(loss_fn, in_dims=(0, None))(logits, y)

    def _general(self, cand: torch.Tensor, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn | None) -> torch.Tensor:
        loss_fn = loss_fn or F.cross_entropy

        def loss(flat: torch.Tensor) -> torch.Tensor:
            values = {n: v.view(s) for n, v, s in zip(self.names, flat.split(self.sizes), self.shapes)}
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
                out = functional_call(self.model, values, (x,))
            return loss_fn(out.to(flat.dtype), y)

        return vmap(loss)(cand)

    # -- helpers ------------------------------------------------------------------------
    def _buffer(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat buffer for the searched layer's output, reused across calls."""
        buf = self._output_buffer
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            self._output_buffer = None  # free the old one before allocating the larger one
            buf = self._output_buffer = torch.empty(numel, dtype=dtype, device=self.device)
        return buf[:numel]

    def _packed(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """A flat buffer for the packed weights of a narrow searched layer, reused across calls."""
        buf = self._packed_buffer
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            self._packed_buffer = None
            buf = self._packed_buffer = torch.empty(numel, dtype=dtype, device=self.device)
        return buf[:numel]

    def release_buffers(self) -> None:
        """Free the buffers kept between calls (they are re-made on the next call)."""
        self._output_buffer = None
        self._packed_buffer = None

    def _check(self, candidates: torch.Tensor) -> None:
        if candidates.dim() != 2 or candidates.shape[1] != self.dim:
            raise ConfigError(
                f"candidates must have shape (P, {self.dim}) for the searched parameters, got {tuple(candidates.shape)}"
            )

    @torch.no_grad()
    def _count_activations(self, probe: torch.Tensor) -> int:
        """Elements of every module's output for one example (found by one probe forward pass)."""
        total = 0

        def count(_module, _inputs, output):
            nonlocal total
            if isinstance(output, torch.Tensor):
                total += output[0].numel() if output.dim() > 0 else 1

        hooks = [m.register_forward_hook(count) for m in self.model.modules()]
        try:
            self.model(probe)
        finally:
            for h in hooks:
                h.remove()
        return max(total, 1)


def _in_place(activation: nn.Module):
    """The activation applied in place where the module allows it: the evaluator owns these
    temporaries, and an out-of-place pass over B·P rows costs as much as a small GEMM."""
    if hasattr(activation, "inplace"):
        return type(activation)(**{**_init_args(activation), "inplace": True})
    return activation


def _init_args(module: nn.Module) -> dict:
    # the constructor arguments of the built-in activations that take ``inplace``
    return {name: getattr(module, name) for name in ("negative_slope", "alpha") if hasattr(module, name)}


def _cross_entropy_per_candidate(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(P, B, C) logits, (B,) labels -> (P,) mean NLL of softmax over the batch."""
    picked = logits.gather(2, y.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(2)
    return (torch.logsumexp(logits, dim=2) - picked).mean(dim=1)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n >= 2**20 else f"{n / 1024:,.1f} KiB"
