"""The exact reference: binary cross-entropy in mpmath, rounded correctly to the dtype under test.

Inputs arrive already cast to the dtype, so each is a binary float converted to mpf exactly.
Label smoothing (Keras's: y' = y·(1 - ls) + ls/2, keras/src/losses/losses.py :: binary_crossentropy)
is applied to each target exactly, in binary arithmetic without rounding, never in the dtype.
Each loss is evaluated as a sum of non-negative products (no cancellation for targets in
[0, 1]) at a precision well beyond the dtype, then again at twice that precision; the two
must round to the same value in the dtype (Ziv's test), else the precision grows, element by
element (``_settle``). Where an evaluation lands on or next to a rounding midpoint or a power of
two of the dtype, the side of the exact value is decided exactly from a ``Split``: an exactly known
rational part and a rest of known sign and bounded magnitude.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np

from conformance import arb_reference, fast_reference
from conformance.dtypes import FloatFormat, binade, boundaries_near, round_fraction, round_to_format, to_fraction
from conformance.variants import Variant

# Formulas by what they compute: `sigmoid_bce` is mathematically `bce_with_logits`.
FORMULA_OF_OP = {"bce": "bce", "bce_with_logits": "bce_with_logits", "sigmoid_bce": "bce_with_logits"}
REDUCTIONS = ("none", "mean", "sum")
MAX_PRECISION = 1 << 14
MPMATH_MAX_ELEMENTS = 1 << 17  # beyond, the mpmath path would take minutes: an error, never a silent stall


class ReferenceError(Exception):
    """The reference could not settle a correctly rounded value."""


class ReferenceValue:
    """Exact (unrounded) values and their correct rounding to the dtype, shaped like the result.

    From the mpmath path, ``exact`` holds every exact value. From the fast path
    (``conformance.fast_reference``), ``approx`` holds float64 values each within ``bound`` of the
    exact one, ``rounded`` is still the correct rounding of every element, and the exact values
    are computed by mpmath only when asked for (``exact_at`` for one element, ``exact`` for all).
    """

    def __init__(
        self,
        exact: np.ndarray | None = None,
        rounded: np.ndarray | None = None,
        precision: int = 0,
        approx: np.ndarray | None = None,
        bound: np.ndarray | None = None,
        exact_of=None,
        exact_at=None,
        exact_where=None,
    ):
        self._exact = exact
        self.rounded = rounded  # float64 array holding the dtype's correctly rounded values
        self.precision = precision  # bits of the evaluation that settled the rounding (0: the fast path)
        self.approx = approx
        self.bound = bound
        self._exact_of = exact_of
        self._exact_at = exact_at
        self._exact_where = exact_where
        # per element, a strict upper bound on its exact magnitude, where the formula gives one (|σ(x) - y| <
        # max(y, 1 - y) for an unweighted gradient: gradient_under): it places an exact value that rounded up
        # to a power of two below it
        self.under: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.rounded.shape

    @property
    def size(self) -> int:
        return int(self.rounded.size)

    @property
    def exact(self) -> np.ndarray:
        """Every exact value, an object array of mpf (from the fast path: computed now, by mpmath)."""
        if self._exact is None:
            self._exact = self._exact_of()
        return self._exact

    def exact_where(self, mask: np.ndarray) -> np.ndarray:
        """The exact values of the elements under ``mask`` (from the fast path: those alone, by mpmath, at once)."""
        if self._exact is not None or self._exact_where is None:
            return self.exact[mask]
        return self._exact_where(mask)

    def exact_at(self, index) -> mpmath.mpf:
        """One element's exact value (from the fast path: that element alone, by mpmath)."""
        if self._exact is not None or self._exact_at is None:
            return self.exact[index]
        return self._exact_at(index)


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


def bce_term(p, y, w, q=None, log_floor=None) -> mpmath.mpf:
    """w · (q·y·(-log p) + (1-y)·(-log(1-p))) with 0·log 0 = 0; NaN outside p ∈ [0, 1].

    With ``log_floor``, each log term is clamped at >= log_floor first (torch's -100 clamp).
    """
    if any(mpmath.isnan(v) for v in (p, y, w)) or (q is not None and mpmath.isnan(q)) or p < 0 or p > 1:
        return mpmath.nan
    one_minus_p = mpmath.fsub(1, p, exact=True)
    one_minus_y = mpmath.fsub(1, y, exact=True)
    neg_log_p, neg_log_not_p = _neg_log(p), _neg_log(one_minus_p)
    if log_floor is not None:
        ceiling = -mpmath.mpf(log_floor)
        neg_log_p, neg_log_not_p = min(neg_log_p, ceiling), min(neg_log_not_p, ceiling)
    positive = y if q is None else mpmath.fmul(q, y, exact=True)
    return w * (_times(positive, neg_log_p) + _times(one_minus_y, neg_log_not_p))


def sigmoid(x: mpmath.mpf) -> mpmath.mpf:
    if mpmath.isinf(x):
        return mpmath.mpf(1) if x > 0 else mpmath.mpf(0)
    return 1 / (1 + mpmath.exp(-x))


def variant_term(variant: Variant, fmt: FloatFormat, two_step: bool):
    """The loss of one element under ``variant``: on the correctly rounded sigmoid for the two-step
    op, then with p clipped (ends computed in the dtype) and the log terms clamped, as declared."""
    low = high = None
    ends = variant.clip_ends(fmt)  # eps and 1 - eps as the framework has them: values of the dtype
    if ends is not None:
        low, high = (mpmath.mpf(float(end)) for end in ends)  # values of the dtype: exact as floats

    def term(first, y, w, q=None):
        if mpmath.isnan(first):
            return mpmath.nan
        p = first
        if two_step:
            p = mpmath.mpf(round_to_format(sigmoid(first), fmt))
        if low is not None and not mpmath.isnan(p):
            p = min(max(p, low), high)
        return bce_term(p, y, w, q, log_floor=variant.log_floor)

    def splits(first, y, w, q=None):
        """The clamped log terms are exactly -log_floor each: the known part; the others, -log p > 0 (p < 1), the
        rest (no bound). So a loss whose every log term is clamped or absent is an exact rational, a midpoint
        of the dtype included (100·y at p = 0), and one next to such a value lies on the rest's side of it."""
        if variant.log_floor is None or _finite_fractions(first, y, w, q) is None:
            return []
        p = mpmath.mpf(round_to_format(sigmoid(first), fmt)) if two_step else first
        if low is not None:
            p = min(max(p, low), high)
        if p < 0 or p > 1:
            return []
        ceiling = -Fraction(variant.log_floor)
        y_, w_ = to_fraction(y), to_fraction(w)
        known, signs = Fraction(0), set()
        positive = y_ if q is None else to_fraction(q) * y_
        for coefficient, probability in ((positive, p), (1 - y_, mpmath.fsub(1, p, exact=True))):
            if coefficient == 0 or probability == 1:  # 0·log 0 = 0, log 1 = 0
                continue
            if probability == 0 or probability <= mpmath.exp(-mpmath.mpf(ceiling)):  # -log p clamped to the ceiling
                known += coefficient * ceiling
            else:
                signs.add(_sign(coefficient))
        if len(signs) > 1:
            return []
        return [Split(w_ * known, (signs.pop() * _sign(w_)) if signs else 0, None)]

    term.splits = splits
    return term


