"""``evoprop train``: one training run, from options and/or a config file."""

from __future__ import annotations

import sys

import click

from evoprop.config import TrainConfig, allowed_values, merge_lr
from evoprop.data import DATASETS
from evoprop.distributed import is_main
from evoprop.data.sources import DATA_DIR_HELP
from evoprop.es import STRATEGIES
from evoprop.errors import ConfigError
from evoprop.models import ACTIVATIONS, MODELS
from evoprop.optim import OPTIMIZERS, parse_option_value
from evoprop.runs import run_training, summary_line

_DEFAULTS = TrainConfig()


class _EpochList(click.ParamType):
    """'10,15' -> [10, 15] (the step schedule's milestones)."""

    name = "N[,N...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [int(part) for part in str(value).split(",")]
        except ValueError:
            self.fail(f"expects epoch numbers such as 10 or 10,15, got '{value}'", param, ctx)

# option flag -> (TrainConfig field, click type, help). Every option defaults to None so that
# only what the user typed overrides the config file, which overrides TrainConfig's defaults.
_OPTIONS: list[tuple[str, str, object, str]] = [
    ("--method", "method", str,
     "gradient: the optimizer alone; hybrid: the paper's Algorithm 2 (each epoch one ES generation on the searched "
     "layer(s), the best candidate written in, then one epoch of the optimizer on all layers); es: the evolution "
     "strategy alone (the paper's 'CMA-ES' rows)."),
    ("--dataset", "dataset", str, f"Data set: {', '.join(DATASETS)} (cifar10-gray: Gray = 0.299R + 0.587G + 0.114B)."),
    ("--data-dir", "data_dir", click.Path(file_okay=False),
     DATA_DIR_HELP),
    ("--split", "split", str,
     "paper: MNIST's first 55,000 training images as 49,500 train / 5,500 test, CIFAR-10's 50,000 as "
     "40,000 / 10,000; official: the official train and test sets."),
    ("--val-fraction", "val_fraction", float,
     "Fraction of the train part held out for validation (the honest protocol); 0 trains on all of it."),
    ("--split-seed", "split_seed", int, "Seed of the train/val/test permutation (independent of --seed)."),
    ("--standardize/--no-standardize", "standardize", None,
     "Standardise inputs per channel with the train split's mean and std (pixels are in [0, 1] either way)."),
    ("--limit-train", "limit_train", int, "Use only the first N training examples (quick experiments) [default: all]."),
    ("--limit-test", "limit_test", int, "Use only the first N test (and validation) examples [default: all]."),
    ("--model", "model", str,
     f"Model: {', '.join(MODELS)}. resnet18 (CIFAR-style stem, 1 or 3 input channels) trains with --method "
     "gradient; --depth, --width, --activation and --init are the MLP's."),
    ("--depth", "depth", int, "Number of weight layers: 1 = softmax regression, 10 = nine hidden layers."),
    ("--width", "width", int, "Units in every hidden layer."),
    ("--activation", "activation", str, f"Hidden activation: {', '.join(ACTIVATIONS)}."),
    ("--init", "init", str,
     "Weight initialisation: glorot (Glorot-uniform, the default: with PyTorch's own default a 10-layer ReLU "
     "MLP trained by SGD stays at chance), lecun, he, torch."),
    ("--optimizer", "optimizer", str, f"Gradient optimizer: {', '.join(OPTIMIZERS)} (see 'evoprop optimizers')."),
    ("--lr", "lr", float, "Learning rate [default: the optimizer's own, e.g. sgd 0.01, adam 0.001]."),
    ("--batch-size", "batch_size", int, "Mini-batch size of the gradient optimizer."),
    ("--resnet-width", "resnet_width", int, "Channels of the ResNet's first stage (64: ResNet-18; 16 trains on a CPU)."),
    ("--schedule", "schedule", str,
     "Learning-rate / batch-size schedule, with the gradient noise C and the smoothing degree delta = lr*C/sqrt(b) "
     "logged per epoch: constant; lr-decay (lr *= gamma per stage); batch-growth (batch /= gamma^2); hybrid "
     "(lr *= sqrt(gamma), batch /= gamma: delta *= gamma); step (lr *= gamma at the milestones); cosine "
     "[default: none, nothing logged]."),
    ("--stage-epochs", "stage_epochs", int, "Epochs per stage of the schedule [default: epochs // 5]."),
    ("--gamma", "gamma", float,
     "Factor per stage in (0, 1): delta (step: the lr) is multiplied by it [default: 1/sqrt(2), step 0.1]."),
    ("--milestones", "milestones", _EpochList(),
     "step schedule: epochs after which lr *= gamma, e.g. 10,15 [default: 1/2 and 3/4 of the epochs]."),
    ("--max-batch-size", "max_batch_size", int, "Largest batch a batch-growth or hybrid schedule grows to [default: no cap]."),
    ("--min-lr", "min_lr", float, "Smallest learning rate a schedule lowers to (cosine: its end)."),
    ("--noise-sample", "noise_sample", int,
     "Training examples on which the gradient noise C is estimated at each stage start; 0: off."),
    ("--strategy", "strategy", str,
     f"Evolution strategy (hybrid, es): auto, {', '.join(STRATEGIES)}. auto: standard CMA-ES (cma) when its full "
     "covariance fits in memory (d up to ~10k), else separable CMA-ES."),
    ("--popsize", "popsize", int, "Population size: candidates evaluated per generation [default: the strategy's, 4 + 3 ln d]."),
    ("--sigma0", "sigma0", float, "Initial step size [default: the standard deviation of the initial searched weights]."),
    ("--es-batch-size", "es_batch_size", int, "Mini-batch on which each generation's candidates are evaluated."),
    ("--generations-per-epoch", "generations_per_epoch", int,
     "ES generations per epoch [default: hybrid 1, spread evenly over the epoch's gradient steps when more; "
     "es one per mini-batch over the training split]."),
    ("--combine", "combine", str,
     "hybrid: how each generation meets the gradient-trained layer. paper: the ES mean evolves on its own and the "
     "generation's best is written in (Algorithm 2); sync: the mean is moved to the trained layer first; elitist: as "
     "sync, and the best candidate replaces the trained layer only if it has a lower loss on an independent acceptance "
     "batch (--accept-batch-size); inject: the ES keeps its mean, the trained layer is injected into its population "
     "(Hansen 2011), with elitist's acceptance; disjoint: the ES alone trains the searched layer, the optimizer the rest."),
    ("--sync-mean/--no-sync-mean", "sync_mean", None,
     "hybrid: the same as --combine sync (move the ES mean to the trained layer before each generation)."),
    ("--accept-batch-size", "accept_batch_size", int,
     "hybrid, --combine elitist or inject: training examples in each generation's acceptance mini-batch, drawn from "
     "its own seeded stream."),
    ("--es-loss", "es_loss", str,
     "What the ES minimises on its mini-batch (hybrid, es): nll (cross-entropy), error (1 - accuracy) or f1 "
     "(1 - macro-F1), computed for all candidates at once; the gradient optimizer keeps cross-entropy."),
    ("--es-write", "es_write", str,
     "What the ES writes into the model after a generation: best or mean [default: hybrid best (the paper), es mean]."),
    ("--es-precision", "es_precision", str,
     "Arithmetic of the candidates' forward pass: auto, float32 or bfloat16. bfloat16 is about 1.5-2x faster on CPUs "
     "with AVX512-BF16/AMX and on NVIDIA Ampere or later, and ranks the candidates the same to ~1e-4 (the model, the "
     "written weights and the ES state stay float32). auto: bfloat16 where the hardware has it and the searched "
     "layer has layers after it (they are what runs in bfloat16), else float32; the choice is recorded in "
     "config.yaml [default: auto]."),
    ("--max-memory", "max_memory", str,
     "Memory budget of one population pass, e.g. 2G; larger populations run in chunks [default: 1/4 of free memory]."),
    ("--epochs", "epochs", int, "Number of epochs (with --resume: the new total, to extend a run)."),
    ("--seed", "seed", int, "Seed of the model's initialisation and of the mini-batch order."),
    ("--device", "device", str, "auto (a GPU when there is one), cpu, cuda or cuda:N."),
    ("--eval-batch-size", "eval_batch_size", int, "Batch size for evaluation (memory only; results do not change)."),
]


