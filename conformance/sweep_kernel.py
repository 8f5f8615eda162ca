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

from conformance import fast_reference
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

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@numba.njit(inline="always")
def _magnitudes(x: float) -> tuple[float, float, float, float]:
    """|loss| and |gradient| at each target, in ``KEYS`` order: softplus(x), σ(x), softplus(-x), σ(-x)."""
    magnitude = abs(x)
    # past 746, e^-|x| < 2^-1075 and exp returns 0: taken so here, as libm's exp takes its slow underflow path
    e = math.exp(-magnitude) if magnitude < EXP_UNDERFLOW else 0.0
    log1p_e = math.log1p(e)
    denominator = 1.0 + e
    return (
        max(x, 0.0) + log1p_e,
        (e if x < 0.0 else 1.0) / denominator,
        max(-x, 0.0) + log1p_e,
        (e if x > 0.0 else 1.0) / denominator,
    )


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
    in blocks over the threads, each block's thread probing its casts first (faults[block])."""
    for block in numba.prange(faults.size):
        faults[block] = _casts_fail(probe64, want32, probe32, want64)
        for i in range(block * THREAD_BLOCK, min(x.size, (block + 1) * THREAD_BLOCK)):
            value_0, gradient_0, value_1, gradient_1 = _magnitudes(np.float64(x[i]))
            out[0, i] = _settle(value_0, False)
            out[1, i] = _settle(gradient_0, True)
            out[2, i] = _settle(value_1, False)
            out[3, i] = -_settle(gradient_1, True)


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


@_jit
def _differing(got, want, out):
    count = 0
    for i in range(got.size):
        if got[i] != want[i] and not (math.isnan(got[i]) and math.isnan(want[i])):
            out[count] = i
            count += 1
    return count


def differing(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The indices, ascending, where ``got`` is not ``want`` (float32, 1-d, one shape; NaN matches NaN, 0 matches
    -0): in one compiled pass, where numpy took five."""
    got, want = np.ascontiguousarray(got).ravel(), np.ascontiguousarray(want).ravel()
    out = np.empty(got.size, dtype=np.intp)  # its pages are touched only as far as it is filled
    return out[: _differing(got, want, out)].copy()
