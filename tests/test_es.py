"""Tests of evoprop.es: the CMA-ES family (fast, CPU, seeded)."""

from __future__ import annotations

import io
import math
import statistics

import numpy as np
import pytest
import torch

from evoprop.errors import ConfigError, StrategyDiverged
from evoprop.es import STRATEGIES, make_strategy, rank
from evoprop.es.paper import paper_eta_c, paper_weights

# ---------------------------------------------------------------------------
# test functions (batched: X is (P, d))
# ---------------------------------------------------------------------------


def sphere(X):
    return (X**2).sum(1)


def ellipsoid(X):
    d = X.shape[1]
    c = 1e6 ** (torch.arange(d, dtype=X.dtype) / (d - 1))
    return (c * X**2).sum(1)


def rosenbrock(X):
    return (100 * (X[:, 1:] - X[:, :-1] ** 2) ** 2 + (1 - X[:, :-1]) ** 2).sum(1)


FUNCS = {"sphere": sphere, "ellipsoid": ellipsoid, "rosenbrock": rosenbrock}


def run(es, f, target, budget):
    while es.best.fitness > target and es.evaluations < budget:
        X = es.ask()
        es.tell(X, f(X))
    return es


# (variant, options) -> evaluation budget per function, d = 8, target 1e-8.
# Budgets are ~1.5-2x the evaluations measured over seeds 0-2.
SOLVE = {
    ("cma", ()): {"sphere": 2500, "ellipsoid": 8000, "rosenbrock": 8000},
    ("cma", (("method", "cholesky"),)): {"sphere": 2500, "ellipsoid": 8000, "rosenbrock": 8000},
    ("sep", ()): {"sphere": 2500, "ellipsoid": 5000, "rosenbrock": 130000},
    ("lmma", ()): {"sphere": 2500, "ellipsoid": 130000, "rosenbrock": 15000},
    ("paper", (("faithful", False),)): {"sphere": 6000, "ellipsoid": 16000, "rosenbrock": 20000},
    ("ipop", ()): {"sphere": 2500, "ellipsoid": 8000, "rosenbrock": 8000},
}


#: The cases with the largest budgets (over ~1 s of CPU each): run by CI, left out of the fast loop.
SLOW_SOLVE = {("lmma", "ellipsoid"), ("sep", "rosenbrock"), ("lmma", "rosenbrock"), ("paper", "rosenbrock")}


@pytest.mark.parametrize("variant, fname", [
    pytest.param(v, f, id=v[0] + "".join(f"-{k}={x}" for k, x in v[1]) + f"-{f}",
                 marks=[pytest.mark.slow] if (v[0], f) in SLOW_SOLVE else [])
    for v in SOLVE for f in FUNCS])
def test_solves_small_problems(variant, fname):
    name, opts = variant
    budget = SOLVE[variant][fname]
    d = 8
    x0 = torch.zeros(d, dtype=torch.float64) if fname == "rosenbrock" else torch.full((d,), 0.5, dtype=torch.float64)
    es = run(make_strategy(name, x0, 0.5, seed=1, **dict(opts)), FUNCS[fname], 1e-8, budget)
    assert es.best.fitness <= 1e-8, (name, fname, es.evaluations, es.best.fitness)
    assert torch.isclose(FUNCS[fname](es.best.solution[None])[0], torch.tensor(es.best.fitness, dtype=torch.float64))


def test_paper_faithful_is_run_literally():
    """As printed, p_σ never decays: σ first collapses, then grows without bound once ||p_σ|| > E||N||,
    until the spread of the samples passes 1e20 × σ0 and the search stops as diverged."""
    es = make_strategy("paper", torch.full((8,), 0.5, dtype=torch.float64), 0.5, seed=0)
    sig = [es.sigma]
    with pytest.raises(StrategyDiverged, match="'paper' diverged .* above 1e20"):
        for _ in range(200):
            X = es.ask()
            es.tell(X, sphere(X))
            sig.append(es.sigma)
    assert sig[1] < 0.5 * sig[0] and sig[3] < sig[2] < sig[1]  # e^(||p_σ||/E||N|| - 1) < 1 while p_σ is short
    assert sig[-1] > 1e3 * sig[0]  # ... and the never-forgotten path makes σ explode
    assert es.best.fitness > 1e-2  # so the literal method does not solve the sphere