def bce_with_logits_grad(x, y, w, q=None) -> mpmath.mpf:
    """d/dx of the logits loss: w·((1-y)·σ(x) - q·y·σ(-x)), i.e. w·(σ(x)·(1 + (q-1)·y) - q·y)."""
    q = mpmath.mpf(1) if q is None else q
    if any(mpmath.isnan(v) for v in (x, y, w, q)):
        return mpmath.nan
    if q == 1 and y == mpmath.mpf(0.5) and mpmath.isfinite(x):
        return _half_target_grad(x, w)
    one_minus_y = mpmath.fsub(1, y, exact=True)
    return w * (_times(one_minus_y, sigmoid(x)) - _times(mpmath.fmul(q, y, exact=True), sigmoid(-x)))


def _half_target_grad(x: mpmath.mpf, w: mpmath.mpf) -> mpmath.mpf:
    """w·(σ(x) - 1/2) = w·tanh(x/2)/2, the logits gradient at target 1/2, without cancellation.

    The general form w·(σ(x)/2 - σ(-x)/2) loses every bit of a tiny gradient, and Ziv's test then
    agreed at two precisions on the wrong side of a rounding tie: w·x/4 is a tie of the dtype for
    many tiny x (128 bfloat16 subnormal logits at w = 1), and the exact value lies a hair inside it.
    Where tanh(t) rounds to t itself at this precision (|t| tiny), the exact value is strictly between
    t·(1 - 2^-prec) and t in magnitude (|tanh t| < |t|): t·(1 - 2^-(prec+2)), kept exactly, stands
    for it, and rounds as it does to the dtype: w·x/4 has at most 2p bits for a dtype of p bits, so no
    rounding boundary of the dtype lies strictly inside that interval at the precisions used (> 2p + 64)."""
    t = mpmath.ldexp(x, -1)
    h = mpmath.tanh(t)
    if t != 0 and h == t:
        h = mpmath.fsub(t, mpmath.ldexp(t, -(mpmath.mp.prec + 2)), exact=True)
    return mpmath.ldexp(mpmath.fmul(w, h, exact=True), -1)


def _reciprocal(v: mpmath.mpf) -> mpmath.mpf:
    return mpmath.inf if v == 0 else 1 / v


def bce_grad(p, y, w, q=None, denominator_floor=None) -> mpmath.mpf:
    """d/dp of the probability loss: w·((1-y)/(1-p) - q·y/p), i.e. w·(p - y)/(p·(1 - p)) for q = 1.

    With ``denominator_floor``, torch's backward: w·(p - y)/max(p·(1 - p), floor).
    """
    if any(mpmath.isnan(v) for v in (p, y, w)) or (q is not None and mpmath.isnan(q)) or p < 0 or p > 1:
        return mpmath.nan
    if denominator_floor is not None:
        denominator = max(mpmath.fmul(p, mpmath.fsub(1, p, exact=True), exact=True), mpmath.mpf(denominator_floor))
        numerator = w * mpmath.fsub(p, y, exact=True)
        if denominator == 0:  # a floor that rounds to 0 in the dtype (1e-12 in float16), at p = 0 or 1
            return mpmath.nan if numerator == 0 else mpmath.inf * mpmath.sign(numerator)
        return numerator / denominator
    positive = y if q is None else mpmath.fmul(q, y, exact=True)
    one_minus_y = mpmath.fsub(1, y, exact=True)
    return w * (_times(one_minus_y, _reciprocal(mpmath.fsub(1, p, exact=True))) - _times(positive, _reciprocal(p)))


def _infinity(sign_of) -> mpmath.mpf:
    return mpmath.inf if sign_of > 0 else -mpmath.inf


def _exact_bce_grad(p: Fraction, y: Fraction, w: Fraction, q: Fraction | None, floor: Fraction | None):
    """``bce_grad`` on finite binary inputs, exactly: a Fraction, or ±inf / NaN as an mpf where it is
    not finite (the same cases and signs as ``bce_grad``: 0·(1/0) = 0, 0·inf = NaN)."""
    if p < 0 or p > 1:
        return mpmath.nan
    if floor is not None:  # torch's backward: w·(p - y)/max(p·(1 - p), floor)
        numerator, denominator = w * (p - y), max(p * (1 - p), floor)
        if denominator == 0:  # a floor that rounds to 0 in the dtype (1e-12 in float16), at p = 0 or 1
            return mpmath.nan if numerator == 0 else _infinity(numerator)
        return numerator / denominator
    positive = y if q is None else q * y
    one_minus_y = 1 - y
    infinite = one_minus_y if p == 1 and one_minus_y else (-positive if p == 0 and positive else None)
    if infinite is not None:  # (1-y)/(1-p) or y/p is infinite (never both: p is 0 or 1, not both)
        return mpmath.nan if w == 0 else _infinity(w * infinite)
    a = one_minus_y / (1 - p) if one_minus_y else Fraction(0)
    b = positive / p if positive else Fraction(0)
    return w * (a - b)


