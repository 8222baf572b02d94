"""Every snippet of README.md runs as written: each ```bash block in bash, each ```python block in Python.

A block runs in a scratch copy of a fresh clone: the working directory is ``SCRATCH/evoprop`` (with the
repository's ``examples/``), the shared data sit beside it in ``SCRATCH/shared/datasets`` (as
``../shared/datasets`` does beside a clone on the project's machines), ``evoprop`` on the PATH is this
tree's code, and no ``$EVOPROP_DATA`` is set: a command finds CIFAR-10 only if it says where, as the
README tells a newcomer to. Nothing is shortened: no ``--epochs`` or ``--limit-train`` is added.

A block that cannot run here says why in the HTML comment on the line before it:
``<!-- readme-test: skip: REASON -->`` (it installs packages, needs a GPU, a server or several machines,
takes hours, waits for a person); ``<!-- readme-test: slow -->`` marks a block that takes more than about
a second of CPU (deselected by ``-m "not slow"``, run by plain ``pytest`` and CI).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"<!--\s*readme-test:\s*(skip|slow)\s*(?::\s*(.*?))?\s*-->")
FENCE = re.compile(r"^( *)```(\w+)[^\n]*\n(.*?)^\1```", flags=re.S | re.M)
#: Seconds one block may run (the suite has a 15-minute budget on CI's 2 cores); longer means hung or too big.
BLOCK_TIMEOUT = 600
#: Reasons a block may give for not running; anything else is a block that should run.
SKIP_REASONS = ("installs packages", "runs this test suite", "takes hours", "needs a CUDA GPU", "needs a server",
                "needs several machines", "runs until stopped", "waits for a person")


class Block:
    def __init__(self, language: str, code: str, line: int, mark: str | None, reason: str | None):
        self.language, self.code, self.line, self.mark, self.reason = language, code, line, mark, reason

    @property
    def id(self) -> str:
        return f"{self.language}-line{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        language = match.group(2)
        if language not in ("bash", "python"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        indent = len(match.group(1))
        code = "\n".join(line[indent:] for line in match.group(3).splitlines()) + "\n"
        blocks.append(Block(language, code, text.count("\n", 0, match.start()) + 1,
                            marker.group(1) if marker else None, marker.group(2) if marker else None))
    return blocks


BLOCKS = readme_blocks()


def _param(block: Block):
    marks = [pytest.mark.slow] if block.mark == "slow" else []
    if block.mark == "skip":
        marks.append(pytest.mark.skip(reason=f"README line {block.line}: {block.reason}"))
    return pytest.param(block, id=block.id, marks=marks)


@pytest.fixture
def clone(tmp_path, data_dir, monkeypatch):
    """SCRATCH/evoprop as the working directory, SCRATCH/shared/datasets beside it, this tree's evoprop on PATH."""
    root = tmp_path / "evoprop"
    root.mkdir()
    (root / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "datasets").symlink_to(data_dir, target_is_directory=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "evoprop").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m evoprop "$@"\n')
    (bin_dir / "evoprop").chmod(0o755)
    monkeypatch.chdir(root)
    monkeypatch.delenv("EVOPROP_DATA", raising=False)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
    return root


#: What a python block leaves behind that the README promises, keyed by a phrase in the block.
CHECKS = {
    "trainer.fit": lambda ns: (ns["summary"]["epochs"] == 2 and ns["summary"]["best_test_f1"] > 0.8
                               and set(ns["state"]) >= {"model", "optimizer", "generator", "history"}),
    # 79 steps per epoch, a generation every 20: 4 per epoch
    "LayerSearch": lambda ns: ns["search"].strategy.generation == 2 * 4 and ns["accuracy"] > 0.7,
    "from evoprop.lab": lambda ns: ns["plane"].loss.shape == (11, 11) and ns["check"].passed,
    '"natural"': lambda ns: ns["opt"].state_dict() is not None,
}


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_readme_block_runs_as_written(block: Block, clone):
    if block.language == "bash":
        try:  # a block that waits for a person or a server must say so (skip), not hang the suite
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=clone, capture_output=True,
                                  text=True, timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README line {block.line} ran for over {BLOCK_TIMEOUT} s: make it smaller, or mark it "
                        "skip with its reason if it waits for a person or a server")
        assert done.returncode == 0, f"README line {block.line} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return
    namespace: dict = {}
    exec(compile(block.code, f"README.md, block at line {block.line}", "exec"), namespace)
    for phrase, check in CHECKS.items():
        if phrase in block.code:
            assert check(namespace), f"README line {block.line}: {phrase} example did not do what the README says"


def test_every_block_that_does_not_run_says_why():
    assert len([b for b in BLOCKS if b.language == "python"]) >= 4
    for block in BLOCKS:
        if block.mark == "skip":
            assert block.reason and block.reason.startswith(SKIP_REASONS), (block.line, block.reason)
    for block in BLOCKS:  # no placeholders: every path in a command is one the README's own commands create
        assert "…" not in block.code, f"README line {block.line} has a placeholder"


def test_the_readme_test_command_is_ci_run():
    assert "bash .ci/run" in README.read_text()
    assert (README.parent / ".ci" / "run").exists()
