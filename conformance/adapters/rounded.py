"""``rounded``: a subject whose every result is fixed by construction, for the project's own tests.

It runs the NumPy adapter's three formulas (conformance/adapters/numpy.py: the blog's hand formula, its
two-step sigmoid path and the stable logits formula) on an array namespace, ``xp``, whose ``exp``,
``log``, ``log1p`` and ``sum`` are correctly rounded to the dtype (to nearest, ties to even), and whose
``mean`` is that sum divided by n, rounded once (numpy's mean is its sum over n).
Every other step (+, -, ×, ÷, max, abs, negation) numpy does in the dtype, and IEEE 754 rounds those
correctly on every host. So each result is one value IEEE 754 defines: the same bits on any CPU, SIMD
dispatch, C library or numpy version. The host's numpy promises no such thing: where its ``X86_V4``
dispatch target is found, its float64 ``exp`` and ``log`` are SVML's AVX-512 kernels (on Linux x86-64),
elsewhere the C library's (``conformance.numerics``). The tests of the suite's logic (runner, plugin, command line,
diff, report) run on this subject; what a real framework returns is the conformance envs' business.

Like NumPy it has no autodiff: its gradients are ``unsupported``. Its results still miss the exact
loss where the formulas do (the hand formula's log 0 past saturation): a negative control the tests
can rely on.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np

from conformance import __version__, fast_reference
from conformance.adapters import Framework
from conformance.adapters import numpy as numpy_adapter
from conformance.dtypes import FORMATS, FloatFormat, round_fraction
from conformance.reference import ziv_round

NAME = "rounded"

# name -> (numpy's float64 function: a first approximation, mpmath's function at any precision)
ELEMENTARY = {"exp": (np.exp, mpmath.exp), "log": (np.log, mpmath.log), "log1p": (np.log1p, mpmath.log1p)}


def _format(values: np.ndarray) -> FloatFormat:
    for fmt in FORMATS.values():
        if values.dtype == fmt.numpy_dtype:
            return fmt
    raise TypeError(f"the rounded subject computes in {', '.join(FORMATS)}, not {values.dtype}")


def _special(name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where ``name(x)`` has an exact IEEE 754 / C99 Annex F value (a non-finite input, a pole, outside the
    domain, a signed zero): that value; NaN elsewhere, with the mask of the elements it settles."""
    out = np.full(x.shape, np.nan)
    if name == "exp":
        special = ~np.isfinite(x)
        out[special] = np.where(x[special] > 0, np.inf, np.where(x[special] < 0, 0.0, np.nan))
        return out, special
    edge = 0.0 if name == "log" else -1.0  # log(0) = log1p(-1) = -inf, below it NaN
    special = np.isnan(x) | (x <= edge) | (x == np.inf)
    out[x == edge] = -np.inf
    out[x == np.inf] = np.inf
    if name == "log1p":  # log1p(±0) = ±0
        zero = x == 0
        out[zero], special = x[zero], special | zero
    return out, special


def correctly_rounded(name: str, values: np.ndarray) -> np.ndarray:
    """``name`` (exp, log, log1p) of each element, correctly rounded to the elements' dtype. For 16- and
    32-bit dtypes numpy's float64 value settles most elements at once (fast_reference.settle: within its
    error bound the interval rounds to one value, whatever the host's kernel returned inside it); the rest,
    and every float64 element, by mpmath (reference.ziv_round)."""
    values = np.asarray(values)
    fmt, (approximate, function) = _format(values), ELEMENTARY[name]
    x = values.astype(np.float64).ravel()
    out, special = _special(name, x)
    pending = np.flatnonzero(~special)
    if fmt.precision <= fast_reference.MAX_PRECISION and pending.size:
        with np.errstate(all="ignore"):
            approx = approximate(x[pending])
        terms = fast_reference.Terms(
            approx=approx,
            bound=fast_reference.E * np.abs(approx),
            fallback=~np.isfinite(approx),
            sign=np.full(approx.shape, 1 if name == "exp" else 0, dtype=np.int8),
        )
        settled, unsettled = fast_reference.settle(terms, fmt)
        out[pending[~unsettled]] = settled[~unsettled]
        pending = pending[unsettled]
    for index in pending:
        out[index] = ziv_round(function, x[index], fmt)
    return out.reshape(values.shape).astype(values.dtype)


def correctly_rounded_sum(values: np.ndarray) -> np.ndarray:
    """The exact sum of the elements rounded once to their dtype (0-d)."""
    values = np.asarray(values)
    x = values.astype(np.float64).ravel()
    infinite = x[np.isinf(x)]
    if np.isnan(x).any() or (infinite.size and (infinite != infinite[0]).any()):
        total = math.nan  # a NaN, or inf + -inf
    elif infinite.size:
        total = float(infinite[0])
    else:
        total = round_fraction(sum(map(Fraction, x.tolist()), Fraction(0)), _format(values))
    return np.asarray(total).astype(values.dtype)


def correctly_rounded_mean(values: np.ndarray) -> np.ndarray:
    """As numpy's mean is its sum over n: the correctly rounded sum, divided by n exactly and rounded once
    (NaN for no elements)."""
    values = np.asarray(values)
    total = float(correctly_rounded_sum(values))
    if values.size == 0 or not math.isfinite(total):
        mean = math.nan if values.size == 0 else total
    else:
        mean = round_fraction(Fraction(total) / values.size, _format(values))
    return np.asarray(mean).astype(values.dtype)


class Namespace:
    """numpy, with exp, log, log1p, sum and mean correctly rounded (everything else is numpy's own)."""

    def exp(self, values):
        return correctly_rounded("exp", values)

    def log(self, values):
        return correctly_rounded("log", values)

    def log1p(self, values):
        return correctly_rounded("log1p", values)

    def sum(self, values):
        return correctly_rounded_sum(values)

    def mean(self, values):
        return correctly_rounded_mean(values)

    def __getattr__(self, name):  # the reproducer's np.array, np.float32, np.maximum, ...
        return getattr(np, name)


xp = Namespace()


def load(device: str = "cpu") -> Framework:
    from conformance import devices

    devices.cpu_only(NAME, device)
    return Framework(
        name=NAME,
        versions={"bce-conformance": __version__},
        apis=numpy_adapter.apis(
            NAME,
            xp=xp,
            prelude="import numpy, ml_dtypes; from conformance.adapters.rounded import xp as np",
            no_autodiff="the rounded subject has no automatic differentiation",
        ),
        settings={"rounding": "exp, log, log1p and sum correctly rounded, mean their sum over n; the rest IEEE 754 in the dtype"},
        multiply=numpy_adapter.multiply,
    )
