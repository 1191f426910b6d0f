"""reglab: see what regularization does to a neural network. Conventions: README.md."""

__version__ = "0.1.0"
