"""The natural-gradient optimizer (K-FAC): checked against the exact Fisher, and wired into every trainer.

The exactness checks use softmax regression (one nn.Linear) on 500 MNIST images average-pooled
to 7×7 in float64: 10 × 50 weights with the bias, so the exact Fisher (500 × 500) is formed
and solved directly. For one layer K-FAC's only approximation is E[ā āᵀ ⊗ S] ≈ E[ā āᵀ] ⊗ E[S]
(S = diag(p) − p pᵀ, the Fisher of the softmax w.r.t. the logits), plus the Monte Carlo
sampling of labels in the true Fisher. At zero weights every example has the same p, so the
Fisher *is* a Kronecker product and K-FAC must reproduce the natural gradient itself.
"""

import io

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from evoprop.cli.main import cli, main
from evoprop.config import TrainConfig
from evoprop.errors import ConfigError, TrainingDiverged
from evoprop.optim import KFAC, OPTIMIZERS, make_optimizer
from evoprop.runs import RunDir, run_training

DAMPING = 0.01
FISHER_STEPS = 60  # sampled-label passes averaged into G (stat_decay=1: a plain mean)


@pytest.fixture(scope="module")
def pooled(mnist):
    """(x, y): 500 training images, 7×7 average-pooled, float64."""
    x = F.avg_pool2d(mnist.train.x[:500].double(), 4).flatten(1)
    return x, mnist.train.y[:500]


def softmax_regression(weights: str) -> torch.nn.Linear:
    torch.manual_seed(0)
    model = torch.nn.Linear(49, 10).double()
    with torch.no_grad():
        model.bias.zero_()
        if weights == "zero":
            model.weight.zero_()
        else:  # a spread of confident and unsure predictions, as after some training
            model.weight.normal_(0.0, 0.5)
    return model


