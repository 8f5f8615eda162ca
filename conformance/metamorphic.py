"""Metamorphic checks: relations between an API's own results that must hold whatever the exact value.

- ``symmetry``: L(x, y) = L(-x, 1 - y) elementwise, on logits (cases whose 1 - y is exact in the dtype
  and that carry no pos_weight, whose form of the relation is q·L(-x, 0) = L_q(x, 1)).
- ``mean-vs-sum``: the API's mean equals its sum divided by n, within a rigorous bound for two float
  reductions of n terms: 2·γ_n·Σ|terms|/n plus one ULP of the mean, γ_n = n·u/(1 - n·u).
- ``vs-fused``: the two-step path (the framework's sigmoid, then its bce) agrees with the framework's
  fused loss where the problem is well conditioned for it (sigmoid(x) a normal number at least an
  epsilon from 1, and the loss's condition number in p, |dL/dp|·p / L, with the smoothed target under
  label smoothing, at most the ULP tolerance) and where the two-step API's declared variant agrees
  with the mathematics (past torch's -100 clamp the two-step path owes the variant, not the fused
  loss); elsewhere the report says how far it departs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mpmath
import numpy as np

from conformance import fast_reference
from conformance.dtypes import FloatFormat, to_hex, ulp, ulp_error
from conformance.reference import bce_grad, sigmoid
from conformance.verdicts import Tolerance

RELATIONS = ("symmetry", "mean-vs-sum", "vs-fused")


def mirrors_exactly(inputs: dict[str, np.ndarray], fmt: FloatFormat) -> bool:
    """Whether L(-x, 1 - y) can be fed exactly: logits, no pos_weight, and every 1 - y a value of the dtype."""
    if "logits" not in inputs or "pos_weight" in inputs:
        return False
    return bool(one_minus_is_exact(np.asarray(inputs["target"], dtype=np.float64), fmt).all())


def one_minus_is_exact(y: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Elementwise, whether the exact 1 - y (y a value of ``fmt``) is a finite value of ``fmt``.

    1 - y is computed in float64 with its rounding error by TwoSum (Knuth: s = a + b, then
    (a - (s - b')) + (b - b') with b' = s - a, exact in binary floating point without overflow, which
    |1 - y| <= 2^1024 - 2^970 rules out): the exact 1 - y is a float64 iff that error is 0, and then
    it is a value of ``fmt`` iff rounding it to ``fmt`` gives it back. (Comparing the float64 1 - y
    with the rounding of the exact 1 - y would accept every inexact 1 - y in float64, and in the
    narrower formats any 1 - y whose float64 rounding is already a value of the format.)"""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        s = 1.0 - y
        b_virtual = s - 1.0
        error = (1.0 - (s - b_virtual)) + (-y - b_virtual)
        finite = np.isfinite(y) & np.isfinite(s)
        return finite & (error == 0) & (fast_reference.round_to_dtype(np.where(finite, s, 0.0), fmt) == s)


