"""Start or resume one training run from a TrainConfig: data -> model -> optimizer -> trainer -> run dir."""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import sys
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

import evoprop
from evoprop import distributed as dist
from evoprop.config import TrainConfig, applies_to_method
from evoprop.data import load_dataset
from evoprop.device import describe_machine, parse_bytes, resolve_device
from evoprop.errors import EvopropError, TrainingDiverged
from evoprop.models import build_model, model_tag
from evoprop.optim import make_optimizer
from evoprop.optim.registry import get_spec
from evoprop.runs.labels import method_label
from evoprop.runs import ranks
from evoprop.runs.rundir import CONFIG, RunDir, current_owner
from evoprop.runs.sizes import check_fits
from evoprop.train import EsTrainer, HybridTrainer, LayerSearch, Trainer
from evoprop.train.hybrid import gradient_params
from evoprop.train.schedules import TrainingSchedule, schedule_defaults, schedule_from_config

CHECKPOINT_FORMAT = 1


class StopRun(Exception):
    """Raised by an ``on_epoch`` callback to end a run after that epoch (saved); ``status`` goes in its summary.

    E.g. a hyperparameter search prunes an unpromising trial: ``raise StopRun("pruned")``.
    """

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


def resolve_config(config: TrainConfig) -> TrainConfig:
    """A new config: ``config`` validated, with the optimizer's default lr and the schedule's defaults
    written in so the run records them (``config`` itself is left as it was)."""
    resolved = copy.deepcopy(config).validate()
    if resolved.lr is None:
        resolved = dataclasses.replace(resolved, lr=get_spec(resolved.optimizer).defaults.get("lr"))
    # stage length, gamma, milestones: recorded so a resume keeps them
    return dataclasses.replace(resolved, **schedule_defaults(resolved))


def default_run_dir(config: TrainConfig) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    net = model_tag(config.model, config.depth, config.resnet_width)
    trained_by = [config.method] if config.method == "es" else [config.method, config.optimizer]  # es: no optimizer
    return Path("runs") / "-".join([stamp, config.dataset, net, *trained_by])


def build_trainer(config: TrainConfig, *, progress: bool = False) -> Trainer:
    """Everything a run needs, built deterministically from ``config`` (model init is seeded)."""
    return build_run(config, progress=progress)[0]


def build_run(config: TrainConfig, *, progress: bool = False) -> tuple[Trainer, TrainConfig]:
    """The trainer of :func:`build_trainer`, and a new config holding what "auto" and the ES defaults
    resolved to (strategy, sigma0, popsize, es_precision, combine), so the saved config rebuilds this
    exact run; ``config`` itself is left as it was."""
    device = resolve_device(config.device)
    data = load_dataset(
        config.dataset,
        data_dir=config.data_dir,
        split=config.split,
        val_fraction=config.val_fraction,
        split_seed=config.split_seed,
        standardize=config.standardize,
        device=device,
        limit_train=config.limit_train,
        limit_test=config.limit_test,
    )
    check_fits(config, data.input_shape, data.num_classes, device)  # before the model and population exist
    torch.manual_seed(config.seed)
    model = build_model(config.model, data.input_shape, data.num_classes, depth=config.depth, width=config.width,
                        activation=config.activation, init=config.init, resnet_width=config.resnet_width)
    model.to(device)
    common = dict(seed=config.seed, eval_batch_size=config.eval_batch_size, progress=progress)
    # torchrun: the gradient steps split each batch over the processes (DDP), except for an optimizer that
    # hooks the model's layers (K-FAC's factors would be each rank's own): there every rank takes it whole
    gradient = dict(batch_size=config.batch_size, batch_parts=config.batch_parts,
                    data_parallel=not get_spec(config.optimizer).needs_model)
    if config.method == "gradient":
        optimizer = make_optimizer(config.optimizer, model.parameters(), lr=config.lr, model=model, **config.optimizer_options)
        trainer = Trainer(model, optimizer, data, schedule=_schedule(config), **gradient, **common)
        return trainer, _record_parts(config, trainer)

    es_only = config.method == "es"
    search = LayerSearch(
        model,
        layers=config.es_layers or (list(range(config.depth)) if es_only else [0]),
        strategy=config.strategy,
        popsize=config.popsize,
        sigma0=config.sigma0,
        seed=config.seed,
        write=config.es_write or ("mean" if es_only else "best"),
        combine=config.combine,
        sync_mean=config.sync_mean,
        loss=config.es_loss,
        weight_decay=config.es_weight_decay,
        max_memory=parse_bytes(config.max_memory) if config.max_memory is not None else None,
        precision=config.es_precision,
        **config.strategy_options,
    )
    resolved = dataclasses.replace(config, strategy=search.strategy_name, sigma0=search.sigma0,
                                   popsize=search.strategy.popsize, es_precision=search.evaluator.precision,
                                   combine=search.combine)
    if getattr(search.strategy, "slices", 1) > 1:  # recorded: a resume, with any world size, draws the same slices
        resolved = dataclasses.replace(resolved, strategy_options={**resolved.strategy_options,
                                                                   "slices": search.strategy.slices})
    if es_only:
        return EsTrainer(model, data, search, es_batch_size=config.es_batch_size,
                         generations_per_epoch=config.generations_per_epoch, **common), resolved
    optimizer = make_optimizer(config.optimizer, gradient_params(model, search), lr=config.lr, model=model,
                               **config.optimizer_options)
    trainer = HybridTrainer(model, optimizer, data, search, es_batch_size=config.es_batch_size,
                            generations_per_epoch=config.generations_per_epoch or 1,
                            accept_batch_size=config.accept_batch_size, **gradient, **common)
    trainer.schedule = _schedule(config)
    return trainer, _record_parts(resolved, trainer)


