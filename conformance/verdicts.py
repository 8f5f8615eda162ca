"""Tolerances and verdicts: how far a framework's result is from the exact value, and what that means."""

from __future__ import annotations

import decimal
import enum
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import mpmath
import numpy as np
from ruamel.yaml import YAML

from conformance import fast_reference
from conformance.dtypes import FloatFormat, parse_hex_or_decimal, round_to_format, ulp_error
from conformance.reference import ReferenceValue


class Verdict(str, enum.Enum):
    EXACT = "exact"  # matches the mathematical value within the dtype's tolerance
    ACCEPTABLE = "acceptable"  # misses it, but matches a documented variant the API declares
    FAIL = "fail"  # does not, and no known divergence covers it
    KNOWN_DIVERGENCE = "known_divergence"  # does not, as a listed divergence (with reason and source) says
    UNEXPECTED_PASS = "unexpected_pass"  # listed as a known divergence, yet matches: the list is stale
    UNSUPPORTED = "unsupported"  # the API cannot take this combination (the reason says why)
    ERROR = "error"  # the call raised, or returned something that is not a result of the right shape / dtype

    @property
    def is_problem(self) -> bool:
        """Whether this verdict fails a run."""
        return self in (Verdict.FAIL, Verdict.UNEXPECTED_PASS, Verdict.ERROR)


@dataclass(frozen=True)
class Tolerance:
    max_ulp: float
    abs_floor: float


@cache
def default_tolerances() -> dict[str, Tolerance]:
    text = resources.files("conformance").joinpath("tolerances.yaml").read_text(encoding="utf-8")
    data = YAML(typ="safe", pure=True).load(text)
    return {dtype: Tolerance(float(v["max_ulp"]), float(v["abs_floor"])) for dtype, v in data.items()}


def tolerance_for(dtype: str, override: dict | None = None) -> Tolerance:
    """The dtype's tolerance, with a case's override applied (limits for every dtype, then per dtype)."""
    base = default_tolerances()[dtype]
    override = override or {}
    merged = {"max_ulp": base.max_ulp, "abs_floor": base.abs_floor}
    merged.update({k: v for k, v in override.items() if k in merged})
    merged.update(override.get(dtype, {}))
    return Tolerance(float(merged["max_ulp"]), float(merged["abs_floor"]))


@dataclass(frozen=True)
class ElementError:
    index: tuple[int, ...]
    got: float
    want: mpmath.mpf  # the exact value
    ulp: float


@dataclass(frozen=True)
class Judgement:
    passed: bool
    max_ulp: float
    worst: list[ElementError]  # the worst elements that fail, or the worst overall when all pass
    floor_accepted: int = 0  # elements within tolerance only through the absolute floor
    median_ulp: float = 0.0  # the median error in ULPs (NaN counts as inf)
    ulps: tuple[float, ...] = ()  # every element's error in ULPs, in the exact values' C order