def _exact_bce_grad_term(p, y, w, q=None):
    """``bce_grad``, exactly where the inputs are finite: w·((1-y)/(1-p) - q·y/p) is rational in them, so its
    rounding is settled at once, a midpoint included (2 - 4y at p = 1/2), never by an inexact quotient."""
    if not all(mpmath.isfinite(v) for v in (p, y, w) + (() if q is None else (q,))):
        return bce_grad(p, y, w, q)
    return _exact_bce_grad(to_fraction(p), to_fraction(y), to_fraction(w), None if q is None else to_fraction(q), None)


def variant_grad_term(variant: Variant, fmt: FloatFormat, two_step: bool):
    """The gradient of one element under ``variant``, as the framework's backward computes it: zero where
    the clip of p is active, torch's floored denominator, and for the two-step op the sigmoid's own
    derivative p·(1 - p) taken from its rounded output.

    Given p (for the two-step op, the sigmoid rounded to the dtype), every step is rational in the binary
    inputs: p - y, p·(1 - p), the max with the floor (a value of the dtype), the quotient and the
    product. So for finite inputs the term is computed exactly, as a Fraction (±inf and NaN as mpf), and
    its rounding is settled at once, ties included: an exact value that is a midpoint of the format
    (common in 16 bits, e.g. p - y at y = 0.5) is rounded to even by ``round_to_format``, where an
    inexact quotient at any working precision would land on either side of the tie and never settle.
    Non-finite inputs keep the mpmath evaluation (their results are ±inf, NaN or exact zeros).
    ``reference`` turns the Fractions into mpf for ``ReferenceValue.exact``."""
    low, high = variant.clip_ends(fmt) or (None, None)
    floor = variant.grad_floor(fmt)  # the framework's constant, converted to the dtype (0 for torch's in float16)

    def inexact(p, y, w, q):  # a non-finite input
        if low is not None and (p < float(low) or p > float(high)):  # the ends are values of the dtype
            grad = mpmath.mpf(0)  # clip_by_value passes no gradient outside its range
        else:
            grad = bce_grad(p, y, w, q, denominator_floor=None if floor is None else mpmath.mpf(floor))
        if two_step:  # chain rule through the sigmoid, whose backward is p·(1 - p) of its output
            grad = _times(mpmath.fmul(p, mpmath.fsub(1, p, exact=True), exact=True), grad)
        return grad

    def term(first, y, w, q=None):
        if mpmath.isnan(first):
            return mpmath.nan
        p = mpmath.mpf(round_to_format(sigmoid(first), fmt)) if two_step else first
        if not all(mpmath.isfinite(v) for v in (p, y, w) + (() if q is None else (q,))):
            return inexact(p, y, w, q)
        p_, y_, w_ = to_fraction(p), to_fraction(y), to_fraction(w)
        q_ = None if q is None else to_fraction(q)
        if low is not None and (p_ < low or p_ > high):
            grad = Fraction(0)  # clip_by_value passes no gradient outside its range
        else:
            grad = _exact_bce_grad(p_, y_, w_, q_, floor)
        if two_step:  # chain rule through the sigmoid, whose backward is p·(1 - p) of its output
            chain = p_ * (1 - p_)  # in [0, 1/4]: a zero silences an infinite or NaN gradient
            if chain == 0:
                return Fraction(0)
            return chain * grad if isinstance(grad, Fraction) else grad
        return grad

    return term


def bce_with_logits_target_grad(x, y, w, q=None) -> mpmath.mpf:
    """d/dy of the logits loss w·(q·y·softplus(-x) + (1-y)·softplus(x)): w·(q·softplus(-x) - softplus(x)),
    which is exactly -w·x for q = 1 (softplus(x) - softplus(-x) = x)."""
    if any(mpmath.isnan(v) for v in (x, y, w)) or (q is not None and mpmath.isnan(q)):
        return mpmath.nan
    if q is None or q == 1:
        return w * -x
    return w * (_times(q, softplus(-x)) - softplus(x))


def bce_target_grad(p, y, w, q=None) -> mpmath.mpf:
    """d/dy of the probability loss w·(q·y·(-log p) + (1-y)·(-log(1-p))): w·(log(1-p) - q·log p);
    NaN outside p ∈ [0, 1], ±inf at p = 0 / 1 (a zero q silences log 0)."""
    if any(mpmath.isnan(v) for v in (p, y, w)) or (q is not None and mpmath.isnan(q)) or p < 0 or p > 1:
        return mpmath.nan
    positive = mpmath.mpf(1) if q is None else q
    log_not_p = -_neg_log(mpmath.fsub(1, p, exact=True))
    return w * (log_not_p + _times(positive, _neg_log(p)))


TERMS = {"bce": bce_term, "bce_with_logits": bce_with_logits_term}
GRADIENTS = {"bce": bce_grad, "bce_with_logits": bce_with_logits_grad}
TARGET_GRADIENTS = {"bce": bce_target_grad, "bce_with_logits": bce_with_logits_target_grad}


def smooth_target(y: mpmath.mpf, label_smoothing: mpmath.mpf) -> mpmath.mpf:
    """Keras's smoothed target y·(1 - ls) + ls/2, exactly (every step is exact in binary arithmetic)."""
    keep = mpmath.fsub(1, label_smoothing, exact=True)
    return mpmath.fadd(mpmath.fmul(y, keep, exact=True), mpmath.ldexp(label_smoothing, -1), exact=True)


def _label_smoothing(inputs: dict[str, np.ndarray]) -> mpmath.mpf | None:
    """The exact label smoothing of the inputs (a 0-d float64 array under `label_smoothing`), None for none."""
    if "label_smoothing" not in inputs:
        return None
    value = np.asarray(inputs["label_smoothing"])
    if value.shape != () or not 0 <= float(value) <= 1:
        raise ValueError(f"label_smoothing must be a single number in [0, 1], not {value!r}")
    return _mpf(value[()])


