"""The ES engine's edges (issue 15, items 1 and 7): degenerate states, covariance repair,
in-place edits of a population, IPOP resume, and a diverging run's status (fast, CPU, seeded)."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch

from evoprop.cli.main import main
from evoprop.errors import StrategyDiverged, TrainingDiverged
from evoprop.es import make_strategy
from evoprop.es.cov import repair_floor


def sphere(X):
    return (X**2).sum(1)


def rosenbrock(X):
    return (100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2).sum(1)


# ---------------------------------------------------------------------------
# degenerate states raise one clear error (or are repaired)
# ---------------------------------------------------------------------------


def test_paper_variant_explosion_is_a_clear_divergence():
    """As printed, the paper's σ explodes on the sphere: a StrategyDiverged that says what to change."""
    es = make_strategy("paper", torch.full((90,), 0.5, dtype=torch.float64), 0.5, seed=0)
    with pytest.raises(StrategyDiverged) as info:
        for _ in range(400):
            X = es.ask()
            es.tell(X, sphere(X))
    msg = str(info.value)
    assert "'paper'" in msg and f"generation {es.generation}" in msg and "above 1e20 × σ0" in msg
    assert "--strategy cma" in msg and "faithful=false" in msg
    assert "--es-weight-decay" not in msg  # the printed equations explode on any fitness
    assert isinstance(info.value, TrainingDiverged)  # so every trainer marks the run diverged


def test_a_fitness_that_scale_keeps_lowering_diverges_with_the_remedy_for_it():
    """sep-CMA-ES on a fitness unbounded below (linear, as the NLL of a separable batch is along the
    scale of the weights): σ grows until the guard, and the message says how to bound the fitness and
    names the other strategies, not sep itself (Table 1's sep row ended so, RESULTS.md)."""
    es = make_strategy("sep", torch.zeros(20, dtype=torch.float64), 0.5, seed=0)
    with pytest.raises(StrategyDiverged) as info:
        for _ in range(5000):
            X = es.ask()
            es.tell(X, -X.sum(dim=1))
    msg = str(info.value)
    assert "'sep'" in msg and "above 1e20 × σ0" in msg and "--es-weight-decay" in msg and "--es-batch-size" in msg
    assert "--strategy cma" in msg and "--strategy lmma" in msg and "--strategy sep" not in msg


def test_a_converging_search_is_not_a_divergence():
    """σ far below 1e-20 σ0 is legitimate while the candidates still differ (optimum at 0, float64)."""
    es = make_strategy("cma", torch.full((2,), 0.5, dtype=torch.float64), 1.0, seed=0)
    for _ in range(500):
        X = es.ask()
        es.tell(X, sphere(X))
    assert es.sigma < 1e-20 and es.best.fitness < 1e-40


def _corrupted(name, key, value):
    es = make_strategy(name, torch.full((6,), 1.0), 0.3, seed=0)  # float32 work dtype
    for _ in range(3):
        X = es.ask()
        es.tell(X, rosenbrock(X))
    state = es.state_dict()
    if key == "sigma":
        state[key] = value
    else:
        state[key] = state[key].clone()
        state[key].view(-1)[0] = value
    es.load_state_dict(state)
    return es


@pytest.mark.parametrize("name, key, value, what", [
    ("cma", "_C", math.nan, "covariance matrix became non-finite"),
    ("cma", "_C", -1e3, "positive definiteness"),  # a negative direction larger than any positive one
    ("paper", "_C", math.inf, "covariance matrix became non-finite"),
    ("sep", "_var", math.nan, "variances"),
    ("lmma", "_M", math.inf, "paths"),
    ("cma", "_ps", math.nan, "non-finite"),
    ("sep", "mean", math.inf, "mean became non-finite"),
    ("cma", "sigma", 1e-30, "every candidate equals the mean"),
    ("lmma", "sigma", 1e-30, "every candidate equals the mean"),
])
def test_degenerate_states_raise_strategy_diverged(name, key, value, what):
    es = _corrupted(name, key, value)
    with pytest.raises(StrategyDiverged, match=what) as info:
        for _ in range(3):
            X = es.ask()
            es.tell(X, rosenbrock(X))
    assert f"'{name}' diverged at generation" in str(info.value)


