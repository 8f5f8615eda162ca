"""The fast path of the reference: the loss and its gradient evaluated elementwise in float64 with
numpy, each element with a rigorous bound on its error, rounded to the dtype under test only where
the bound settles the rounding; every other element goes back to the mpmath reference.

For a dtype of p ≤ 24 bits (float16, bfloat16, float32), a float64 evaluation within 2^-45 of the
exact value settles its correct rounding except within 2^-45 (relative) of a rounding boundary: a
few elements in a million. Those, and every element with an infinite or NaN input, a target
outside [0, 1] or a negative weight, are computed by ``conformance.reference`` as before, so the
rounded values are exactly the mpmath path's (tests/test_fast_reference.py checks this on every
finite float16 and bfloat16 logit and on large float32 samples).

The bound: inputs are values of the dtype, exact in float64; each float64 operation rounds with a
relative error of at most u = 2^-53, and numpy's float64 ``exp``, ``log`` and ``log1p`` are taken
to be within ``ELEMENTARY_ULPS`` ulps of their results (numpy documents its SIMD float64
transcendentals as within 4 ULP; glibc's within 1-2: we assume 16). Every formula below is a sum
of non-negative terms, or a difference of two non-negative terms whose error is bounded by the
error of their sum, so the bounds follow from the operation counts written next to each formula.
Underflow in float64 adds at most ``ABSOLUTE`` (far below any float32 subnormal) to each bound, so a
bound of exactly 0 marks an exact zero (a zero weight, the sigmoid's p·(1 - p) at p = 0 or 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from conformance.dtypes import FORMATS, FloatFormat, quantum_exponent

U = 2.0**-53
ELEMENTARY_ULPS = 16
E = ELEMENTARY_ULPS * U  # relative error of exp, log, log1p
ABSOLUTE = 2.0**-1000  # absolute error from float64 underflow, far below float32's 2^-149
MAX_PRECISION = 24  # dtypes the float64 evaluation can settle: float16, bfloat16, float32
FLOAT32 = FORMATS["float32"]


@dataclass
class Terms:
    """Elementwise values in float64, each within ``bound`` of the exact value, and the elements the
    fast path does not take (``fallback``). ``sign`` is +1 / -1 where the exact value's sign is
    known (values, or a gradient one of whose terms is exactly absent), 0 where it is not."""

    approx: np.ndarray
    bound: np.ndarray
    fallback: np.ndarray  # bool
    sign: np.ndarray  # int8
    # where finite, a strict upper bound on the exact value's magnitude: |exact| < cap (the logits
    # gradient at target 1/2, w·tanh(x/2)/2, below w·|x|/4); it settles roundings next to a tie
    cap: np.ndarray | None = None
    # where True, the exact value is +inf exactly (a log of 0 with a positive coefficient and weight):
    # its rounding, with approx = +inf and bound 0
    infinite: np.ndarray | None = None
    # where True, approx is the exact value (a float64 with no error: bound 0), rounded once, ties to even
    exact: np.ndarray | None = None


def round_to_dtype(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Correct rounding (to nearest, ties to even) of float64 values to ``fmt``, exactly: the
    quantum at each value is a power of two, the scaled value is exact in float64 and ``rint``
    rounds it once. Overflow past the largest finite value (and its half ulp) gives ±inf."""
    values = np.asarray(values, dtype=np.float64)
    out = values.copy()
    finite = np.isfinite(values) & (values != 0)
    v = values[finite]
    _, exponent = np.frexp(v)  # |v| in [2^(e-1), 2^e)
    quantum = quantum_exponent(exponent - 1, fmt)
    rounded = np.ldexp(np.rint(np.ldexp(v, -quantum)), quantum)
    rounded = np.where(np.abs(rounded) > fmt.largest, np.copysign(np.inf, v), rounded)
    out[finite] = np.where(rounded == 0, np.copysign(0.0, v), rounded)
    return out


