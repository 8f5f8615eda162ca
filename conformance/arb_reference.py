"""float64 means and sums at scale by ball arithmetic (python-flint's ``arb``); and the exact errors in ULPs of
the float32 sweep's elements whose histogram bin a float64 error would leave to the host (``ulp_errors``).

The float64 fast path cannot settle a float64 rounding (its bounds are near 2^-47), and mpmath
evaluates about a thousand elements a second at the precision a float64 reference needs, so a
million-element float64 reduction takes ``arb`` instead: every term and the sum are balls at
2·53 + 64 bits whose radius bounds the error rigorously; where both ends of the ball round to the
same float64 and no power of two lies inside it, that is the correctly rounded mean or sum and the
ball's midpoint lies in the exact value's binade (its ULP's); else twice the precision, then four
times, then the mpmath path decides. The ball's
midpoint, within its radius (about 2^-120 relative), stands for the exact value in the judgement.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import mpmath
import numpy as np

from conformance.dtypes import FloatFormat, boundaries_near, quantum_exponent, round_fraction

try:  # optional: without python-flint, large float64 reductions take the mpmath path
    from flint import arb, ctx
except ImportError:  # pragma: no cover - python-flint is a dependency; this keeps the suite usable without it
    arb = ctx = None

MIN_ELEMENTS = 1 << 15  # below, mpmath is fast enough
PRECISION_STEPS = 3  # precisions tried: 2·53 + 64 bits, then twice that, then four times
_sums: dict[str, object] = {}  # the exact sum of a set of terms, shared by its mean and its sum


def available() -> bool:
    return arb is not None


def _exact(value) -> Fraction:
    man, exp = value.man_exp()
    man, exp = int(man), int(exp)
    return Fraction(man * 2**exp) if exp >= 0 else Fraction(man, 2**-exp)


def _softplus(a, positive: bool):
    """log(1 + e^a) without cancellation on either side of zero."""
    return a + (-a).exp().log1p() if positive else a.exp().log1p()


def _sum(formula: str, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, q: np.ndarray | None):
    """The sum of w·(q·y·(-log σ(x)) + (1-y)·(-log(1-σ(x)))) (or its probability form) as a ball."""
    one, total = arb(1), arb(0)
    ws = w.tolist() if w is not None else None
    qs = q.tolist() if q is not None else None
    for i, (xi, yi) in enumerate(zip(x.tolist(), y.tolist())):
        a, t = arb(xi), arb(yi)
        positive = t if qs is None else t * arb(qs[i])
        if formula == "bce_with_logits":
            term = positive * _softplus(-a, xi < 0) + (one - t) * _softplus(a, xi > 0)
        else:  # probabilities in (0, 1)
            term = positive * -(a.log()) + (one - t) * -((-a).log1p())
        total += term if ws is None else term * arb(ws[i])
    return total


def reduction(formula: str, inputs: dict[str, np.ndarray], reduction_name: str, fmt: FloatFormat):
    """(correctly rounded value, midpoint as mpf), or None where this path does not apply or cannot settle."""
    if arb is None or reduction_name not in ("mean", "sum") or "label_smoothing" in inputs:
        return None
    first = "probs" if formula == "bce" else "logits"
    names = [n for n in (first, "target", "weight", "pos_weight") if n in inputs]
    shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in names))
    size = int(np.prod(shape))
    if size < MIN_ELEMENTS:
        return None
    x, y, w, q = (
        np.broadcast_to(np.asarray(inputs[n], dtype=np.float64), shape).ravel() if n in inputs else None
        for n in (first, "target", "weight", "pos_weight")
    )
    arrays = [a for a in (x, y, w, q) if a is not None]
    if not all(np.isfinite(a).all() for a in arrays) or (y < 0).any() or (y > 1).any():
        return None
    if (w is not None and (w < 0).any()) or (q is not None and (q < 0).any()):
        return None
    if formula == "bce" and ((x <= 0).any() or (x >= 1).any()):
        return None
    key = hashlib.sha256(formula.encode() + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
    precision = 2 * fmt.precision + 64
    for _ in range(PRECISION_STEPS):
        settled = _settled(formula, key, x, y, w, q, reduction_name, size, precision, fmt)
        if settled is not None:
            return settled
        precision *= 2
    return None


def _settled(formula, key, x, y, w, q, reduction_name, size, precision, fmt):
    """The ball at ``precision`` bits, where it settles the value: both ends round alike, and no point where the
    ULP changes (a power of two) lies inside it, so that its midpoint lies in the exact value's binade."""
    saved = ctx.prec
    try:
        ctx.prec = precision
        if (key, precision) not in _sums:
            _sums[key, precision] = _sum(formula, x, y, w, q)
        total = _sums[key, precision]
        value = total / size if reduction_name == "mean" else total
        middle, radius = _exact(value.mid()), _exact(value.rad())
    finally:
        ctx.prec = saved
    low, high = round_fraction(middle - radius, fmt), round_fraction(middle + radius, fmt)
    if low != high:
        return None
    with mpmath.workprec(precision):
        middle_mpf = mpmath.mpf(middle.numerator) / middle.denominator
        if radius and boundaries_near(middle_mpf, mpmath.mpf(radius.numerator) / radius.denominator, fmt):
            return None
        return low, middle_mpf


