"""The exact reference: closed forms, symmetry, limits, and agreement with an independent oracle.

The oracle is Python's `decimal` module (correctly rounded exp and ln at 60 digits), a second
implementation sharing no code with mpmath.
"""

import decimal
import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance import reference as reference_module
from conformance.dtypes import FORMATS, cast, round_to_format
from conformance.reference import ReferenceError, bce_term, bce_with_logits_term, reference

F32, F64 = FORMATS["float32"], FORMATS["float64"]
BLOG_LOGITS = [[1.9072, 1.1079, 1.4906], [-0.6584, -0.0512, 0.7608], [-0.0614, 0.6583, 0.1095]]
BLOG_TARGET = [[0, 1, 1], [1, 1, 1], [0, 0, 0]]
CTX = decimal.Context(prec=60)


def exact_inputs(values, fmt):
    return cast(np.vectorize(lambda v: Fraction(v), otypes=[object])(np.array(values, dtype=object)), fmt)


def oracle_term(x, y) -> decimal.Decimal:
    """y·softplus(-x) + (1-y)·softplus(x) in `decimal`, for finite x and y (every step through CTX:
    Decimal's operators would round to the thread's 28-digit context)."""
    x, y = CTX.create_decimal(float(x)), CTX.create_decimal(float(y))

    def softplus(t):
        if t > 0:
            return CTX.add(t, CTX.ln(CTX.add(1, CTX.exp(CTX.minus(t)))))
        return CTX.ln(CTX.add(1, CTX.exp(t)))

    return CTX.add(CTX.multiply(y, softplus(CTX.minus(x))), CTX.multiply(CTX.subtract(1, y), softplus(x)))


def dsum(values) -> decimal.Decimal:
    total = decimal.Decimal(0)
    for value in values:
        total = CTX.add(total, value)
    return total


def close(oracle: decimal.Decimal, exact: mpmath.mpf, digits: int = 40) -> bool:
    with mpmath.workprec(400):
        return abs(mpmath.mpf(str(oracle)) - exact) < mpmath.mpf(10) ** -digits


@pytest.mark.parametrize("fmt, digits", [(F64, "0.80000682967651184"), (F32, "0.80000682553706109")])
def test_blog_mean_matches_the_issue_and_the_oracle(fmt, digits):
    x, y = exact_inputs(BLOG_LOGITS, fmt), exact_inputs(BLOG_TARGET, fmt)
    value = reference("bce_with_logits", {"logits": x, "target": y}, "mean", fmt)
    exact = value.exact[()]
    assert mpmath.nstr(exact, 17, strip_zeros=False).startswith(digits[:18])
    oracle = CTX.divide(dsum(oracle_term(a, b) for a, b in zip(x.ravel(), y.ravel())), 9)
    assert close(oracle, exact)
    assert float(value.rounded) == round_to_format(Fraction(oracle), fmt)


def test_blog_hand_computation_mean():
    probs = [[0.8707, 0.7517, 0.8162], [0.3411, 0.4872, 0.6815], [0.4847, 0.6589, 0.5273]]
    p, y = exact_inputs(probs, F64), exact_inputs(BLOG_TARGET, F64)
    value = reference("bce", {"probs": p, "target": y}, "mean", F64)
    assert repr(float(value.rounded)) == "0.8000147727101611"
    terms = [
        CTX.minus(CTX.ln(CTX.create_decimal(float(pi))) if yi else CTX.ln(CTX.subtract(1, CTX.create_decimal(float(pi)))))
        for pi, yi in zip(p.ravel(), y.ravel())
    ]
    oracle = CTX.divide(dsum(terms), 9)
    assert close(oracle, value.exact[()])


@pytest.mark.parametrize("y", [0, 0.25, 0.5, 1])
def test_zero_logit_gives_ln2(y):
    with mpmath.workprec(200):
        term = bce_with_logits_term(mpmath.mpf(0), mpmath.mpf(y), mpmath.mpf(1), mpmath.mpf(1))
        assert abs(term - mpmath.log(2)) < mpmath.mpf(2) ** -195


@pytest.mark.parametrize("x", [-750.0, -100.0, -17.5, -1.0, -2.0**-30, 0.5, 3.0, 37.5, 1e4])
def test_symmetry(x):
    one, zero = mpmath.mpf(1), mpmath.mpf(0)
    with mpmath.workprec(300):
        assert bce_with_logits_term(mpmath.mpf(x), one, one, one) == bce_with_logits_term(mpmath.mpf(-x), zero, one, one)
        q = mpmath.mpf(3)  # pos_weight form: L_q(x, 1) = q·L(-x, 0)
        assert bce_with_logits_term(mpmath.mpf(x), one, one, q) == q * bce_with_logits_term(mpmath.mpf(-x), zero, one, one)


