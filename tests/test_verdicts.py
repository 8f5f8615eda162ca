"""Tolerances, the elementwise judgement, and `expect` literals."""

import math

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
