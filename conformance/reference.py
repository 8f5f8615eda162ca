"""The exact reference: binary cross-entropy in mpmath, rounded correctly to the dtype under test.

Inputs arrive already cast to the dtype, so each is a binary float converted to mpf exactly.
Each loss is evaluated as a sum of non-negative products (no cancellation for targets in
[0, 1]) at a precision well beyond the dtype, then again at twice that precision; the two
must round to the same value in the dtype (Ziv's test), else the precision grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath
import numpy as np

from conformance.dtypes import FloatFormat, round_to_format

# Formulas by what they compute: `sigmoid_bce` is mathematically `bce_with_logits`.
FORMULA_OF_OP = {"bce": "bce", "bce_with_logits": "bce_with_logits", "sigmoid_bce": "bce_with_logits"}
REDUCTIONS = ("none", "mean", "sum")
MAX_PRECISION = 1 << 14


class ReferenceError(Exception):
    """The reference could not settle a correctly rounded value."""


@dataclass(frozen=True)
class ReferenceValue:
    """Exact (unrounded) values and their correct rounding to the dtype, shaped like the result."""

    exact: np.ndarray  # object array of mpf, at the final precision
    rounded: np.ndarray  # float64 array holding the dtype's correctly rounded values
    precision: int  # bits of the evaluation that settled the rounding


def _mpf(value: float) -> mpmath.mpf:
    return mpmath.mpf(float(value))  # exact: every dtype value is a float64


def _times(coefficient: mpmath.mpf, loss: mpmath.mpf) -> mpmath.mpf:
    """coefficient · loss, where a zero coefficient silences an infinite loss (the limit, as 0·log 0 = 0)."""
    if coefficient == 0:
        return mpmath.mpf(0)
    return coefficient * loss


def softplus(x: mpmath.mpf) -> mpmath.mpf:
    """log(1 + e^x) = -log(1 - σ(x)), without cancellation on either side of zero."""
    if mpmath.isinf(x):
        return x if x > 0 else mpmath.mpf(0)
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


def bce_with_logits_term(x, y, w, q) -> mpmath.mpf:
    """w · (q·y·(-log σ(x)) + (1-y)·(-log(1-σ(x)))), torch's pos_weight form; q = w = 1 plain."""
    if any(mpmath.isnan(v) for v in (x, y, w, q)):
        return mpmath.nan
    one_minus_y = mpmath.fsub(1, y, exact=True)
    positive = _times(mpmath.fmul(q, y, exact=True), softplus(-x))
    negative = _times(one_minus_y, softplus(x))
    return w * (positive + negative)


def _neg_log(p: mpmath.mpf) -> mpmath.mpf:
    if p == 0:
        return mpmath.inf
    return -mpmath.log(p)


def bce_term(p, y, w, q=None) -> mpmath.mpf:
    """w · (y·(-log p) + (1-y)·(-log(1-p))) with 0·log 0 = 0; NaN outside p ∈ [0, 1]."""
    if any(mpmath.isnan(v) for v in (p, y, w)) or p < 0 or p > 1:
        return mpmath.nan
    one_minus_p = mpmath.fsub(1, p, exact=True)
    one_minus_y = mpmath.fsub(1, y, exact=True)
    return w * (_times(y, _neg_log(p)) + _times(one_minus_y, _neg_log(one_minus_p)))


TERMS = {"bce": bce_term, "bce_with_logits": bce_with_logits_term}


def _evaluate(formula: str, inputs: dict[str, np.ndarray], reduction: str) -> np.ndarray:
    """Terms (or their reduction) at the current mpmath precision, as an object array of mpf."""
    term = TERMS[formula]
    first = "probs" if formula == "bce" else "logits"
    names = (first, "target", "weight", "pos_weight")
    arrays = [inputs.get(name) for name in names]
    shape = np.broadcast_shapes(*(a.shape for a in arrays if a is not None))
    ones = np.ones(shape)
    operands = [np.broadcast_to(a if a is not None else ones, shape) for a in arrays]
    terms = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        terms[index] = term(*(_mpf(a[index]) for a in operands))
    if reduction == "none":
        return terms
    total = mpmath.fsum(terms.ravel()) if terms.size else mpmath.mpf(0)
    if reduction == "sum":
        return np.array(total, dtype=object)
    if reduction == "mean":
        return np.array(total / terms.size if terms.size else mpmath.nan, dtype=object)
    raise ValueError(f"unknown reduction {reduction!r}")


def _round_all(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    out = np.empty(values.shape, dtype=np.float64)
    for index, value in np.ndenumerate(values):
        out[index] = math.nan if mpmath.isnan(value) else round_to_format(value, fmt)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def reference(formula: str, inputs: dict[str, np.ndarray], reduction: str, fmt: FloatFormat) -> ReferenceValue:
    """The exact loss for inputs already cast to ``fmt``, with its correct rounding to ``fmt``.

    ``inputs`` maps `logits` or `probs`, `target`, and optionally `weight` and `pos_weight`
    to arrays of the dtype; `pos_weight` applies to `bce_with_logits` only.
    """
    if formula not in TERMS:
        raise ValueError(f"unknown formula {formula!r}")
    precision = 2 * fmt.precision + 64
    while precision <= MAX_PRECISION:
        with mpmath.workprec(precision):
            low = _evaluate(formula, inputs, reduction)
        with mpmath.workprec(2 * precision):
            high = _evaluate(formula, inputs, reduction)
        rounded = _round_all(high, fmt)
        if _same(_round_all(low, fmt), rounded):
            return ReferenceValue(exact=high, rounded=rounded, precision=2 * precision)
        precision *= 2
    raise ReferenceError(f"{formula}/{reduction}: the rounding to {fmt.name} is not settled at {MAX_PRECISION} bits")
