"""The float32 sweep's reference at the targets y in {0, 1}, compiled by numba: one loop over the logits that
evaluates the loss and its gradient at both targets in float64, each with a rigorous bound, and rounds each
to float32 where the bound settles it, in one pass (the numpy form of the same took a dozen passes over
float64 temporaries: the sweep's largest cost after the framework's own calls).

The formulas, with t = x (y = 0) or -x (y = 1), so that |t| = |x| and one e = e^-|x|, one log1p(e) and one
1 + e serve both targets and both quantities (no weight, pos_weight or label smoothing):

- loss: softplus(t) = max(t, 0) + log1p(e), a sum of non-negative terms: ≤ 2E + 3u relative (``_softplus`` of
  ``fast_reference``), one u more for a subnormal sum;
- gradient in x: σ(x) - y = s·σ(t), s = 1 - 2y, with σ(t) = e^min(t, 0) / (1 + e) (e^min(t, 0) is e where
  t < 0, exp(0) = 1 otherwise): ≤ 2E + 2u relative, one u more for a subnormal quotient;

with E the error allowed to libm's exp and log1p (``fast_reference.E``: 16 ulps; glibc's, which numba's
``math.exp`` / ``math.log1p`` call, are listed within 1-2 ulps on x86_64: the glibc manual, "Known Maximum
Errors in Math Functions") and ``ABSOLUTE`` for float64 underflow. An element is settled where both ends of
its interval, widened by ``SETTLE`` for the rounding of the bound itself, round to the same float32 (the
hardware's cast). The loop runs on numba's threads, a block at a time, and each thread first probes that its
casts round as IEEE 754 says (a framework may set flush-to-zero or denormals-are-zero, per thread); where a
probe fails, or ``fast_reference._casts_round_correctly`` in the calling thread, the exact integer rounding of
the same terms is taken instead. Unsettled elements come back NaN (every logit here is finite, so no
reference is NaN) for the mpmath path to decide. The results are the correct roundings, so they do not depend on numba,
libm or numpy: tests/test_sweep.py checks them against mpmath on the hard places of float32.

numba compiles the loop on its first call in a process (about a second; cached on disk after that)."""

from __future__ import annotations

import math

import numba
import numpy as np

from conformance import fast_reference, verdicts
from conformance.fast_reference import ABSOLUTE, FLOAT32, E, Terms, U

BINARY_TARGETS = (0.0, 1.0)
# the kernel's order of the (target, gradient) pairs: its output's rows
KEYS = ((0.0, False), (0.0, True), (1.0, False), (1.0, True))
VALUE_BOUND = 2 * E + 4 * U  # relative, the loss
GRADIENT_BOUND = 2 * E + 3 * U  # relative, the gradient
SETTLE = 1 + 8 * U  # the bound's own rounding
THREAD_BLOCK = 1 << 16  # logits a thread takes at a time
# the casts' probes: fast_reference's float64 -> float32 ones, and subnormal float32 -> float64 ones, with the
# values IEEE 754 rounding gives
_PROBES = (
    fast_reference.CAST_PROBE,
    fast_reference.CAST_WANT,
    np.array([2.0**-149, -(2.0**-130)], dtype=np.float32),
    np.array([2.0**-149, -(2.0**-130)], dtype=np.float64),
)
EXP_UNDERFLOW = 746.0  # exp(-x) rounds to 0 in float64 for x > 1075·ln 2 = 745.13
# the compiled judge's flags per element: past the tolerance, within it through the absolute floor, left open by
# the interval (judged by ``verdicts.judge``'s exact path instead), its error near a histogram edge
MISSED, FLOOR, OPEN, NEAR_EDGE = 1, 2, 4, 8
EMIN, QUANTUM_SHIFT = FLOAT32.emin, FLOAT32.precision - 1  # float32's binades, for the ULP at a rounding
SMALLEST_NORMAL, SMALLEST_SUBNORMAL = FLOAT32.smallest_normal, FLOAT32.smallest_subnormal

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always")
def _exponentials(x: float) -> tuple[float, float]:
    """e = e^-|x| and log1p(e), the libm calls that the four magnitudes share."""
    magnitude = abs(x)
    # past 746, e^-|x| < 2^-1075 and exp returns 0: taken so here, as libm's exp takes its slow underflow path
    e = math.exp(-magnitude) if magnitude < EXP_UNDERFLOW else 0.0
    return e, math.log1p(e)


