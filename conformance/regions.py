"""Input regions: where in its domain an element of a case lies, for the report's table by region.

An element (a logit or probability ``x`` and its target ``y``) lies in exactly one region, the first
of ``REGIONS`` that takes it. The bounds are computed from the dtype under test, never typed in:

- ``special``: ``x`` or ``y`` is inf or NaN.
- ``subnormal``: ``x`` or ``y`` is a nonzero number below the dtype's smallest normal.
- ``exp overflow`` (logits): ``exp(|x|)`` overflows the dtype, ``|x| > ln(largest)``: a formula that
  evaluates ``exp(-x)`` or ``exp(x)`` unguarded gets inf there.
- ``saturation``: logits with σ(x) rounding to 0 or 1 in the dtype (``|x| > (p + 1)·ln 2`` for p
  bits of precision: there ``1 - σ(x)`` is below half the spacing of the floats under 1, so the
  two-step path's ``log(1 - σ(x))`` loses everything); probabilities within the dtype's epsilon of 0
  or 1 (0 and 1 included), where the log terms are steep and clamps and clips act.
- ``soft targets``: ``y`` is neither 0 nor 1.
- ``moderate``: everything else.

``summarize`` folds one elementwise result's per-element errors into its record's ``regions``
field: per region present, the number of elements, how many missed the tolerance, the largest
error in ULPs and the inputs (hex) of the element where it occurs.
"""

from __future__ import annotations

import math

import numpy as np

from conformance.dtypes import FloatFormat, to_hex

SPECIAL = "special"
SUBNORMAL = "subnormal"
EXP_OVERFLOW = "exp overflow"
SATURATION = "saturation"
SOFT_TARGETS = "soft targets"
MODERATE = "moderate"
REGIONS = (SPECIAL, SUBNORMAL, EXP_OVERFLOW, SATURATION, SOFT_TARGETS, MODERATE)


def exp_overflow_bound(fmt: FloatFormat) -> float:
    """``ln(largest)``: past it ``exp(|x|)`` overflows the dtype."""
    return math.log(fmt.largest)


def saturation_bound(fmt: FloatFormat) -> float:
    """``(p + 1)·ln 2``: past it σ(x) rounds to 1 (and 1 - σ(-x) to 1) in a format of p bits."""
    return (fmt.precision + 1) * math.log(2.0)


def epsilon(fmt: FloatFormat) -> float:
    """The spacing of the floats above 1: ``2^(1 - p)``."""
    return math.ldexp(1.0, 1 - fmt.precision)


def describe(region: str, kind: str, fmt: FloatFormat) -> str:
    """The region's bound for a kind of input (``logits`` or ``probs``) in a dtype, as a reader wants it."""
    if region == EXP_OVERFLOW:
        return f"|x| > {exp_overflow_bound(fmt):.4g}" if kind == "logits" else "(logits only)"
    if region == SATURATION:
        if kind == "logits":
            return f"|x| > {saturation_bound(fmt):.4g}"
        return f"p < {epsilon(fmt):.3g} or 1 − p < {epsilon(fmt):.3g}"
    return {
        SPECIAL: "x or y inf or NaN",
        SUBNORMAL: f"0 < |x| or |y| < {fmt.smallest_normal:.3g}",
        SOFT_TARGETS: "0 < y < 1",
        MODERATE: "the rest",
    }[region]


def breakpoints(kind: str, fmt: FloatFormat) -> tuple[float, ...]:
    """The magnitudes |x| at which ``classify``'s region of a logit may change, for a given target (``kind``
    ``logits`` only): its region is the same for every |x| strictly between two consecutive ones, and for
    every |x| equal to one (its bounds: 0, the smallest normal, the saturation and exp-overflow bounds, inf).
    The float32 sweep classifies each run of its ascending magnitudes a piece at a time with them."""
    if kind != "logits":
        raise ValueError(f"regions.breakpoints: for logits only, not {kind!r}")
    return (0.0, fmt.smallest_normal, saturation_bound(fmt), exp_overflow_bound(fmt), math.inf)


def target_masks(y: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``classify`` asks of the targets alone, on their own shape: soft (neither 0 nor 1), subnormal, not
    finite. Two targets with the same masks put every element in the same region."""
    ay = np.abs(y)
    return (y != 0) & (y != 1), (ay > 0) & (ay < fmt.smallest_normal), ~np.isfinite(y)


def classify(kind: str, x: np.ndarray, y: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Each element's region, as an index into ``REGIONS`` (``x``, ``y`` broadcast together). Each input's masks
    are computed on its own shape and broadcast only as they are applied (a sweep's target is one value)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    shape = np.broadcast_shapes(x.shape, y.shape)
    out = np.full(shape, REGIONS.index(MODERATE), dtype=np.int8)
    ax = np.abs(x)
    if kind == "logits":
        saturated = ax > saturation_bound(fmt)
        overflow = ax > exp_overflow_bound(fmt)
    else:
        eps = epsilon(fmt)
        saturated = (x < eps) | (1.0 - x < eps)
        overflow = np.zeros((), dtype=bool)
    soft, subnormal_y, special_y = target_masks(y, fmt)
    subnormal_x = (ax > 0) & (ax < fmt.smallest_normal)
    special_x = ~np.isfinite(x)
    # the last assignment wins: from the last region of REGIONS to the first
    for region, masks in ((SOFT_TARGETS, (soft,)), (SATURATION, (saturated,)), (EXP_OVERFLOW, (overflow,)),
                          (SUBNORMAL, (subnormal_x, subnormal_y)), (SPECIAL, (special_x, special_y))):  # fmt: skip
        for mask in masks:
            if mask.ndim == 0:  # one value for every element: all of them or none
                if mask:
                    out[...] = REGIONS.index(region)
            elif mask.any():
                out[np.broadcast_to(mask, shape)] = REGIONS.index(region)
    return out


def summarize(
    kind: str, inputs: dict, shape: tuple, ulps, missing, fmt: FloatFormat, max_ulp: float
) -> dict[str, dict]:
    """Per region present (in ``REGIONS`` order): elements, missed (past the tolerance), max_ulp and the
    worst element's inputs as hex (the first, in C order, of the largest error; NaN counts as largest), and
    ``floor: true`` where that element is past ``max_ulp`` (the tolerance) yet accepted, through the absolute floor."""
    size = int(np.prod(shape, dtype=np.int64))
    if size == 0:
        return {}
    x = np.broadcast_to(np.asarray(inputs[kind], dtype=np.float64), shape).ravel()
    y = np.broadcast_to(np.asarray(inputs["target"], dtype=np.float64), shape).ravel()
    errors = np.asarray(ulps, dtype=np.float64).ravel()
    missed = np.zeros(size, dtype=bool) if missing is None else np.asarray(missing, dtype=bool).ravel()
    where = classify(kind, x, y, fmt)
    key = np.where(np.isnan(errors), np.inf, errors)
    out = {}
    for index, region in enumerate(REGIONS):
        members = np.flatnonzero(where == index)
        if members.size == 0:
            continue
        worst = int(members[np.argmax(key[members])])
        out[region] = {
            "elements": int(members.size),
            "missed": int(missed[members].sum()),
            "max_ulp": float(errors[worst]),
            "x": to_hex(x[worst]),
            "target": to_hex(y[worst]),
        }
        if key[worst] > max_ulp and not missed[worst]:
            out[region]["floor"] = True
    return out