def _evaluate(
    term,
    first: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    gradient: bool = False,
    axis_mean: bool = False,
    wrt_target: bool = False,
    count: int | None = None,
) -> np.ndarray:
    """Terms (or their reduction) at the current mpmath precision, as an object array of mpf.

    For a ``gradient``, the terms are each element's derivative of the reduced loss: the same for
    `none` (the gradient of their sum) and `sum`, divided by the count for `mean`.
    With ``axis_mean`` (Keras's reduction), see ``_axis_reduce``. With ``wrt_target`` (a target
    gradient), each term is multiplied by dy'/dy = 1 - ls under label smoothing.
    """
    names = (first, "target", "weight", "pos_weight")
    arrays = [inputs.get(name) for name in names]
    shape = np.broadcast_shapes(*(a.shape for a in arrays if a is not None))
    operands = [np.broadcast_to(a, shape) if a is not None else None for a in arrays]
    one = mpmath.mpf(1)
    label_smoothing = _label_smoothing(inputs)
    terms = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        x, y, w, q = (_mpf(a[index]) if a is not None else None for a in operands)
        if label_smoothing is not None:
            y = smooth_target(y, label_smoothing)
        terms[index] = term(x, y, one if w is None else w, q)
        if wrt_target and label_smoothing is not None:
            terms[index] = terms[index] * mpmath.fsub(1, label_smoothing, exact=True)
    if axis_mean:
        return _axis_reduce(terms, reduction, gradient)
    if gradient:
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}")
        count = terms.size if count is None else count  # the fast path's fallback: a part of the elements
        # (an object array's quotient is an mpf, not an array, when it is 0-d: a scalar input's mean)
        return np.asarray(terms / count, dtype=object) if reduction == "mean" and count else terms
    if reduction == "none":
        return terms
    total = mpmath.fsum(terms.ravel()) if terms.size else mpmath.mpf(0)
    if reduction == "sum":
        return np.array(total, dtype=object)
    if reduction == "mean":
        return np.array(total / terms.size if terms.size else mpmath.nan, dtype=object)
    raise ValueError(f"unknown reduction {reduction!r}")


def _axis_reduce(terms: np.ndarray, reduction: str, gradient: bool) -> np.ndarray:
    """The reductions of an API whose loss is the mean over the last axis (Keras's binary_crossentropy,
    axis=-1), from the exact terms: `none` is the exact mean of each last-axis row (shape[:-1]; a 0-d
    result for a 1-d input), `sum` the sum of those row means, `mean` their mean. Gradients: each
    element's derivative divided by the row length L (of the row means' sum, for `none` and `sum`), and
    further by the number of rows for `mean`. A 0-d input has no last axis (ValueError).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}")
    if terms.ndim == 0:
        raise ValueError("a mean over the last axis needs an input of at least one dimension")
    length = terms.shape[-1]
    rows = terms.size // length if length else int(np.prod(terms.shape[:-1]))
    if gradient:
        count = length * rows if reduction == "mean" else length
        return terms / count if count else terms
    means = np.empty(terms.shape[:-1], dtype=object)
    for index in np.ndindex(means.shape):
        row = terms[index].ravel()
        means[index] = mpmath.fsum(row) / length if length else mpmath.nan
    if reduction == "none":
        return means
    total = mpmath.fsum(means.ravel()) if rows else mpmath.mpf(0)
    if reduction == "sum":
        return np.array(total, dtype=object)
    return np.array(total / rows if rows else mpmath.nan, dtype=object)


def reference(
    formula: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    fmt: FloatFormat,
    variant: Variant | None = None,
    two_step: bool = False,
    gradient: bool = False,
    axis_mean: bool = False,
    wrt: str = "input",
    fast: bool = True,
    count: int | None = None,
) -> ReferenceValue:
    """The exact loss for inputs already cast to ``fmt``, with its correct rounding to ``fmt``.

    ``inputs`` maps `logits` or `probs`, `target`, and optionally `weight` and `pos_weight`
    to arrays of the dtype, and optionally `label_smoothing` to a 0-d float64 array (a case's
    `label_smoothing`, which Keras takes as a Python float): each target y is then replaced by
    y·(1 - ls) + ls/2, computed exactly, for the loss, its variants and its gradient. With a ``variant``, the loss under that documented contract
    (``two_step``: the probability step of the two-step op, on the rounded sigmoid). With
    ``gradient``, the derivative of the reduced loss with respect to each element of the input.
    With ``axis_mean``, the reductions of an API whose loss is the mean over the last axis (Keras's
    binary_crossentropy): `none` the exact row means, `sum` / `mean` their sum / mean (``_axis_reduce``).
    With ``wrt="target"`` (and ``gradient``), the derivative of the reduced loss with respect to each
    target element instead (times 1 - ls under label smoothing); no variant is defined for it.
    With ``fast`` (the default), large inputs in dtypes of up to 24 bits go through the float64 fast
    path (``conformance.fast_reference``), which settles the same rounding. ``count`` divides a
    `mean` gradient by another count than the elements given (the fast path's fallback elements).
    """
    if formula not in TERMS:
        raise ValueError(f"unknown formula {formula!r}")
    if wrt not in ("input", "target"):
        raise ValueError(f"unknown wrt {wrt!r} (input or target)")
    wrt_target = wrt == "target"
    if wrt_target and (not gradient or variant is not None):
        raise ValueError("a target gradient needs gradient=True and no variant")
    first = "probs" if formula == "bce" else "logits"
    if fast and not wrt_target:
        settled = _fast(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean)
        if settled is not None:
            return settled
        # the mean of Keras's row means (rows of equal length) is the mean of every element, and for a
        # 1-D input (one row) so are its sum and the row mean itself: the same ball
        arb_reduction = reduction if not axis_mean else ("mean" if reduction == "mean" or _one_row(inputs, first) else None)
        if fmt.precision > fast_reference.MAX_PRECISION and variant is None and not gradient and arb_reduction:
            balls = arb_reference.reduction(formula, inputs, arb_reduction, fmt)
            if balls is not None:
                value, middle = balls
                return ReferenceValue(exact=np.array(middle, dtype=object), rounded=np.array(value), precision=2 * fmt.precision + 64)
    size = int(np.prod(np.broadcast_shapes(*(np.shape(inputs[n]) for n in (first, "target", "weight", "pos_weight") if n in inputs))))
    if size > MPMATH_MAX_ELEMENTS:
        raise ReferenceError(
            f"{size} elements for the mpmath path (at most {MPMATH_MAX_ELEMENTS}: about a thousand elements a second "
            f"in {fmt.name}); the fast paths take large float16 / bfloat16 / float32 inputs and float64 means and sums"
        )
    if wrt_target:
        term = TARGET_GRADIENTS[formula]
    elif variant is not None:
        term = (variant_grad_term if gradient else variant_term)(variant, fmt, two_step)
    elif gradient:
        term = _exact_bce_grad_term if formula == "bce" else GRADIENTS[formula]
    else:
        term = _plain_logits_term if formula == "bce_with_logits" else TERMS[formula]
    splits = _splits_of(formula, term, gradient, wrt_target, variant)
    return _settle(formula, term, first, inputs, reduction, fmt, gradient, axis_mean, wrt_target, count, splits)


def _settle(formula, term, first, inputs, reduction, fmt, gradient, axis_mean, wrt_target, count, splits) -> ReferenceValue:
    """The mpmath path's Ziv loop, element by element: each result element is evaluated at a precision and at
    twice it until both round alike to ``fmt`` and the value lies clear of every point where the rounding or
    the ULP changes (``dtypes.boundaries_near``), or its ``splits`` (an exactly known part and a bounded rest)
    say on which side of that point the exact value lies; an element left open is evaluated again, alone,
    at twice the precision. So an element's rounding never depends on the other elements of the call."""
    names = [n for n in (first, "target", "weight", "pos_weight") if n in inputs]
    shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in names))
    size = int(np.prod(shape))
    rowwise = axis_mean and reduction == "none" and not gradient
    elementwise = gradient or (reduction == "none" and not axis_mean)
    length = shape[-1] if axis_mean and shape else 1
    rows = size // length if length else 0
    if gradient:  # what each element's derivative is divided by
        divisor = (length * rows if reduction == "mean" else length) if axis_mean else ((size if count is None else count) if reduction == "mean" else 1)
    else:
        divisor = length * rows if axis_mean and reduction == "mean" else (length if axis_mean else (size if reduction == "mean" else 1))
    factor = Fraction(1, divisor) if divisor else Fraction(1)
    smoothing = _label_smoothing(inputs)
    if wrt_target and smoothing is not None:
        factor *= 1 - to_fraction(smoothing)
    operands = _operands(inputs, names, shape)

    def splits_at(position: int) -> list[Split]:
        if splits is None or not divisor:
            return []
        if elementwise:
            index = np.unravel_index(position, shape) if shape else ()
            return [split.scaled(factor) for split in splits(*operands(index))]
        if rowwise:
            row = np.unravel_index(position, shape[:-1]) if shape[:-1] else ()
            indices = [(*row, i) for i in range(length)]
        else:
            indices = list(np.ndindex(shape))
        combined = _combined([splits(*operands(index)) for index in indices])
        return [] if combined is None else [combined.scaled(factor)]

    precision = 2 * fmt.precision + 64
    result_shape = shape if elementwise else (shape[:-1] if rowwise else ())
    exact = np.empty(result_shape, dtype=object).ravel()
    rounded = np.full(exact.shape, math.nan)
    pending = np.ones(exact.shape, dtype=bool)
    part_reduction = "mean" if divisor != 1 else "none"
    used = precision
    while pending.any():
        if precision > MAX_PRECISION:
            what = ("target gradient" if wrt_target else "gradient" if gradient else "loss") + (" (mean over the last axis)" if axis_mean else "")
            raise ReferenceError(f"{formula} {what}/{reduction}: the rounding to {fmt.name} is not settled at {MAX_PRECISION} bits")
        if pending.all():  # every element (at first): the call as given
            part, args = inputs, (reduction, gradient, axis_mean, wrt_target, count)
        else:  # the elements (or rows) left open, alone
            mask = pending.reshape(result_shape)
            part = {n: np.broadcast_to(inputs[n], shape)[mask] for n in names}
            if smoothing is not None:
                part["label_smoothing"] = inputs["label_smoothing"]
            args = ("none", False, True, False, None) if rowwise else (part_reduction, gradient, False, wrt_target, divisor)
        with mpmath.workprec(precision):
            low = np.asarray(_evaluate(term, first, part, *args), dtype=object).ravel()
        with mpmath.workprec(2 * precision):
            high = np.asarray(_evaluate(term, first, part, *args), dtype=object).ravel()
        for position, lo, hi in zip(np.flatnonzero(pending), low, high):
            settled = _settled_element(
                lo, hi, precision, fmt, lambda position=position: splits_at(position), last=2 * precision > MAX_PRECISION
            )
            if settled is not None:
                exact[position], rounded[position] = settled
                pending[position] = False
                used = max(used, 2 * precision)
        precision *= 2
    return ReferenceValue(exact=exact.reshape(result_shape), rounded=rounded.reshape(result_shape), precision=used)