def _median(values: list[float]) -> float:
    ordered = sorted(math.inf if math.isnan(v) else v for v in values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _within(got: float, exact: mpmath.mpf, error: float, tolerance: Tolerance) -> bool:
    if error <= tolerance.max_ulp:
        return True
    if math.isfinite(got) and mpmath.isfinite(exact):
        return abs(mpmath.mpf(got) - exact) <= tolerance.abs_floor
    return False


def judge(got: np.ndarray, exact, fmt: FloatFormat, tolerance: Tolerance, keep: int = 3) -> Judgement:
    """Compare a result with the exact values elementwise; ``got`` must already have ``exact``'s shape.

    ``exact``: an object array of exact values, or a ``ReferenceValue`` (from the fast path, judged
    with its float64 values and their bounds, and exactly wherever the bound leaves the verdict open).
    """
    if isinstance(exact, ReferenceValue):
        if exact.approx is not None:
            return _judge_fast(np.asarray(got, dtype=np.float64), exact, fmt, tolerance, keep)
        exact = exact.exact
    errors = []
    failing = floor_accepted = 0
    for index, want in np.ndenumerate(exact):
        value = float(got[index])
        error = ulp_error(value, want, fmt)
        ok = _within(value, want, error, tolerance)
        failing += not ok
        floor_accepted += ok and error > tolerance.max_ulp
        errors.append((not ok, error, index, value, want))
    ulps = tuple(e[1] for e in errors)
    # failing elements first, then the largest errors; ties broken by position so the order is stable
    errors.sort(key=lambda e: (not e[0], -e[1] if not math.isnan(e[1]) else 0, e[2]))
    max_ulp = max((e[1] for e in errors), default=0.0)
    shown = [e for e in errors if e[0]] if failing else errors
    worst = [ElementError(index, value, want, error) for _, error, index, value, want in shown[:keep]]
    return Judgement(failing == 0, max_ulp, worst, floor_accepted, _median(list(ulps)), ulps)


def _judge_fast(got: np.ndarray, ref: ReferenceValue, fmt: FloatFormat, tolerance: Tolerance, keep: int) -> Judgement:
    """``judge`` on the fast path: each element's error is measured from its float64 value, to within
    its bound in ULPs (below 2^-20 ULP); an element whose verdict that margin leaves open, whose exact
    value the fast path did not give (a special value, an unsettled rounding) or whose result is not
    finite is judged exactly, with its exact value from mpmath."""
    approx, bound = ref.approx, ref.bound
    with np.errstate(invalid="ignore", over="ignore"):
        ulp = fast_reference.ulp_of(approx, fmt)
        distance = np.abs(got - approx)
        error = distance / ulp
        margin = (bound * (1 + 8 * fast_reference.U) + fast_reference.ABSOLUTE) / ulp + error * 4 * fast_reference.U
        # the spacing at the exact value is the spacing at approx, unless the interval crosses a binade
        same_binade = fast_reference.ulp_of(approx - bound, fmt) == fast_reference.ulp_of(approx + bound, fmt)
        floor_distance = distance + bound * (1 + 8 * fast_reference.U) + fast_reference.ABSOLUTE
        within_ulps = error + margin <= tolerance.max_ulp
        beyond_ulps = error - margin > tolerance.max_ulp
        within_floor = floor_distance <= tolerance.abs_floor
        beyond_floor = distance - bound * (1 + 8 * fast_reference.U) > tolerance.abs_floor
    decided = np.isfinite(approx) & np.isfinite(got) & same_binade & (within_ulps | beyond_ulps & (within_floor | beyond_floor))
    decided &= margin <= 2.0**-20  # else the error itself is measured exactly (a cancelling gradient)
    ok = within_ulps | (beyond_ulps & within_floor)
    errors = np.where(decided, error, 0.0)
    floor = decided & ~within_ulps & within_floor
    # a result or an exact value that is not finite: the correct rounding settles it (as ulp_error does)
    rounded = ref.rounded
    special = ~decided & (~np.isfinite(got) | ~np.isfinite(rounded))
    meets = np.where(np.isnan(got), np.isnan(rounded), got == rounded)
    errors = np.where(special, np.where(meets, 0.0, np.inf), errors)
    ok = np.where(special, meets, ok)
    exactly = ~decided & ~special
    if exactly.any():  # judged exactly, their exact values from mpmath at once
        wants = ref.exact_where(exactly)
        for index, want in zip(zip(*np.nonzero(exactly)), wants):
            value = float(got[index])
            errors[index] = ulp_error(value, want, fmt)
            ok[index] = _within(value, want, errors[index], tolerance)
            floor[index] = ok[index] and errors[index] > tolerance.max_ulp
    flat_ok, flat_errors = ok.ravel(), errors.ravel()
    # failing elements first, then the largest errors; ties broken by position so the order is stable
    order = np.lexsort((np.arange(flat_errors.size), -np.nan_to_num(flat_errors, nan=0.0), flat_ok))
    failing = int((~flat_ok).sum())
    shown = order[: min(keep, failing)] if failing else order[:keep]
    worst = []
    for position in shown:
        index = np.unravel_index(position, errors.shape) if errors.shape else ()
        index = tuple(int(i) for i in index)
        worst.append(ElementError(index, float(got[index]), ref.exact_at(index), float(errors[index])))
    ulps = tuple(float(e) for e in flat_errors)
    max_ulp = float(flat_errors.max()) if flat_errors.size else 0.0
    return Judgement(failing == 0, max_ulp, worst, int(floor.sum()), _median(list(ulps)), ulps)


def expectation_holds(literal: str | float | int, exact: mpmath.mpf, fmt: FloatFormat) -> bool:
    """Whether a literal from a case's `expect` states the exact value.

    A decimal literal holds when it agrees with the exact value to the digits written, or when it
    is the shortest repr of the correctly rounded value (``0.8000147727101611`` for a float64
    mean). A hexadecimal literal names one value: it holds when it is the correctly rounded value.
    """
    text = literal if isinstance(literal, str) else repr(float(literal))
    value = parse_hex_or_decimal(text)
    if isinstance(value, float):  # ±inf, NaN, ±0.0
        if math.isnan(value):
            return bool(mpmath.isnan(exact))
        return bool(exact == value)
    if not mpmath.isfinite(exact):
        return False
    rounded = round_to_format(exact, fmt)
    names_rounded = round_to_format(value, fmt) == rounded
    if "x" in text.lower():
        return names_rounded
    written = decimal.Decimal(text.strip())
    if names_rounded and _significant_digits(written) <= _significant_digits(decimal.Decimal(_shortest_repr(rounded, fmt))):
        return True
    half_unit = mpmath.mpf(10) ** written.as_tuple().exponent / 2
    with mpmath.workprec(512):
        return bool(abs(mpmath.mpf(value.numerator) / value.denominator - exact) <= half_unit)


def _significant_digits(number: decimal.Decimal) -> int:
    return len(number.normalize().as_tuple().digits)  # trailing zeros say nothing


def _shortest_repr(value: float, fmt: FloatFormat) -> str:
    """The shortest decimal string that reads back as ``value`` in ``fmt`` (numpy's / ml_dtypes' repr)."""
    return str(fmt.numpy_dtype.type(value))
