"""Tolerances and verdicts: how far a framework's result is from the exact value, and what that means."""

from __future__ import annotations

import decimal
import enum
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Any

import mpmath
import numpy as np

from conformance import fast_reference
from conformance.cases import CaseError, Problem, expand_tolerance, line_of, read_document, tolerance_problems
from conformance.dtypes import DTYPES, FloatFormat, parse_hex_or_decimal, round_to_format, to_hex, ulp_error
from conformance.reference import ReferenceValue


class Verdict(str, enum.Enum):
    EXACT = "exact"  # matches the mathematical value within the dtype's tolerance
    ACCEPTABLE = "acceptable"  # misses it, but matches a documented variant the API declares
    # misses it, but every element that misses lies within k × its condition-aware bound (conformance.conditioning):
    # no float implementation in the dtype does much better there
    CONDITIONED = "conditioned"
    FAIL = "fail"  # does not, and no known divergence covers it
    KNOWN_DIVERGENCE = "known_divergence"  # does not, as a listed divergence (with reason and source) says
    UNEXPECTED_PASS = "unexpected_pass"  # listed as a known divergence, yet matches: the list is stale
    UNSUPPORTED = "unsupported"  # the API cannot take this combination (the reason says why)
    ERROR = "error"  # the call raised, or returned something that is not a result of the right shape / dtype

    @property
    def is_problem(self) -> bool:
        """Whether this verdict fails a run."""
        return self in (Verdict.FAIL, Verdict.UNEXPECTED_PASS, Verdict.ERROR)


def sweep_verdict(missed: int, variant_misses: int | None, beyond: int, unexplained: int, explained: bool) -> Verdict:
    """The verdict of a result from its elements' counts, in the runner's order (``Runner._judge``, then
    ``Runner._explain``): exact when no element misses the tolerance; acceptable when the API declares a
    variant and no element misses it (``variant_misses`` None: no variant declared); conditioned when every
    element that misses is within its condition-aware bound; a known divergence when the catalogue's regions
    hold every element beyond its bound; else a fail. A sweep counts per element, chunk by chunk, and
    decides once over the sum (conformance.sweep)."""
    if missed == 0:
        return Verdict.EXACT
    if variant_misses is not None and variant_misses == 0:
        return Verdict.ACCEPTABLE
    if beyond == 0:
        return Verdict.CONDITIONED
    if explained and unexplained == 0:
        return Verdict.KNOWN_DIVERGENCE
    return Verdict.FAIL


@dataclass(frozen=True)
class Tolerance:
    max_ulp: float
    abs_floor: float
    # k: an element past max_ulp is within its conditioning when its error is at most k times its
    # condition-aware bound (tolerances.yaml's condition_factor)
    condition_factor: float = 4.0


TOLERANCES_FILE = "conformance/tolerances.yaml"


@cache
def default_tolerances() -> dict[str, Tolerance]:
    text = resources.files("conformance").joinpath("tolerances.yaml").read_text(encoding="utf-8")
    return parse_tolerances(text, TOLERANCES_FILE)


def parse_tolerances(text: str, shown: str) -> dict[str, Tolerance]:
    """The per-dtype tolerances of a tolerances file: ``{dtype: {max_ulp, abs_floor}}`` for each dtype.

    Read like a case file (YAML 1.2 plain data, no tags), and held to the same rule as a case's
    ``tolerance``: each limit a finite number >= 0 that a float64 holds. Anything else is a
    ``CaseError`` naming the file, the line and the field, never a traceback in a later check."""
    data, raw, problems = read_document(text, shown, entries=())
    if not isinstance(data, dict):
        raise CaseError(problems + [Problem(shown, "a tolerances file maps each dtype to {max_ulp, abs_floor}")])
    for dtype in DTYPES:
        if dtype not in data:
            problems.append(Problem(shown, f"no tolerance for {dtype}", field=dtype))
    for dtype, limits in data.items():
        line = line_of(raw, dtype)
        if dtype not in DTYPES:
            problems.append(Problem(shown, f"unknown dtype (known: {', '.join(DTYPES)})", line, field=str(dtype)))
        elif not isinstance(limits, dict) or not {"max_ulp", "abs_floor"} <= set(limits) <= {"max_ulp", "abs_floor", "condition_factor"}:
            problems.append(Problem(
                shown, "a dtype's tolerance is {max_ulp: N, abs_floor: N}, both, and optionally condition_factor: N; nothing else",
                line, field=dtype,
            ))
        else:
            for where, message in tolerance_problems(limits):
                problems.append(Problem(shown, message, line_of(raw[dtype], where[0]) or line, field=".".join((dtype, *where))))
    if problems:
        raise CaseError(problems)
    return {
        dtype: Tolerance(float(v["max_ulp"]), float(v["abs_floor"]), float(v.get("condition_factor", Tolerance.condition_factor)))
        for dtype, v in data.items()
    }