# ---------------------------------------------------------------------------
# factory and validation
# ---------------------------------------------------------------------------


def test_factory_names_and_int_dim():
    assert set(STRATEGIES) == {"paper", "cma", "sep", "lmma", "ipop"}
    for name in STRATEGIES:
        es = make_strategy(name, 5, 0.3, seed=0)
        X = es.ask()
        assert X.shape == (es.popsize, 5) and X.dtype == torch.get_default_dtype()
        assert es.popsize == 4 + int(3 * math.log(5))
        es.tell(X, sphere(X))
        assert es.generation == 1 and es.evaluations == es.popsize
    es = make_strategy("cma", [1, 2, 3], 1.0, popsize=7, dtype=torch.float64, seed=0)
    assert es.ask().dtype == torch.float64 and es.popsize == 7


@pytest.mark.parametrize("kwargs, msg", [
    ({"name": "nope"}, "unknown evolution strategy"),
    ({"popsize": 1}, "popsize"),
    ({"popsize": 2.5}, "popsize"),
    ({"sigma0": 0.0}, "sigma0"),
    ({"sigma0": -1.0}, "sigma0"),
    ({"sigma0": float("nan")}, "sigma0"),
    ({"x0": torch.zeros(0)}, "0 dimensions"),
    ({"x0": 0}, "dimension"),
    ({"x0": torch.zeros(2, 3)}, "1-D"),
    ({"x0": torch.tensor([0.0, float("nan")])}, "NaN"),
    ({"bogus_option": 1}, "bogus_option"),
])
@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma", "ipop"])
def test_degenerate_settings_are_config_errors(name, kwargs, msg):
    args = {"name": name, "x0": torch.zeros(4), "sigma0": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=msg):
        make_strategy(args.pop("name"), args.pop("x0"), args.pop("sigma0"), **args)


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma"])
def test_tell_shape_errors(name):
    es = make_strategy(name, 4, 1.0, seed=0)
    with pytest.raises(ConfigError, match="ask"):
        es.tell(torch.zeros(es.popsize, 4), torch.zeros(es.popsize))
    X = es.ask()
    with pytest.raises(ConfigError, match="shape"):
        es.tell(X[:-1], sphere(X[:-1]))
    with pytest.raises(ConfigError, match="shape"):
        es.tell(X[:, :-1], sphere(X))
    with pytest.raises(ConfigError, match="fitness"):
        es.tell(X, sphere(X)[:-1])
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="NaN"):
        es.tell(bad, sphere(X))
    es.tell(X, sphere(X))  # still usable


def test_rank_puts_non_finite_last():
    f = torch.tensor([3.0, float("nan"), -1.0, float("inf"), float("-inf"), 2.0])
    assert rank(f).tolist() == [2, 5, 0, 1, 3, 4]


# ---------------------------------------------------------------------------
# non-finite fitness
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma"])
def test_nan_fitness_ranks_worst_and_never_corrupts_state(name):
    torch.manual_seed(0)
    d = 6
    a = make_strategy(name, torch.full((d,), 0.5, dtype=torch.float64), 0.5, seed=3)
    b = make_strategy(name, torch.full((d,), 0.5, dtype=torch.float64), 0.5, seed=3)
    for _ in range(4):
        Xa, Xb = a.ask(), b.ask()
        assert torch.equal(Xa, Xb)
        f = sphere(Xa)
        worst = f.argsort()[-3:].sort().values  # the three worst, in sample order
        fa, fb = f.clone(), f.clone()
        fa[worst] = torch.tensor([1e10, 2e10, 3e10], dtype=f.dtype)  # finite, worst, ranked by sample order
        fb[worst] = torch.tensor([float("nan"), float("inf"), float("-inf")], dtype=f.dtype)
        a.tell(Xa, fa)
        b.tell(Xb, fb)  # non-finite values rank worst, ties in sample order: the same update
    assert torch.equal(a.mean, b.mean) and a.sigma == b.sigma
    assert a.best.fitness == b.best.fitness
    # all non-finite: nothing moves, counters advance
    X = b.ask()
    mean, sigma, sd = b.mean, b.sigma, b.state_dict()
    b.tell(X, torch.full((b.popsize,), float("nan")))
    assert torch.equal(b.mean, mean) and b.sigma == sigma and b.generation == sd["generation"] + 1
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            assert torch.isfinite(v).all(), k
    # best ignores NaN
    X = b.ask()
    f = sphere(X)
    f[0] = float("nan")
    b.tell(X, f)
    assert math.isfinite(b.best.fitness)