def as_matrix(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """W̄ = [W, b], the layout of the Kronecker factors (input coordinate last: the bias trick)."""
    return torch.cat([weight, bias[:, None]], dim=1)


def exact_fisher(model, x):
    """The true Fisher of the mean NLL over ``x`` (row-major vec of W̄), and the exact A and E[S]."""
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    s = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    n, c, d = len(x), p.shape[1], a.shape[1]
    fisher = torch.einsum("ncd,ni,nj->cidj", s, a, a).reshape(c * d, c * d) / n
    return fisher, a.T @ a / n, s.mean(0)


def exact_natural_gradient(model, x, y, damping=DAMPING):
    """(gradient, (F + λI)⁻¹ gradient), both as (10, 50) matrices."""
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    grad = as_matrix(model.weight.grad, model.bias.grad).clone()
    fisher, _, _ = exact_fisher(model, x)
    eye = torch.eye(fisher.shape[0], dtype=fisher.dtype)
    return grad, torch.linalg.solve(fisher + damping * eye, grad.flatten()).reshape(grad.shape)


def kfac_direction(model, x, y, steps=FISHER_STEPS, **options):
    """The step K-FAC takes (lr 1, no momentum, no clipping) after averaging ``steps`` factor updates
    at the current weights; the weights are put back after every step. Returns (direction, optimizer)."""
    hyper = dict(lr=1.0, momentum=0.0, damping=DAMPING, stat_decay=1.0, factor_every=1, inverse_every=1, kl_clip=None)
    opt = KFAC(model.parameters(), model, **{**hyper, **options})
    start = [p.detach().clone() for p in model.parameters()]
    for _ in range(steps):
        with torch.no_grad():
            for p, w in zip(model.parameters(), start):
                p.copy_(w)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        moved = [w - p for p, w in zip(model.parameters(), start)]
        for p, w in zip(model.parameters(), start):
            p.copy_(w)
    opt.remove_hooks()
    return as_matrix(*moved), opt


def factored_reference(a, g, grad, damping=DAMPING):
    """(A + π√λ I)⁻¹ and (G + √λ/π I)⁻¹ applied to ``grad``: factored damping, from exact factors."""
    pi = float((a.trace() / a.shape[0]) / (g.trace() / g.shape[0])) ** 0.5
    eye = lambda n: torch.eye(n, dtype=grad.dtype)  # noqa: E731
    return torch.linalg.solve(g + damping ** 0.5 / pi * eye(len(g)), grad) @ torch.linalg.inv(
        a + pi * damping ** 0.5 * eye(len(a)))


def cosine(a, b) -> float:
    return float(a.flatten() @ b.flatten() / (a.norm() * b.norm()))


def relative_error(a, b) -> float:
    return float((a - b).norm() / b.norm())


# --------------------------------------------------------------------------- exactness

# The check, with the tolerances found (500 images, λ = 0.01, 60 sampled-label passes; measured values
# in the tests). Zero weights: the Fisher is Kronecker, so K-FAC must give the natural gradient up to
# the sampling of G. Trained weights: the Kronecker approximation leaves a gap, of the direction mostly.
TOLERANCE = {"zero": {"cosine": 0.999, "relative_error": 0.03}, "trained": {"cosine": 0.95, "relative_error": 0.3}}


def agrees(direction, natural, weights, *, length_too=True) -> bool:
    """Whether ``direction`` passes the check against the exact natural gradient ``natural``.
    ``length_too=False`` for factored damping, which damps more strongly than F + λI."""
    tol = TOLERANCE[weights]
    return cosine(direction, natural) > tol["cosine"] and (
        not length_too or relative_error(direction, natural) < tol["relative_error"])


def test_where_the_fisher_is_a_kronecker_product_kfac_is_the_natural_gradient(pooled):
    x, y = pooled
    model = softmax_regression("zero")
    fisher, a, g = exact_fisher(model, x)
    assert relative_error(torch.kron(g, a), fisher) < 1e-12  # uniform predictions: F = E[S] ⊗ A exactly
    grad, natural = exact_natural_gradient(model, x, y)

    exact, opt = kfac_direction(model, x, y, damping_mode="exact")
    state = opt.state[model.weight]
    assert relative_error(state["A"], a) < 1e-12  # A needs no sampling
    assert relative_error(state["G"], g) < 0.05  # G from sampled labels (60 × 500 draws): measured 0.018
    assert agrees(exact, natural, "zero")  # measured: cosine 0.99995, relative error 0.010
    # factored damping: the same direction (cosine 0.99996), half the length at λ = 0.01 ...
    factored, _ = kfac_direction(model, x, y, damping_mode="factored")
    assert agrees(factored, natural, "zero", length_too=False)
    # ... because it inverts the exact Fisher E[S] ⊗ A damped as (E[S] + √λ/π I) ⊗ (A + π√λ I):
    # that it does, up to the sampling of G (measured relative error 0.009)
    assert relative_error(factored, factored_reference(a, g, grad)) < 0.03
    assert not agrees(grad, natural, "zero", length_too=False)  # the plain gradient: cosine 0.89


def test_on_a_trained_model_kfac_agrees_up_to_the_kronecker_approximation(pooled):
    x, y = pooled
    model = softmax_regression("trained")
    grad, natural = exact_natural_gradient(model, x, y)
    exact, _ = kfac_direction(model, x, y, damping_mode="exact")
    factored, _ = kfac_direction(model, x, y, damping_mode="factored")
    assert agrees(exact, natural, "trained")  # measured: cosine 0.986, relative error 0.18
    assert agrees(factored, natural, "trained", length_too=False)  # cosine 0.983
    # the gap is the Kronecker approximation, not the sampling: with E[S] in place of the sampled
    # G, factored K-FAC gives the same step (measured relative error 0.008)
    _, a, g = exact_fisher(model, x)
    assert relative_error(factored, factored_reference(a, g, grad)) < 0.03
    assert not agrees(grad, natural, "trained", length_too=False)  # the plain gradient: cosine 0.72


@pytest.mark.parametrize("weights", ["zero", "trained"])
def test_the_check_fails_for_a_wrong_damping_or_a_wrong_inverse(pooled, weights):
    x, y = pooled
    model = softmax_regression(weights)
    _, natural = exact_natural_gradient(model, x, y)
    right, opt = kfac_direction(model, x, y, damping_mode="exact")
    assert agrees(right, natural, weights)

    # damping 100× too large: relative error 0.98 (exact mode); factored mode: the direction drifts too
    over_damped, _ = kfac_direction(model, x, y, steps=5, damping_mode="exact", damping=100 * DAMPING)
    assert not agrees(over_damped, natural, weights)
    over_damped, _ = kfac_direction(model, x, y, steps=5, damping_mode="factored", damping=100 * DAMPING)
    assert not agrees(over_damped, natural, weights, length_too=False)

    state = opt.state[model.weight]
    grad = as_matrix(model.weight.grad, model.bias.grad)
    assert not agrees(state["G"] @ grad @ state["A"], natural, weights, length_too=False)  # not inverted: 0.12 / 0.08
    eye = torch.eye(10, dtype=grad.dtype)
    g_only = torch.linalg.solve(state["G"] + DAMPING ** 0.5 * eye, grad)  # A⁻¹ forgotten: 0.89 / 0.73
    assert not agrees(g_only, natural, weights, length_too=False)


def test_empirical_fisher_factors_are_exactly_the_training_label_statistics(pooled):
    x, y = pooled
    model = softmax_regression("trained")
    _, opt = kfac_direction(model, x, y, steps=1, fisher="empirical")
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)
    residual = p - F.one_hot(y, 10).double()  # ∂ℓ/∂logits of each example
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    state = opt.state[model.weight]
    assert relative_error(state["A"], a.T @ a / len(x)) < 1e-12
    assert relative_error(state["G"], residual.T @ residual / len(x)) < 1e-12