def tolerance_for(dtype: str, override: dict | None = None) -> Tolerance:
    """The dtype's tolerance, with a case's override applied (limits for every dtype, then per dtype;
    ``correctly_rounded: true`` is max_ulp 0.5 and abs_floor 0, cases.CORRECTLY_ROUNDED)."""
    base = default_tolerances()[dtype]
    override = expand_tolerance(override or {})
    merged = {"max_ulp": base.max_ulp, "abs_floor": base.abs_floor}
    merged.update({k: v for k, v in override.items() if k in merged})
    merged.update(override.get(dtype, {}))
    return Tolerance(float(merged["max_ulp"]), float(merged["abs_floor"]), base.condition_factor)


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
    missing: np.ndarray | None = None  # bool, the exact values' shape: the elements that miss the tolerance
    errors: np.ndarray | None = None  # ``ulps`` as a float64 array (the fast path's), for callers that want one


def _median(values: list[float]) -> float:
    ordered = sorted(math.inf if math.isnan(v) else v for v in values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _within(got: float, exact: mpmath.mpf, error: float, tolerance: Tolerance, fmt: FloatFormat) -> bool:
    if error < tolerance.max_ulp or (error == tolerance.max_ulp and not _off_a_power_of_two(exact, error, tolerance, fmt)):
        return True
    if math.isfinite(got) and mpmath.isfinite(exact):
        return abs(mpmath.mpf(got) - exact) <= tolerance.abs_floor
    return False


def _off_a_power_of_two(exact: mpmath.mpf, error: float, tolerance: Tolerance, fmt: FloatFormat) -> bool:
    """Half an ULP from an exact value that is itself a float: the float below an exact power of two 2^k (the ULP is
    the spacing of the exact value's binade, above 2^k, twice the spacing below). Under ``max_ulp: 0.5`` (correctly
    rounded) only a tie, an exact value halfway between two floats, may be half an ULP off: not this."""
    return tolerance.max_ulp == 0.5 and error == 0.5 and mpmath.isfinite(exact) and mpmath.mpf(round_to_format(exact, fmt)) == exact


def judge(
    got: np.ndarray, exact, fmt: FloatFormat, tolerance: Tolerance, keep: int = 3, listed: bool = True
) -> Judgement:
    """Compare a result with the exact values elementwise; ``got`` must already have ``exact``'s shape.

    ``exact``: an object array of exact values, or a ``ReferenceValue`` (from the fast path, judged
    with its float64 values and their bounds, and exactly wherever the bound leaves the verdict open).
    ``listed``: False leaves the fast path's ``ulps`` empty, its ``errors`` array alone holding the errors
    (the float32 sweep's millions of elements, never wanted as Python floats), and its median NaN (not computed).
    """
    if isinstance(exact, ReferenceValue):
        if exact.approx is not None:
            return _judge_fast(np.asarray(got, dtype=np.float64), exact, fmt, tolerance, keep, listed)
        exact = exact.exact
    errors = []
    failing = floor_accepted = 0
    for index, want in np.ndenumerate(exact):
        value = float(got[index])
        error = ulp_error(value, want, fmt)
        ok = _within(value, want, error, tolerance, fmt)
        failing += not ok
        floor_accepted += ok and error > tolerance.max_ulp
        errors.append((not ok, error, index, value, want))
    ulps = tuple(e[1] for e in errors)
    # failing elements first, then the largest errors; ties broken by position so the order is stable
    errors.sort(key=lambda e: (not e[0], -e[1] if not math.isnan(e[1]) else 0, e[2]))
    max_ulp = max((e[1] for e in errors), default=0.0)
    shown = [e for e in errors if e[0]] if failing else errors
    worst = [ElementError(index, value, want, error) for _, error, index, value, want in shown[:keep]]
    missing = np.array([e[0] for e in sorted(errors, key=lambda e: e[2])], dtype=bool).reshape(np.shape(exact))
    return Judgement(failing == 0, max_ulp, worst, floor_accepted, _median(list(ulps)), ulps, missing)


def exact_ulps(
    rounded: np.ndarray, approx: np.ndarray, slack: np.ndarray, fmt: FloatFormat, under: np.ndarray | float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ULP of ``fmt`` at each exact value, bounded from its correct rounding: (smallest, largest) candidate.

    An exact value and its correct rounding R lie in the same binade unless |R| is a power of two 2^k
    above the subnormal range and the exact value is just below it (it rounded up to 2^k): then its ULP
    is half of R's. Which one it is, the float64 interval ``approx`` ± ``slack`` (holding the exact
    value) settles unless it contains 2^k; there both candidates are returned, unless ``under``, a strict
    upper bound on each exact magnitude that the formula gives (a scalar or per element: |σ(x) - y| <
    max(y, 1 - y) for a gradient, ``reference.gradient_under``), is at most 2^k (σ(40) - 0 rounds up to 1
    from below, however close the float64 interval). Exact, not estimated:
    R is a value of ``fmt`` and its ULP a power of two. Where R is ±inf (or NaN), the ULPs at the
    interval's ends."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(rounded)
        magnitude = np.abs(np.where(finite, rounded, 0.0))
        ulp = fast_reference.ulp_of(magnitude, fmt)
        mantissa, _ = np.frexp(magnitude)
        power = (mantissa == 0.5) & (magnitude > fmt.smallest_normal)
        a = np.abs(approx)
        above = (a - slack) * (1 - 4 * fast_reference.U) >= magnitude  # every |x| in the interval >= 2^k
        below = (a + slack) * (1 + 4 * fast_reference.U) < magnitude  # every |x| < 2^k
        if under is not None:
            below |= magnitude >= under
        smallest = np.where(power & ~above, ulp / 2, ulp)
        largest = np.where(power & below, ulp / 2, ulp)
        # a rounding that overflowed to ±inf says only that the exact value is past the largest finite
        # value: the interval's ends give the ULPs (ulp_of grows with the magnitude)
        low_end = np.maximum((a - slack) * (1 - 4 * fast_reference.U), 0.0)
        high_end = (a + slack) * (1 + 4 * fast_reference.U)
        smallest = np.where(finite, smallest, fast_reference.ulp_of(low_end, fmt))
        largest = np.where(finite, largest, fast_reference.ulp_of(high_end, fmt))
    return smallest, largest


def judged_slack(bound):
    """|exact - approx| <= slack, for a float64 ``approx`` within ``bound`` of the exact value: the bound's own
    rounding, and one more ``ABSOLUTE`` for any rounding of float64 subnormals below."""
    return bound * (1 + 8 * fast_reference.U) + 2 * fast_reference.ABSOLUTE


def interval_judgement(got, approx, slack, smallest_ulp, largest_ulp, max_ulp, abs_floor):
    """The fast path's verdict rule, elementwise: (error, ok, decided, floor_accepted) of results ``got`` against
    exact values within ``slack`` of ``approx``, whose ULP lies in [smallest_ulp, largest_ulp] (``exact_ulps``).
    |got - exact| / ULP lies in an interval [low, high]; the verdict is ``decided`` where that interval settles
    it (the tolerance, and the absolute floor) and is at most 2^-20 ULP wide (or 2^-20 of its lower end, when
    that is larger: a clamped result billions of ULPs off needs no mpmath to be measured), and the error is
    then |got - approx| / ULP, inside the interval. Written once for numpy arrays and for scalars, so that the
    float32 sweep's compiled judge (``sweep_kernel.judged``, numba) applies this same rule: arithmetic,
    comparisons, ``&``, ``|`` and numpy's ufuncs alone (no ``~``, which is no logical not on a Python bool)."""
    u = fast_reference.U
    distance = np.abs(got - approx)  # within a relative u of |got - approx|
    # |got - exact| lies in [distance_low, distance_high], each rounding accounted for
    distance_high = (distance * (1 + 4 * u) + slack) * (1 + 4 * u)
    distance_low = np.maximum((distance * (1 - 2 * u) - slack * (1 + 2 * u)) * (1 - 2 * u), 0.0)
    low, high = distance_low / largest_ulp, distance_high / smallest_ulp  # exact: powers of two
    error = distance / largest_ulp
    # at max_ulp 0.5 an error of exactly 0.5 is a tie or the float below an exact power of two: judged exactly
    within_ulps = high < max_ulp if max_ulp == 0.5 else high <= max_ulp
    beyond_ulps = low > max_ulp
    within_floor = distance_high <= abs_floor
    beyond_floor = distance_low > abs_floor
    usable = np.isfinite(approx) & np.isfinite(got) & np.isfinite(smallest_ulp) & np.isfinite(largest_ulp)
    decided = usable & (within_ulps | beyond_ulps & (within_floor | beyond_floor))
    decided = decided & (high - low <= 2.0**-20 * (1.0 + low))
    ok = within_ulps | (beyond_ulps & within_floor)
    floor = decided & np.logical_not(within_ulps) & within_floor
    return error, ok, decided, floor


def _judge_fast(
    got: np.ndarray, ref: ReferenceValue, fmt: FloatFormat, tolerance: Tolerance, keep: int, listed: bool = True
) -> Judgement:
    """``judge`` on the fast path, in float64 with rigorous bounds: each element's exact value lies within
    ``slack`` of its float64 value, and the ULP at it is that of its correct rounding, or half of it
    just below a power of two (``exact_ulps``), so |got - exact| / ULP lies in an interval, which decides
    the element where it can (``interval_judgement``). An element whose verdict the interval leaves open (an
    error on the tolerance itself, a cancelling gradient), whose exact value the fast path did not give (a
    special value, an unsettled rounding) or whose result is not finite is judged exactly, with its exact
    value from mpmath."""
    approx, bound, rounded = ref.approx, ref.bound, ref.rounded
    with np.errstate(invalid="ignore", over="ignore"):
        slack = judged_slack(bound)
        smallest_ulp, largest_ulp = exact_ulps(rounded, approx, slack, fmt, ref.under)
        error, ok, decided, floor = interval_judgement(
            got, approx, slack, smallest_ulp, largest_ulp, tolerance.max_ulp, tolerance.abs_floor
        )
    errors = np.where(decided, error, 0.0)
    # a result that is not finite, or a NaN exact value: the correct rounding settles it (as ulp_error
    # does). Not a finite result against a rounding to ±inf: the exact value may be finite (it overflows
    # the dtype), and then ulp_error measures the distance to it, as below. An approx of ±inf with a
    # zero bound is an exactly infinite value (fast_reference.Terms.infinite).
    special = ~decided & (~np.isfinite(got) | np.isnan(rounded) | (np.isinf(approx) & (bound == 0)))
    meets = np.where(np.isnan(got), np.isnan(rounded), got == rounded)
    errors = np.where(special, np.where(meets, 0.0, np.inf), errors)
    ok = np.where(special, meets, ok)
    exactly = ~decided & ~special
    if exactly.any():  # judged exactly, their exact values from mpmath at once
        wants = ref.exact_where(exactly)
        for index, want in zip(zip(*np.nonzero(exactly)), wants):
            value = float(got[index])
            errors[index] = ulp_error(value, want, fmt)
            ok[index] = _within(value, want, errors[index], tolerance, fmt)
            floor[index] = ok[index] and errors[index] > tolerance.max_ulp
    flat_ok, flat_errors = ok.ravel(), errors.ravel()
    # failing elements first, then the largest errors; ties broken by position so the order is stable
    failing = int((~flat_ok).sum())
    shown = _first_in_order(flat_ok, flat_errors, min(keep, failing) if failing else keep)
    worst = []
    for position in shown:
        index = np.unravel_index(position, errors.shape) if errors.shape else ()
        index = tuple(int(i) for i in index)
        worst.append(ElementError(index, float(got[index]), ref.exact_at(index), float(errors[index])))
    ulps = tuple(flat_errors.tolist()) if listed else ()
    max_ulp = float(flat_errors.max()) if flat_errors.size else 0.0
    median = _median_array(flat_errors) if listed else math.nan
    return Judgement(failing == 0, max_ulp, worst, int(floor.sum()), median, ulps, ~ok, flat_errors)


def _first_in_order(ok: np.ndarray, errors: np.ndarray, count: int) -> np.ndarray:
    """The positions of the first ``count`` elements in the order failing first, then the largest error (NaN
    as 0), then the position (``count`` is at most the failing elements' where any fail)."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    among = np.flatnonzero(~ok) if not ok.all() else np.arange(ok.size)
    return among[worst_first(np.nan_to_num(errors[among], nan=0.0), among, count)]


def worst_first(key: np.ndarray, tie: np.ndarray, count: int) -> np.ndarray:
    """The positions of the ``count`` largest ``key`` values, in that order, equal keys by the smaller ``tie``:
    the elements that could be among them (a partition), then those alone sorted."""
    if count <= 0 or key.size == 0:
        return np.zeros(0, dtype=np.int64)
    if count == 1 and not np.isnan(largest := key.max()):  # the largest alone: no partition, no sort
        tied = np.flatnonzero(key == largest)
        return tied[[np.argmin(tie[tied])]]
    chosen = np.arange(key.size)
    if key.size > 4 * count:
        threshold = np.partition(key, key.size - count)[key.size - count]
        chosen = np.flatnonzero(key >= threshold)
    return chosen[np.lexsort((tie[chosen], -key[chosen]))][:count]


@dataclass(frozen=True)
class Conditioning:
    """How a result's elements past the tolerance compare with their condition-aware bounds."""

    within: bool  # every element past the tolerance is within k × its bound: the result is `conditioned`
    beyond: int  # elements past the tolerance beyond k × their bound (or with no bound known)
    missing: int  # elements past the tolerance
    ratio: float  # the largest error over bound among them (NaN where a bound is not known)
    condition: float  # the largest condition number among them
    bounds: np.ndarray  # per element, the bound in ULPs (NaN where not known)
    conditions: np.ndarray  # per element, the condition number
    beyond_elements: np.ndarray | None = None  # bool per element: past the tolerance and beyond k × its bound
    errors: np.ndarray | None = None  # per element, the error (or a relation's distance) in ULPs


def judge_conditioning(judgement: Judgement, bounds: np.ndarray, conditions: np.ndarray, tolerance: Tolerance) -> Conditioning:
    """``conditioning_of`` a judged result: its elements that miss the tolerance and their errors."""
    errors = np.asarray(judgement.ulps, dtype=np.float64).reshape(np.shape(judgement.missing))
    return conditioning_of(judgement.missing, errors, bounds, conditions, tolerance)


def conditioning_of(
    missing: np.ndarray, errors: np.ndarray, bounds: np.ndarray, conditions: np.ndarray, tolerance: Tolerance
) -> Conditioning:
    """The rule of the `conditioned` verdict (a relation's too, its distances as the errors): each element that misses the tolerance must have an error of at
    most ``tolerance.condition_factor`` (k) times its condition-aware bound in ULPs (conformance.conditioning:
    the error of an ideal implementation that rounds its inputs and output and computes exactly in between).
    An element with no bound known, or an error that is not finite (an infinity or NaN where the exact
    value is finite, or the reverse), is beyond it, unless its bound is infinite too (the inputs' box reaches
    a pole: an infinite result is what an ideal implementation may return)."""
    missing = np.asarray(missing, dtype=bool)
    errors = np.asarray(errors, dtype=np.float64)
    bounds = np.asarray(bounds, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        within = (errors <= tolerance.condition_factor * bounds) & ~np.isnan(errors)
        ratio = np.where(np.isfinite(errors), errors / bounds, np.where(np.isinf(bounds), 0.0, np.inf))
        ratio = np.where(np.isnan(bounds), np.inf, ratio)
    beyond = missing & ~within
    count = int(missing.sum())
    worst_ratio = float(np.nanmax(np.where(missing, ratio, -np.inf))) if count else 0.0
    worst_condition = float(np.nanmax(np.where(missing, conditions, -np.inf))) if count and not np.isnan(conditions[missing]).all() else math.nan
    return Conditioning(
        within=count > 0 and not beyond.any(), beyond=int(beyond.sum()), missing=count, ratio=worst_ratio,
        condition=worst_condition, bounds=bounds, conditions=np.asarray(conditions, dtype=np.float64),
        beyond_elements=beyond, errors=errors,
    )


def _median_array(values: np.ndarray) -> float:
    """``_median`` of an array (NaN counts as inf), by a partial sort."""
    ordered = np.where(np.isnan(values), np.inf, values)
    n = ordered.size
    if not n:
        return 0.0
    middle = n // 2
    if n % 2:
        return float(np.partition(ordered, middle)[middle])
    low, high = np.partition(ordered, (middle - 1, middle))[middle - 1 : middle + 1]
    return float((low + high) / 2)


EXPECT_TOLERANCE_KEYS = ("rtol", "atol")  # the tolerance a `{value: ..., rtol: ..., atol: ...}` literal carries


def expectation_holds(literal: str | float | dict, exact: mpmath.mpf, fmt: FloatFormat) -> bool:
    """Whether a literal from a case's `expect` states the exact value (``expectation_problem`` says why not)."""
    return expectation_problem(literal, exact, fmt) is None


def expectation_problem(literal: str | float | dict, exact: mpmath.mpf, fmt: FloatFormat) -> str | None:
    """Why a literal from a case's `expect` does not state the exact value ``exact``, or None where it does.

    The rule (README, "Adding a case"; the schema's `expect`):

    - a decimal literal with d significant digits holds when it is the exact value rounded to d digits,
      that is, within half a unit of its last digit of the exact value (either neighbour on an exact tie),
      or when it is a shortest decimal that reads back as the correctly rounded ``fmt`` value (its repr:
      ``0.8000068`` for a float32 mean);
    - a hexadecimal literal names one value: it holds when it is the correctly rounded value;
    - ``{value: V, rtol: R, atol: A}`` (either or both of rtol and atol) carries its own tolerance: it
      holds when |V - exact| <= A + R·|exact|, V read exactly, as peers' tests state values (numpy's
      ``isclose`` rule, with the exact value as the reference);
    - inf, -inf and nan hold for the same special exact value only.
    """
    if isinstance(literal, dict):
        return _within_own_tolerance(literal, exact)
    text = _literal_text(literal)
    value = parse_hex_or_decimal(text)
    if isinstance(value, float) and value == 0:  # ±0.0: a number like any other here (the sign of a zero is not a digit)
        value = Fraction(0)
    if isinstance(value, float):  # ±inf, NaN
        if math.isnan(value) and mpmath.isnan(exact) or not math.isnan(value) and exact == value:
            return None
        return _contradiction(text, exact, fmt, "inf, -inf and nan hold for the same special exact value only")
    if not mpmath.isfinite(exact):
        return _contradiction(text, exact, fmt, "a finite literal never states an infinite or NaN exact value")
    rounded = round_to_format(exact, fmt)
    names_rounded = round_to_format(value, fmt) == rounded
    if "x" in text.lower():
        if names_rounded:
            return None
        return _contradiction(text, exact, fmt, f"a hexadecimal literal holds when it is the correctly rounded value ({to_hex(rounded)})")
    written = decimal.Decimal(text.strip())
    shortest = _shortest_repr(rounded, fmt)
    if names_rounded and _significant_digits(written) <= _significant_digits(decimal.Decimal(shortest)):
        return None
    half_unit = mpmath.mpf(10) ** written.as_tuple().exponent / 2
    with mpmath.workprec(512):
        if abs(mpmath.mpf(value.numerator) / value.denominator - exact) <= half_unit:
            return None
        digits = len(written.as_tuple().digits)  # as written: trailing zeros are digits the literal claims
        at_digits = _rounded_to_place(exact, written.as_tuple().exponent)
    return _contradiction(
        text, exact, fmt,
        f"a decimal literal with {digits} significant digit{'s' if digits != 1 else ''} holds when it is the exact value "
        f"rounded to {'them' if digits != 1 else 'it'} ({at_digits}), or the shortest repr of the correctly rounded "
        f"{fmt.name} value ({shortest}); a hexadecimal literal when it is that value ({to_hex(rounded)}); a literal with a "
        f"tolerance of its own is written {{value: {text}, rtol: R, atol: A}}",
    )


def expectation_mismatch(literal: Any, exact: np.ndarray, fmt: FloatFormat) -> str | None:
    """Why a case's `expect` literal for one reduction (a number, a nested list for `none`, or the
    ``{value, rtol, atol}`` form of either) does not state the exact values ``exact``; None where it does."""
    own = {key: literal[key] for key in EXPECT_TOLERANCE_KEYS if key in literal} if isinstance(literal, dict) else None
    literals = np.asarray(literal["value"] if own is not None else literal, dtype=object)
    if literals.shape != exact.shape:
        return f"has shape {literals.shape}, the result has {exact.shape}"
    for index, want in np.ndenumerate(exact):
        problem = expectation_problem(literals[index] if own is None else {"value": literals[index], **own}, want, fmt)
        if problem is not None:
            return f"at {list(index)}: {problem}" if index else problem
    return None


def _literal_text(literal: str | float) -> str:
    """A literal as text: a string as written, a YAML integer in its digits, a YAML float as Python's repr
    (the shortest decimal that reads back as it: the float64 the file names)."""
    if isinstance(literal, str):
        return literal
    return str(literal) if isinstance(literal, int) and not isinstance(literal, bool) else repr(float(literal))


def _within_own_tolerance(literal: dict, exact: mpmath.mpf) -> str | None:
    """The ``{value, rtol, atol}`` form: |value - exact| <= atol + rtol·|exact|, exactly."""
    text = _literal_text(literal["value"])
    value = parse_hex_or_decimal(text)
    if isinstance(value, float) and value == 0:
        value = Fraction(0)
    rtol, atol = (literal.get(key, 0) for key in EXPECT_TOLERANCE_KEYS)
    stated = ", ".join(f"{key} {literal[key]}" for key in EXPECT_TOLERANCE_KEYS if key in literal)
    if isinstance(value, float) or not mpmath.isfinite(exact):  # a special value meets only itself
        if isinstance(value, float) and (math.isnan(value) and mpmath.isnan(exact) or not math.isnan(value) and exact == value):
            return None
        return f"{text} ({stated}) contradicts the exact value {exact_decimal(exact)}: inf, -inf and nan hold for the same special exact value only"
    with mpmath.workprec(512):
        distance = abs(mpmath.mpf(value.numerator) / value.denominator - exact)
        allowed = mpmath.mpf(atol) + mpmath.mpf(rtol) * abs(exact)  # rtol and atol are float64 values: exact in mpf
        if distance <= allowed:
            return None
        return (
            f"{text} ({stated}) contradicts the exact value {exact_decimal(exact)}: it is {mpmath.nstr(distance, 3)} from it, "
            f"beyond atol + rtol·|exact| = {mpmath.nstr(allowed, 3)}"
        )


def _contradiction(text: str, exact: mpmath.mpf, fmt: FloatFormat, rule: str) -> str:
    return f"{text} contradicts the exact {fmt.name} value {exact_decimal(exact)}: {rule}"


def exact_decimal(value: mpmath.mpf) -> str:
    """An exact value for a message: 20 significant digits, or inf / -inf / nan."""
    if mpmath.isnan(value):
        return "nan"
    if mpmath.isinf(value):
        return "inf" if value > 0 else "-inf"
    return mpmath.nstr(value, 20, min_fixed=-4, max_fixed=8)


def _rounded_to_place(exact: mpmath.mpf, exponent: int) -> str:
    """The exact value rounded (half to even) to a multiple of 10**exponent, written with that last place."""
    digits = mpmath.nstr(exact, 60, strip_zeros=False, min_fixed=1, max_fixed=0)  # 60 digits: beyond any literal's 40
    return str(decimal.Decimal(digits).quantize(decimal.Decimal(1).scaleb(exponent), rounding=decimal.ROUND_HALF_EVEN))


def _significant_digits(number: decimal.Decimal) -> int:
    return len(number.normalize().as_tuple().digits)  # trailing zeros say nothing


def _shortest_repr(value: float, fmt: FloatFormat) -> str:
    """The shortest decimal string that reads back as ``value`` in ``fmt`` (numpy's / ml_dtypes' repr)."""
    return str(fmt.numpy_dtype.type(value))