@numba.njit(inline="always")
def _from_exponentials(x: float, e: float, log1p_e: float) -> tuple[float, float, float, float]:
    """|loss| and |gradient| at each target, in ``KEYS`` order: softplus(x), σ(x), softplus(-x), σ(-x)."""
    denominator = 1.0 + e
    return (
        max(x, 0.0) + log1p_e,
        (e if x < 0.0 else 1.0) / denominator,
        max(-x, 0.0) + log1p_e,
        (e if x > 0.0 else 1.0) / denominator,
    )


@numba.njit(inline="always")
def _magnitudes(x: float) -> tuple[float, float, float, float]:
    e, log1p_e = _exponentials(x)
    return _from_exponentials(x, e, log1p_e)


@numba.njit(inline="always")
def _bound(magnitude: float, gradient: bool) -> float:
    return magnitude * (GRADIENT_BOUND if gradient else VALUE_BOUND) + ABSOLUTE


@numba.njit(inline="always")
def _settle(magnitude: float, gradient: bool) -> np.float32:
    """The float32 rounding of the exact value, non-negative and within ``_bound`` of ``magnitude``: both ends of
    the interval (widened by ``SETTLE``) rounded by the hardware's cast, NaN where they differ."""
    widened = _bound(magnitude, gradient) * SETTLE + ABSOLUTE
    high = np.float32(magnitude + widened)
    low = np.float32(max(magnitude - widened, 0.0))
    return low if low == high else np.float32(np.nan)


@numba.njit(inline="always")
def _casts_fail(probe64, want32, probe32, want64) -> bool:
    """Whether this thread's casts do not round as IEEE 754 says (flush-to-zero, denormals-are-zero): the probes
    are arrays, so that the compiler cannot fold the casts away."""
    for i in range(probe64.size):
        if np.float32(probe64[i]) != want32[i]:
            return True
    for i in range(probe32.size):
        if np.float64(probe32[i]) != want64[i]:
            return True
    return False


@_jit
def _terms(x, row, approx, bound):
    gradient, sign = row % 2 == 1, -1.0 if row == 3 else 1.0  # σ(x) - 1 at y = 1 is negative; the rest positive
    for i in range(x.size):
        magnitude = _magnitudes(np.float64(x[i]))[row]
        approx[i] = sign * magnitude
        bound[i] = _bound(magnitude, gradient)


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _roundings(x, out, faults, probe64, want32, probe32, want64):
    """out[:, i]: the float32 roundings of the four ``KEYS`` at x[i], NaN where the interval does not settle one;
    in blocks over the threads, each block's thread probing its casts first (faults[block]). Per block, the libm
    calls first, then the arithmetic and the casts in a loop of their own, which the compiler vectorises."""
    for block in numba.prange(faults.size):
        faults[block] = _casts_fail(probe64, want32, probe32, want64)
        low, high = block * THREAD_BLOCK, min(x.size, (block + 1) * THREAD_BLOCK)
        logits = x[low:high]
        exponentials, logs = np.empty(logits.size), np.empty(logits.size)
        for i in range(logits.size):
            exponentials[i], logs[i] = _exponentials(np.float64(logits[i]))
        value_0, gradient_0, value_1, gradient_1 = out[0, low:high], out[1, low:high], out[2, low:high], out[3, low:high]
        for i in range(logits.size):
            magnitudes = _from_exponentials(np.float64(logits[i]), exponentials[i], logs[i])
            value_0[i] = _settle(magnitudes[0], False)
            gradient_0[i] = _settle(magnitudes[1], True)
            value_1[i] = _settle(magnitudes[2], False)
            gradient_1[i] = -_settle(magnitudes[3], True)


