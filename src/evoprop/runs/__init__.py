"""Run directories: config, per-epoch metrics, summary and checkpoint of one training run."""

from evoprop.runs.launch import build_trainer, run_training, summary_line
from evoprop.runs.rundir import RunDir

__all__ = ["RunDir", "build_trainer", "run_training", "summary_line"]
