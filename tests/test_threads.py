"""The CLI's OpenMP default: waiting threads sleep (fast on a shared machine), unless the user configured OpenMP.

Each case is a fresh interpreter, because OpenMP reads its environment once, when torch loads it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evoprop.cli.threads import OPENMP_PREFIXES

SRC = str(Path(__file__).resolve().parents[1] / "src")


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose environment has no OpenMP settings but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(OPENMP_PREFIXES)}
    clean["PYTHONPATH"] = SRC + os.pathsep + clean.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                          timeout=300, check=True)


@pytest.mark.slow  # two fresh interpreters that load torch
def test_the_cli_makes_openmp_threads_sleep_instead_of_spinning():
    """Importing the CLI sets OMP_WAIT_POLICY=PASSIVE before torch loads, and libgomp takes it: its spin
    count is 0 only under PASSIVE (OMP_DISPLAY_ENV, set after the CLI's check, makes libgomp print it)."""
    code = ("import os; import evoprop.cli; os.environ['OMP_DISPLAY_ENV'] = 'verbose'; "
            "import evoprop.cli.main, torch; torch.ones(64, 64) @ torch.ones(64, 64); "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    done = python(code)
    assert done.stdout.split() == ["PASSIVE"]
    if "GOMP_SPINCOUNT" not in done.stderr:
        pytest.skip("this torch build's OpenMP is not GNU libgomp (no OMP_DISPLAY_ENV report)")
    assert "GOMP_SPINCOUNT = '0'" in done.stderr
    untouched = python("import torch", OMP_DISPLAY_ENV="verbose").stderr  # without evoprop: libgomp spins
    assert "GOMP_SPINCOUNT = '0'" not in untouched


@pytest.mark.parametrize("setting", [{"OMP_NUM_THREADS": "2"}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}])
def test_a_users_openmp_settings_are_left_alone(setting):
    names = sorted({"OMP_WAIT_POLICY", *setting})
    code = f"import os, json; import evoprop.cli; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))"
    assert json.loads(python(code, **setting).stdout) == {"OMP_WAIT_POLICY": setting.get("OMP_WAIT_POLICY"), **setting}


@pytest.mark.slow  # a fresh interpreter that loads torch
def test_nothing_changes_once_torch_is_loaded():
    """Too late to matter for this process, so not set (its children would otherwise differ from it)."""
    out = python("import os, torch; import evoprop.cli; print(os.environ.get('OMP_WAIT_POLICY'))").stdout
    assert out.split() == ["None"]