# ---------------------------------------------------------------------------
# state_dict and resume determinism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma", "ipop"])
@pytest.mark.parametrize("mid_ask", [False, True])
def test_state_dict_round_trip_and_resume(name, mid_ask):
    d = 6
    x0 = torch.full((d,), 0.5, dtype=torch.float64)
    kw = {"stop_options": {"tolfun": 1e-3}} if name == "ipop" else {}  # make ipop restart early
    a = make_strategy(name, x0, 0.5, seed=11, **kw)
    for _ in range(5):
        X = a.ask()
        a.tell(X, rosenbrock(X))
    if mid_ask:
        a.ask()  # a pending ask: the saved RNG state is the one before it
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    cont = []
    if mid_ask:
        a.load_state_dict(a.state_dict())  # drops the pending population, re-draws it
    for _ in range(15 if name == "paper" else 40):  # the literal paper variant diverges at generation 27
        X = a.ask()
        cont.append(X)
        a.tell(X, rosenbrock(X))
    buf.seek(0)
    b = make_strategy(name, x0, 0.5, seed=999, **kw)  # different seed: the state must override it
    b.load_state_dict(torch.load(buf, weights_only=False))
    for Xa in cont:
        Xb = b.ask()
        assert torch.equal(Xa, Xb)
        b.tell(Xb, rosenbrock(Xb))
    assert torch.equal(a.mean, b.mean) and a.sigma == b.sigma and a.generation == b.generation
    assert a.best.fitness == b.best.fitness


def test_load_state_dict_rejects_mismatch():
    a = make_strategy("cma", 4, 1.0, seed=0)
    with pytest.raises(ConfigError, match="sep"):
        a.load_state_dict(make_strategy("sep", 4, 1.0).state_dict())
    with pytest.raises(ConfigError, match="dim"):
        a.load_state_dict(make_strategy("cma", 5, 1.0).state_dict())


# ---------------------------------------------------------------------------
# injected / reordered solutions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma"])
def test_tell_accepts_reordered_solutions(name):
    d = 5
    a = make_strategy(name, torch.full((d,), 0.3, dtype=torch.float64), 0.4, seed=5)
    b = make_strategy(name, torch.full((d,), 0.3, dtype=torch.float64), 0.4, seed=5)
    for g in range(12):
        Xa, _ = a.ask(), b.ask()  # b needs a pending ask; it is told a's population
        perm = torch.randperm(a.popsize, generator=torch.Generator().manual_seed(g))
        a.tell(Xa, ellipsoid(Xa))
        Xp = Xa[perm].clone()  # a different tensor: b must map it back to z
        b.tell(Xp, ellipsoid(Xp))  # (a's population: a degenerate C may give b another eigenbasis)
        assert torch.allclose(a.mean, b.mean, rtol=1e-9, atol=1e-12)
        assert a.sigma == pytest.approx(b.sigma, rel=1e-9)


# ---------------------------------------------------------------------------
# cma: the textbook update (independent numpy re-implementation, loops over samples)
# ---------------------------------------------------------------------------