def mirrored(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs of L(-x, 1 - y), arrays of the inputs' shapes and dtypes (numpy's arithmetic on a 0-d array
    gives a numpy scalar, which no framework conversion need take: ``np.asarray`` keeps it an array)."""
    out = dict(inputs)
    out["logits"] = np.asarray(-inputs["logits"])
    mirror = (1 - inputs["target"].astype(np.float64)).astype(inputs["target"].dtype)  # exact, as checked
    out["target"] = np.asarray(mirror)
    return out


def _distance(a: float, b: float, fmt: FloatFormat) -> float:
    """ULPs of the dtype between two results, measured at the first."""
    if math.isnan(a) or math.isnan(b):
        return 0.0 if math.isnan(a) and math.isnan(b) else math.inf
    return ulp_error(b, mpmath.mpf(a), fmt)


VECTORISED_FROM = 1024  # elements; below, each distance is taken exactly with mpmath, one by one


def distances(a: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """``_distance`` elementwise, in float64: |b - a| / ulp(a) (NaN meets only NaN, an infinity only itself)."""
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.abs(b - a) / fast_reference.ulp_of(np.where(np.isfinite(a), a, 0.0), fmt)
        d = np.where(np.isinf(a) | np.isinf(b), np.where(a == b, 0.0, np.inf), d)
        return np.where(np.isnan(a) | np.isnan(b), np.where(np.isnan(a) & np.isnan(b), 0.0, np.inf), d)


class Rows(Sequence):
    """Rows ``(index, a, b, d, within, *extra)`` held as arrays, in the order of ``positions`` (flat C-order
    positions into ``shape``): a row's tuple (Python floats and bools, as ``tolist`` gives) is built only
    when asked for, so taking the first few of a million costs nothing; iterating builds them all once."""

    def __init__(self, shape: tuple[int, ...], columns: list[np.ndarray], positions: np.ndarray):
        self.shape = tuple(shape)
        self.columns = [np.asarray(c).ravel() for c in columns]
        self.positions = np.asarray(positions, dtype=np.intp)
        self._all: list[tuple] | None = None

    def __len__(self) -> int:
        return int(self.positions.size)

    def _build(self, positions: np.ndarray) -> list[tuple]:
        if self.shape:
            indices = zip(*(i.tolist() for i in np.unravel_index(positions, self.shape)))
        else:
            indices = (() for _ in range(positions.size))
        return [(index, *values) for index, values in zip(indices, zip(*(c[positions].tolist() for c in self.columns)))]

    def __getitem__(self, item):
        if self._all is not None:
            return self._all[item]
        if isinstance(item, slice):
            return self._build(self.positions[item])
        return self._build(self.positions[[item]])[0]

    def __iter__(self):
        if self._all is None:
            self._all = self._build(self.positions)
        return iter(self._all)

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def _order(d: np.ndarray, within: np.ndarray) -> np.ndarray:
    """``_summarize``'s order as flat positions: elements outside first, then the largest distances, then position."""
    d, within = d.ravel(), within.ravel()
    return np.lexsort((np.arange(d.size), -np.nan_to_num(d, nan=0.0), within))


def symmetry(first: np.ndarray, second: np.ndarray, fmt: FloatFormat, tolerance: Tolerance):
    """Elementwise distances between L(x, y) and L(-x, 1 - y); returns (holds, max, [(index, a, b, d)])."""
    if first.size >= VECTORISED_FROM:
        d = distances(first, second, fmt)
        with np.errstate(invalid="ignore"):
            close = np.isfinite(first) & np.isfinite(second) & (np.abs(first - second) <= tolerance.abs_floor)
        within = (d <= tolerance.max_ulp) | close
        largest = float(np.nanmax(d)) if d.size and not np.isnan(d).all() else 0.0
        return bool(within.all()), largest, Rows(first.shape, [first, second, d, within], _order(d, within))
    rows = []
    for index in np.ndindex(first.shape):
        a, b = float(first[index]), float(second[index])
        d = _distance(a, b, fmt)
        within = d <= tolerance.max_ulp or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tolerance.abs_floor)
        rows.append((index, a, b, d, within))
    return _summarize(rows)


def mean_vs_sum(mean: float, total: float, terms, fmt: FloatFormat):
    """Whether mean = sum / n within the summation bound; returns (holds, distance in ULPs of the mean, bound).
    Only for n > 0 (ValueError otherwise: the relation is undefined without elements).

    ``terms``: the exact terms, or their ``ReferenceValue``: from ``VECTORISED_FROM`` terms on, their
    magnitude is bounded from the correctly rounded terms (each within a relative 2^-p or half a
    subnormal of the exact one)."""
    if isinstance(terms, fast_reference.Magnitude):
        return _mean_vs_sum(mean, total, terms.size, mpmath.mpf(terms.upper), fmt)
    if hasattr(terms, "rounded"):
        if terms.rounded.size >= VECTORISED_FROM:
            finite = np.abs(terms.rounded[np.isfinite(terms.rounded)])
            # each term within a relative 2^-p of its rounding, or within half a subnormal of it
            n = terms.rounded.size
            magnitude = mpmath.mpf(math.fsum(finite.tolist())) * (1 + mpmath.mpf(2) ** (1 - fmt.precision)) + n * mpmath.mpf(fmt.smallest_subnormal)
            return _mean_vs_sum(mean, total, terms.rounded.size, magnitude, fmt)
        terms = terms.exact
    with mpmath.workprec(4 * fmt.precision + 64):
        magnitude = mpmath.fsum(abs(t) for t in terms.ravel() if mpmath.isfinite(t))
        return _mean_vs_sum(mean, total, terms.size, magnitude, fmt)