_METAVARS = {str: "NAME", int: "N", float: "X"}


def _option(flag: str, field: str, type_, help_: str):
    default = getattr(_DEFAULTS, field)
    allowed = allowed_values(field)
    if allowed and allowed != "a positive integer":  # the range, from TrainConfig (its one statement)
        text, bracket, rest = help_.partition(" [default:")
        help_ = f"{text.rstrip('.')}: {allowed}." + (f"{bracket}{rest}" if bracket else "")
    if "[default:" not in help_ and default is not None:
        help_ = f"{help_} [default: {default}]"
    if type_ is None:  # a boolean flag pair
        return click.option(flag, field, default=None, help=help_)
    return click.option(flag, field, type=type_, default=None, help=help_, metavar=_METAVARS.get(type_))


def _with_options(func):
    for row in reversed(_OPTIONS):
        func = _option(*row)(func)
    return func


def train_options(*flags: str):
    """Decorator: the named options of `evoprop train` (same name, type and help; default None), for a
    command that passes them on to its runs, e.g. ``@train_options("--device", "--data-dir")``."""
    rows = [row for row in _OPTIONS if row[0].split("/")[0] in flags]
    missing = set(flags) - {row[0].split("/")[0] for row in rows}
    if missing:
        raise ValueError(f"evoprop train has no option {', '.join(sorted(missing))}")

    def decorate(func):
        for row in reversed(rows):
            func = _option(*row)(func)
        return func

    return decorate


