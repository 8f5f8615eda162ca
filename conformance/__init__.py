"""bce-conformance: how each framework's binary cross-entropy behaves against the mathematics."""

__version__ = "0.1.0"
