"""Adapters: each framework's real BCE APIs, named exactly, behind one small interface.

An adapter module has a ``load() -> Framework`` function that imports the framework, configures
it (JAX's float64, for instance) and returns its APIs. An ``Api`` is the unit that is tested and
reported: one real call path (a function, or a framework's own composition of two), for one op.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from conformance.dtypes import DTYPES

OPS = ("bce", "bce_with_logits", "sigmoid_bce")
BUILTIN = {
    "numpy": "conformance.adapters.numpy",
    "torch": "conformance.adapters.torch",
    "tensorflow": "conformance.adapters.tensorflow",
    "jax": "conformance.adapters.jax",
}
INSTALL_HINT = {
    "numpy": "pip install 'bce-conformance[numpy]'",
    "torch": "pip install 'bce-conformance[torch]'  (pins torch==2.13.0)",
    "tensorflow": "pip install 'bce-conformance[tensorflow]'  (pins tensorflow-cpu==2.21.0)",
    "jax": "pip install 'bce-conformance[jax]'  (pins jax, jaxlib 0.10.2 and optax 0.2.8)",
}

Inputs = dict[str, np.ndarray]  # "logits" or "probs", "target", optionally "weight" / "pos_weight"


class Unsupported(Exception):
    """The API cannot take this combination; the message says why."""


class FrameworkUnavailable(Exception):
    """The framework asked for is unknown or not installed."""


@dataclass(frozen=True)
class Api:
    """One real API (or a framework's own two-step composition) for one op.

    ``call(inputs, reduction)`` gets the inputs already cast to the dtype under test and returns
    the framework's result as a NumPy array in the dtype the framework produced.
    """

    name: str  # exactly what is called, e.g. "torch.nn.functional.binary_cross_entropy"
    framework: str
    op: str  # one of OPS
    call: Callable[[Inputs, str], np.ndarray]
    reduced_by: str  # how mean / sum are computed: the API's own argument, or the framework's mean / sum
    # (args, dtype, reduction) -> one line of Python that reproduces the call with the framework alone;
    # args maps "input", "target" and any of "weight" / "pos_weight" to a list literal of hex floats
    repro: Callable[[dict[str, str], str, str], str]
    dtypes: tuple[str, ...] = DTYPES
    unsupported: dict[str, str] = field(default_factory=dict)  # "weight" / "pos_weight" -> why not

    def why_unsupported(self, dtype: str, inputs: Inputs) -> str | None:
        """The reason this API cannot run ``inputs`` in ``dtype``, or None when it can."""
        if dtype not in self.dtypes:
            return f"{self.name} does not take {dtype}"
        for name in ("weight", "pos_weight"):
            if name in inputs and name in self.unsupported:
                return self.unsupported[name]
        return None


@dataclass(frozen=True)
class Framework:
    name: str
    versions: dict[str, str]  # package -> version, for every package whose API is called
    apis: list[Api]
    settings: dict[str, str] = field(default_factory=dict)  # configuration the adapter applied, e.g. x64


def load_framework(name: str) -> Framework:
    """Import a built-in framework's adapter; an unknown or uninstalled framework is an error, never a skip."""
    if name not in BUILTIN:
        raise FrameworkUnavailable(f"unknown framework {name!r} (built in: {', '.join(BUILTIN)})")
    module = importlib.import_module(BUILTIN[name])
    try:
        framework = module.load()
    except ImportError as exc:
        raise FrameworkUnavailable(
            f"framework {name!r} is not installed ({exc}); install it with: {INSTALL_HINT[name]}"
        ) from None
    return framework


def repro_line(prelude: str, tensor: str, call: str, to_list: str = ".tolist()") -> str:
    """One line of Python: ``prelude; t = <a tensor from a list of hex floats>; print(<call>.tolist())``.

    ``call`` refers to the inputs as ``t([...])``; printing through a Python list shows every digit.
    """
    return f"{prelude}; t = {tensor}; print(({call}){to_list})"


def keyword_args(args: dict[str, str], names: dict[str, str]) -> str:
    """``, weight=t([...])``-style keyword arguments for the optional inputs that are present."""
    return "".join(f", {keyword}=t({args[name]})" for name, keyword in names.items() if name in args)