def _operands(inputs, names, shape):
    """index -> the element's (x, y, w, q) as mpf, y smoothed exactly, as ``_evaluate`` passes them to a term."""
    arrays = {n: np.broadcast_to(inputs[n], shape) for n in names}
    smoothing = _label_smoothing(inputs)

    def at(index):
        x, y = _mpf(arrays[names[0]][index]), _mpf(arrays["target"][index])
        if smoothing is not None:
            y = smooth_target(y, smoothing)
        w = _mpf(arrays["weight"][index]) if "weight" in arrays else mpmath.mpf(1)
        q = _mpf(arrays["pos_weight"][index]) if "pos_weight" in arrays else None
        return x, y, w, q

    return at


def _settled_element(
    low, high, precision: int, fmt: FloatFormat, splits_at, powers: bool = True, last: bool = False
) -> tuple[mpmath.mpf, float] | None:
    """(exact value, correct rounding) of one element from its evaluations at ``precision`` and twice it, or
    None where they leave it open. An exact rational (a Fraction) is rounded at once, ties included. Else
    both must round alike, and where the value lies within their difference (or a relative 2^-(precision-16))
    of a point where the rounding or the ULP changes, the element's splits must say on which side the exact
    value lies: an evaluation that lands on a rounding midpoint says nothing of a rest below its precision
    (softplus(-1022) next to (1 - y)·x), and one that lands on 2^k nothing of whether the exact value, and
    so its ULP, lies below it. The exact value kept lies on the same side of that point as the exact one.
    At the ``last`` precision, a value that both precisions still put on such a point, with no split to
    decide it, is taken as that point: every formula here with an exact rational value (a Fraction, a
    split with no rest) says so, and a transcendental one is not within 2^-16000 of a dyadic point."""
    if isinstance(high, Fraction):
        return _mpf_of_fraction(high, 2 * precision, fmt), round_fraction(high, fmt)
    if mpmath.isnan(high) or mpmath.isnan(low):
        return (mpmath.nan, math.nan) if mpmath.isnan(high) and mpmath.isnan(low) else None
    rounding = round_to_format(high, fmt)
    if round_to_format(low, fmt) != rounding:
        return None
    if not mpmath.isfinite(high) or high == 0:
        return high, rounding
    if not mpmath.isfinite(low):
        return None
    radius = 2 * abs(high - low) + mpmath.ldexp(abs(high), -(precision - 16))
    near = boundaries_near(high, radius, fmt, powers)
    if not near:
        return high, rounding
    if len(near) == 1:
        for split in splits_at():
            side = split.side(near[0])
            if side is not None:
                placed = _placed(high, near[0], side, 2 * precision)
                return placed, round_to_format(placed, fmt)
    return (high, rounding) if last else None