@click.command("train")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or JSON file of settings (keys as the options, e.g. batch_size: 64); options given here override it.")
@_with_options
@click.option("--opt", "opt", multiple=True, metavar="KEY=VALUE",
              help="An optimizer hyperparameter, repeatable: --opt momentum=0.95 --opt 'betas=[0.9, 0.99]'.")
@click.option("--es-layers", "es_layers", metavar="I[,J...]",
              help="Indices of the weight layers the ES searches, e.g. 0 or 0,1 [default: hybrid 0, es all].")
@click.option("--es-opt", "es_opt", multiple=True, metavar="KEY=VALUE",
              help="A strategy option, repeatable (see evoprop.es), e.g. --es-opt memory=20 for lmma.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Run directory to create [default: runs/<time>-<dataset>-d<depth>-<method>-<optimizer>].")
@click.option("--resume", type=click.Path(file_okay=False),
              help="Continue the run in this directory from its last completed epoch, with its saved settings.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar per epoch [default: when the terminal is interactive].")
def train_command(config_file, opt, es_layers, es_opt, out, resume, progress, **options) -> None:
    """Train a model with a gradient optimizer, an evolution strategy, or both, and record every epoch.

    Writes RUN_DIR/config.yaml, metrics.jsonl (train/test/val loss, accuracy, macro-F1 and
    seconds per epoch), summary.json and checkpoint.pt, and ends with a one-line summary:
    the paper's number (best test F1 over epochs and its epoch) and the honest number
    (test F1 at the epoch with the best validation F1).

    Examples:

      evoprop train --dataset mnist --depth 1 --optimizer sgd --lr 0.01 --batch-size 256 --epochs 3

      evoprop train --method hybrid --dataset mnist --depth 10 --width 200 --optimizer sgd --lr 0.01
      --batch-size 64 --popsize 1000 --epochs 3

      evoprop train --method es --dataset mnist --depth 1 --strategy sep --popsize 1000 --epochs 1

      evoprop train --dataset mnist --depth 10 --lr 0.1 --batch-size 32 --schedule hybrid --stage-epochs 5
      --epochs 25
    """
    given = {k: v for k, v in options.items() if v is not None}
    if es_layers is not None:
        given["es_layers"] = _parse_layers(es_layers)
    if progress is None:
        progress = sys.stderr.isatty()
    if resume is not None:
        extra = (sorted(set(given) - {"epochs"}) + (["config"] if config_file else []) + (["opt"] if opt else [])
                 + (["es_opt"] if es_opt else []))
        if extra or out:
            raise ConfigError(
                "--resume continues a run with its saved settings; only --epochs may be given with it "
                f"(got {', '.join('--' + k.replace('_', '-') for k in extra + (['out'] if out else []))})"
            )
        summary, run = run_training(resume=resume, epochs=given.get("epochs"), progress=progress)
    else:
        opts = _parse_opts(opt, "--opt")
        if "lr" in opts:  # --opt lr=X is --lr X (both given: they must agree)
            given["lr"], opts = merge_lr(given.get("lr"), opts)
        config = TrainConfig.from_file(config_file) if config_file else TrainConfig()
        config = TrainConfig.from_dict(given, base=config)
        if opts:
            config.optimizer_options = {**config.optimizer_options, **opts}
        if es_opt:
            config.strategy_options = {**config.strategy_options, **_parse_opts(es_opt, "--es-opt")}
        summary, run = run_training(config, out=out, progress=progress)
    if is_main():  # under torchrun only rank 0 prints
        click.echo(summary_line(summary, run))


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"--es-layers expects layer indices such as 0 or 0,1, got '{text}'") from None


def _parse_opts(pairs: tuple[str, ...], flag: str) -> dict:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        parsed[key.strip().replace("-", "_")] = parse_option_value(value)
    return parsed
