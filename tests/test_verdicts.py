"""Tolerances, the elementwise judgement, and `expect` literals."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance.dtypes import FORMATS
from conformance.verdicts import Tolerance, default_tolerances, expectation_holds, judge, tolerance_for

F32, F64 = FORMATS["float32"], FORMATS["float64"]
TIGHT = Tolerance(max_ulp=1, abs_floor=0.0)


def mp(values):
    return np.array([mpmath.mpf(v) for v in values], dtype=object)


def test_tolerance_file_covers_every_dtype_with_the_smallest_normal_as_floor():
    tolerances = default_tolerances()
    assert set(tolerances) == set(FORMATS)
    for name, tolerance in tolerances.items():
        assert tolerance.max_ulp > 0
        assert tolerance.abs_floor == FORMATS[name].smallest_normal


def test_case_override_for_every_dtype_then_per_dtype():
    assert tolerance_for("float32", {"max_ulp": 10}) == Tolerance(10, FORMATS["float32"].smallest_normal)
    merged = tolerance_for("float32", {"max_ulp": 10, "float32": {"max_ulp": 2, "abs_floor": 1e-3}})
    assert merged == Tolerance(2, 1e-3)
    assert tolerance_for("float64", {"float32": {"max_ulp": 2}}) == default_tolerances()["float64"]


def test_within_and_beyond_ulp_tolerance():
    exact = mp([1.0])
    assert judge(np.array([1.0 + 2**-23]), exact, F32, TIGHT).passed  # 1 ULP
    verdict = judge(np.array([1.0 + 2**-22]), exact, F32, TIGHT)  # 2 ULP
    assert not verdict.passed and verdict.max_ulp == 2.0


def test_nan_meets_only_nan_and_inf_only_the_same_inf():
    assert judge(np.array([math.nan]), mp([math.nan]), F32, TIGHT).passed
    assert not judge(np.array([0.0]), mp([math.nan]), F32, TIGHT).passed
    assert not judge(np.array([math.nan]), mp([0.5]), F32, TIGHT).passed
    assert judge(np.array([math.inf]), mp([math.inf]), F32, TIGHT).passed
    assert not judge(np.array([-math.inf]), mp([math.inf]), F32, TIGHT).passed
    assert not judge(np.array([3.4e38]), mp([math.inf]), F32, TIGHT).passed


def test_absolute_floor_accepts_a_flushed_subnormal_only():
    exact = mp([2.0**-140])  # a float32 subnormal
    floor = Tolerance(max_ulp=1, abs_floor=F32.smallest_normal)
    verdict = judge(np.array([0.0]), exact, F32, floor)
    assert verdict.passed and verdict.floor_accepted == 1 and verdict.max_ulp == 2.0**9
    assert not judge(np.array([0.0]), mp([2.0**-100]), F32, floor).passed  # a normal number is not flushed


def test_worst_elements_failing_first_then_largest():
    got = np.array([1.0, 1.0 + 2**-20, 1.0 + 2**-21, math.nan])
    verdict = judge(got, mp([1.0, 1.0, 1.0, 1.0]), F32, TIGHT)
    assert [e.index for e in verdict.worst] == [(3,), (1,), (2,)]
    assert verdict.worst[0].ulp == math.inf and verdict.worst[1].ulp == 8.0


@pytest.mark.parametrize(
    "literal, holds",
    [
        ("0.80000682967651184", True),  # 17 digits of 0.800006829676511844...
        ("0.8000068296765118", True),  # Python's repr of the rounded float64
        ("0.80000683", True),  # fewer digits, still right to the last one written
        ("0.80000682967651185", False),  # wrong in the last digit
        ("0.8001", False),
        (0.8000068296765118, True),  # a YAML float: names the same float64
    ],
)
def test_expect_literals_agree_to_the_digits_written(literal, holds):
    with mpmath.workprec(200):
        exact = mpmath.mpf("0.80000682967651184481493695098914521630")
    assert expectation_holds(literal, exact, F64) is holds


def test_expect_special_literals():
    assert expectation_holds("inf", mpmath.inf, F64)
    assert not expectation_holds("inf", mpmath.mpf(1), F64)
    assert expectation_holds("nan", mpmath.nan, F64)
    assert expectation_holds("0x1.8p+1", mpmath.mpf(3), F64)
    assert expectation_holds("0x1.8p+1", mpmath.mpf(3) + mpmath.mpf(2) ** -60, F64)  # the rounded value
    assert not expectation_holds("0x1.8p+1", mpmath.mpf(3) + mpmath.mpf(2) ** -50, F64)


def test_float32_repr_literal():
    with mpmath.workprec(200):
        exact = mpmath.mpf("0.80000682553706109087")
    assert expectation_holds("0.80000682553706109", exact, F32)
    assert expectation_holds("0.8000068", exact, F32)  # float32 repr of the rounded value, and right to 7 digits


# The fast path's judgement (verdicts._judge_fast): decided in float64 from each element's bound where
# the bound decides it, exactly elsewhere, always as the exact judgement would.

F16 = FORMATS["float16"]


def fast_value(exact: list, fmt, relative_bound: float = 2.0**-45):
    """A fast-path ReferenceValue for the given exact values (mpf): approx their float64 rounding, bound
    ``relative_bound`` of it (0 for an exact float64), and a count of the elements asked of mpmath."""
    from conformance.dtypes import round_to_format
    from conformance.reference import ReferenceValue

    exact = np.array(exact, dtype=object)
    approx = np.array([float(v) for v in exact])
    bound = np.abs(approx) * relative_bound
    rounded = np.array([math.nan if mpmath.isnan(v) else round_to_format(v, fmt) for v in exact])
    asked = []

    def exact_where(mask):
        asked.append(int(mask.sum()))
        return exact[mask]

    value = ReferenceValue(
        rounded=rounded, approx=approx, bound=bound, exact_of=lambda: exact,
        exact_at=lambda index: exact[index], exact_where=exact_where,
    )
    return value, exact, asked


def assert_judged_alike(got, exact, fmt, tolerance, relative_bound=2.0**-45):
    from conformance.reference import ReferenceValue

    value, exact, asked = fast_value(exact, fmt, relative_bound)
    assert isinstance(value, ReferenceValue)
    a, b = judge(np.array(got, dtype=np.float64), value, fmt, tolerance), judge(np.array(got, dtype=np.float64), exact, fmt, tolerance)
    assert (a.passed, a.floor_accepted) == (b.passed, b.floor_accepted)
    assert np.allclose(a.ulps, b.ulps, rtol=2**-20, atol=2**-20, equal_nan=True), list(zip(a.ulps, b.ulps))
    assert [w.index for w in a.worst] == [w.index for w in b.worst]
    per_element = [judge(np.array([g]), exact[i : i + 1], fmt, tolerance).passed for i, g in enumerate(got)]
    per_element_fast = [judge(np.array([g]), fast_value(exact[i : i + 1], fmt, relative_bound)[0], fmt, tolerance).passed for i, g in enumerate(got)]
    assert per_element == per_element_fast
    return a, sum(asked)


def below(power: float, gap: float = 2.0**-60) -> mpmath.mpf:
    return mpmath.mpf(power) - mpmath.mpf(gap) * power


def above(power: float, gap: float = 2.0**-60) -> mpmath.mpf:
    return mpmath.mpf(power) + mpmath.mpf(gap) * power


@pytest.mark.parametrize("sign", [1, -1])
def test_fast_judgement_at_powers_of_two(sign):
    """An exact value just below 2^k rounds to 2^k but has half its ULP: judged alike, and without
    mpmath where every ULP the interval allows gives the same verdict and error within 2^-20."""
    tolerance = Tolerance(4, F16.smallest_normal)
    cases = []
    for power in (1.0, 2.0**-13, 1024.0):  # 2^-13: the first power of two above float16's normal minimum
        u = power * 2.0**-10  # float16's ULP at 2^k; 2^k - tiny has u / 2
        for x in (below(power), above(power), mpmath.mpf(power)):
            for got in (power, power - u / 2, power - u, power - 2 * u, power - 3 * u, power + u, power + 4 * u, power + 2 * u, power - 4 * u, power - 5 * u / 2, power - 5 * u, power + 5 * u):
                cases.append((sign * got, sign * x))
    got, exact = zip(*cases)
    judgement, asked = assert_judged_alike(list(got), list(exact), F16, tolerance)
    assert not judgement.passed  # some are 5 to 10 ULP away
    settled_at_once = [(sign * p, sign * below(p)) for p in (1.0, 2.0**-13, 1024.0)]  # got = 2^k: ~0 ULP whichever ULP
    judgement, asked = assert_judged_alike([g for g, _ in settled_at_once], [x for _, x in settled_at_once], F16, tolerance)
    assert judgement.passed and asked == 0


def test_fast_judgement_on_the_tolerance_and_on_the_floor():
    """Errors of exactly max_ulp ULP, and |got - exact| exactly the absolute floor: undecided by any
    positive bound, so judged exactly (accepted: the limits are inclusive); an exact float64 value with
    a zero bound is decided at once."""
    tolerance = Tolerance(4, F16.smallest_normal)
    u = 2.0**-10
    got = [1.0 + 4 * u, 1.0 - 4 * u, 1.0 + 5 * u, 0.0, 0.0, 0.0, 2.0**-14 + 4 * 2.0**-24]
    exact = [mpmath.mpf(1), mpmath.mpf(1), mpmath.mpf(1), mpmath.mpf(2.0**-14), mpmath.mpf(2.0**-14) + mpmath.mpf(2.0**-40),
             mpmath.mpf(2.0**-20), mpmath.mpf(2.0**-14)]
    judgement, asked = assert_judged_alike(got, exact, F16, tolerance)
    assert [round(e, 3) for e in judgement.ulps] == [4.0, 4.0, 5.0, 1024.0, 1024.0, 16.0, 4.0]
    assert judgement.floor_accepted == 2 and not judgement.passed  # 2^-14 + a hair is beyond the floor
    assert asked > 0
    exact_floats = [mpmath.mpf(v) for v in (1.0, 1.0, 2.0**-14)]
    judgement, asked = assert_judged_alike([1.0 + 4 * u, 1.0 - 2 * u, 0.0], exact_floats, F16, tolerance, relative_bound=0.0)
    assert judgement.passed and judgement.floor_accepted == 1


def test_fast_judgement_of_subnormals_and_special_values():
    tolerance = Tolerance(4, F32.smallest_normal)
    tiny = F32.smallest_subnormal
    got = [0.0, tiny, 3 * tiny, 2.0**-126, 0.0, math.nan, math.nan, math.inf, math.inf, -math.inf, 3.4028234663852886e38, 1.0, math.inf]
    exact = [mpmath.mpf(tiny) / 3, mpmath.mpf(tiny), mpmath.mpf(tiny) * 7.5, below(2.0**-126), mpmath.mpf(2.0**-125),
             mpmath.nan, mpmath.mpf(1), mpmath.mpf(2.0**129), mpmath.inf, mpmath.mpf(-(2.0**200)), mpmath.mpf(2.0**129),
             mpmath.mpf(1) + mpmath.mpf(2.0**-70), mpmath.mpf(1)]
    judgement, _ = assert_judged_alike(got, exact, F32, tolerance)
    assert not judgement.passed


def test_fast_judgement_of_saturated_float16_gradients():
    """The float16 gradient at the saturating ends, every element judged alike with results off by -8 .. 8
    half ULPs; the correctly rounded results, saturated elements included (an exact value just below 1,
    whose float64 interval holds 1), settled in float64."""
    from conformance import fast_reference
    from conformance.reference import reference

    x = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    x = x[np.isfinite(x) & (np.abs(x.astype(np.float64)) > 6)][::7]  # the saturating ends, sampled
    xs, ys = np.meshgrid(x, np.array([0, 0.5, 1], np.float16), indexing="ij")
    inputs = {"logits": xs, "target": ys}
    fast = reference("bce_with_logits", inputs, "none", F16, gradient=True)
    slow = reference("bce_with_logits", inputs, "none", F16, gradient=True, fast=False)
    rng = np.random.default_rng(3)
    ulps = fast_reference.ulp_of(slow.rounded, F16)
    steps = rng.integers(-8, 9, slow.rounded.shape) * ulps / 2
    for n, got in enumerate((slow.rounded, fast_reference.round_to_dtype(slow.rounded + steps, F16))):
        asked = []
        original = fast.exact_where
        fast.exact_where = lambda mask: (asked.append(int(mask.sum())), original(mask))[1]
        tolerance = Tolerance(4, F16.smallest_normal)
        a, b = judge(got, fast, F16, tolerance), judge(got, slow.exact, F16, tolerance)
        fast.exact_where = original
        assert (a.passed, a.floor_accepted) == (b.passed, b.floor_accepted)
        assert np.allclose(a.ulps, b.ulps, rtol=2**-20, atol=2**-20, equal_nan=True)
        assert [w.index for w in a.worst] == [w.index for w in b.worst]
        if n == 0:  # before, every element whose interval held 1 went to mpmath; now only a few ties
            assert sum(asked) <= got.size // 50
        # results a few ULPs off a saturated exact value just below 1 (rounding to 1) still need mpmath to
        # say on which side of 1 it is: their error is j or j/2 ULPs (see the README's Benchmarks)


# ULPs at every binade edge of every dtype: |got - exact| / ulp(exact), ulp the spacing of the dtype in the
# binade of the exact (unrounded) value (the README's definition), computed here from the definition with
# Fractions, on both sides of each power of two, on it, and at the subnormal / normal boundary.


def spacing(exact: Fraction, fmt) -> Fraction:
    """2^(max(e, emin) - p + 1) with 2^e <= |exact| < 2^(e+1), e found by stepping (emin for 0)."""
    e = fmt.emin
    if exact:
        e = 0
        while Fraction(2) ** e > abs(exact):
            e -= 1
        while Fraction(2) ** (e + 1) <= abs(exact):
            e += 1
    return Fraction(2) ** (max(e, fmt.emin) - fmt.precision + 1)


def edges(fmt):
    """Powers of two where the spacing changes (1, the first above the normal minimum, the largest), and the
    normal minimum itself (no change: the subnormal spacing is the normal minimum's)."""
    return [Fraction(1), Fraction(2) ** (fmt.emin + 1), Fraction(2) ** fmt.emax, Fraction(2) ** fmt.emin]


def mpf_of(value: Fraction) -> mpmath.mpf:
    with mpmath.workprec(max(64, value.numerator.bit_length() + value.denominator.bit_length() + 8)):
        return mpmath.mpf(value.numerator) / value.denominator


@pytest.mark.parametrize("name", list(FORMATS))
def test_ulp_errors_on_both_sides_of_every_binade_edge(name):
    from conformance.dtypes import ulp, ulp_error
    from conformance.fast_reference import ulp_of
    from conformance.verdicts import exact_ulps

    fmt = FORMATS[name]
    for edge in edges(fmt):
        below_spacing, above_spacing = spacing(edge - edge / 2**80, fmt), spacing(edge, fmt)
        for gap in (fmt.precision + 3, 300, 3000):  # a hair below or above 2^k: rounds to 2^k
            for exact in (edge - edge / 2**gap, edge, edge + edge / 2**gap):
                unit = spacing(exact, fmt)
                assert ulp(mpf_of(exact), fmt) == mpf_of(unit)
                for steps in range(-6, 7):  # results of the dtype around 2^k
                    got = edge + steps * (below_spacing if steps < 0 else above_spacing)
                    if got > Fraction(fmt.largest):
                        continue
                    want = abs(got - exact) / unit
                    assert ulp_error(float(got), mpf_of(exact), fmt) == pytest.approx(float(want), rel=2.0**-40, abs=2.0**-60)
                # the fast path's candidate ULPs from the rounding: the true one among them, alone where the
                # interval (2^-70 relative here) lies on one side of 2^k
                rounded = np.array([float(edge)])
                smallest, largest = exact_ulps(rounded, np.array([float(exact)]), np.array([float(edge) * 2.0**-70]), fmt)
                assert smallest[0] <= unit <= largest[0]
                if gap == fmt.precision + 3 and float(exact) != float(edge):  # (float64: exact is no float64 then)
                    assert smallest[0] == largest[0] == unit
        assert ulp_of(np.array([float(edge)]), fmt)[0] == above_spacing  # at a value of the dtype: its binade
        if edge > Fraction(2) ** fmt.emin:
            assert below_spacing == above_spacing / 2
        else:
            assert below_spacing == above_spacing  # no change at the subnormal / normal boundary