def _mean_vs_sum(mean: float, total: float, n: int, magnitude, fmt: FloatFormat):
    if n == 0:  # the caller's to decide what an empty input means for the relation (the runner: it does not apply)
        raise ValueError("mean = sum / n is undefined for n = 0")
    if not (math.isfinite(mean) and math.isfinite(total)):
        quotient = total / n
        same = (math.isnan(mean) and math.isnan(quotient)) or mean == quotient
        return same, (0.0 if same else math.inf), None
    with mpmath.workprec(4 * fmt.precision + 64):
        u = mpmath.mpf(2) ** -fmt.precision
        gamma = n * u / (1 - n * u) if n * u < 1 else mpmath.inf
        bound = 2 * gamma * magnitude / n + ulp(mpmath.mpf(mean), fmt)
        gap = abs(mpmath.mpf(mean) - mpmath.mpf(total) / n)
        return bool(gap <= bound), float(gap / ulp(mpmath.mpf(mean), fmt)), float(bound)


def smoothed(y, label_smoothing):
    """Keras's smoothed target y·(1 - ls) + ls/2 (y itself without smoothing), as the loss sees it."""
    return y if label_smoothing is None else y * (1 - label_smoothing) + label_smoothing / 2


def well_conditioned(
    x: float, y: float, w: float, q: float | None, exact_loss: mpmath.mpf, fmt: FloatFormat, max_ulp: float = 4,
    label_smoothing: float | None = None,
) -> bool:
    """Whether the two-step path can be accurate here: sigmoid(x) is a normal number of the dtype
    at least one epsilon away from 1 (so the dtype holds it to full relative precision, and 1 - p
    too), and the loss's relative condition number in p, |dL/dp|·p / L (weight and pos_weight
    included, and the smoothed target under label smoothing: the loss's own), is at most ``max_ulp``:
    an ULP of rounding in p then moves the loss by at most the tolerance."""
    if not all(math.isfinite(v) for v in (x, y, w)) or not mpmath.isfinite(exact_loss) or exact_loss == 0:
        return False
    if abs(x) > 2000:  # past every format's saturation: sigmoid(x) is 0 or 1 to thousands of bits
        return False
    with mpmath.workprec(200):
        p = sigmoid(mpmath.mpf(x))
        if p < fmt.smallest_normal or 1 - p < mpmath.mpf(2) ** (1 - fmt.precision):
            return False
        target = smoothed(mpmath.mpf(y), None if label_smoothing is None else mpmath.mpf(label_smoothing))
        slope = bce_grad(p, target, mpmath.mpf(w), None if q is None else mpmath.mpf(q))
        return bool(mpmath.isfinite(slope) and abs(slope) * p <= max_ulp * abs(exact_loss))


def well_conditioned_elements(inputs: dict[str, np.ndarray], loss: np.ndarray, fmt: FloatFormat, max_ulp: float) -> np.ndarray:
    """``well_conditioned`` elementwise, in float64, with ``loss`` the correctly rounded exact loss."""
    shape = loss.shape
    x, y = (np.broadcast_to(np.asarray(inputs[n], dtype=np.float64), shape) for n in ("logits", "target"))
    y = smoothed(y, float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None)
    w = np.broadcast_to(np.asarray(inputs["weight"], dtype=np.float64), shape) if "weight" in inputs else np.ones(shape)
    q = np.broadcast_to(np.asarray(inputs["pos_weight"], dtype=np.float64), shape) if "pos_weight" in inputs else np.ones(shape)
    with np.errstate(all="ignore"):
        p, not_p = _sigmoid64(x), _sigmoid64(-x)
        slope = w * ((1 - y) / not_p - q * y / p)
        usable = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(loss) & (loss != 0) & (np.abs(x) <= 2000)
        usable &= (p >= fmt.smallest_normal) & (not_p >= 2.0 ** (1 - fmt.precision))
        return usable & np.isfinite(slope) & (np.abs(slope) * p <= max_ulp * np.abs(loss))