def _record_parts(config: TrainConfig, trainer: Trainer) -> TrainConfig:
    """``config`` with the batch parts the trainer took (one per process under torchrun), as ``slices``
    are recorded: a resume, with any world size that divides them, sums the gradients the same way."""
    if trainer.batch_parts > 1 and config.batch_parts != trainer.batch_parts:
        return dataclasses.replace(config, batch_parts=trainer.batch_parts)
    return config


def _schedule(config: TrainConfig) -> TrainingSchedule | None:
    schedule = schedule_from_config(config)
    if schedule is None:
        return None
    return TrainingSchedule(schedule, noise_sample=config.noise_sample, seed=config.seed)


def run_training(
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    epochs: int | None = None,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[dict, RunDir]:
    """Train a new run (``config``, into ``out``) or continue one (``resume``); return (summary, run dir).

    ``epochs`` overrides the configured number (to extend a resumed run). A run that
    diverges or is interrupted keeps its last completed epoch and can be resumed.
    ``on_epoch(record)`` is called after each epoch's checkpoint and metrics are saved;
    it may raise :class:`StopRun` to end the run there with that status.
    """
    echo = echo or (lambda line: tqdm.write(line, file=sys.stderr))
    run = RunDir(resume) if resume is not None else None
    if run is not None:
        owner = run.live_owner()
        if owner is not None:
            raise EvopropError(f"{run.path} is being trained now by process {owner['pid']} on {owner['host']}; "
                               "wait for it to finish or stop it before resuming")
        run.check_continuable()
    config = run.read_config() if run is not None else (config or TrainConfig())
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    config = resolve_config(config)
    if dist.init(resolve_device(config.device)).distributed and not dist.is_main():  # torchrun: rank 0 prints
        echo, progress = (lambda line: None), False
    if run is None:
        target = RunDir(ranks.agreed_path(Path(out or default_run_dir(config))))
        target.ensure_new()
    # Build (and so check data, device, optimizer) before anything is written to disk.
    trainer, config = build_run(config, progress=progress)
    run = ranks.open_run(target.path, config) if run is None else ranks.follow(run)
    if resume is not None and run.has_checkpoint():
        _load_checkpoint(run, trainer)
        echo(f"resuming {run.path} after epoch {trainer.epoch} of {config.epochs}")
    for stale in run.remove_stale_temporaries():  # left by a kill mid-write; no live process owns the run
        echo(f"removed {stale}, a partial file left by an interrupted run")
    if resume is not None:
        run.write_config(config, world_size=dist.current().world_size)  # an extended epoch count, this world size
    run.write_metrics(trainer.history)  # drops any line written after the last checkpoint
    static = _static_summary(config, trainer)
    running = lambda tr: {**static, **tr.summary(), "status": "running", "owner": current_owner()}  # noqa: E731
    run.write_summary(running(trainer))

    def on_epoch_end(tr: Trainer, record: dict) -> None:
        run.save_checkpoint({"format": CHECKPOINT_FORMAT, "trainer": tr.state_dict(), "torch_rng": torch.get_rng_state()})
        run.append_metrics(record)
        run.write_summary(running(tr))
        echo(_epoch_line(record, config.epochs))
        if on_epoch is not None:
            on_epoch(record)

    status = "interrupted"  # if anything but a clean finish or divergence escapes fit()
    try:
        trainer.fit(config.epochs, on_epoch_end)
        status = "completed"
    except TrainingDiverged:
        status = "diverged"
        raise
    except StopRun as stop:
        status = stop.status
        raise
    finally:
        summary = {**static, **trainer.summary(), "status": status}
        run.write_summary(summary)
    return summary, run


def _load_checkpoint(run: RunDir, trainer: Trainer) -> None:
    """Restore ``trainer`` from the run's checkpoint; one line when it is not this run's (or is damaged)."""
    state = run.load_checkpoint(map_location=trainer.data.train.x.device)
    where = run.checkpoint_path
    missing = [k for k in ("format", "trainer", "torch_rng") if k not in state]
    if missing:
        raise EvopropError(f"checkpoint {where} lacks {', '.join(missing)}: it is not an evoprop checkpoint "
                           "(or is damaged); delete it to start the run again")
    if state["format"] != CHECKPOINT_FORMAT:
        raise EvopropError(f"checkpoint {where} has format {state['format']!r}; this evoprop reads format "
                           f"{CHECKPOINT_FORMAT}")
    try:
        trainer.load_state_dict(state["trainer"])
        torch.set_rng_state(state["torch_rng"])
        trainer.summary()  # the history it holds must be readable too
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 160 else detail[:157] + "..."
        raise EvopropError(f"checkpoint {where} does not match the run's {CONFIG} (was a setting such as depth "
                           f"or width edited, or the checkpoint copied from another run?): "
                           f"{type(exc).__name__}: {detail or 'missing entry'}") from None


def _static_summary(config: TrainConfig, trainer: Trainer) -> dict:
    data = trainer.data
    method_only = {name: getattr(config, name) if applies_to_method(name, config.method) else None
                   for name in ("optimizer", "lr", "strategy", "popsize", "combine", "es_loss", "es_weight_decay",
                                 "es_precision")}
    return {
        "method": config.method,
        "dataset": config.dataset,
        "dataset_note": data.source_note,
        **method_only,
        "batch_size": config.batch_size,
        "model": config.model,
        "schedule": config.schedule,
        "depth": config.depth,
        "width": config.width,
        "seed": config.seed,
        "device": str(trainer.data.train.x.device),
        "train_size": len(data.train),
        "val_size": len(data.val) if data.val is not None else 0,
        "test_size": len(data.test),
        "evoprop": evoprop.__version__,
        "torch": torch.__version__,
        "machine": machine_name(trainer.data.train.x.device),
        "threads": torch.get_num_threads(),
        "world_size": dist.current().world_size,
        # under torchrun: "ddp" (each process a part of every batch) or "replicated" (each the whole batch)
        "gradient_parallel": trainer.parallel,
    }


def machine_name(device: torch.device) -> str:
    """The GPU's name on CUDA, else the CPU model and its cores (summary.json's ``machine``)."""
    machine = describe_machine(device)
    return machine.get("gpu") or f"{machine['cpu']}, {machine['cores']} cores"


def _epoch_line(r: dict, epochs: int) -> str:
    val = f"  val F1 {r['val_f1']:.4f}" if "val_f1" in r else ""
    es = f"  sigma {r['sigma']:.3g} (ES {r['es_seconds']:.1f} s)" if "sigma" in r else ""
    if "stage" in r:  # a scheduled run: the epoch's lr, batch size and smoothing degree δ
        es += f"  lr {r['lr']:.3g} b {r['batch_size']}" + (f" delta {r['delta']:.3g}" if "delta" in r else "")
    return (f"epoch {r['epoch']:>3}/{epochs}  train loss {r['train_loss']:.4f}  test loss {r['test_loss']:.4f}  "
            f"acc {r['test_accuracy']:.4f}  F1 {r['test_f1']:.4f}{val}{es}  {r['seconds']:.1f} s")


def summary_line(summary: dict, run: RunDir) -> str:
    """The one line printed at the end of a run."""
    if not summary.get("epochs"):
        return f"{summary['status']}: no epoch completed; run: {run.path}"
    honest = ""
    if summary.get("val_selected_test_f1") is not None:
        honest = f" | val-selected test F1 {summary['val_selected_test_f1']:.4f} (epoch {summary['val_selected_epoch']})"
    note = f" | data: {summary['dataset_note']}" if summary.get("dataset_note") else ""
    return (f"{summary['status']}: {summary['dataset']} depth {summary['depth']} {method_label(summary, es_details=True)} "
            f"| {summary['epochs']} epochs, {summary['seconds']:.1f} s "
            f"({summary['seconds_per_epoch']:.2f} s/epoch) | best test F1 {summary['best_test_f1']:.4f} "
            f"(epoch {summary['best_epoch']}){honest}{note} | run: {run.path}")