# --------------------------------------------------------------------------- the optimizer's contract


def test_layers_it_cannot_precondition_get_plain_sgd():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    opt = make_optimizer("natural", model.parameters(), model=model, lr=0.1, momentum=0.0)
    assert opt.preconditioned == ["0", "2"]
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    F.cross_entropy(model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        sgd = before[name] - 0.1 * grads[name]
        if name.startswith("1."):  # LayerNorm: w <- w - lr * g, exactly
            assert torch.equal(p.detach(), sgd), name
        else:
            assert not torch.allclose(p.detach(), sgd), name


def run_steps(model, opt, x, y, steps, start=0):
    for i in range(start, start + steps):
        idx = slice((i * 64) % 1920, (i * 64) % 1920 + 64)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()


def test_state_dict_resume_equals_an_uninterrupted_run(mnist_small):
    x, y = mnist_small
    from evoprop.models import build_mlp

    def fresh():
        torch.manual_seed(0)
        model = build_mlp((1, 28, 28), 10, depth=3, width=32)
        return model, make_optimizer("natural", model.parameters(), model=model, factor_every=2, inverse_every=3)

    model, opt = fresh()
    run_steps(model, opt, x, y, 14)
    # stop where the inverses are stale (step 7: refreshed at step 6) and the sampler has moved on
    model_b, opt_b = fresh()
    run_steps(model_b, opt_b, x, y, 7)
    buffer = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optimizer": opt_b.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    model_c, opt_c = fresh()
    model_c.load_state_dict(saved["model"])
    opt_c.load_state_dict(saved["optimizer"])
    run_steps(model_c, opt_c, x, y, 7, start=7)
    for (name, p), q in zip(model.named_parameters(), model_c.parameters()):
        assert torch.equal(p, q), name


def test_group_settings_changed_after_a_resume_take_effect(mnist_small):
    # schedules set param_groups[i]["lr"]; load_state_dict() replaces those dicts
    x, y = mnist_small
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    opt = make_optimizer("natural", model.parameters(), model=model, momentum=0.0)
    run_steps(model, opt, x, y, 2)
    resumed = make_optimizer("natural", model.parameters(), model=model, momentum=0.0)
    opt.remove_hooks()
    resumed.load_state_dict(opt.state_dict())
    resumed.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    run_steps(model, resumed, x, y, 1, start=2)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


@pytest.mark.slow
def test_resume_through_the_run_directory_equals_an_uninterrupted_run(data_dir, tmp_path):
    # 1,350 training images = 22 steps an epoch: the epoch ends between inverse refreshes (every 20)
    cfg = dict(dataset="mnist", data_dir=str(data_dir), limit_train=1500, limit_test=300, depth=3, width=32,
               optimizer="natural", lr=0.005, batch_size=64, seed=1, device="cpu")
    run_training(TrainConfig(**cfg, epochs=2), out=tmp_path / "whole")
    run_training(TrainConfig(**cfg, epochs=1), out=tmp_path / "part")
    summary, part = run_training(resume=tmp_path / "part", epochs=2)
    whole = RunDir(tmp_path / "whole")
    pw, pp = whole.load_checkpoint()["trainer"]["model"], part.load_checkpoint()["trainer"]["model"]
    assert all(torch.equal(pw[k], pp[k]) for k in pw)
    assert summary["best_test_f1"] > 0.5  # chance is ~0.1


def test_natural_trains_a_softmax_regression(mnist_small):
    x, y = mnist_small
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    opt = make_optimizer("natural", model.parameters(), model=model, lr=0.005)
    with torch.no_grad():
        before = F.cross_entropy(model(x), y).item()
    run_steps(model, opt, x, y, 30)
    with torch.no_grad():
        after = F.cross_entropy(model(x), y).item()
    assert after < 0.3 * before, (before, after)


def test_non_finite_curvature_is_reported_as_divergence():
    # what a diverged run feeds the optimizer; without the check Cholesky would fail with a traceback
    model = torch.nn.Linear(4, 3)
    opt = make_optimizer("natural", model.parameters(), model=model)
    x = torch.ones(8, 4)
    x[0, 0] = float("inf")
    F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    with pytest.raises(TrainingDiverged, match="outputs are not finite; lower the learning rate"):
        opt.step()
    # the empirical Fisher takes the factors from the trainer's pass: the check is on them
    opt = make_optimizer("natural", model.parameters(), model=model, fisher="empirical")
    F.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
    with pytest.raises(TrainingDiverged, match="factors of layer '' are not finite; lower the learning rate"):
        opt.step()


def test_a_step_without_a_training_pass_is_a_clear_error():
    model = torch.nn.Linear(3, 2)
    opt = KFAC(model.parameters(), model)
    with torch.no_grad():
        model(torch.zeros(1, 3))  # evaluation passes are not remembered
    with pytest.raises(RuntimeError, match="no training forward pass"):
        opt.step()


# --------------------------------------------------------------------------- registry and CLI


def test_natural_is_registered_and_needs_the_model():
    assert OPTIMIZERS["natural"].needs_model
    model = torch.nn.Linear(3, 2)
    assert isinstance(make_optimizer("natural", model.parameters(), model=model, damping=0.1), KFAC)
    with pytest.raises(ConfigError, match="needs the model"):
        make_optimizer("natural", model.parameters())
    # the others ignore the model
    assert isinstance(make_optimizer("adam", model.parameters(), model=model), torch.optim.Adam)
    # the label sampler's seed follows torch's (a run's --seed) unless given
    seeds = [(torch.manual_seed(s), make_optimizer("natural", model.parameters(), model=model).seed)[1]
             for s in (1, 1, 2)]
    assert seeds[0] == seeds[1] != seeds[2]
    assert make_optimizer("natural", model.parameters(), model=model, seed=7).seed == 7


@pytest.mark.parametrize("options, message", [
    ({"damping": -1.0}, "damping must be a number > 0"),
    ({"fisher": "bogus"}, "fisher must be one of true, empirical"),
    ({"damping_mode": "cheap"}, "damping_mode must be one of factored, exact"),
    ({"inverse_every": 0}, "inverse_every must be an integer >= 1"),
    ({"stat_decay": 1.5}, "stat_decay must be a number in"),
    ({"momentum": 1.0}, "momentum must be a number in"),
    ({"kl_clip": 0}, "kl_clip must be a number > 0"),
    ({"dampening": 0.1}, "no option dampening"),
])
def test_bad_options_are_one_line_config_errors(options, message):
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match=message) as info:
        make_optimizer("natural", model.parameters(), model=model, **options)
    assert "\n" not in str(info.value)