def textbook_cma_step(m, sigma, C, ps, pc, g, X, f, lam):
    """One generation of Hansen's tutorial (arXiv:1604.00772, Fig. 6 / eqs. 39-47), in numpy."""
    n = len(m)
    mu = lam // 2
    wp = np.array([math.log((lam + 1) / 2) - math.log(i + 1) for i in range(lam)])
    mueff = wp[:mu].sum() ** 2 / (wp[:mu] ** 2).sum()
    mueffm = wp[mu:].sum() ** 2 / (wp[mu:] ** 2).sum()
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    cs = (mueff + 2) / (n + mueff + 5)
    ds = 1 + 2 * max(0, math.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    amu = 1 + c1 / cmu
    amueff = 1 + 2 * mueffm / (mueff + 2)
    aposdef = (1 - c1 - cmu) / (n * cmu)
    w = np.where(wp >= 0, wp / wp[wp >= 0].sum(), min(amu, amueff, aposdef) * wp / -wp[wp < 0].sum())
    chin = math.sqrt(2) * math.exp(math.lgamma((n + 1) / 2) - math.lgamma(n / 2))
    order = np.argsort(f, kind="stable")
    ys = [(X[i] - m) / sigma for i in order]
    evals, B = np.linalg.eigh(C)
    Cinvsqrt = B @ np.diag(evals**-0.5) @ B.T
    yw = sum(w[i] * ys[i] for i in range(mu))
    m_new = m + sigma * yw
    ps_new = (1 - cs) * ps + math.sqrt(cs * (2 - cs) * mueff) * Cinvsqrt @ yw
    hsig = np.linalg.norm(ps_new) / math.sqrt(1 - (1 - cs) ** (2 * (g + 1))) < (1.4 + 2 / (n + 1)) * chin
    pc_new = (1 - cc) * pc + hsig * math.sqrt(cc * (2 - cc) * mueff) * yw
    wo = [w[i] if w[i] >= 0 else w[i] * n / np.linalg.norm(Cinvsqrt @ ys[i]) ** 2 for i in range(lam)]
    delta = (1 - hsig) * cc * (2 - cc)
    C_new = (1 + c1 * delta - c1 - cmu * w.sum()) * C + c1 * np.outer(pc_new, pc_new)
    for i in range(lam):
        C_new = C_new + cmu * wo[i] * np.outer(ys[i], ys[i])
    sigma_new = sigma * math.exp(cs / ds * (np.linalg.norm(ps_new) / chin - 1))
    return m_new, sigma_new, C_new, ps_new, pc_new


@pytest.mark.parametrize("block", [1024, 2])  # 2: the blocked triangular products are exercised
@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_cma_matches_textbook_update(method, block, monkeypatch):
    monkeypatch.setattr("evoprop.es.cov.BLOCK", block)
    d, lam = 5, 12
    m = np.linspace(-1, 1, d)
    es = make_strategy("cma", torch.tensor(m), 0.7, popsize=lam, seed=2, method=method)
    sigma, C, ps, pc = 0.7, np.eye(d), np.zeros(d), np.zeros(d)
    for g in range(6):
        X = es.ask()
        f = rosenbrock(X)
        m_ref, sigma_ref, C_ref, ps_ref, pc_ref = textbook_cma_step(m, sigma, C, ps, pc, g, X.numpy(), f.numpy(), lam)
        es.tell(X, f)
        np.testing.assert_allclose(es.mean.numpy(), m_ref, rtol=1e-10, atol=1e-12)
        if method == "eigh":
            np.testing.assert_allclose(es.p_sigma.numpy(), ps_ref, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(es.p_c.numpy(), pc_ref, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(es.covariance.numpy(), C_ref, rtol=1e-9, atol=1e-12)
            assert es.sigma == pytest.approx(sigma_ref, rel=1e-10)
            m, sigma, C, ps, pc = m_ref, sigma_ref, C_ref, ps_ref, pc_ref
        else:  # at g = 0 C = I, so L = C^1/2 and the step is identical; later L^-1 differs from C^-1/2
            if g == 0:
                np.testing.assert_allclose(es.covariance.numpy(), C_ref, rtol=1e-9, atol=1e-12)
                assert es.sigma == pytest.approx(sigma_ref, rel=1e-10)
            m, sigma, C = es.mean.numpy(), es.sigma, es.covariance.numpy()
            ps, pc = es.p_sigma.numpy(), es.p_c.numpy()
    assert np.linalg.eigvalsh(C).min() > 0


def test_blocked_triangular_products(monkeypatch):
    from evoprop.es.cov import add_weighted_gram_lower, lower_matmul_t, symmetrized

    monkeypatch.setattr("evoprop.es.cov.BLOCK", 3)
    g = torch.Generator().manual_seed(0)
    d = 11
    L = torch.randn(d, d, generator=g, dtype=torch.float64).tril()
    z = torch.randn(7, d, generator=g, dtype=torch.float64)
    torch.testing.assert_close(lower_matmul_t(z, L), z @ L.T)
    C = torch.eye(d, dtype=torch.float64)
    w = torch.rand(7, generator=g, dtype=torch.float64) - 0.3
    add_weighted_gram_lower(C, z, w, 0.5)
    torch.testing.assert_close(symmetrized(C), torch.eye(d, dtype=torch.float64) + 0.5 * z.T @ (w[:, None] * z))


def test_cma_agrees_with_cmaes_package():
    cmaes = pytest.importorskip("cmaes")
    d, lam = 6, 10
    x0 = np.full(d, 0.5)
    ours = make_strategy("cma", torch.tensor(x0), 0.3, popsize=lam, seed=0, method="eigh")
    ref = cmaes.CMA(mean=x0.copy(), sigma=0.3, population_size=lam, seed=0)
    ours._chin = ref._chi_n  # cmaes approximates E||N(0,I)||; we use the exact value by default
    for _ in range(5):
        X = ours.ask()
        f = ellipsoid(X)
        ours.tell(X, f)
        ref.tell([(X[i].numpy(), float(f[i])) for i in range(lam)])
        np.testing.assert_allclose(ours.mean.numpy(), ref.mean, rtol=1e-9)
        assert ours.sigma == pytest.approx(ref._sigma, rel=1e-9)
        np.testing.assert_allclose(ours.covariance.numpy(), ref._C, rtol=1e-8, atol=1e-9)  # cmaes adds 1e-8 to a norm


# ---------------------------------------------------------------------------
# paper: a hand-computed tiny case (d = 2, N = 5)
# ---------------------------------------------------------------------------


def test_paper_weights_and_eta_c():
    w = paper_weights(5)
    assert w.tolist() == [0.2, 0.2, 0.0, 0.0, 0.0]  # (i-1/2)/5 = 0.1, 0.3 < 0.4
    assert paper_weights(10).tolist() == [0.1] * 4 + [0.0] * 6
    # printed: η_c = 1/(d² Σ w̃²); at d = 4, N = 5: 1/(16 * 0.08) = 0.78125 (η_c Σw̃ = 0.3125 <= 0.5)
    assert paper_eta_c(4, w) == pytest.approx(1 / (16 * 0.08))
    # d = 2, N = 5: printed 3.125 would give η_c Σw̃ = 1.25 > 1 (C indefinite): capped at 0.5/Σw̃
    assert paper_eta_c(2, w) == pytest.approx(0.5 / 0.4)


def test_paper_matches_hand_computed_update():
    d, N = 2, 5
    sigma0 = 0.5
    es = make_strategy("paper", torch.tensor([1.0, -2.0], dtype=torch.float64), sigma0, popsize=N, seed=0,
                       eta_c=0.6, method="eigh")
    assert es.dim == d and es.popsize == N
    m, sigma, C, ps = np.array([1.0, -2.0]), sigma0, np.eye(2), np.zeros(2)
    chin = math.sqrt(2) * math.gamma(1.5) / math.gamma(1.0)  # E||N(0, I_2)|| = sqrt(pi/2)
    assert chin == pytest.approx(math.sqrt(math.pi / 2))
    for _ in range(3):
        X = es.ask().numpy()
        f = (X**2).sum(1) + X[:, 0]
        es.tell(torch.tensor(X), torch.tensor(f))
        best = np.argsort(f)[:2]  # w̃ = 1/5 for the best two
        dm = sum((X[i] - m) / 5 for i in best)  # (1) with η_m = 1
        C_new = C + 0.6 * sum(((np.outer(X[i] - m, X[i] - m) / sigma - C) / 5) for i in best)  # (2)
        evals, B = np.linalg.eigh(C)  # the C the population was sampled from
        ps = ps + B @ np.diag(evals**-0.5) @ B.T @ dm / sigma  # (3)
        sigma = sigma * math.exp(np.linalg.norm(ps) / chin - 1)  # (4)
        m, C = m + dm, C_new
        np.testing.assert_allclose(es.mean.numpy(), m, rtol=1e-12)
        np.testing.assert_allclose(es.covariance.numpy(), C, rtol=1e-12)
        np.testing.assert_allclose(es.p_sigma.numpy(), ps, rtol=1e-10)
        assert es.sigma == pytest.approx(sigma, rel=1e-12)


# ---------------------------------------------------------------------------
# lmma: the batched transform equals the paper's per-sample loop
# ---------------------------------------------------------------------------


def test_lmma_transform_matches_sequential_loop():
    d = 30
    es = make_strategy("lmma", torch.zeros(d, dtype=torch.float64), 1.0, seed=0, memory=5)
    for _ in range(8):  # fill the paths
        X = es.ask()
        es.tell(X, ellipsoid(X))
    z = torch.randn(4, d, dtype=torch.float64)
    got = es._sample(z)
    t = min(es.generation, es.memory)
    for r in range(4):
        v = z[r].clone()
        for j in range(t):  # d ← (1 − c_d,j) d + c_d,j m_j (m_jᵀ d)
            c, mj = es.c_d[j], es.paths[j]
            v = (1 - c) * v + c * mj * (mj @ v)
        torch.testing.assert_close(got[r], v, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(es._whiten(got), z, rtol=1e-8, atol=1e-10)


def test_lmma_state_is_small_at_large_dim():
    d = 204_800
    es = make_strategy("lmma", torch.zeros(d), 0.1, popsize=8, seed=0)
    assert es.state_bytes() < 1e9
    X = es.ask()
    es.tell(X, sphere(X))
    assert X.shape == (8, d) and torch.isfinite(es.mean).all()


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma"])
def test_float32_search(name):
    es = make_strategy(name, torch.full((6,), 0.5), 0.5, seed=0, **({"faithful": False} if name == "paper" else {}))
    run(es, sphere, 1e-6, 20000)
    assert es.ask().dtype == torch.float32 and es.best.solution.dtype == torch.float32
    assert es.best.fitness <= 1e-6


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma", "ipop"])
def test_a_returned_population_is_never_reused_by_the_next_ask(name):
    # the strategies draw z into a buffer kept between generations; what ask() returns must not alias it
    es = make_strategy(name, torch.zeros(12), 0.5, 6, seed=0)
    first = es.ask()
    kept = first.clone()
    es.tell(first, (first**2).sum(1))
    es.ask()
    assert torch.equal(first, kept)


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma", "ipop"])
def test_ask_into_a_caller_buffer_samples_the_same_search(name):
    # ask(out=buf) writes the population into buf and the search is the one ask() makes
    x0 = torch.zeros(12, dtype=torch.float64)
    a = make_strategy(name, x0, 0.5, 6, seed=3)
    b = make_strategy(name, x0, 0.5, 6, seed=3)
    buf = torch.empty(6, 12, dtype=torch.float64)
    for _ in range(4):
        xa, xb = a.ask(), b.ask(out=buf)
        assert xb.data_ptr() == buf.data_ptr()
        torch.testing.assert_close(xa, xb, rtol=1e-12, atol=1e-12)
        a.tell(xa, (xa**2).sum(1))
        b.tell(xb, (xb**2).sum(1))
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-12, atol=1e-12)


def test_ask_rejects_a_buffer_of_the_wrong_shape():
    es = make_strategy("sep", torch.zeros(12, dtype=torch.float64), 0.5, 6, seed=0)
    with pytest.raises(ConfigError, match=r"ask\(out=...\) needs a contiguous \(6, 12\)"):
        es.ask(out=torch.empty(5, 12, dtype=torch.float64))


def test_large_cpu_draws_are_split_over_parallel_streams_reproducibly():
    from evoprop.es.draws import DRAW_STREAMS, PARALLEL_DRAW_MIN

    dim, popsize = 100_000, PARALLEL_DRAW_MIN // 100_000 + 1
    a = make_strategy("sep", torch.zeros(dim), 0.5, popsize, seed=5)
    b = make_strategy("sep", torch.zeros(dim), 0.5, popsize, seed=5)
    xa, xb = a.ask(), b.ask()
    assert torch.equal(xa, xb)  # same seed, same population, whatever the thread count
    z = a._z_buffer.view(-1)
    assert abs(float(z.mean())) < 3e-3 and abs(float(z.std()) - 1) < 3e-3
    blocks = z.chunk(DRAW_STREAMS)
    assert not torch.equal(blocks[0][:1000], blocks[1][:1000])  # distinct streams, not one seed repeated
    a.tell(xa, xa.square().sum(1))
    assert not torch.equal(a.ask(), xb)  # and a new draw each generation


# ---------------------------------------------------------------------------
# inject: external solutions in the population (Hansen 2011, arXiv:1110.4181; pycma's inject)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_injected_points_are_the_first_rows_of_the_next_ask(name):
    es = make_strategy(name, torch.ones(6), 0.5, 5, seed=0)
    points = torch.randn(7, 6, generator=torch.Generator().manual_seed(1))
    es.inject(points)
    X = es.ask()
    assert torch.equal(X, points[:5])  # the queue beyond the population waits for the next ask
    es.tell(X, sphere(X))
    assert es.best.fitness == float(sphere(points[:5]).min())
    X = es.ask()
    assert torch.equal(X[:2], points[5:]) and not torch.equal(X[2], points[0])


@pytest.mark.parametrize("name", ["paper", "cma", "sep", "lmma"])
def test_injections_survive_a_state_dict_round_trip(name):
    es = make_strategy(name, torch.zeros(5), 0.3, 6, seed=2)
    es.inject(torch.full((5,), 0.25))
    X = es.ask()  # pending: the injected point was drawn
    clone = make_strategy(name, torch.zeros(5), 0.3, 6, seed=9)
    clone.load_state_dict(io_round_trip(es.state_dict()))
    assert torch.equal(clone.ask(), X)


def io_round_trip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf)


@pytest.mark.parametrize("name", ["cma", "sep", "paper", "lmma"])
def test_a_far_injected_step_is_clipped_to_the_mahalanobis_bound(name):
    """Hansen 2011: y ← y · min(1, c_y / ||C^{-1/2} y||), c_y = √d + 2d/(d+2), before the update."""
    d = 8
    bound = math.sqrt(d) + 2 * d / (d + 2)
    direction = torch.randn(d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    direction /= direction.norm()
    means = []
    for length in (1e6, bound):  # C = I at the start: the Mahalanobis norm of y is ||y||
        es = make_strategy(name, torch.zeros(d, dtype=torch.float64), 0.5, 10, seed=0)
        es.inject(0.5 * length * direction)
        X = es.ask()
        es.tell(X, torch.arange(10.0))  # the injected row ranks first
        means.append(es.mean)
    torch.testing.assert_close(means[0], means[1])  # the far point moved the mean as one at the bound
    assert float(means[0].norm()) < 0.5 * bound


def test_a_point_within_the_bound_is_used_as_a_sample():
    es, ref = (make_strategy("sep", torch.zeros(4, dtype=torch.float64), 0.5, 8, seed=0) for _ in range(2))
    point = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    es.inject(point)
    X = es.ask()
    Y = ref.ask().clone()
    Y[0] = point
    ref.tell(Y, sphere(Y))  # told as a repaired solution: mapped back, unclipped
    es.tell(X, sphere(X))
    torch.testing.assert_close(es.mean, ref.mean)
    torch.testing.assert_close(es.variances, ref.variances)


def test_cma_gives_an_injected_point_no_negative_weight():
    """A bad injected point (ranked last) does not move active CMA's covariance, whatever it is (pycma's
    CMA_active_injected = 0); a sampled point ranked last does."""
    covs = []
    for point in (torch.full((5,), 3.0), torch.tensor([-2.0, 0.0, 1.0, 0.5, 2.0])):
        es = make_strategy("cma", torch.zeros(5, dtype=torch.float64), 0.5, 8, seed=0)
        es.inject(point.double())
        X = es.ask()
        es.tell(X, -torch.arange(8.0))  # row 0 (the injected point) is the worst
        covs.append(es.covariance)
    torch.testing.assert_close(covs[0], covs[1], rtol=0, atol=1e-12)


def _evaluations_to_solve_sphere(name, opts, injected, seed, d=10, budget=20000):
    """Evaluations until f < 1e-8 on the sphere from x0 = 1, with a point injected each generation:
    ``"good"`` a gradient step m − ¼ ∇f(m) from the mean (half-way to the optimum), ``"bad"`` one
    ten times further away than a typical sample, in a random direction; ``None``: nothing injected."""
    es = make_strategy(name, torch.ones(d, dtype=torch.float64), 0.5, seed=seed, **opts)
    far = torch.Generator().manual_seed(100 + seed)
    while es.best.fitness > 1e-8 and es.evaluations < budget:
        m = es.mean
        if injected == "good":
            es.inject(m - 0.25 * (2 * m))
        elif injected == "bad":
            es.inject(m + 10 * torch.randn(d, generator=far, dtype=torch.float64))
        X = es.ask()
        es.tell(X, sphere(X))
    assert es.best.fitness <= 1e-8, (name, injected, seed)
    return es.evaluations


INJECT_VARIANTS = {"cma": {}, "sep": {}, "lmma": {}, "paper": {"faithful": False}, "ipop": {}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(INJECT_VARIANTS))
def test_a_good_injected_point_speeds_convergence_and_a_bad_one_does_no_harm(name):
    """Hansen 2011: an injected gradient step gives ~2x faster convergence, a bad point no significant harm."""
    med = {inj: statistics.median(_evaluations_to_solve_sphere(name, INJECT_VARIANTS[name], inj, s) for s in range(5))
           for inj in (None, "good", "bad")}
    assert med["good"] < 0.7 * med[None], med
    assert med["bad"] < 1.3 * med[None], med


@pytest.mark.slow
def test_injection_helps_our_cma_as_much_as_pycmas():
    """pycma's inject(force=True) is the reference: the same injected points, the same gain and the same harm."""
    cma = pytest.importorskip("cma")
    d = 10

    def pycma_evaluations(injected, seed, budget=20000):
        es = cma.CMAEvolutionStrategy(np.ones(d), 0.5, {"seed": seed + 1, "verbose": -9, "tolfun": 0, "tolx": 0,
                                                        "tolflatfitness": 1000})
        far, best = np.random.default_rng(100 + seed), math.inf
        while best > 1e-8 and es.countevals < budget:
            m = es.mean.copy()
            if injected == "good":
                es.inject([m - 0.25 * (2 * m)], force=True)
            elif injected == "bad":
                es.inject([m + 10 * far.standard_normal(d)], force=True)
            X = es.ask()
            f = [float((x**2).sum()) for x in X]
            es.tell(X, f)
            best = min(best, *f)
        return es.countevals

    for injected in ("good", "bad"):
        ours = [_evaluations_to_solve_sphere("cma", {}, injected, s) / _evaluations_to_solve_sphere("cma", {}, None, s)
                for s in range(5)]
        ref = [pycma_evaluations(injected, s) / pycma_evaluations(None, s) for s in range(5)]
        assert abs(statistics.median(ours) - statistics.median(ref)) < 0.15, (injected, ours, ref)


def test_the_injected_step_is_clipped_as_pycma_repairs_it():
    """With pycma's mean, σ and C (after 15 generations on an ellipsoid), the step our tell uses for a far
    injected point is pycma's repair_genotype of it."""
    cma = pytest.importorskip("cma")
    d = 6
    ref = cma.CMAEvolutionStrategy(np.full(d, 0.5), 0.3, {"seed": 3, "verbose": -9, "CMA_diagonal": False})
    for _ in range(15):
        X = ref.ask()
        ref.tell(X, [float(ellipsoid(torch.tensor(np.array([x])))[0]) for x in X])
    ours = make_strategy("cma", torch.tensor(ref.mean), ref.sigma, 10, seed=0, method="eigh")
    ours._C.copy_(torch.tensor(ref.sm.C))
    ours._dirty = True
    ours._factorize()
    far = ref.mean + 50 * ref.sigma * np.random.default_rng(0).standard_normal(d)
    ours.inject(torch.tensor(far))
    X = ours.ask()
    z, y = ours._pending["z"].clone(), ours._pending["y"].clone()
    ours._clip_injected(z, y, X, 1)
    expected = (ref.repair_genotype(far.copy()) - ref.mean) / ref.sigma
    np.testing.assert_allclose(y[0].numpy(), expected, rtol=1e-7)
    assert float(z[0].norm()) == pytest.approx(math.sqrt(d) + 2 * d / (d + 2), rel=1e-9)  # the bound