def _sign(value) -> int:
    return (value > 0) - (value < 0)


def _dyadic_mpf(value: Fraction) -> mpmath.mpf:
    """A dyadic rational as the mpf equal to it, whatever the context's precision."""
    shift = value.denominator.bit_length() - 1
    assert value.denominator == 1 << shift, "not a dyadic rational"
    return mpmath.mp.make_mpf(mpmath.libmp.from_man_exp(value.numerator, -shift))


def _placed(high: mpmath.mpf, point: Fraction, side: int, precision: int) -> mpmath.mpf:
    """An mpf for an exact value that lies on ``side`` of ``point`` (0: is ``point``): ``high`` where it does,
    else ``point`` moved by a relative 2^-precision to that side."""
    if side == 0:
        return _dyadic_mpf(point)
    if _sign(to_fraction(high) - point) == side:
        return high
    return _dyadic_mpf(point + side * abs(point) / (1 << precision))


def _mpf_of_fraction(value: Fraction, precision: int, fmt: FloatFormat) -> mpmath.mpf:
    """The nearest mpf of ``precision`` bits to an exact rational, or, where that one rounds to another value of
    ``fmt`` or lies in another binade (a rational a hair below 2^k, or a hair off a midpoint), the one on its side."""
    if value == 0:
        return mpmath.mpf(0)
    libmp = mpmath.libmp
    nearest = mpmath.mp.make_mpf(libmp.from_rational(value.numerator, value.denominator, precision, libmp.round_nearest))
    if round_to_format(nearest, fmt) == round_fraction(value, fmt) and binade(nearest) == binade(value):
        return nearest
    toward = libmp.round_floor if to_fraction(nearest) > value else libmp.round_ceiling
    return mpmath.mp.make_mpf(libmp.from_rational(value.numerator, value.denominator, precision, toward))


# ------------------------------------------------------------------------------------------------
# splits: an exact value as an exactly known part and a rest of known sign and bounded magnitude


@dataclass(frozen=True)
class Split:
    """An exact value as ``known`` (exact) plus a rest of sign ``sign`` (0: the rest is exactly 0) and
    magnitude below 2^``bound`` (None: no bound known)."""

    known: Fraction
    sign: int
    bound: int | None

    def side(self, point: Fraction) -> int | None:
        """The sign of (exact value - point), where this split decides it."""
        gap = self.known - point
        if gap == 0 or self.sign == 0:
            return self.sign if gap == 0 else _sign(gap)
        if self.bound is not None and binade(gap) >= self.bound:  # |gap| >= 2^bound > |rest|
            return _sign(gap)
        return None

    def scaled(self, factor: Fraction) -> Split:
        if factor == 0:
            return Split(Fraction(0), 0, None)
        bound = None if self.bound is None else self.bound + binade(factor) + 1  # |factor| < 2^(binade + 1)
        return Split(self.known * factor, self.sign * _sign(factor), bound)


def _combined(per_element: list[list[Split]]) -> Split | None:
    """The split of a sum, from each term's first split: the known parts added, the rests of one sign (else None)."""
    if not per_element or any(not splits for splits in per_element):
        return None
    firsts = [splits[0] for splits in per_element]
    signs = {split.sign for split in firsts if split.sign}
    if len(signs) > 1:
        return None
    bounds = [split.bound for split in firsts if split.sign]
    bound = None if not bounds or None in bounds else max(bounds) + len(bounds).bit_length()  # k terms < k·2^max
    return Split(sum((split.known for split in firsts), Fraction(0)), signs.pop() if signs else 0, bound)


LOG2_E_BELOW = Fraction(14426950408, 10**10)  # below log2(e) = 1.4426950408889634...


def _exp_bound(c: Fraction, x: Fraction) -> int:
    """B with |c|·e^-|x| < 2^B: e^-|x| = 2^-(|x|·log2 e) <= 2^-floor(|x|·LOG2_E_BELOW), |c| < 2^(binade(c) + 1)."""
    return binade(c) + 1 - math.floor(abs(x) * LOG2_E_BELOW)


def _finite_fractions(*values):
    if any(v is not None and not mpmath.isfinite(v) for v in values):
        return None
    return [None if v is None else to_fraction(v) for v in values]


def logits_splits(x, y, w, q, gradient: bool) -> list[Split]:
    """Splits of the logits loss and of its derivative in x, for finite inputs (``w`` and ``q`` as the terms take them).

    With c = w·(q·y + 1 - y), the loss is w·(1-y)·x + c·log1p(e^-|x|) for x > 0, w·q·y·|x| + c·log1p(e^-|x|)
    below (log1p(t) < t); the derivative is w·(1-y) - c·σ(-|x|) for x > 0, -w·q·y + c·σ(-|x|) below
    (σ(-|x|) < e^-|x|), and also c·(1/2 + x/4) - w·q·y + c·(tanh(x/2)/2 - x/4), whose rest has the sign of
    -c·x and is below |c|·|x|^3/48 (0 < t - tanh t < t^3/3 for t > 0): the first settles large |x|, the
    second tiny |x| (a subnormal x next to 1/2 - y)."""
    if gradient and mpmath.isinf(x) and _finite_fractions(y, w, q) is not None:  # σ(±inf) = 1 or 0: exact
        y, w, q = _finite_fractions(y, w, q)
        return [Split(w * (1 - y) if x > 0 else -w * (1 if q is None else q) * y, 0, None)]
    fractions = _finite_fractions(x, y, w, q)
    if fractions is None:
        return []
    x, y, w, q = fractions
    q = Fraction(1) if q is None else q
    c = w * (q * y + 1 - y)
    if not gradient:
        known = w * (1 - y) * x if x > 0 else w * q * y * -x
        return [Split(known, _sign(c), _exp_bound(c, x) if c else None)]
    if x == 0:  # σ(0) = 1/2
        return [Split(w * ((1 - y) - q * y) / 2, 0, None)]
    large = Split(w * (1 - y) if x > 0 else -w * q * y, -_sign(c) if x > 0 else _sign(c), _exp_bound(c, x) if c else None)
    small = Split(c * (Fraction(1, 2) + x / 4) - w * q * y, -_sign(c) * _sign(x), binade(c) + 1 + 3 * (binade(x) + 1) - 5 if c else None)
    return [large, small]


