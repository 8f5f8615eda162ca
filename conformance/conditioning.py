"""Condition-aware bounds: how far from the exact value an ideal implementation in the dtype may land.

The forward error of a result (its distance from the exact value, in ULPs) mixes two facts: how well the
framework computes, and how sensitive the quantity is to the roundings no float implementation escapes.
An ideal implementation rounds its inputs to the dtype, computes exactly in between and rounds its output
once; so its error at an element is at most the change of the exact quantity when each input of the element
moves by at most half an ULP of the dtype, plus half an ULP of the result. That change is what this module
measures, on each side of the exact value: ``below`` (how far the quantity can fall) and ``above`` (rise).

The inputs of an element, each moved within its rounding box (the reals that round to it: half the gap to
its neighbour on each side, a quarter ULP below a power of two): the logit or probability, the target, the
weight and pos_weight where given, and the label smoothing, which the API applies in the dtype. For the
two-step op (the framework's sigmoid, then its loss on probabilities) the probability the loss receives is an
input of the second API, so it moves too: within the rounding box of σ(x), on top of x's own.

The change is measured by witnesses, never estimated: the quantity is evaluated exactly at every corner of
the element's box, and the largest rise and fall over the corners are kept. Every corner lies in the box, so
each figure is a rigorous lower bound of the largest change, and the exact largest change wherever the
quantity is monotone in each input over the box (all but a relative 2^-p neighbourhood of its critical
points). A lower bound is the side to err on: a verdict that excuses an error by the problem's conditioning
excuses no more than some input inside the box really shows. Corners are evaluated with the reference's own
formulas (``conformance.reference``'s terms, in mpmath), or for dtypes of up to 24 bits, whose corners are
float64 values, vectorised with ``conformance.fast_reference``'s formulas and their error bounds (each witness
less both bounds): the same split as the reference.

A reduced value's change is the sum of its terms' changes over its count (its terms have inputs of their own,
so the largest changes add up exactly); a gradient's element is its term over the count of the reduction.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import mpmath
import numpy as np

from conformance import cache, fast_reference
from conformance import reference as ref
from conformance.dtypes import FloatFormat, round_to_format

NAMES = ("first", "target", "weight", "pos_weight")  # an element's inputs; `first` is the logit or the probability
MAX_EXACT_ELEMENTS = 1 << 14  # elements whose corners mpmath evaluates one by one in a result; beyond, not computed


@dataclass
class Deviations:
    """Per element, the largest fall (``below``) and rise (``above``) of the exact quantity over its box, >= 0;
    NaN where not computed (not asked for, a non-finite or NaN exact value, too many elements for mpmath)."""

    below: np.ndarray
    above: np.ndarray

    @classmethod
    def empty(cls, shape) -> Deviations:
        return cls(np.full(shape, np.nan), np.full(shape, np.nan))


def _gaps(values: np.ndarray, fmt: FloatFormat, half: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Half the gap to the next value of ``fmt`` below and above each value (the rounding box's radii);
    0 for ±inf and NaN, which stay where they are. ``half=False``: the whole gaps, for float64, whose half
    gap at the bottom of the subnormals is no float64 (the mpmath path halves them exactly)."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    magnitude = np.abs(np.where(finite, v, 0.0))
    spacing = fast_reference.ulp_of(magnitude, fmt)
    mantissa, _ = np.frexp(magnitude)
    power = (mantissa == 0.5) & (magnitude > fmt.smallest_normal)  # the gap below a power of two is half
    scale = 0.5 if half else 1.0
    toward_zero = np.where(power, spacing / 2, spacing) * scale
    away = spacing * scale
    below = np.where(v > 0, toward_zero, away)  # for a negative value, away from zero is below
    above = np.where(v > 0, away, np.where(v < 0, toward_zero, away))
    return np.where(finite, below, 0.0), np.where(finite, above, 0.0)


# ------------------------------------------------------------------------------------------------
# the boxes


def _target_boxes(y: np.ndarray, ls: float | None, fmt: FloatFormat, half: bool = True):
    """(y', below, above): the target as the loss receives it, and its box's radii. A target of exactly 0 or 1
    (a hard label) is exact in every dtype and no computation rounds it: it stays. Any other target moves within
    its own box. Under label smoothing the loss receives y' = y·(1 - ls) + ls/2, which the API computes in the
    dtype: y' moves within the rounding box of its rounding (and (1 - ls) times y's own box); ls itself
    reaches the loss only through y', so it stays. ``y'`` is float64 here (within 4u of the exact one, which
    the callers take exactly where they need it)."""
    y = np.asarray(y, dtype=np.float64)
    low, high = _gaps(y, fmt, half)
    hard = (y == 0) | (y == 1)
    low, high = np.where(hard, 0.0, low), np.where(hard, 0.0, high)
    if ls is None:
        return y, low, high
    keep, half = 1.0 - ls, ls / 2
    smoothed = y * keep + half
    smoothed_low, smoothed_high = _gaps(fast_reference.round_to_dtype(smoothed, fmt), fmt, half)
    return smoothed, smoothed_low + keep * low, smoothed_high + keep * high


# ------------------------------------------------------------------------------------------------
# the quantity of one element, exactly (mpmath), at any inputs


def _exact_term(formula: str, quantity: str, two_step: bool, ls):
    """f(first, y', w, q, p) -> the element's quantity at those inputs (y' the target as the loss receives it),
    in mpmath at the current precision: ``conformance.reference``'s own formulas. ``p`` (two-step only) is the
    probability the second API receives; a target gradient is times dy'/dy = 1 - ls under label smoothing."""
    if two_step:
        value, grad, target_grad = ref.bce_term, ref.bce_grad, ref.bce_target_grad
    else:
        value, grad, target_grad = ref.TERMS[formula], ref.GRADIENTS[formula], ref.TARGET_GRADIENTS[formula]
    keep = None if ls is None else mpmath.fsub(1, mpmath.mpf(ls), exact=True)

    def term(first, y, w, q, p):
        argument = p if two_step else first
        if quantity == "value":
            if formula == "bce_with_logits" and not two_step:
                return value(argument, y, w, mpmath.mpf(1) if q is None else q)
            return value(argument, y, w, q)
        if quantity == "grad":
            g = grad(argument, y, w, q)
            return ref._times(p * (1 - p), g) if two_step else g  # the sigmoid's backward, p·(1 - p) of its output
        g = target_grad(argument, y, w, q)
        return g if keep is None else g * keep

    return term


def _exact_deviations(formula, quantity, two_step, columns: dict[str, np.ndarray], ls, fmt: FloatFormat):
    """(below, above) of each element of the 1-d ``columns`` (inputs of the dtype, float64), in mpmath."""
    term = _exact_term(formula, quantity, two_step, ls)
    # the two-step op's exact quantity is the fused one's at x (bce on p = σ(x) exactly), without the
    # cancellation of 1 - σ(x) at a finite precision
    centre_term = _exact_term(formula, quantity, False, ls)
    n = columns["first"].size
    below, above = np.full(n, np.nan), np.full(n, np.nan)
    names = list(columns)
    # whole gaps, halved exactly in mpmath (_choices)
    radii = {name: _gaps(columns[name], fmt, half=False) for name in names if name != "target"}
    _, *radii["target"] = _target_boxes(columns["target"], ls, fmt, half=False)
    exact_ls = None if ls is None else mpmath.mpf(ls)
    with mpmath.workprec(3 * fmt.precision + 64):
        for i in range(n):
            centre = {name: mpmath.mpf(float(columns[name][i])) for name in names}
            if exact_ls is not None:
                centre["target"] = ref.smooth_target(centre["target"], exact_ls)
            choices = [_choices(centre[name], radii[name][0][i], radii[name][1][i]) for name in names]
            value = _call(centre_term, centre, None)
            if not mpmath.isfinite(value):
                continue  # an infinite or NaN exact value: no change measures a distance to it
            p_radius = None
            if two_step:  # the probability's box: half the gaps of σ(x) rounded to the dtype
                low, high = _gaps(np.array([round_to_format(ref.sigmoid(centre["first"]), fmt)]), fmt, half=False)
                p_radius = (mpmath.ldexp(mpmath.mpf(low[0]), -1), mpmath.ldexp(mpmath.mpf(high[0]), -1))
            rise = fall = mpmath.mpf(0)
            for combination in itertools.product(*choices):
                corner = dict(zip(names, combination))
                p_corners = [None]
                if two_step:
                    s = ref.sigmoid(corner["first"])
                    p_corners = [min(max(s - p_radius[0], 0), 1), min(max(s + p_radius[1], 0), 1)]
                for p in p_corners:
                    other = _call(term, corner, p)
                    if mpmath.isnan(other):
                        continue  # outside the quantity's domain: no witness
                    rise, fall = max(rise, other - value), max(fall, value - other)
            below[i], above[i] = _downward(fall), _downward(rise)
    return below, above


def _choices(centre, low, high):
    """The box's two ends along one input, from its whole gaps below and above (the centre alone where it
    does not move)."""
    if low == 0 and high == 0:
        return [centre]
    low, high = mpmath.ldexp(mpmath.mpf(low), -1), mpmath.ldexp(mpmath.mpf(high), -1)
    return [mpmath.fsub(centre, low, exact=True), mpmath.fadd(centre, high, exact=True)]


def _call(term, inputs, p):
    return term(inputs["first"], inputs["target"], inputs.get("weight", mpmath.mpf(1)), inputs.get("pos_weight"), p)


def _downward(value: mpmath.mpf) -> float:
    """A witness as a float64 no larger than it (so it stays a lower bound)."""
    if mpmath.isinf(value):
        return math.inf
    as_float = float(value)
    return as_float if mpmath.mpf(as_float) <= value else math.nextafter(as_float, 0.0)


# ------------------------------------------------------------------------------------------------
# the same, vectorised in float64 with rigorous bounds, for dtypes of up to 24 bits


def _fast_deviations(formula, quantity, two_step, columns: dict[str, np.ndarray], ls, fmt: FloatFormat):
    """(below, above, taken): the witnesses of the elements whose centre and corners the float64 formulas
    take (``taken``), each less the error bounds of both evaluations; the rest is left to mpmath."""
    n = columns["first"].size
    taken = np.ones(n, dtype=bool)
    names = list(columns)
    ends = {}
    for name in names:
        if name != "target":
            low, high = _gaps(columns[name], fmt)
            ends[name] = (columns[name] - low, columns[name] + high)  # exact: a midpoint of a <= 24-bit value
    smoothed, low, high = _target_boxes(columns["target"], ls, fmt)
    # y' is within 4u of the exact smoothed target: its ends moved inward by that stay inside the box
    margin = 0.0 if ls is None else 8 * fast_reference.U * np.abs(smoothed) + fast_reference.ABSOLUTE
    ends["target"] = (smoothed - np.maximum(low - margin, 0.0), smoothed + np.maximum(high - margin, 0.0))
    with np.errstate(all="ignore"):
        # the centre: for the two-step op the same quantity as the fused one's at x (bce on p = σ(x) exactly)
        centre = _fast_terms(formula, quantity, False, columns, ls, None, fmt)
        taken &= ~centre.fallback & np.isfinite(centre.approx)
        rise, fall = np.zeros(n), np.zeros(n)
        for combination in itertools.product(*(range(2) for _ in names)):
            corner = {name: ends[name][side] for name, side in zip(names, combination)}
            for p_side in (0, 1) if two_step else (None,):
                # the corner's target is y' itself, so the formulas smooth nothing there
                terms = _fast_terms(formula, quantity, two_step, corner, None, p_side, fmt)
                taken &= ~terms.fallback & ~np.isnan(terms.approx)
                approx = terms.approx * (1.0 - ls) if ls is not None and quantity == "grad_target" else terms.approx
                difference = approx - centre.approx
                slack = terms.bound + centre.bound
                # an infinite corner over a finite centre: a rise (or fall) without bound
                rise = np.maximum(rise, np.where(approx == np.inf, np.inf, difference - slack))
                fall = np.maximum(fall, np.where(approx == -np.inf, np.inf, -difference - slack))
    return np.maximum(fall, 0.0), np.maximum(rise, 0.0), taken


def _fast_terms(formula, quantity, two_step, inputs, smoothing, p_side, fmt: FloatFormat) -> fast_reference.Terms:
    """fast_reference's terms at ``inputs`` (float64 arrays: `first`, `target`, ...); for the two-step op, bce
    on the probability σ(x) moved to the end ``p_side`` (0 below, 1 above) of its rounding box."""
    gradient = quantity == "grad"
    arrays = {k: v for k, v in inputs.items() if k != "first"}
    if not two_step:
        first = "logits" if formula == "bce_with_logits" else "probs"
        arrays[first] = inputs["first"]
        if first == "logits":
            return fast_reference.logits_terms(arrays, smoothing, gradient)
        return fast_reference.probability_terms(arrays, smoothing, gradient)
    arrays["logits"] = inputs["first"]
    sigma = fast_reference.sigmoid_terms(inputs["first"])
    # σ(x) is within sigma.bound of its float64 value: the box's end moved inward by that bound (and by the
    # rounding of the sum) is a float64 inside the box, and the quantity is evaluated at that float64 exactly
    low, high = _gaps(fast_reference.round_to_dtype(sigma.approx, fmt), fmt)
    margin = sigma.bound + 2 * fast_reference.U * np.abs(sigma.approx) + fast_reference.ABSOLUTE
    p = sigma.approx - low + margin if p_side == 0 else sigma.approx + high - margin
    p = np.clip(p, 0.0, 1.0)
    terms = fast_reference.probability_terms(arrays, smoothing, gradient, two_step_p=p)
    return fast_reference.Terms(terms.approx, terms.bound, terms.fallback | sigma.fallback, terms.sign)


# ------------------------------------------------------------------------------------------------
# per element of the input, then per element of the result


def term_deviations(
    formula: str, quantity: str, two_step: bool, inputs: dict[str, np.ndarray], fmt: FloatFormat, mask: np.ndarray,
    kept: bool = True,
) -> Deviations:
    """The deviations of each element of the inputs' broadcast shape under ``mask`` (its term: the loss, or its
    gradient with respect to the input or the target, before any reduction); NaN elsewhere. ``kept``: mpmath's
    deviations are kept in the cache (``cache.DeviationsEntry``, for inputs of up to
    ``cache.DEVIATIONS_MAX_ELEMENTS``); the float32 sweep, whose chunks are never judged twice, keeps none."""
    first = "logits" if formula == "bce_with_logits" else "probs"  # the two-step op's formula is bce_with_logits
    present = [(name, inputs[key]) for name, key in zip(NAMES, (first, "target", "weight", "pos_weight")) if key in inputs]
    shape = np.broadcast_shapes(*(np.shape(a) for _, a in present))
    out = Deviations.empty(shape)
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), shape)
    if not mask.any():
        return out
    columns = {name: np.broadcast_to(np.asarray(a, dtype=np.float64), shape)[mask] for name, a in present}
    ls = float(inputs["label_smoothing"]) if "label_smoothing" in inputs else None
    below, above = np.full(columns["first"].size, np.nan), np.full(columns["first"].size, np.nan)
    pending = np.ones(columns["first"].size, dtype=bool)
    if fmt.precision <= fast_reference.MAX_PRECISION and quantity in ("value", "grad"):
        fast_below, fast_above, taken = _fast_deviations(formula, quantity, two_step, columns, ls, fmt)
        below[taken], above[taken] = fast_below[taken], fast_above[taken]
        pending &= ~taken
    if pending.any():
        # the elements mpmath evaluated before, for these inputs, in any run (conformance.cache), and the rest now
        full = {name: np.broadcast_to(np.asarray(a, dtype=np.float64), shape) for name, a in present}
        entry = cache.DeviationsEntry.open(formula, quantity, two_step, full, ls, fmt, int(pending.sum())) if kept else None
        positions = np.flatnonzero(mask.ravel())[pending]
        if entry is not None:
            known = entry.done[positions]
            where = np.flatnonzero(pending)[known]
            below[where], above[where] = entry.below[positions[known]], entry.above[positions[known]]
            pending[where] = False
            positions = positions[~known]
        if pending.any() and int(pending.sum()) <= MAX_EXACT_ELEMENTS:
            part = {name: column[pending] for name, column in columns.items()}
            below[pending], above[pending] = _exact_deviations(formula, quantity, two_step, part, ls, fmt)
            if entry is not None:
                entry.below[positions], entry.above[positions] = below[pending], above[pending]
                entry.done[positions] = True
                entry.save()
    out.below[mask], out.above[mask] = below, above
    return out


