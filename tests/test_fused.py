"""The fused linear + activation used by population passes: the same numbers as doing it apart."""

import pytest
import torch
from torch import nn

from evoprop.population.fused import fusion_available, linear_activation, post_op

ACTIVATIONS = [nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.GELU(approximate="tanh"), nn.LeakyReLU(0.2)]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=lambda a: repr(a))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_equals_gemm_then_activation(activation, dtype):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(300, 40, generator=g).to(dtype)
    weight, bias = torch.randn(24, 40, generator=g).to(dtype), torch.randn(24, generator=g).to(dtype)
    expected = activation(h.float() @ weight.float().T + bias.float())
    fused = post_op(activation, h.device, dtype)
    assert (fused is not None) == fusion_available(dtype)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=5e-2)
    torch.testing.assert_close(linear_activation(h, weight, bias, activation, fused).float(), expected, **tol)
    torch.testing.assert_close(linear_activation(h, weight, None, activation, fused).float(),
                               activation(h.float() @ weight.float().T), **tol)


def test_what_cannot_be_fused_falls_back():
    assert post_op(nn.ELU(), torch.device("cpu"), torch.float32) is None  # no oneDNN post-op for it
    assert post_op(nn.ReLU(), torch.device("cpu"), torch.float64) is None
    assert post_op(nn.ReLU(), torch.device("cuda"), torch.float32) is None
    h, weight = torch.randn(5, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(linear_activation(h, weight, None, nn.ELU(), None), nn.functional.elu(h @ weight.T))
