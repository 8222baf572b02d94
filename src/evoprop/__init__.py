"""evoprop: evolution strategies and gradient descent for PyTorch models."""

__version__ = "0.1.0"