@pytest.mark.parametrize("key, where", [("_C", "ask"), ("mean", "tell")])
def test_ipop_restarts_an_inner_strategy_that_diverges(key, where):
    es = make_strategy("ipop", torch.full((6,), 1.0), 0.3, seed=0)
    X = es.ask()
    es.tell(X, rosenbrock(X))
    state = es.state_dict()
    # numerical trouble that the stopping rules do not see: found when C is factored (ask) or after the update
    state["inner"][key].view(-1)[0] = math.nan
    es.load_state_dict(state)
    if where == "tell":
        X = es.ask()
        es.tell(X, rosenbrock(X))  # the inner search diverges here; the next ask restarts it
        assert es.restarts == 0
    X = es.ask()
    assert es.restarts == 1 and es.sigma == 0.3 and es.popsize == 2 * state["inner"]["popsize"]
    es.tell(X, rosenbrock(X))
    assert torch.isfinite(es.mean).all()


# ---------------------------------------------------------------------------
# es/cov.py: the repair of an indefinite covariance always yields a usable factor
# ---------------------------------------------------------------------------


def _rotated(d, evals, seed=0):
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return (Q * evals) @ Q.T


def _nasty(kind, d=200):
    if kind == "one eigenvalue -1e-3":
        ev = torch.logspace(0, 3, d, dtype=torch.float64)
        ev[0] = -1e-3
        return _rotated(d, ev)
    if kind == "half the spectrum at -1e-12":
        ev = torch.ones(d, dtype=torch.float64)
        ev[: d // 2] = -1e-12
        return _rotated(d, ev, 1)
    if kind == "rank one":
        v = torch.randn(d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        return torch.outer(v, v)
    if kind == "condition 1e30":
        return _rotated(d, torch.logspace(-30, 0, d, dtype=torch.float64), 3)
    if kind == "tiny scale, one eigenvalue -1e-170":
        ev = torch.logspace(-160, -150, d, dtype=torch.float64)
        ev[-2] = -1e-170
        return _rotated(d, ev, 4)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["one eigenvalue -1e-3", "half the spectrum at -1e-12", "rank one",
                                  "condition 1e30", "tiny scale, one eigenvalue -1e-170"])
@pytest.mark.parametrize("method", ["cholesky", "eigh"])
def test_indefinite_covariance_is_repaired_into_a_usable_factor(kind, method):
    d = 200
    es = make_strategy("cma", torch.zeros(d, dtype=torch.float64), 1.0, seed=0, method=method)
    C = _nasty(kind, d)
    state = es.state_dict()
    state["_C"], state["_dirty"] = C, True
    es.load_state_dict(state)
    es._factorize()  # what the next ask does once the refresh is due
    repaired = es.covariance
    A = es._A.to(torch.float64)
    assert torch.isfinite(A).all() and bool((es._D > 0).all())
    top = float(torch.linalg.eigvalsh(C).max())
    # A Aᵀ is the repaired C, which differs from C by no more than its negative part and the floor
    assert torch.allclose(A @ A.T, repaired, rtol=0, atol=1e-9 * top)
    # ... and the repair moved C by no more than its negative part plus the floor
    negative = float((-torch.linalg.eigvalsh(C)).clamp_min(0).max())
    assert float((repaired - C).abs().max()) <= negative + 2 * repair_floor(d) * top
    for _ in range(3):  # and the search goes on
        X = es.ask()
        assert torch.isfinite(X).all()
        es.tell(X, sphere(X))


def test_a_covariance_with_no_positive_direction_is_a_divergence():
    es = make_strategy("cma", torch.zeros(20, dtype=torch.float64), 1.0, seed=0, method="cholesky")
    state = es.state_dict()
    state["_C"], state["_dirty"] = -torch.eye(20, dtype=torch.float64), True
    es.load_state_dict(state)
    with pytest.raises(StrategyDiverged, match="positive definiteness"):
        es._factorize()


# ---------------------------------------------------------------------------
# tell() learns from what was evaluated, also after an in-place edit of ask()'s tensor
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cma", "sep", "lmma", "paper"])
def test_population_clamped_in_place_is_learned_from_as_evaluated(name):
    d = 6
    x0 = torch.full((d,), 0.8, dtype=torch.float64)
    a = make_strategy(name, x0, 0.6, seed=3)
    b = make_strategy(name, x0, 0.6, seed=3)
    clamped = 0
    for _ in range(8):
        Xa = a.ask()
        Xa.clamp_(-1.0, 1.0)  # the usual way to repair bounds: in place
        a.tell(Xa, rosenbrock(Xa))
        Xb = b.ask()
        Xr = Xb.clamp(-1.0, 1.0)  # the same repair as a new tensor, which tell() maps back
        clamped += int((Xr != Xb).sum())
        b.tell(Xr, rosenbrock(Xr))
        assert torch.allclose(a.mean, b.mean, rtol=1e-9, atol=1e-12)
        assert a.sigma == pytest.approx(b.sigma, rel=1e-9)
    assert clamped > 0  # the repair did change solutions


@pytest.mark.parametrize("name", ["cma", "sep"])
def test_unedited_population_into_a_caller_buffer_is_told_without_mapping_back(name, monkeypatch):
    """The common case costs no pass over the population: the stored z is used, not a whitening."""
    es = make_strategy(name, torch.zeros(5), 0.5, seed=0)
    buf = torch.empty(es.popsize, 5)
    calls = []
    original = type(es)._whiten
    monkeypatch.setattr(type(es), "_whiten", lambda self, y: calls.append(1) or original(self, y))
    for _ in range(4):
        X = es.ask(out=buf)
        es.tell(X, sphere(X))
    assert calls == []
    X = es.ask(out=buf)
    X[0, 0] = 0.25  # an edit through indexing is an in-place edit too
    es.tell(X, sphere(X))
    assert calls == [1]


# ---------------------------------------------------------------------------
# ipop: the state holds what decides the next restart
# ---------------------------------------------------------------------------


def test_ipop_resumed_into_another_seed_equals_the_uninterrupted_run_past_a_restart():
    d = 4
    x0 = torch.full((d,), 0.5, dtype=torch.float64)
    kw = {"stop_options": {"tolfun": 1e-2}, "restart_mean": "random"}
    a = make_strategy("ipop", x0, 0.5, seed=11, **kw)
    for _ in range(3):
        X = a.ask()
        a.tell(X, rosenbrock(X))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    cont = []
    while a.restarts < 2:
        X = a.ask()
        cont.append(X)
        a.tell(X, rosenbrock(X))
    for _ in range(5):
        X = a.ask()
        cont.append(X)
        a.tell(X, rosenbrock(X))
    buf.seek(0)
    b = make_strategy("ipop", torch.zeros(d, dtype=torch.float64), 0.1, popsize=20, seed=999,
                      stop_options={"tolfun": 1e-2})  # other x0, σ0, popsize, seed and restart mean
    b.load_state_dict(torch.load(buf, weights_only=False))
    for Xa in cont:
        Xb = b.ask()
        assert torch.equal(Xa, Xb)
        b.tell(Xb, rosenbrock(Xb))
    assert b.restarts == 2 and b.generation == a.generation and torch.equal(a.mean, b.mean)


# ---------------------------------------------------------------------------
# a run whose strategy diverges: status diverged, exit 3, one line, last good epoch kept
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_diverging_run_is_marked_diverged_and_its_resume_ends_in_one_line(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    # the paper's strategy as printed on a 90-weight last layer: epoch 1 completes, its σ explodes in epoch 2
    args = ["train", "--method", "es", "--depth", "2", "--width", "8", "--es-layers", "1", "--strategy", "paper",
            "--popsize", "16", "--generations-per-epoch", "60", "--epochs", "3", "--limit-train", "500",
            "--limit-test", "500", "--es-batch-size", "64", "--data-dir", str(data_dir)]
    assert main([*args, "--out", str(out)]) == 3
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("evoprop: error")]
    assert len(err) == 1 and "'paper' diverged at generation" in err[0] and "--strategy cma" in err[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["epochs"] == 1
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1] and math.isfinite(metrics[0]["test_f1"])
    assert (out / "checkpoint.pt").is_file()

    assert main(["train", "--resume", str(out)]) == 3  # the same divergence, again one line
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert [line for line in captured.err.splitlines() if line.startswith("evoprop: error")] == err
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"