def result_deviations(
    formula: str,
    quantity: str,
    two_step: bool,
    inputs: dict[str, np.ndarray],
    fmt: FloatFormat,
    reduction: str,
    axis_mean: bool,
    missing: np.ndarray,
    kept: bool = True,
) -> Deviations:
    """The deviations of the result's elements under ``missing`` (a mask over the result's shape): a gradient's
    element is its term over the reduction's count; a loss element the sum of its terms' over its count (all
    the elements for `mean` / `sum`, a last-axis row for an API averaging over it). ``kept``: as for
    ``term_deviations``."""
    first = "logits" if formula == "bce_with_logits" else "probs"
    shape = np.broadcast_shapes(*(np.shape(inputs[k]) for k in (first, "target", "weight", "pos_weight") if k in inputs))
    missing = np.asarray(missing, dtype=bool)
    if not missing.any():
        return Deviations.empty(missing.shape)
    count = _count(shape, reduction, axis_mean) or 1
    if quantity != "value" or (reduction == "none" and not axis_mean):  # elementwise
        terms = term_deviations(formula, quantity, two_step, inputs, fmt, missing, kept)
        scale = 1 / count
        return Deviations(terms.below * scale, terms.above * scale)
    if reduction == "none":  # row means: the rows of the missing elements
        terms = term_deviations(formula, "value", two_step, inputs, fmt, np.broadcast_to(missing[..., None], shape), kept)
        with np.errstate(invalid="ignore"):
            below, above = terms.below.sum(axis=-1) / count, terms.above.sum(axis=-1) / count
        return Deviations(np.where(missing, below, np.nan), np.where(missing, above, np.nan))
    # a mean or a sum of every term
    terms = term_deviations(formula, "value", two_step, inputs, fmt, np.ones(shape, dtype=bool), kept)
    return Deviations(np.array(terms.below.sum() / count), np.array(terms.above.sum() / count))