@pytest.mark.parametrize(
    "x, y, expected",
    [
        (math.inf, 1, 0),
        (math.inf, 0.5, math.inf),
        (math.inf, 0, math.inf),
        (-math.inf, 0, 0),
        (-math.inf, 0.25, math.inf),
        (-math.inf, 1, math.inf),
    ],
)
def test_infinite_logit_limits(x, y, expected):
    term = bce_with_logits_term(mpmath.mpf(x), mpmath.mpf(y), mpmath.mpf(1), mpmath.mpf(1))
    assert term == expected


def test_nan_in_nan_out():
    one, nan = mpmath.mpf(1), mpmath.nan
    for args in [(nan, one, one, one), (one, nan, one, one), (one, one, nan, one), (one, one, one, nan)]:
        assert mpmath.isnan(bce_with_logits_term(*args))
    assert mpmath.isnan(bce_term(nan, one, one))
    assert mpmath.isnan(bce_term(mpmath.mpf(0.5), nan, one))


@pytest.mark.parametrize(
    "p, y, expected",
    [(0, 0, 0), (1, 1, 0), (0, 1, math.inf), (1, 0, math.inf), (0, 0.5, math.inf), (0.5, 0, math.log(2))],
)
def test_probability_limits_zero_log_zero(p, y, expected):
    term = bce_term(mpmath.mpf(p), mpmath.mpf(y), mpmath.mpf(1))
    assert term == pytest.approx(expected) if math.isfinite(expected) else term == expected


@pytest.mark.parametrize("p", [-0.5, 1.5, -math.inf])
def test_probability_outside_unit_interval_is_nan(p):
    assert mpmath.isnan(bce_term(mpmath.mpf(p), mpmath.mpf(0), mpmath.mpf(1)))


@pytest.mark.parametrize("fmt", [F32, FORMATS["float16"], F64])
def test_elementwise_rounding_matches_the_oracle(fmt):
    rng = np.random.default_rng(7)
    logits = rng.uniform(-30, 30, 40).tolist()
    targets = rng.choice([0.0, 0.25, 0.5, 1.0], 40).tolist()
    x, y = exact_inputs(logits, fmt), exact_inputs(targets, fmt)
    value = reference("bce_with_logits", {"logits": x, "target": y}, "none", fmt)
    for i in range(40):
        assert value.rounded[i] == round_to_format(Fraction(oracle_term(x[i], y[i])), fmt), (x[i], y[i])


def test_reductions_round_once():
    x, y = exact_inputs([0.1, 0.2, 0.3, 40.0], F32), exact_inputs([0, 1, 0.5, 1], F32)
    terms = [Fraction(oracle_term(a, b)) for a, b in zip(x, y)]
    total = reference("bce_with_logits", {"logits": x, "target": y}, "sum", F32)
    mean = reference("bce_with_logits", {"logits": x, "target": y}, "mean", F32)
    assert float(total.rounded) == round_to_format(sum(terms), F32)
    assert float(mean.rounded) == round_to_format(sum(terms) / 4, F32)


def test_weight_and_pos_weight_broadcast():
    x, y = exact_inputs([[1.0, -2.0], [0.5, 3.0]], F64), exact_inputs([[1, 0], [1, 0]], F64)
    w, q = exact_inputs([2.0, 0.5], F64), exact_inputs([3.0, 1.0], F64)
    value = reference("bce_with_logits", {"logits": x, "target": y, "weight": w, "pos_weight": q}, "none", F64)
    six, half = decimal.Decimal(6), decimal.Decimal("0.5")
    want = [
        [CTX.multiply(six, oracle_term(1.0, 1)), CTX.multiply(half, oracle_term(-2.0, 0))],
        [CTX.multiply(six, oracle_term(0.5, 1)), CTX.multiply(half, oracle_term(3.0, 0))],
    ]
    for i in range(2):
        for j in range(2):
            assert value.rounded[i, j] == round_to_format(Fraction(want[i][j]), F64)


def test_independent_of_the_global_mpmath_precision():
    x, y = exact_inputs(BLOG_LOGITS, F64), exact_inputs(BLOG_TARGET, F64)
    before = reference("bce_with_logits", {"logits": x, "target": y}, "mean", F64)
    old = mpmath.mp.prec
    try:
        mpmath.mp.prec = 10
        after = reference("bce_with_logits", {"logits": x, "target": y}, "mean", F64)
    finally:
        mpmath.mp.prec = old
    assert float(before.rounded) == float(after.rounded)
    assert before.exact[()] == after.exact[()]


def test_unsettled_rounding_raises(monkeypatch):
    """Ziv's test: values that round differently at each pair of precisions never settle."""
    midpoint = mpmath.mpf(1) + mpmath.mpf(2) ** -24  # halfway between two float32 numbers

    def straddling(*args):
        sign = 1 if int(math.log2(mpmath.mp.prec)) % 2 else -1
        return np.array(midpoint + sign * mpmath.mpf(2) ** -(mpmath.mp.prec // 2), dtype=object)

    monkeypatch.setattr(reference_module, "_evaluate", straddling)
    x = exact_inputs([0.0], F32)
    with pytest.raises(ReferenceError, match="not settled"):
        reference("bce_with_logits", {"logits": x, "target": x}, "mean", F32)