def logits_target_splits(x, y, w, q) -> list[Split]:
    """Splits of the logits loss's derivative in y, w·(q·softplus(-x) - softplus(x)): -w·x + w·(q-1)·log1p(e^-|x|)
    for x > 0, w·q·|x| + the same rest below (exactly -w·x for q = 1)."""
    fractions = _finite_fractions(x, y, w, q)
    if fractions is None:
        return []
    x, _, w, q = fractions
    q = Fraction(1) if q is None else q
    c = w * (q - 1)
    known = -w * x if x > 0 else w * q * -x
    return [Split(known, _sign(c), _exp_bound(c, x) if c else None)]


def _splits_of(formula: str, term, gradient: bool, wrt_target: bool, variant):
    """The splits of a term's exact value (x, y, w, q) -> [Split], or None where the formula has none: its
    values are exact rationals (Fractions), 0, or transcendental (never a midpoint: more precision settles them)."""
    if wrt_target:
        return logits_target_splits if formula == "bce_with_logits" else None
    if variant is not None:
        return getattr(term, "splits", None)
    if formula == "bce_with_logits":
        return lambda x, y, w, q: logits_splits(x, y, w, q, gradient)
    return None


def _one_row(inputs, first: str) -> bool:
    return len(np.broadcast_shapes(*(np.shape(inputs[n]) for n in (first, "target", "weight", "pos_weight") if n in inputs))) == 1


def _plain_logits_term(x, y, w, q=None):
    return bce_with_logits_term(x, y, w, mpmath.mpf(1) if q is None else q)


FAST_MIN_ELEMENTS = 1024  # smaller inputs take the mpmath path: fast enough, and every exact value at hand