def _count(shape: tuple[int, ...], reduction: str, axis_mean: bool) -> int:
    """What a term is divided by in the reduced result: every element for `mean`; for an API averaging over the
    last axis its row length for `none` (the row means) and `sum` (their sum); 1 otherwise."""
    size = int(np.prod(shape))
    if reduction == "mean":
        return size
    return (shape[-1] if shape else 1) if axis_mean else 1


def bound_ulps(deviations: Deviations, got: np.ndarray, rounded: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(bound, condition) per result element: the condition-aware bound on the side where ``got`` lies, in ULPs
    of the dtype at the exact value (its deviation, plus half an ULP for the result's own rounding), and the
    relative condition number, that deviation over |exact|·2^-p (how many unit roundoffs of relative change
    the element's half-ULP boxes make). NaN where no bound is known."""
    got = np.asarray(got, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        side = np.where(got > rounded, deviations.above, np.where(got < rounded, deviations.below, 0.0))
        unit = fast_reference.ulp_of(np.where(np.isfinite(rounded), rounded, 0.0), fmt)
        bound = np.where(np.isfinite(rounded), side / unit + 0.5, np.nan)
        magnitude = np.abs(rounded)
        condition = np.where(magnitude > 0, side / (magnitude * 2.0 ** -fmt.precision), np.inf)
        condition = np.where(np.isnan(side) | ~np.isfinite(rounded), np.nan, np.where(side == 0, 0.0, condition))
    return bound, condition


def pair_bounds(first: Deviations, second: Deviations, a: np.ndarray, b: np.ndarray, fmt: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """(bound, condition) of a relation between two results of the same exact value (L(x, y) and L(-x, 1 - y);
    a two-step and a fused loss), per element: how far apart two ideal implementations may land, in ULPs at
    ``a`` (a relation's unit, ``metamorphic.distances``): ``a``'s deviation toward ``b`` and ``b``'s toward
    ``a``, plus both results' roundings (half an ULP each); the condition number of the larger side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        above = a > b  # a is the larger: a can have risen, b fallen
        spread = np.where(above, first.above + second.below, first.below + second.above)
        spread = np.where(a == b, 0.0, spread)
        unit = fast_reference.ulp_of(np.where(np.isfinite(a), a, 0.0), fmt)
        bound = spread / unit + 1.0
        side = np.maximum(np.where(above, first.above, first.below), np.where(above, second.below, second.above))
        magnitude = np.abs(np.where(np.isfinite(a), a, b))
        condition = np.where(side == 0, 0.0, np.where(magnitude > 0, side / (magnitude * 2.0 ** -fmt.precision), np.inf))
    return bound, np.where(np.isnan(spread), np.nan, condition)