def _row(target: float, gradient: bool) -> int:
    if target not in BINARY_TARGETS:
        raise ValueError(f"sweep_kernel: target {target!r} is not 0 or 1")
    return KEYS.index((float(target), bool(gradient)))


def terms(x: np.ndarray, target: float, gradient: bool) -> Terms:
    """The float64 terms of the loss (or gradient) at one target, as the general fast path gives them
    (``fast_reference.Terms``): one sign and no fallback throughout, as read-only views of one value."""
    row = _row(target, gradient)
    x = np.ascontiguousarray(x, dtype=np.float32)
    approx, bound = np.empty(x.size), np.empty(x.size)
    _terms(x, row, approx, bound)
    sign = np.broadcast_to(np.int8(-1 if row == 3 else 1), x.shape)
    return Terms(approx.reshape(x.shape), bound.reshape(x.shape), np.broadcast_to(False, x.shape), sign)


def roundings(x: np.ndarray, keys: list[tuple[float, bool]]) -> np.ndarray:
    """The correctly rounded float32 reference of each (target, gradient) of ``keys`` at each logit (float32, 1-d),
    one row per key; NaN where the float64 interval does not settle the rounding (left to mpmath). The compiled
    loop runs on numba's threads (``numba.set_num_threads``: one per core unless set)."""
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    rows = [_row(target, gradient) for target, gradient in keys]
    out = np.empty((len(KEYS), x.size), dtype=np.float32)
    faults = np.zeros(-(-x.size // THREAD_BLOCK), dtype=np.bool_)
    if fast_reference._casts_round_correctly():
        _roundings(x, out, faults, *_PROBES)
    if not fast_reference._casts_round_correctly() or faults.any():  # flush-to-zero: the exact integer rounding
        for row in rows:
            rounded, unsettled = fast_reference.settle(terms(x, *KEYS[row]), FLOAT32)
            out[row] = np.where(unsettled, np.nan, rounded)
    return out if rows == list(range(len(KEYS))) else out[rows]  # (a copy only where fewer are asked)


@numba.njit(inline="always")
def _differs(a, b) -> bool:
    """a is not b, NaN matching NaN: without branches, so that the compiler vectorises the loops."""
    return (a != b) & (not math.isnan(a) or not math.isnan(b))


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _differing_counts(got, want, counts):
    for block in numba.prange(counts.size):
        low, high = block * THREAD_BLOCK, min(got.size, (block + 1) * THREAD_BLOCK)
        got_block, want_block = got[low:high], want[low:high]
        count = 0
        for i in range(got_block.size):
            count += _differs(got_block[i], want_block[i])
        counts[block] = count


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _differing_fill(got, want, starts, out):
    for block in numba.prange(starts.size - 1):
        filled = starts[block]
        if filled == starts[block + 1]:
            continue
        for i in range(block * THREAD_BLOCK, min(got.size, (block + 1) * THREAD_BLOCK)):
            if _differs(got[i], want[i]):
                out[filled] = i
                filled += 1


def differing(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The indices, ascending, where ``got`` is not ``want`` (float32, 1-d, one shape; NaN matches NaN, 0 matches
    -0): compiled, on numba's threads, in two passes over blocks: each block's count, then the indices of the
    blocks that have any into an array of their total (no chunk-sized buffer, whose varying use would leave the
    heap holes that later chunks fault in afresh)."""
    got, want = np.ascontiguousarray(got).ravel(), np.ascontiguousarray(want).ravel()
    counts = np.zeros(-(-got.size // THREAD_BLOCK), dtype=np.intp)
    _differing_counts(got, want, counts)
    starts = np.zeros(counts.size + 1, dtype=np.intp)
    np.cumsum(counts, out=starts[1:])
    out = np.empty(int(starts[-1]), dtype=np.intp)
    if out.size:
        _differing_fill(got, want, starts, out)
    return out


# the verdict rule itself, written once in verdicts for arrays and scalars, compiled here for scalars
_interval_judgement = numba.njit(inline="always")(verdicts.interval_judgement)
_judged_slack = numba.njit(inline="always")(verdicts.judged_slack)


@numba.njit(inline="always")
def _ulp_bracket(rounded: float, magnitude: float, slack: float, under: float) -> tuple[float, float]:
    """``verdicts.exact_ulps`` at one element whose correct rounding to float32 is the finite ``rounded``, its
    float64 value ±``magnitude`` within ``slack`` of the exact value, ``under`` a strict upper bound on the exact
    magnitude (inf: none): the (smallest, largest) ULP at the exact value, half the rounding's just below a power
    of two that the interval does not rule out."""
    ulp_magnitude = abs(rounded)
    if ulp_magnitude == 0.0:
        return SMALLEST_SUBNORMAL, SMALLEST_SUBNORMAL
    mantissa, exponent = math.frexp(ulp_magnitude)  # |rounded| in [2^(exponent-1), 2^exponent)
    ulp = math.ldexp(1.0, max(exponent - 1, EMIN) - QUANTUM_SHIFT)
    power = mantissa == 0.5 and ulp_magnitude > SMALLEST_NORMAL
    above = (magnitude - slack) * (1 - 4 * U) >= ulp_magnitude
    below = (magnitude + slack) * (1 + 4 * U) < ulp_magnitude or ulp_magnitude >= under
    return (ulp / 2 if power and not above else ulp), (ulp / 2 if power and below else ulp)


@numba.njit(inline="always")
def _slot(error: float, edges) -> int:
    """The histogram bin of an error: ``np.searchsorted(edges, error, side="left")``."""
    slot = 0
    while slot < edges.size and edges[slot] < error:
        slot += 1
    return slot


@numba.njit(cache=True, nogil=True, error_model="numpy", parallel=True)
def _judged(x, got, rounded, open_, row, max_ulp, abs_floor, edges, edge_slack, errors, flags, faults, probes):
    gradient, sign = row % 2 == 1, -1.0 if row == 3 else 1.0
    under = 1.0 if gradient else np.inf  # |σ(x) - y| < max(y, 1 - y) = 1 (``reference.gradient_under``)
    probe64, want32, probe32, want64 = probes
    for block in numba.prange(faults.size):
        faults[block] = _casts_fail(probe64, want32, probe32, want64)
        for i in range(block * THREAD_BLOCK, min(x.size, (block + 1) * THREAD_BLOCK)):
            magnitude = _magnitudes(np.float64(x[i]))[row]
            slack = _judged_slack(_bound(magnitude, gradient))
            reference = np.float64(rounded[i])
            value = np.float64(got[i])
            error, ok, decided, floor = np.nan, False, False, False
            if math.isfinite(reference) and not open_[i]:
                smallest, largest = _ulp_bracket(reference, magnitude, slack, under)
                error, ok, decided, floor = _interval_judgement(
                    value, sign * magnitude, slack, smallest, largest, max_ulp, abs_floor
                )
            if not decided:
                errors[i], flags[i] = np.nan, OPEN
                continue
            errors[i] = error
            flag = (0 if ok else MISSED) | (FLOOR if floor else 0)
            if _slot(error * (1 - edge_slack), edges) != _slot(error * (1 + edge_slack), edges):
                flag |= NEAR_EDGE
            flags[i] = flag


def judged(
    x: np.ndarray,
    got: np.ndarray,
    rounded: np.ndarray,
    open_: np.ndarray,
    target: float,
    gradient: bool,
    tolerance,
    edges: np.ndarray,
    edge_slack: float,
) -> tuple[np.ndarray, np.ndarray]:
    """``verdicts.judge``'s fast path at a target 0 or 1, compiled: each result ``got`` (float32, 1-d) at the logit
    ``x`` against the correct rounding ``rounded`` of the exact value, its float64 value and bound evaluated
    again here (as ``terms``). Returns each element's error in ULPs (NaN where left open), its flags (``MISSED``,
    ``FLOOR``, ``OPEN``, ``NEAR_EDGE``: within ``edge_slack``, relative, of one of the histogram's ``edges``).
    ``OPEN`` elements, those ``open_`` asks for (their exact values mpmath already
    gave) and those whose verdict the interval does not decide, are for ``verdicts.judge`` to judge; so is every
    element where a thread's casts (or the calling thread's) do not round as IEEE 754 says (as ``roundings``)."""
    x = np.ascontiguousarray(x, dtype=np.float32).ravel()
    size = x.size
    if not fast_reference._casts_round_correctly():
        return _left_open(size)
    errors, flags = np.empty(size), np.empty(size, dtype=np.int8)
    faults = np.zeros(-(-size // THREAD_BLOCK), dtype=np.bool_)
    _judged(
        x,
        np.ascontiguousarray(got, dtype=np.float32).ravel(),
        np.ascontiguousarray(rounded, dtype=np.float32).ravel(),
        np.ascontiguousarray(open_, dtype=np.bool_).ravel(),
        _row(target, gradient),
        float(tolerance.max_ulp),
        float(tolerance.abs_floor),
        np.asarray(edges, dtype=np.float64),
        float(edge_slack),
        errors,
        flags,
        faults,
        _PROBES,
    )
    if faults.any():  # flush-to-zero in a thread: every element judged by verdicts.judge
        return _left_open(size)
    return errors, flags


def _left_open(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(size, np.nan), np.full(size, OPEN, dtype=np.int8)


@_jit
def _tally(errors, missing, bits, where, edges, histogram, binade_max, binade_missed, region_missed, region_worst,
           region_bits, worst):
    kept = 0
    worst_key = np.empty(worst.size)
    for i in range(errors.size):
        error = errors[i]
        key = np.inf if math.isnan(error) else error  # a NaN error is the worst
        histogram[edges.size if math.isnan(error) else _slot(error, edges)] += 1
        binade = (bits[i] >> 23) - (bits[i] >> 31)  # sign · 255 + biased exponent (0: subnormals and zero)
        region = where[i]
        binade_max[binade] = max(binade_max[binade], key)
        if missing[i]:
            binade_missed[binade] += 1
            region_missed[region] += 1
        if key > region_worst[region]:  # the first of the largest: the patterns ascend
            region_worst[region], region_bits[region] = key, bits[i]
        place = kept  # after every kept one at least as bad: equal errors stay in pattern order
        while place > 0 and worst_key[place - 1] < key:
            place -= 1
        if place < worst.size:
            for j in range(min(kept, worst.size - 1), place, -1):
                worst[j], worst_key[j] = worst[j - 1], worst_key[j - 1]
            worst[place], worst_key[place] = i, key
            kept = min(kept + 1, worst.size)
    return kept


def tally(
    errors: np.ndarray,
    missing: np.ndarray,
    bits: np.ndarray,
    where: np.ndarray,
    edges: np.ndarray,
    histogram: np.ndarray,
    binade_max: np.ndarray,
    binade_missed: np.ndarray,
    region_missed: np.ndarray,
    region_worst: np.ndarray,
    region_bits: np.ndarray,
    keep: int,
) -> np.ndarray:
    """A chunk's figures from its judged elements (ascending patterns ``bits``, their ``errors`` in ULPs, NaN the
    worst, which of them are ``missing`` and their regions ``where``), in one compiled pass, added in place: the
    ``histogram`` of the errors over the ``edges`` (``np.searchsorted``'s bins, NaN last), each binade's largest
    error and count missed, each region's count missed and its worst (error, pattern) where worse than
    ``region_worst``'s (the first of the largest). Returns the positions of the ``keep`` worst elements (error
    descending, pattern ascending: ``verdicts.worst_first``)."""
    worst = np.empty(keep, dtype=np.int64)
    kept = _tally(
        np.ascontiguousarray(errors, dtype=np.float64),
        np.ascontiguousarray(missing, dtype=np.bool_),
        np.ascontiguousarray(bits, dtype=np.uint32),
        np.ascontiguousarray(where),
        np.asarray(edges, dtype=np.float64),
        histogram,
        binade_max,
        binade_missed,
        region_missed,
        region_worst,
        region_bits,
        worst,
    )
    return worst[:kept]
