"""The exact reference: binary cross-entropy in mpmath, rounded correctly to the dtype under test.

Inputs arrive already cast to the dtype, so each is a binary float converted to mpf exactly.
Label smoothing (Keras's: y' = y·(1 - ls) + ls/2, keras/src/losses/losses.py :: binary_crossentropy)
is applied to each target exactly, in binary arithmetic without rounding, never in the dtype.
Each loss is evaluated as a sum of non-negative products (no cancellation for targets in
[0, 1]) at a precision well beyond the dtype, then again at twice that precision; the two
must round to the same value in the dtype (Ziv's test), else the precision grows.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np

from conformance import arb_reference, fast_reference
from conformance.dtypes import FloatFormat, round_to_format, to_fraction
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


def _as_mpf(values: np.ndarray, precision: int) -> np.ndarray:
    """The values with each Fraction (an exact rational term) as the nearest mpf of ``precision`` bits."""
    out = np.empty(values.shape, dtype=object)
    with mpmath.workprec(precision):  # mpf() rounds a raw value to the context's precision: keep all of them
        for index, value in np.ndenumerate(values):
            if isinstance(value, Fraction):
                value = mpmath.mpf(mpmath.libmp.from_rational(value.numerator, value.denominator, precision, mpmath.libmp.round_nearest))
            out[index] = value
    return out


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


def _round_all(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    out = np.empty(values.shape, dtype=np.float64)
    for index, value in np.ndenumerate(values):
        out[index] = math.nan if mpmath.isnan(value) else round_to_format(value, fmt)
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


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
        term = GRADIENTS[formula]
    else:
        term = _plain_logits_term if formula == "bce_with_logits" else TERMS[formula]
    precision = 2 * fmt.precision + 64
    while precision <= MAX_PRECISION:
        with mpmath.workprec(precision):
            low = _evaluate(term, first, inputs, reduction, gradient, axis_mean, wrt_target, count)
        with mpmath.workprec(2 * precision):
            high = _evaluate(term, first, inputs, reduction, gradient, axis_mean, wrt_target, count)
        rounded = _round_all(high, fmt)
        if _same(_round_all(low, fmt), rounded):
            return ReferenceValue(exact=_as_mpf(high, 2 * precision), rounded=rounded, precision=2 * precision)
        precision *= 2
    what = ("target gradient" if wrt_target else "gradient" if gradient else "loss") + (" (mean over the last axis)" if axis_mean else "")
    raise ReferenceError(f"{formula} {what}/{reduction}: the rounding to {fmt.name} is not settled at {MAX_PRECISION} bits")


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
) -> ReferenceValue:
    """The ``ReferenceValue`` of fast-path values (``rounded``, ``approx``, ``bound``), whose exact values
    mpmath computes on demand: all of them (``exact``), or those of the elements asked (``exact_where`` /
    ``exact_at``; for Keras's row means, of the rows). The one constructor of the fast path's values, for
    ``_fast`` and for the cache's stored ones (``conformance.cache.rebuild``). ``unsettled``: elements whose
    rounding the float64 bound did not settle: settled here by mpmath (``rounded`` is written in place),
    their exact values kept and their ``approx`` NaN. A reduction's exact value, where asked, is its
    float64 value (its rounding is settled, and its error is judged from ``bound``)."""
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

    return ReferenceValue(
        rounded=rounded, approx=approx, bound=bound, exact_of=exact_of, exact_at=exact_at, exact_where=exact_where
    )


def ziv_round(function, value: float, fmt: FloatFormat) -> float:
    """``function(value)`` (an mpmath function of one argument) correctly rounded to ``fmt``: evaluated at a
    precision and at twice it until both round alike (Ziv's test), the precision growing up to MAX_PRECISION."""
    value = _mpf(value)
    if mpmath.isnan(value):
        return math.nan
    precision = 2 * fmt.precision + 64
    while True:
        with mpmath.workprec(precision):
            low = round_to_format(function(value), fmt)
        with mpmath.workprec(2 * precision):
            high = round_to_format(function(value), fmt)
        if _same(np.array(low), np.array(high)) or precision > MAX_PRECISION:
            return high
        precision *= 2


def _rounded_sigmoid(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """σ(x) correctly rounded to ``fmt`` elementwise: the fast path where it settles, mpmath elsewhere."""
    x = np.asarray(x, dtype=np.float64)
    rounded, unsettled = fast_reference.settle(fast_reference.sigmoid_terms(x), fmt)
    for index in zip(*np.nonzero(unsettled)):
        rounded[index] = ziv_round(sigmoid, x[index], fmt)
    return rounded
