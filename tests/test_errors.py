"""evoprop's errors say what went wrong in the types Python code already catches."""

import pytest
import torch

from evoprop.errors import ConfigError, EvopropError
from evoprop.es import make_strategy
from evoprop.optim import make_optimizer


def test_a_bad_argument_to_the_api_is_a_value_error():
    x0 = torch.zeros(5)
    with pytest.raises(ValueError, match="sigma"):
        make_strategy("cma", x0, -1.0, 8)
    with pytest.raises(ValueError, match="nosuch"):
        make_optimizer("nosuch", [torch.nn.Parameter(x0)])
    with pytest.raises(EvopropError):  # and still one of evoprop's, which the CLI prints as one line
        make_strategy("nosuch", x0, 1.0, 8)


def test_our_own_message_is_not_wrapped_twice():
    """A ConfigError raised inside a block that turns a library's ValueError into ours keeps its message."""
    model = torch.nn.Linear(100, 10)
    with pytest.raises(ConfigError) as caught:
        make_optimizer("newton", model.parameters(), model=model, max_memory="1K")
    assert str(caught.value).startswith("newton: the Hessian of d = 1,010 parameters")