def ulp_of(values: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """One unit in the last place of ``fmt`` at each (finite) value: the spacing of the format in the value's
    binade, the subnormal spacing below the normal range (``dtypes.ulp``, vectorised)."""
    values = np.abs(np.asarray(values, dtype=np.float64))
    # the binade from the float64's biased exponent field (faster than frexp): |v| in [2^(b-1023), 2^(b-1022));
    # zero and float64's subnormals (b = 0) fall below every format's emin, as frexp's exponent does; an
    # infinity counts as frexp has it (exponent 0: the binade 2^-1), a NaN as zero
    biased = (values.view(np.uint64) >> np.uint64(52)).view(np.int64)  # a new array: shifted, then viewed
    special = biased == 2047
    if special.any():
        biased = np.where(special, np.where(np.isnan(values), 0, 1022), biased)
    quantum = np.asarray(quantum_exponent(biased - 1023, fmt), dtype=np.int64)  # 0-d input: an array still
    if fmt.emin - (fmt.precision - 1) >= -1022:  # every quantum a normal float64: built in its exponent field
        quantum += 1023
        quantum <<= 52
        return quantum.view(np.float64)[()] if quantum.ndim == 0 else quantum.view(np.float64)
    return np.ldexp(1.0, quantum)


def settle(terms: Terms, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """The correct rounding of each element to ``fmt`` where its interval rounds to one value
    (with the sign the exact value is known to have), and the mask of elements it did not settle."""
    with np.errstate(invalid="ignore", over="ignore"):
        bound = terms.bound * (1 + 8 * U) + ABSOLUTE
        low, high = terms.approx - bound, terms.approx + bound
        low = np.where(terms.sign > 0, np.maximum(low, 0.0), low)
        high = np.where(terms.sign < 0, np.minimum(high, -0.0), high)
        rounded_low, rounded_high = round_to_dtype(low, fmt), round_to_dtype(high, fmt)
        if terms.cap is not None:  # |exact| < cap: at most the largest float64 below cap where cap is a tie
            below = np.nextafter(terms.cap, 0.0)
            boundary = round_to_dtype(below, fmt) != round_to_dtype(np.nextafter(terms.cap, np.inf), fmt)
            cap = np.where(np.isfinite(terms.cap), np.where(boundary, below, terms.cap), np.inf)
            high = np.where(terms.sign > 0, np.minimum(high, cap), high)
            low = np.where(terms.sign < 0, np.maximum(low, -cap), low)
            rounded_low, rounded_high = round_to_dtype(low, fmt), round_to_dtype(high, fmt)
    same = (rounded_low == rounded_high) & (np.signbit(rounded_low) == np.signbit(rounded_high))
    # a product with an exactly zero factor (a zero weight, the sigmoid's p·(1 - p) at p = 0) is an
    # exact zero, which rounds to +0 as mpmath's unsigned zero does
    exact_zero = (terms.approx == 0) & (terms.bound == 0)
    rounded_low = np.where(exact_zero, 0.0, rounded_low)
    unsettled = terms.fallback | ~(same | exact_zero) | ~np.isfinite(terms.approx)
    if terms.exact is not None:  # an exact float64 value, a rounding tie included: its correct rounding at once
        known = terms.exact & ~terms.fallback & np.isfinite(terms.approx)
        unsettled &= ~known
        rounded_low = np.where(known, round_to_dtype(terms.approx, fmt), rounded_low)
    if terms.infinite is not None:
        infinite = terms.infinite & ~terms.fallback
        unsettled &= ~infinite
        rounded_low = np.where(infinite, np.inf, rounded_low)
    return np.where(unsettled, np.nan, rounded_low), unsettled


def _operands(inputs: dict[str, np.ndarray], first: str):
    names = (first, "target", "weight", "pos_weight")
    arrays = [inputs.get(name) for name in names]
    shape = np.broadcast_shapes(*(a.shape for a in arrays if a is not None))
    x, y, w, q = (
        np.broadcast_to(np.asarray(a, dtype=np.float64), shape) if a is not None else None for a in arrays
    )
    w = np.ones(shape) if w is None else w
    q_given = q is not None
    q = np.ones(shape) if q is None else q
    return shape, x, y, w, q, q_given


def _coefficients(y: np.ndarray, q: np.ndarray, smoothing: float | None):
    """q·y' and 1 - y' for the (smoothed) target y' = y·(1 - ls) + ls/2, each within 4u, non-negative
    for y in [0, 1] (1 - y' computed as (1 - y)·(1 - ls) + ls/2: no cancellation)."""
    if smoothing is None:
        return q * y, 1.0 - y
    keep, half = 1.0 - smoothing, smoothing / 2
    return q * (y * keep + half), (1.0 - y) * keep + half


def _softplus(t: np.ndarray) -> np.ndarray:
    """log(1 + e^t) = max(t, 0) + log1p(e^-|t|): relative error ≤ 2E + 3u (no cancellation)."""
    return np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-t) for t ≥ 0, e^t / (1 + e^t) below: relative error ≤ E + 3u."""
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _fallback_mask(x, y, w, q, probabilities: bool) -> np.ndarray:
    """Elements the fast path leaves to mpmath: a non-finite input, a target outside [0, 1], a negative
    weight, probabilities outside (0, 1) (whose logs are infinite or NaN)."""
    mask = ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(q))
    mask |= (y < 0) | (y > 1) | (w < 0) | (q < 0)
    if probabilities:
        mask |= (x <= 0) | (x >= 1)
    return mask


def logits_terms(inputs: dict[str, np.ndarray], smoothing: float | None, gradient: bool) -> Terms:
    """bce_with_logits: w·(q·y'·softplus(-x) + (1-y')·softplus(x)), or its derivative in x,
    w·((1-y')·σ(x) - q·y'·σ(-x))."""
    _, x, y, w, q, _ = _operands(inputs, "logits")
    fallback = _fallback_mask(x, y, w, q, probabilities=False)
    with np.errstate(all="ignore"):
        positive, negative = _coefficients(y, q, smoothing)  # ≤ 4u each
        if not gradient:
            # each product ≤ (2E + 3u) + 4u + u, their sum + u, times w + u
            approx = w * (positive * _softplus(-x) + negative * _softplus(x))
            bound = np.abs(approx) * (2 * E + 10 * U) + np.abs(w) * ABSOLUTE  # exp may underflow
            sign = np.ones(approx.shape, dtype=np.int8)
        else:
            a, b = negative * _sigmoid(x), positive * _sigmoid(-x)  # ≤ E + 8u each
            # a - b within (E + 8u)·(a + b) + u·|a - b|; times w + u
            approx = w * (a - b)
            bound = np.abs(w) * ((E + 10 * U) * (a + b) + U * np.abs(a - b) + ABSOLUTE)
            # without pos_weight it is w·(σ(x) - y') = w·(tanh(x/2)/2 + (1/2 - y')): no cancellation
            # near x = 0 (tanh ≤ E + 2u, 1/2 - y' ≤ u, or ≤ 5u smoothed; their sum + u)
            half_tanh, offset = np.tanh(x / 2) / 2, 0.5 - (positive if smoothing is not None else y)
            better = w * (half_tanh + offset)
            better_bound = np.abs(w) * ((E + 3 * U) * np.abs(half_tanh) + 6 * U * np.abs(offset) + U * np.abs(half_tanh + offset) + ABSOLUTE)
            use = (q == 1) & (better_bound < bound)
            approx, bound = np.where(use, better, approx), np.where(use, better_bound, bound)
            sign = np.where(positive == 0, 1, np.where(negative == 0, -1, 0)).astype(np.int8)
            # at y' = 1/2 exactly (q = 1, no smoothing) the gradient is w·tanh(x/2)/2: the sign of w·x,
            # and |tanh(t)| < |t| for t != 0 makes w·|x|/4 (exact in float64 above its underflow: two
            # values of at most 24 bits) a strict upper bound on its magnitude
            quarter = np.abs(w * (x / 4))
            capped = (q == 1) & (y == 0.5) & (w > 0) & (x != 0) & (quarter >= 2.0**-960) & np.isfinite(quarter) & (smoothing is None)
            sign = np.where(capped, np.sign(x), sign).astype(np.int8)
            return Terms(approx, bound, fallback, sign, np.where(capped, quarter, np.nan))
    return Terms(approx, bound, fallback, sign)


def probability_terms(
    inputs: dict[str, np.ndarray],
    smoothing: float | None,
    gradient: bool,
    log_ceiling: float | None = None,
    grad_floor: float | None = None,
    clip: tuple[float, float] | None = None,
    two_step_p: np.ndarray | None = None,
) -> Terms:
    """bce on probabilities p (or, for the two-step op's variant, on ``two_step_p``: the correctly
    rounded sigmoid of the logits): w·(q·y'·(-log p) + (1-y')·(-log1p(-p))), each log term at most
    ``log_ceiling`` (torch's -100 clamp), p first clipped to ``clip`` (Keras's); or its derivative,
    w·((1-y')/(1-p) - q·y'/p), with torch's floored denominator w·(p - y)/max(p·(1-p), floor), zero
    where the clip is active, and for the two-step op times the sigmoid's p·(1-p)."""
    first = "logits" if two_step_p is not None else "probs"
    _, x, y, w, q, q_given = _operands(inputs, first)
    p = x if two_step_p is None else np.broadcast_to(two_step_p, x.shape)
    fallback = _fallback_mask(p, y, w, q, probabilities=False) | np.isnan(p)
    with np.errstate(all="ignore"):
        clipped = np.zeros(p.shape, dtype=bool)
        if clip is not None:
            clipped = (p < clip[0]) | (p > clip[1])
            p = np.clip(p, clip[0], clip[1])
        positive, negative = _coefficients(y, q, smoothing)
        if not gradient:
            neg_log_p = np.where(p > 0, -np.log(p), np.inf)  # ≤ E
            neg_log_not_p = np.where(p < 1, -np.log1p(-p), np.inf)  # -p exact: ≤ E
            if log_ceiling is not None:
                neg_log_p, neg_log_not_p = np.minimum(neg_log_p, log_ceiling), np.minimum(neg_log_not_p, log_ceiling)
            first_term = np.where(positive == 0, 0.0, positive * neg_log_p)  # 0·log 0 = 0
            second_term = np.where(negative == 0, 0.0, negative * neg_log_not_p)
            approx = w * (first_term + second_term)
            bound = np.where(np.isfinite(approx), np.abs(approx) * (E + 8 * U) + np.abs(w) * ABSOLUTE, 0.0)
            sign = np.ones(approx.shape, dtype=np.int8)
            # p = 0 with q·y' > 0, or p = 1 with 1 - y' > 0 (no ceiling), times w > 0: exactly +inf, as
            # mpmath has it (the other term is finite and non-negative, or +inf too)
            infinite = (w > 0) & (((p == 0) & (positive > 0)) | ((p == 1) & (negative > 0)))
            if log_ceiling is not None:
                infinite = np.zeros(approx.shape, dtype=bool)
            infinite &= approx == np.inf
            return Terms(approx, np.where(infinite, 0.0, bound), fallback, sign, infinite=infinite)
        else:
            infinite = np.zeros(p.shape, dtype=bool)
            exact = None
            if grad_floor is not None:  # torch's backward: w·(p - y)/max(p·(1 - p), floor), q = 1
                if q_given or smoothing is not None:
                    fallback = fallback | True  # no such variant with pos_weight or smoothing
                denominator = np.maximum(p * (1.0 - p), grad_floor)  # ≤ 2u
                difference = p - y  # ≤ u
                grad = difference / denominator  # ≤ 4u
                # p - y is exact in float64 where it is 0 (p = y): the gradient is then exactly 0
                grad_bound = np.where(difference == 0, 0.0, np.abs(grad) * 5 * U + ABSOLUTE)
                sign = np.sign(difference).astype(np.int8)
            else:
                a = np.where(negative == 0, 0.0, negative / (1.0 - p))  # ≤ 6u
                b = np.where(positive == 0, 0.0, positive / p)  # ≤ 5u
                grad = a - b
                grad_bound = 7 * U * (np.abs(a) + np.abs(b)) + U * np.abs(grad) + ABSOLUTE
                if not q_given and smoothing is None:  # p = y in (0, 1): a = b = 1 exactly, a - b exactly 0
                    grad_bound = np.where((p == y) & (p > 0) & (p < 1), 0.0, grad_bound)
                sign = np.where(positive == 0, 1, np.where(negative == 0, -1, 0)).astype(np.int8)
                infinite = (p <= 0) | (p >= 1)  # infinite derivatives
            if clip is not None:  # clip_by_value passes no gradient outside its range
                grad, grad_bound = np.where(clipped, 0.0, grad), np.where(clipped, 0.0, grad_bound)
                sign = np.where(clipped, 1, sign).astype(np.int8)
            if two_step_p is not None:  # chain rule through the sigmoid: p·(1 - p) of its output
                chain = p * (1.0 - p)  # ≤ 2u; no underflow for p a value of a dtype of at most 24 bits
                # at p = 0 or 1 the sigmoid's backward is exactly 0 and silences an infinite or NaN
                # gradient (a floor that is 0 in the dtype, 1/p): an exact zero, as in the mpmath path
                silenced = chain == 0
                grad = np.where(silenced, 0.0, chain * grad)
                grad_bound = np.where(silenced, 0.0, chain * grad_bound + np.abs(grad) * 3 * U)
                sign = np.where(silenced, 1, sign).astype(np.int8)
                infinite = infinite & ~silenced
                # Where the floor (torch) or the clip (Keras) is not active, the chain product is exactly
                # w·(p - y): with w = 1, no pos_weight and no smoothing, and p - y exact in float64 (TwoSum),
                # the value is known exactly, a rounding tie of the dtype included (p - y of two 16- or
                # 24-bit values often is one), which no interval settles
                if not q_given and smoothing is None:
                    difference = p - y
                    back = difference - p
                    exact_difference = ((p - (difference - back)) + (-y - back)) == 0
                    active = (chain < grad_floor * (1 + 4 * U)) if grad_floor is not None else clipped
                    exact = exact_difference & ~active & ~silenced & (w == 1) & ~fallback & ~infinite & np.isfinite(difference)
                    grad = np.where(exact, difference, grad)
                    grad_bound = np.where(exact, 0.0, grad_bound)
                    sign = np.where(exact, np.sign(difference), sign).astype(np.int8)
            fallback = fallback | infinite
            approx = w * grad
            bound = np.abs(w) * grad_bound + np.abs(approx) * U
            if exact is not None:
                bound = np.where(exact, 0.0, bound)
    return Terms(approx, bound, fallback, sign, exact=exact)


def sigmoid_terms(x: np.ndarray) -> Terms:
    """σ(x) for the two-step variants' correctly rounded probability."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        approx = _sigmoid(x)
    return Terms(approx, approx * (E + 4 * U) + ABSOLUTE, ~np.isfinite(x), np.ones(x.shape, dtype=np.int8))


def reduce_terms(terms: Terms, reduction: str, gradient: bool, count: int) -> Terms:
    """The mean or sum of the terms (an exact sum, ``math.fsum``, rounded once, plus the terms' bounds),
    or for a gradient each term divided by the count (``mean``)."""
    if gradient or reduction == "none":
        if gradient and reduction == "mean" and count:
            return Terms(terms.approx / count, terms.bound / count + np.abs(terms.approx / count) * U, terms.fallback, terms.sign)
        return terms
    if terms.infinite is not None and terms.infinite.any() and not terms.fallback.any() and (terms.sign > 0).all():
        # non-negative terms, one of them exactly +inf: the sum and the mean are +inf exactly
        one = np.array(True)
        return Terms(np.array(np.inf), np.array(0.0), np.array(False), np.array(1, dtype=np.int8), infinite=one)
    total = math.fsum(terms.approx.ravel().tolist())
    bound = math.fsum(terms.bound.ravel().tolist()) * (1 + 4 * U) + abs(total) * U
    if reduction == "mean":
        total, bound = (total / count, bound / count + abs(total / count) * U) if count else (math.nan, 0.0)
    fallback = bool(terms.fallback.any()) or not math.isfinite(total)
    sign = 1 if bool((terms.sign > 0).all()) else (-1 if bool((terms.sign < 0).all()) else 0)
    return Terms(np.array(total), np.array(bound), np.array(fallback), np.array(sign, dtype=np.int8))


FEW_ROWS = 256  # up to this many rows, Keras's row means are summed row by row with fsum (exact); beyond, all at once


def axis_mean_terms(terms: Terms, reduction: str, gradient: bool) -> Terms:
    """Keras's mean over the last axis: `none` the row means (``_row_means``: a float64 row sum with its
    bound, over the row length), `sum` / `mean` their sum / mean; gradients divided by the row length
    (and the row count)."""
    length = terms.approx.shape[-1]
    rows = terms.approx.size // length if length else 0
    if gradient:
        count = length * rows if reduction == "mean" else length
        return Terms(terms.approx / count, terms.bound / count + np.abs(terms.approx / count) * U, terms.fallback, terms.sign)
    shape = terms.approx.shape[:-1]
    if not length or rows <= FEW_ROWS:  # few (long) rows: each summed exactly, for a bound as tight as a sum's
        flat = [reduce_terms(Terms(a, b, f, s), "mean", False, length) for a, b, f, s in zip(
            terms.approx.reshape(-1, length), terms.bound.reshape(-1, length),
            terms.fallback.reshape(-1, length), terms.sign.reshape(-1, length))]
        means = Terms(
            np.array([t.approx for t in flat], dtype=np.float64).reshape(shape),
            np.array([t.bound for t in flat], dtype=np.float64).reshape(shape),
            np.array([bool(t.fallback) for t in flat], dtype=bool).reshape(shape),
            np.array([int(t.sign) for t in flat], dtype=np.int8).reshape(shape),
        )
    else:
        means = _row_means(terms, length, shape)
    if reduction == "none":
        return means
    return reduce_terms(means, reduction, False, rows)


def _row_means(terms: Terms, length: int, shape: tuple[int, ...]) -> Terms:
    """Each last-axis row's mean, all rows at once: the float64 sum of the row (any order of the L - 1
    additions: within γ_(L-1)·Σ|a_i| of the exact sum of the approximations, γ_n = n·u/(1 - n·u)), plus
    the terms' bounds, over L (one more rounding). The sums of |a_i| and of the bounds are themselves
    float64 sums, within a relative γ_(L-1) of theirs: 2γ + 4u more covers that."""
    approx = terms.approx.reshape(-1, length)
    bounds = terms.bound.reshape(-1, length)
    gamma = (length - 1) * U / (1 - (length - 1) * U)
    with np.errstate(all="ignore"):
        total = approx.sum(axis=1)
        spread = (bounds.sum(axis=1) + gamma * np.abs(approx).sum(axis=1)) * (1 + 2 * gamma + 4 * U)
        mean = total / length
        bound = spread / length + np.abs(mean) * U
    fallback = terms.fallback.reshape(-1, length).any(axis=1)
    signs = terms.sign.reshape(-1, length)
    sign = np.where((signs > 0).all(axis=1), 1, np.where((signs < 0).all(axis=1), -1, 0)).astype(np.int8)
    infinite = np.zeros(total.shape, dtype=bool)
    if terms.infinite is not None:  # an exactly infinite term among non-negative ones: the mean is +inf exactly
        infinite = terms.infinite.reshape(-1, length).any(axis=1) & (sign > 0) & ~fallback & (total == np.inf)
        bound = np.where(infinite, 0.0, bound)
    fallback = fallback | (~np.isfinite(total) & ~infinite)
    return Terms(mean.reshape(shape), bound.reshape(shape), fallback.reshape(shape), sign.reshape(shape), infinite=infinite.reshape(shape))


@dataclass
class Magnitude:
    """The terms of a loss as far as ``mean-vs-sum`` needs them: their count and an upper bound on the
    sum of their absolute values."""

    size: int
    upper: float


def magnitude_terms(formula: str, inputs: dict[str, np.ndarray], axis_mean: bool = False) -> Magnitude:
    """An upper bound on the sum of |term| (the row means' for ``axis_mean``), from the float64 terms and
    their bounds: any dtype, no mpmath. Non-finite terms are left out (the API's mean or sum then is not
    finite and the relation compares them as they are)."""
    smoothing = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None
    terms = logits_terms(inputs, smoothing, False) if formula == "bce_with_logits" else probability_terms(inputs, smoothing, False)
    if axis_mean:
        terms = axis_mean_terms(terms, "none", False)
    finite = np.isfinite(terms.approx) & np.isfinite(terms.bound)
    magnitude = np.abs(terms.approx[finite]) + terms.bound[finite] + ABSOLUTE
    return Magnitude(int(terms.approx.size), math.fsum(magnitude.ravel().tolist()) * (1 + 4 * U))


# ---------------------------------------------------------------------------------------------
# for the float32 sweep's compiled kernel (conformance.sweep_kernel), which rounds with the hardware's cast


# float64 -> float32 casts that IEEE 754 rounding decides (a subnormal, a subnormal tie, ties at 1), and their results
CAST_PROBE = np.array([1.5 * 2.0**-149, 2.0**-140 + 2.0**-170, 1 + 2.0**-24, 1 + 3 * 2.0**-24], dtype=np.float64)
CAST_WANT = np.array([2.0**-148, 2.0**-140, 1.0, 1 + 2.0**-22], dtype=np.float32)


@cache
def _casts_round_correctly() -> bool:
    """Whether numpy's float64 -> float32 cast rounds to nearest with ties to even, subnormals kept, in
    this process (a framework may set flush-to-zero / denormals-are-zero in the FPU's control word)."""
    return bool((CAST_PROBE.astype(np.float32) == CAST_WANT).all())