def _fast(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean) -> ReferenceValue | None:
    """The fast path's reference, or None where it does not apply or cannot settle a reduction."""
    first = "probs" if formula == "bce" else "logits"
    shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in (first, "target", "weight", "pos_weight") if n in inputs))
    size = int(np.prod(shape))
    if fmt.precision > fast_reference.MAX_PRECISION or size < FAST_MIN_ELEMENTS or (axis_mean and not shape):
        return None
    smoothing = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None
    if variant is None:
        if formula == "bce_with_logits":
            terms = fast_reference.logits_terms(inputs, smoothing, gradient)
        else:
            terms = fast_reference.probability_terms(inputs, smoothing, gradient)
    else:
        ends = variant.clip_ends(fmt)
        clip = None if ends is None else tuple(float(end) for end in ends)
        floor = variant.grad_floor(fmt) if gradient else None
        floor = None if floor is None else float(floor)
        ceiling = -float(variant.log_floor) if variant.log_floor is not None else None
        p = _rounded_sigmoid(inputs[first], fmt) if two_step else None
        terms = fast_reference.probability_terms(inputs, smoothing, gradient, ceiling, floor, clip, p)
    count = size
    if axis_mean:
        length = shape[-1]
        count = length * (size // length if length else 0) if reduction == "mean" else length
        reduced = fast_reference.axis_mean_terms(terms, reduction, gradient)
    else:
        reduced = fast_reference.reduce_terms(terms, reduction, gradient, size)
    rounded, unsettled = fast_reference.settle(reduced, fmt)

    rowwise = axis_mean and reduction == "none" and not gradient  # Keras's row means: settled row by row
    elementwise = gradient or (reduction == "none" and not axis_mean) or rowwise
    if not elementwise and unsettled.any():  # a reduction: settled whole, or the mpmath path
        return None
    return fast_value(
        formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean,
        rounded, reduced.approx, reduced.bound, unsettled, shape=shape, count=count,
    )


def fast_value(
    formula: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    fmt: FloatFormat,
    variant: Variant | None,
    two_step: bool,
    gradient: bool,
    axis_mean: bool,
    rounded: np.ndarray,
    approx: np.ndarray,
    bound: np.ndarray,
    unsettled: np.ndarray | None = None,
    shape: tuple[int, ...] | None = None,
    count: int | None = None,
    known_exact: np.ndarray | None = None,
) -> ReferenceValue:
    """The ``ReferenceValue`` of fast-path values (``rounded``, ``approx``, ``bound``), whose exact values
    mpmath computes on demand: all of them (``exact``), or those of the elements asked (``exact_where`` /
    ``exact_at``; for Keras's row means, of the rows). The one constructor of the fast path's values, for
    ``_fast`` and for the cache's stored ones (``conformance.cache.rebuild``). ``unsettled``: elements whose
    rounding the float64 bound did not settle: settled here by mpmath (``rounded`` is written in place),
    their exact values kept and their ``approx`` NaN. ``known_exact``: exact values mpmath already computed
    (an object array over the elements, None where not known; their ``approx`` NaN), so that none is
    computed twice (the float32 sweep's). A reduction's exact value, where asked, is its float64 value (its
    rounding is settled, and its error is judged from ``bound``)."""
    first = "probs" if formula == "bce" else "logits"
    if shape is None:
        shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in (first, "target", "weight", "pos_weight") if n in inputs))
    if count is None:
        size = int(np.prod(shape))
        count = size
        if axis_mean:
            length = shape[-1]
            count = length * (size // length if length else 0) if reduction == "mean" else length

    def exact_of() -> np.ndarray:
        return reference(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, fast=False).exact

    rowwise = axis_mean and reduction == "none" and not gradient  # Keras's row means: settled row by row
    elementwise = gradient or (reduction == "none" and not axis_mean) or rowwise
    if not elementwise:
        return ReferenceValue(
            rounded=rounded, approx=approx, bound=bound, exact_of=exact_of,
            exact_at=lambda index: mpmath.mpf(float(approx[index])),
        )

    def part_of(mask: np.ndarray) -> dict:
        # a mask over the elements, or for row means over the rows (each selected row whole)
        part = {name: np.broadcast_to(inputs[name], shape)[mask] for name in (first, "target", "weight", "pos_weight") if name in inputs}
        if "label_smoothing" in inputs:
            part["label_smoothing"] = inputs["label_smoothing"]
        return part

    part_reduction, part_count = ("mean", count) if gradient and (reduction == "mean" or axis_mean) else ("none", None)

    def settle_part(mask: np.ndarray) -> ReferenceValue:
        if rowwise:
            return reference(formula, part_of(mask), "none", fmt, variant, two_step, False, axis_mean=True, fast=False)
        return reference(formula, part_of(mask), part_reduction, fmt, variant, two_step, gradient, fast=False, count=part_count)

    result_shape = rounded.shape
    exact = np.empty(result_shape, dtype=object)
    exact.fill(None)
    if known_exact is not None:
        exact[...] = known_exact
    if unsettled is not None and unsettled.any():
        settled_part = settle_part(unsettled)
        rounded[unsettled] = settled_part.rounded
        exact[unsettled] = settled_part.exact
    if unsettled is not None:
        approx = np.where(unsettled, np.nan, approx)

    def exact_where(mask: np.ndarray) -> np.ndarray:
        missing = mask & np.equal(exact, None)
        if missing.any():  # one mpmath evaluation for all of them
            exact[missing] = settle_part(missing).exact
        return exact[mask]

    def exact_at(index) -> mpmath.mpf:
        mask = np.zeros(result_shape, dtype=bool)
        mask[index] = True
        return exact_where(mask)[0]

    value = ReferenceValue(
        rounded=rounded, approx=approx, bound=bound, exact_of=exact_of, exact_at=exact_at, exact_where=exact_where
    )
    value.under = gradient_under(formula, inputs, reduction, variant, gradient, axis_mean, count)
    return value


def gradient_under(
    formula: str, inputs: dict[str, np.ndarray], reduction: str, variant: Variant | None, gradient: bool, axis_mean: bool,
    count: int,
) -> np.ndarray | None:
    """Per gradient element, a strict upper bound on its exact magnitude, where the formula gives one, else None.

    The derivative of the unweighted loss on logits (fused, or the two-step op's exact composite) with respect to
    x is σ(x) - y', and σ(x) lies in (0, 1) strictly: with y' in [0, 1] (every target and any label smoothing in
    [0, 1]) the derivative lies in (-y', 1 - y'), so its magnitude is below max(y', 1 - y'); a `mean` divides it by
    the count. Each bound is rounded up in float64, so it stays strict. It tells ``verdicts.exact_ulps`` that an
    exact value rounding up to a power of two at or above its bound (σ(40) - 0 rounds to 1, σ(40) - 0.5 to 0.5)
    lies below it, which float64 alone cannot tell."""
    if not gradient or formula != "bce_with_logits" or variant is not None or axis_mean:
        return None
    if "weight" in inputs or "pos_weight" in inputs or (reduction == "mean" and not count):
        return None
    shape = np.broadcast_shapes(np.shape(inputs["logits"]), np.shape(inputs["target"]))
    with np.errstate(invalid="ignore"):
        target = np.broadcast_to(np.asarray(inputs["target"], dtype=np.float64), shape)
        smoothing = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else 0.0
        if not (np.all((target >= 0) & (target <= 1)) and 0 <= smoothing <= 1):
            return None
        if smoothing:
            smoothed = target * (1 - smoothing) + smoothing / 2
            # y' is within 4u of the exact smoothed target, 1 - y' within another u: on a maximum of at least
            # 1/2 that is a relative 10u at most, so 16u up is above the exact bound (which is at most 1)
            bound = np.minimum(np.maximum(smoothed, 1 - smoothed) * (1 + 16 * fast_reference.U), 1.0)
        else:
            # max(y, 1 - y) itself where 1 - y is exact in float64 (Fast2Sum's error is then 0); else 2u up
            complement = 1 - target
            exact = (1 - complement) - target == 0
            bound = np.maximum(target, complement)
            bound = np.where(exact, bound, np.minimum(bound * (1 + 2 * fast_reference.U), 1.0))
        if reduction == "mean":
            power_of_two = count & (count - 1) == 0  # the quotient is exact
            bound = bound / count if power_of_two else bound / count * (1 + 2 * fast_reference.U)
    return bound


def ziv_round(function, value: float, fmt: FloatFormat) -> float:
    """``function(value)`` (an mpmath function of one argument) correctly rounded to ``fmt``: evaluated at a
    precision and at twice it until both round alike, clear of every rounding midpoint (``_settled_element``,
    without splits: a transcendental value is never a midpoint, and more precision settles it), the
    precision growing up to MAX_PRECISION."""
    value = _mpf(value)
    if mpmath.isnan(value):
        return math.nan
    precision = 2 * fmt.precision + 64
    while True:
        with mpmath.workprec(precision):
            low = function(value)
        with mpmath.workprec(2 * precision):
            high = function(value)
        settled = _settled_element(low, high, precision, fmt, list, powers=False, last=2 * precision > MAX_PRECISION)
        if settled is not None or 2 * precision > MAX_PRECISION:
            return round_to_format(high, fmt) if settled is None else settled[1]
        precision *= 2


def _rounded_sigmoid(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """σ(x) correctly rounded to ``fmt`` elementwise: the fast path where it settles, mpmath elsewhere."""
    x = np.asarray(x, dtype=np.float64)
    rounded, unsettled = fast_reference.settle(fast_reference.sigmoid_terms(x), fmt)
    for index in zip(*np.nonzero(unsettled)):
        rounded[index] = ziv_round(sigmoid, x[index], fmt)
    return rounded