ERROR_PRECISION = 2 * 53 + 64  # bits of the balls that measure an error in ULPs to a float64


def _float(value) -> float:
    """The float64 nearest an exact arb endpoint (Python rounds an int to float and ldexp scales it exactly)."""
    man, exp = value.man_exp()
    return math.ldexp(float(int(man)), int(exp))


def _loss_or_gradient(a, target: float, gradient: bool):
    """The loss y·softplus(-x) + (1 - y)·softplus(x) or its gradient σ(x) - y at the ball ``a``, for the float32
    sweep's targets (0, 1, 0.5), each in a form without cancellation; None for another target."""
    one, positive = arb(1), a > 0
    if not gradient:
        if target == 0.0:
            return _softplus(a, positive)
        if target == 1.0:
            return _softplus(-a, not positive)
        if target == 0.5:
            return (_softplus(-a, not positive) + _softplus(a, positive)) / 2
        return None
    if target == 0.0:
        return one / (one + (-a).exp())
    if target == 1.0:
        return -(one / (one + a.exp()))
    if target == 0.5:
        return (a / 2).tanh() / 2
    return None


def _exact_balls(x: np.ndarray, target: float, gradient: bool):
    """(index, ball) of the loss or gradient at each logit of ``x`` and the ``target``, at ``ERROR_PRECISION`` bits
    (the context's precision while the caller works on each ball, restored after); none where python-flint is
    absent or for another target."""
    if arb is None:
        return
    saved = ctx.prec
    try:
        ctx.prec = ERROR_PRECISION
        for i, xi in enumerate(np.asarray(x, dtype=np.float64).tolist()):
            exact = _loss_or_gradient(arb(xi), target, gradient)
            if exact is not None:
                yield i, exact
    finally:
        ctx.prec = saved


def ulp_errors(x: np.ndarray, target: float, gradient: bool, got: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """|got - exact| in ULPs of ``fmt`` at the exact loss (or gradient) at each logit ``x`` and the ``target``,
    rounded to float64 where a ball of ``ERROR_PRECISION`` bits proves that rounding (both its ends round alike,
    and the exact value's binade is known: no power of two inside it), which is then what ``dtypes.ulp_error``
    gives; NaN elsewhere (where python-flint is absent, a result is not finite, another target), for mpmath."""
    out = np.full(np.shape(x), np.nan)
    results = np.asarray(got, dtype=np.float64).tolist()
    for i, exact in _exact_balls(x, target, gradient):
        if not math.isfinite(results[i]):
            continue
        magnitude = abs(exact)
        man, exp = magnitude.mid().man_exp()  # the midpoint man·2^exp, in [2^(exponent-1), 2^exponent)
        exponent = int(man).bit_length() + int(exp)
        if not (magnitude >= arb(2) ** (exponent - 1) and magnitude < arb(2) ** exponent):
            continue  # the binade not proven (a power of two within the ball, a ball holding 0)
        quantum = quantum_exponent(exponent - 1, fmt)
        error = abs(arb(results[i]) - exact) * arb(2) ** -quantum
        low, high = _float(error.lower()), _float(error.upper())
        if low == high:
            out[i] = low
    return out


def _rounded_end(value, fmt: FloatFormat) -> float:
    """An exact arb endpoint rounded to ``fmt`` (``dtypes.round_fraction``), far outside it from its exponent
    alone (e^-1e30 has too many bits for a Fraction)."""
    man, exp = value.man_exp()
    man, exp = int(man), int(exp)
    top = exp + abs(man).bit_length()  # |value| < 2^top
    if man and top < fmt.emin - fmt.precision - 1:  # below a quarter of the smallest subnormal
        return math.copysign(0.0, man)
    if top > fmt.emax + 2:
        return math.copysign(math.inf, man)
    return round_fraction(_exact(value), fmt)


def roundings(x: np.ndarray, target: float, gradient: bool, fmt: FloatFormat) -> np.ndarray:
    """The correct rounding to ``fmt`` of the loss (or gradient) at each logit ``x`` and the ``target``, where a ball
    of ``ERROR_PRECISION`` bits settles it (both its ends round to the same value, the sign of a zero
    included); NaN elsewhere (where python-flint is absent, another target), for mpmath. The float32 sweep's
    elements whose float64 interval straddles a rounding boundary."""
    out = np.full(np.shape(x), np.nan)
    for i, exact in _exact_balls(x, target, gradient):
        low, high = _rounded_end(exact.lower(), fmt), _rounded_end(exact.upper(), fmt)
        if low == high and math.copysign(1.0, low) == math.copysign(1.0, high):
            out[i] = low
    return out