def test_cli_lists_and_trains_with_natural(data_dir, tmp_path, capsys):
    listing = CliRunner().invoke(cli, ["optimizers"])
    assert listing.exit_code == 0 and "natural" in listing.output and "damping=0.01" in listing.output
    common = ["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--limit-train", "600", "--limit-test",
              "200", "--depth", "2", "--width", "16", "--optimizer", "natural", "--epochs", "1", "--no-progress"]
    assert main([*common, "--opt", "damping=0.05", "--opt", "kl_clip=null", "--out", str(tmp_path / "ok")]) == 0
    assert "natural lr 0.0005" in capsys.readouterr().out
    capsys.readouterr()
    assert main([*common, "--opt", "fisher=bogus", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "evoprop: error: optimizer 'natural': fisher must be one of true, empirical, got 'bogus'"
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_the_hybrid_trainer_runs_with_natural(data_dir, tmp_path):
    cfg = TrainConfig(method="hybrid", dataset="mnist", data_dir=str(data_dir), limit_train=600, limit_test=200,
                      depth=2, width=16, optimizer="natural", lr=0.005, popsize=8, es_batch_size=64, epochs=1, device="cpu")
    summary, _ = run_training(cfg, out=tmp_path / "hybrid")
    assert summary["status"] == "completed" and summary["best_test_f1"] > 0.3


def test_a_tiny_damping_on_rank_deficient_factors_still_steps(mnist_small):
    # 8 images: A (785 × 785) has rank 9, and float32 rounding makes it slightly indefinite, more
    # than λ = 1e-16 covers (its Cholesky fails at minor 130); the inverse falls back to clamped eigenvalues
    x, y = mnist_small
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    opt = make_optimizer("natural", model.parameters(), model=model, damping=1e-16)
    before = model[1].weight.detach().clone()
    F.cross_entropy(model(x[:8]), y[:8]).backward()
    opt.step()
    assert torch.isfinite(model[1].weight).all() and not torch.equal(model[1].weight, before)