def _sigmoid64(t: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(t))
    return np.where(t >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def variant_agrees(exact, variant, fmt: FloatFormat, tolerance: Tolerance) -> np.ndarray:
    """Elementwise, whether the two-step API's declared variant (its ``ReferenceValue``: the contract's loss of
    the correctly rounded sigmoid) is within the tolerance of the exact loss: only there is the fused loss
    what the two-step path owes (elsewhere, the -100 clamp past x = -100 in float64, say, it owes the variant)."""
    want = np.asarray(exact.rounded, dtype=np.float64)
    return distances(want, np.asarray(variant.rounded, dtype=np.float64), fmt) <= tolerance.max_ulp


def versus_fused(
    two_step: np.ndarray, fused: np.ndarray, inputs: dict[str, np.ndarray], exact, fmt: FloatFormat, tolerance: Tolerance,
    variant=None,
):
    """Distances between the two paths; only the elements that are well conditioned, and where the two-step
    API's declared variant (``variant``, its ``ReferenceValue``; None where it declares none) agrees with the
    mathematics, must agree (within twice the tolerance).

    ``exact``: the exact losses, or their ``ReferenceValue`` (which ``variant`` needs): from ``VECTORISED_FROM``
    elements on, the condition is evaluated in float64 on the correctly rounded losses."""
    shape = two_step.shape
    agrees = np.ones(shape, dtype=bool) if variant is None else np.broadcast_to(variant_agrees(exact, variant, fmt, tolerance), shape)
    smoothing = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None
    if two_step.size >= VECTORISED_FROM:
        d = distances(fused, two_step, fmt)
        conditioned = well_conditioned_elements(inputs, exact.rounded, fmt, tolerance.max_ulp) & agrees
        within = ~conditioned | (d <= 2 * tolerance.max_ulp)
        columns = [fused, two_step, d, within, conditioned]
        positions = np.arange(d.size)
        flat = conditioned.ravel()
        return bool(within.all()), Rows(shape, columns, positions[flat]), Rows(shape, columns, positions[~flat])
    exact = getattr(exact, "exact", exact)
    columns = {name: np.broadcast_to(inputs[name], shape) for name in inputs}
    rows = []
    for index in np.ndindex(shape):
        a, b = float(fused[index]), float(two_step[index])
        d = _distance(a, b, fmt)
        w = float(columns["weight"][index]) if "weight" in columns else 1.0
        q = float(columns["pos_weight"][index]) if "pos_weight" in columns else None
        x, y = float(columns["logits"][index]), float(columns["target"][index])
        conditioned = bool(agrees[index]) and well_conditioned(x, y, w, q, exact[index], fmt, tolerance.max_ulp, smoothing)
        within = not conditioned or d <= 2 * tolerance.max_ulp
        rows.append((index, a, b, d, within, conditioned))
    holds = all(r[4] for r in rows)
    return holds, [r for r in rows if r[5]], [r for r in rows if not r[5]]


def _summarize(rows):
    holds = all(r[4] for r in rows)
    largest = max((r[3] for r in rows), default=0.0)
    rows = sorted(rows, key=lambda r: (r[4], -r[3] if not math.isnan(r[3]) else 0, r[0]))
    return holds, largest, rows


def element(index, inputs: dict[str, np.ndarray], shape, got: float, want: float, distance: float) -> dict:
    return {
        "index": list(index),
        "inputs": {name: to_hex(np.broadcast_to(a, shape)[index]) for name, a in inputs.items()},
        "got": to_hex(got),
        "want": to_hex(want),
        "want_rounded": to_hex(want),
        "ulp": distance,
    }
