"""The README's promises that code can check: its Python example runs, its test command is .ci/run."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    return blocks


def test_the_python_api_example_runs(data_dir, monkeypatch, capsys):
    example = next(b for b in python_blocks() if "trainer.fit" in b)
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["summary"]["epochs"] == 2
    assert namespace["summary"]["best_test_f1"] > 0.8
    assert set(namespace["state"]) >= {"model", "optimizer", "generator", "history"}


def test_the_drop_in_layer_search_example_runs(data_dir, monkeypatch, capsys):
    example = next(b for b in python_blocks() if "LayerSearch" in b)
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["search"].strategy.generation == 2 * 4  # 79 steps per epoch, a generation every 20
    assert namespace["accuracy"] > 0.7
    assert "test accuracy" in capsys.readouterr().out


def test_the_optimizer_lab_example_runs(data_dir, monkeypatch, capsys):
    example = next(b for b in python_blocks() if "from evoprop.lab" in b)
    monkeypatch.setenv("EVOPROP_DATA", str(data_dir))
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["plane"].loss.shape == (11, 11)
    assert namespace["check"].passed


def test_the_readme_test_command_is_ci_run():
    assert "bash .ci/run" in README.read_text()
    assert (README.parent / ".ci" / "run").exists()
