"""The rounded subject: its results are fixed by construction, whatever the host's numpy kernels return."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance.adapters import load_framework, rounded
from conformance.dtypes import FORMATS, round_fraction, round_to_format

RNG = np.random.default_rng(20261201)
# logits and probabilities of every kind: both signs, saturation, tiny, huge, exact points
POINTS = np.concatenate(
    [RNG.normal(0, 8, 400), RNG.uniform(-800, 800, 100), np.ldexp(RNG.uniform(1, 2, 100), RNG.integers(-60, 10, 100))]
)


def mpmath_rounded(name: str, x: float, dtype: str) -> float:
    """The correct rounding of name(x) at 300 digits, independently of the subject's Ziv loop."""
    fmt = FORMATS[dtype]
    with mpmath.workdps(300):
        return round_to_format(getattr(mpmath, name)(mpmath.mpf(x)), fmt)


@pytest.mark.parametrize("dtype", list(FORMATS))
@pytest.mark.parametrize("name", ["exp", "log", "log1p"])
def test_elementary_functions_are_correctly_rounded(name, dtype):
    fmt = FORMATS[dtype]
    domain = {"exp": POINTS, "log": np.abs(POINTS), "log1p": np.abs(POINTS) - 0.5}[name]
    values = domain.astype(fmt.numpy_dtype)
    got = rounded.correctly_rounded(name, values)
    assert got.dtype == values.dtype
    want = [mpmath_rounded(name, float(v), dtype) for v in values.astype(np.float64)]
    assert got.astype(np.float64).tolist() == want


def test_special_values_are_ieee_754s():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -2.0], dtype=np.float32)
    exp, log, log1p = (rounded.correctly_rounded(name, x).tolist() for name in ("exp", "log", "log1p"))
    assert math.isnan(exp[0]) and exp[1:5] == [math.inf, 0.0, 1.0, 1.0]
    assert math.isnan(log[0]) and log[1] == math.inf and math.isnan(log[2]) and log[3:5] == [-math.inf, -math.inf]
    assert math.isnan(log[5]) and math.isnan(log1p[2]) and log1p[5] == -math.inf and math.isnan(log1p[6])
    assert log1p[3] == 0.0 and math.copysign(1, log1p[4]) == -1.0  # log1p(-0) = -0


@pytest.mark.parametrize("name", ["exp", "log", "log1p"])
def test_the_result_does_not_depend_on_the_hosts_kernels(monkeypatch, name):
    # another host's numpy returns other last bits (its SIMD exp / log): within the error bound the fast
    # path allows, a perturbed float64 first approximation must give the same correctly rounded results
    values = np.abs(POINTS).astype(np.float32)
    before = rounded.correctly_rounded(name, values)
    approximate, function = rounded.ELEMENTARY[name]
    for ulps in (-8, 8):

        def skewed(x, ulps=ulps):
            return approximate(x) * (1 + ulps * 2.0**-53)

        monkeypatch.setitem(rounded.ELEMENTARY, name, (skewed, function))
        assert rounded.correctly_rounded(name, values).tobytes() == before.tobytes()
    # and a first approximation outside that bound would be caught by the comparison with mpmath above
    monkeypatch.setitem(rounded.ELEMENTARY, name, (lambda x: approximate(x) * (1 + 2.0**-20), function))
    assert rounded.correctly_rounded(name, values).tobytes() != before.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_sum_and_mean_round_the_exact_sum_once(dtype):
    fmt = FORMATS[dtype]
    values = (RNG.normal(0, 3, 1000) * np.where(RNG.random(1000) < 0.1, 1e3, 1)).astype(fmt.numpy_dtype)
    values = values[np.isfinite(values)]
    exact = sum(map(Fraction, values.astype(np.float64).tolist()))
    total = rounded.correctly_rounded_sum(values)
    assert total.dtype == values.dtype and float(total) == round_fraction(exact, fmt)
    mean = rounded.correctly_rounded_mean(values)
    assert float(mean) == round_fraction(Fraction(float(total)) / values.size, fmt)
    assert math.isnan(float(rounded.correctly_rounded_mean(values[:0]))) and float(rounded.correctly_rounded_sum(values[:0])) == 0
    assert float(rounded.correctly_rounded_sum(np.array([1, np.inf], dtype=values.dtype))) == math.inf
    assert math.isnan(float(rounded.correctly_rounded_sum(np.array([-np.inf, np.inf], dtype=values.dtype))))


def test_the_subject_runs_numpys_formulas_on_the_rounded_namespace():
    subject, numpy = load_framework("rounded"), load_framework("numpy")
    assert [api.name.replace("rounded.", "numpy.") for api in subject.apis] == [api.name for api in numpy.apis]
    assert [api.op for api in subject.apis] == [api.op for api in numpy.apis]
    stable = next(api for api in subject.apis if api.op == "bce_with_logits")
    x = np.array([-30.0, -1.0, 0.0, 2.5, 40.0], dtype=np.float32)
    y = np.array([0.0, 1.0, 0.5, 1.0, 0.0], dtype=np.float32)
    got = stable.call({"logits": x, "target": y}, "none")
    # the formula max(x, 0) - x·y + log1p(exp(-|x|)) step by step, each elementary function rounded by mpmath
    exp = np.array([mpmath_rounded("exp", v, "float32") for v in (-np.abs(x)).astype(np.float64)], dtype=np.float32)
    log1p = np.array([mpmath_rounded("log1p", v, "float32") for v in exp.astype(np.float64)], dtype=np.float32)
    assert got.tobytes() == (np.maximum(x, np.float32(0)) - x * y + log1p).tobytes()


def test_the_reproducer_runs_the_subject():
    stable = next(api for api in load_framework("rounded").apis if api.op == "bce_with_logits")
    line = stable.repro({"input": "['0x1.4p+4', '-0x1p-3']", "target": "['0x0.0p+0', '0x1p+0']"}, "float32", "mean")
    printed = []
    exec(line.replace("print(", "printed.append("), {"printed": printed})
    inputs = {"logits": np.array([20.0, -0.125], np.float32), "target": np.array([0.0, 1.0], np.float32)}
    assert printed == [stable.call(inputs, "mean").tolist()]
