"""Correct rounding to each format, ULPs, and exact literals."""

import math
import random
from fractions import Fraction

import ml_dtypes
import mpmath
import numpy as np
import pytest

from conformance.dtypes import FORMATS, cast, parse_hex_or_decimal, round_to_format, ulp, ulp_error

F16, BF16, F32, F64 = (FORMATS[name] for name in ("float16", "bfloat16", "float32", "float64"))


def random_fractions(seed, count, lo_exp, hi_exp):
    rng = random.Random(seed)
    for _ in range(count):
        yield Fraction(rng.getrandbits(rng.randint(1, 90)) * rng.choice((1, -1))) * Fraction(2) ** rng.randint(lo_exp, hi_exp)


def test_float64_rounding_matches_python_true_division():
    # int / int in CPython is correctly rounded (ties to even, subnormals included)
    for value in random_fractions(1, 5000, -1200, 940):
        assert round_to_format(value, F64) == value.numerator / value.denominator, value


@pytest.mark.parametrize("fmt, numpy_type, span", [(F32, np.float32, 60), (F16, np.float16, 10)])
def test_float64_to_narrow_formats_matches_numpy_casts(fmt, numpy_type, span):
    # a single rounding from float64, which numpy's casts do correctly
    rng = random.Random(2)
    for _ in range(5000):
        value = rng.uniform(-1, 1) * 10.0 ** rng.randint(-span, span // 2)
        with np.errstate(over="ignore"):
            assert round_to_format(Fraction(value), fmt) == float(numpy_type(value)), value


def test_bfloat16_matches_ml_dtypes_on_float32_values():
    # from float32 (exact in float64) ml_dtypes rounds once, to nearest even
    rng = np.random.default_rng(3)
    values = rng.standard_normal(3000).astype(np.float32) * np.float32(2.0) ** rng.integers(-140, 120, 3000).astype(np.float32)
    for value in values:
        assert round_to_format(Fraction(float(value)), BF16) == float(value.astype(ml_dtypes.bfloat16)), value


@pytest.mark.parametrize(
    "value, expected",
    [
        (Fraction(1) + Fraction(1, 2**24), 1.0),  # halfway, tie to the even neighbour 1.0
        (Fraction(1) + Fraction(3, 2**24), 1.0 + 2**-22),  # halfway, tie to even upwards
        (Fraction(1) + Fraction(1, 2**24) + Fraction(1, 2**80), 1.0 + 2**-23),  # just above halfway
        (Fraction(1, 2**150), 0.0),  # half the smallest subnormal: tie to even zero
        (Fraction(3, 2**151), 2.0**-149),  # three quarters of it rounds up
        (Fraction(3, 2**150), 2.0**-148),  # 1.5 subnormal units: tie to the even 2 units
        (Fraction(2**128 - 2**103), math.inf),  # max + half ULP: ties to even = overflow
        (Fraction(2**128 - 2**103 - 1), float(np.finfo(np.float32).max)),
        (-Fraction(1, 2**200), -0.0),
    ],
)
def test_float32_halfway_points_and_limits(value, expected):
    got = round_to_format(value, F32)
    assert got == expected and math.copysign(1, got) == math.copysign(1, expected)


def test_float16_subnormals_and_overflow():
    assert round_to_format(Fraction(1, 2**25), F16) == 0.0  # half of 2**-24: tie to even zero
    assert round_to_format(Fraction(3, 2**26), F16) == 2.0**-24
    assert round_to_format(Fraction(65520), F16) == math.inf  # 65504 + half ULP ties to even: overflow
    assert round_to_format(Fraction(65519), F16) == 65504.0


def test_mpf_far_out_of_range_rounds_without_huge_integers():
    tiny = mpmath.exp(-mpmath.mpf(1e30))
    assert round_to_format(tiny, F64) == 0.0
    assert round_to_format(-mpmath.exp(mpmath.mpf(1e30)), F32) == -math.inf
    assert round_to_format(mpmath.mpf(2) ** -1074, F64) == 5e-324


def test_cast_keeps_specials_and_signed_zero():
    out = cast([Fraction(1, 10), -0.0, math.inf, -math.inf, math.nan], F32)
    assert out.dtype == np.float32
    assert out[0] == np.float32(0.1) and math.copysign(1, out[1]) == -1
    assert np.isposinf(out[2]) and np.isneginf(out[3]) and np.isnan(out[4])


def test_ulp_and_ulp_error():
    assert ulp(mpmath.mpf(1), F32) == mpmath.mpf(2) ** -23
    assert ulp(mpmath.mpf(1) - mpmath.mpf(2) ** -30, F32) == mpmath.mpf(2) ** -24
    assert ulp(mpmath.mpf(0), F64) == mpmath.mpf(2) ** -1074
    assert ulp(mpmath.mpf(2) ** -1060, F64) == mpmath.mpf(2) ** -1074  # subnormal spacing
    exact = mpmath.mpf(1) + mpmath.mpf(2) ** -25  # a quarter ULP above 1 in float32
    assert ulp_error(1.0, exact, F32) == 0.25
    assert ulp_error(1.0 + 2**-23, exact, F32) == 0.75
    assert ulp_error(math.nan, mpmath.nan, F32) == 0.0
    assert ulp_error(1.0, mpmath.nan, F32) == math.inf
    assert ulp_error(math.inf, mpmath.inf, F32) == 0.0
    assert ulp_error(-math.inf, mpmath.inf, F32) == math.inf
    assert ulp_error(math.inf, mpmath.mpf(2) ** 200, F32) == 0.0  # correctly rounded overflow
    assert ulp_error(math.inf, mpmath.mpf(2), F32) == math.inf


@pytest.mark.parametrize(
    "text, value",
    [
        ("0x1.8p+1", Fraction(3)),
        ("-0x1p-1074", -Fraction(1, 2**1074)),
        ("0.1", Fraction(1, 10)),
        ("1e-7", Fraction(1, 10**7)),
        ("-inf", -math.inf),
        (".inf", math.inf),
    ],
)
def test_literals_are_exact(text, value):
    assert parse_hex_or_decimal(text) == value


def test_literal_specials():
    assert math.isnan(parse_hex_or_decimal("nan"))
    assert math.copysign(1, parse_hex_or_decimal("-0.0")) == -1
    assert math.copysign(1, parse_hex_or_decimal("-0x0p+0")) == -1
    for bad in ("0x1.gp+1", "abc", "1.2.3", ""):
        with pytest.raises(ValueError):
            parse_hex_or_decimal(bad)


def test_negative_mpf_values_keep_their_sign():
    assert round_to_format(mpmath.mpf(-4), F32) == -4.0
    assert round_to_format(-mpmath.mpf(2) ** -1074, F64) == -5e-324
    assert round_to_format(mpmath.mpf(-1) / 3, F32) == float(np.float32(-1 / 3))
    assert ulp_error(-math.inf, -mpmath.mpf(2) ** 200, F32) == 0.0  # a correctly rounded negative overflow
