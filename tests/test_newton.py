"""Newton's method, Hessian-free optimization and the Hessian lens (issue 18).

Small real problems: MNIST images average-pooled to 7×7 (49 inputs), so that softmax
regression has d = 500 parameters and its exact Hessian is formed in well under a second.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from evoprop.cli.main import main
from evoprop.errors import ConfigError
from evoprop.lab.precond import lens
from evoprop.optim import BatchLoss, HessianFree, Newton, make_optimizer
from evoprop.optim.batch import FlatParams
from evoprop.optim.hessian_free import ggn_product


@pytest.fixture(scope="module")
def pooled(mnist):
    """(x, y): 1,000 training images, 7×7 average-pooled, float64."""
    x = F.avg_pool2d(mnist.train.x[:1000].double(), 4).flatten(1)
    return x, mnist.train.y[:1000]


def linear(inputs: int = 49, outputs: int = 10, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(inputs, outputs).double()


def test_newton_solves_a_quadratic_in_one_step():
    # least squares of a linear model is a quadratic in its parameters: one undamped Newton step is exact
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=gen, dtype=torch.float64)
    target = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    model = linear(8, 3)
    opt = Newton(model.parameters(), model=model, damping=1e-12, min_damping=1e-12)
    opt.step(BatchLoss(model, x, target, loss_fn=F.mse_loss))
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, target).solution  # (9, 3): weights then bias
    assert torch.allclose(model.weight.detach(), solution[:-1].T, atol=1e-8)
    assert torch.allclose(model.bias.detach(), solution[-1], atol=1e-8)
    assert opt.state[model.weight]["last"]["alpha"] == 1.0  # the full step, no backtracking


def _train(name: str, x, y, steps: int, **options) -> list[float]:
    model = linear()
    opt = make_optimizer(name, model.parameters(), model=model, **options)
    losses = []
    for _ in range(steps):
        if getattr(opt, "needs_batch", False):
            opt.step(BatchLoss(model, x, y))
        else:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            losses.append(float(F.cross_entropy(model(x), y)))
    return losses


@pytest.mark.slow
def test_newton_beats_gradient_descent_on_softmax_regression(pooled):
    x, y = pooled
    # λ₀ = 0.01: the pooled images' curvature is small, and the default λ₀ = 1 would take steps to shrink;
    # the floor of plain Levenberg–Marquardt (1e-6): this is about minimising one batch, which the default
    # floor (0.05, for generalisation across batches) deliberately trades away
    newton = _train("newton", x, y, 5, hessian_batch=None, damping=0.01, min_damping=1e-6)
    gd = _train("sgd", x, y, 100, lr=2.0)  # the best of 0.5, 1, 2 over these 100 steps
    assert newton[-1] < gd[-1]  # 5 Newton steps get lower than 100 gradient steps
    assert all(b < a for a, b in zip(newton, newton[1:]))  # and every Newton step lowers the loss


def test_hessian_free_product_is_the_gauss_newton_matrix_times_v(pooled):
    x, y = pooled
    x, y = x[:64], y[:64]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(49, 6), nn.Tanh(), nn.Linear(6, 10)).double()
    flat = FlatParams(list(model.parameters()), model)
    theta = flat.vector()
    batch = BatchLoss(model, x, y)
    # the explicit matrix: G = (1/m) Σ_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n from the per-example Jacobians
    jac = torch.func.jacrev(lambda t: batch.logits(flat, t))(theta)  # (m, 10, d)
    p = torch.softmax(model(x), dim=1).detach()
    h = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    ggn = torch.einsum("nkd,nkl,nle->de", jac, h, jac) / len(x)
    v = torch.randn(flat.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(ggn_product(batch, flat, theta)(v), ggn @ v, atol=1e-10)


@pytest.mark.slow
def test_hessian_free_trains_a_deep_net(pooled):
    x, y = pooled
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(49, 32), *[m for _ in range(4) for m in (nn.ReLU(), nn.Linear(32, 32))],
                          nn.ReLU(), nn.Linear(32, 10)).double()
    opt = HessianFree(model.parameters(), model=model, cg_iters=20, damping=0.1)
    with torch.no_grad():
        before = float(F.cross_entropy(model(x), y))
        for _ in range(15):
            opt.step(BatchLoss(model, x, y))
        after = float(F.cross_entropy(model(x), y))
    assert after < 0.5 * before
    assert opt.state[model[0].weight]["direction"].shape == (sum(p.numel() for p in model.parameters()),)


@pytest.mark.parametrize("name", ["newton", "hessian-free"])
def test_state_dict_resumes_exactly(pooled, name):
    x, y = pooled
    batches = [(x[i * 250:(i + 1) * 250], y[i * 250:(i + 1) * 250]) for i in range(4)]
    model = linear()
    opt = make_optimizer(name, model.parameters(), model=model)
    for xb, yb in batches:
        opt.step(BatchLoss(model, xb, yb))
    # the same run interrupted after two steps and rebuilt from its state
    part = linear()
    first = make_optimizer(name, part.parameters(), model=part)
    for xb, yb in batches[:2]:
        first.step(BatchLoss(part, xb, yb))
    resumed_model = copy.deepcopy(part)
    resumed = make_optimizer(name, resumed_model.parameters(), model=resumed_model)
    resumed.load_state_dict(first.state_dict())
    assert resumed.damping == first.damping != resumed.param_groups[0]["damping"]
    for xb, yb in batches[2:]:
        resumed.step(BatchLoss(resumed_model, xb, yb))
    assert torch.equal(resumed_model.weight, model.weight)


def test_newtons_lambda_floor_is_the_validation_chosen_one_and_hessian_free_keeps_its_own(capsys):
    # newton's default floor (RESULTS.md: chosen on MNIST's validation split) reaches the optimizer, the
    # registry and `evoprop optimizers`; hessian-free shares the keyword but not that default
    m = nn.Linear(3, 2)
    assert Newton.defaults()["min_damping"] == 0.05 and Newton(m.parameters(), model=m).min_damping == 0.05
    assert make_optimizer("newton", m.parameters(), model=m).min_damping == 0.05
    assert Newton(m.parameters(), model=m, min_damping=1e-6).min_damping == 1e-6
    assert HessianFree.defaults()["min_damping"] == 1e-6 and HessianFree(m.parameters(), model=m).min_damping == 1e-6
    assert main(["optimizers"]) == 0
    out = capsys.readouterr().out
    assert "min_damping=0.05" in out and "min_damping=1e-06" in out, out


def test_newton_needs_the_batch(pooled):
    model = linear()
    opt = Newton(model.parameters(), model=model)
    with pytest.raises(TypeError, match="BatchLoss"):
        opt.step(lambda: F.cross_entropy(model(pooled[0]), pooled[1]))


def test_too_big_hessian_is_one_line_naming_its_size(tmp_path, capsys, data_dir):
    with pytest.raises(ConfigError, match=r"d = 500 parameters needs 3 x 500\^2 x 8 bytes = 5.7 MiB"):
        model = linear()
        make_optimizer("newton", model.parameters(), model=model, max_memory="1M")
    status = main(["train", "--dataset", "mnist", "--data-dir", str(data_dir), "--depth", "10", "--width", "200",
                   "--optimizer", "newton", "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("\n") == 1 and err.startswith("evoprop: error: newton: the Hessian of d = 480,610 parameters")
    assert "hessian-free" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_trainer_runs_newton(tmp_path, data_dir):
    from evoprop.config import TrainConfig
    from evoprop.runs import run_training

    config = TrainConfig(dataset="mnist", data_dir=str(data_dir), depth=1, optimizer="newton", batch_size=500,
                         epochs=1, limit_train=1000, limit_test=1000, optimizer_options={"hessian_batch": 64})
    summary, _ = run_training(config, out=tmp_path / "run")
    assert summary["best_test_f1"] > 0.6  # two Newton steps from the Glorot init


def test_precond_reports_cosine_one_for_newton_against_itself(pooled):
    x, y = pooled
    model = linear()
    result = lens(model, x[:256], y[:256], x, y, optimizers=["newton", "sgd", "adam", "natural"], warmup=5)
    rows = {r.name: r for r in result.rows}
    assert rows["newton"].cosine == pytest.approx(1.0, abs=1e-9)
    assert -1 <= rows["sgd"].cosine < 0.99  # the gradient is not the Newton direction
    assert rows["adam"].spearman is not None and rows["adam"].pairs > 100
    assert 0 <= rows["natural"].kfac_error < 1
    assert torch.equal(model.weight, linear().weight)  # the model is left as it was


@pytest.mark.slow
def test_precond_cli_writes_table_and_figures(tmp_path, data_dir):
    result = CliRunner().invoke(
        __import__("evoprop.cli.main", fromlist=["cli"]).cli,
        ["precond", "--dataset", "mnist", "--data-dir", str(data_dir), "--depth", "1", "--examples", "64",
         "--warmup", "2", "--optimizers", "sgd,adagrad,newton", "--out", str(tmp_path / "lens")])
    assert result.exit_code == 0, result.output
    assert "| newton | 1.0000 |" in result.output
    for name in ("precond.md", "precond.csv", "precond_cosine.png", "precond_diagonal.png"):
        assert (tmp_path / "lens" / name).stat().st_size > 0


def test_the_readme_second_order_example_runs(capsys):
    from test_readme import readme_blocks

    example = next(b.code for b in readme_blocks() if b.language == "python" and "BatchLoss" in b.code)
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    before, after = (float(v) for v in capsys.readouterr().out.split("->"))
    assert after < before
