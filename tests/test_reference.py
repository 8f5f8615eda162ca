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


# Rounding next to a midpoint of the dtype (issue 15): the exact value a hair from a tie, or on it. The
# right rounding comes from an independent oracle: mpmath's interval arithmetic (outward rounding, so
# each interval holds the exact value), at a precision doubled until both ends of the interval round
# alike (rounding is monotone: every value between them rounds alike too).

BF16, F16 = FORMATS["bfloat16"], FORMATS["float16"]


def interval_rounding(function, fmt, start: int = 64) -> float:
    """The correct rounding to ``fmt`` of the exact value that ``function()`` (on mpmath.iv, at iv.prec) encloses."""
    from mpmath import iv

    from conformance.dtypes import round_fraction, to_fraction

    precision, saved = start, iv.prec
    try:
        while precision <= 1 << 16:
            iv.prec = precision
            low, high = function(iv)._mpi_  # the ends exactly (iv's .a / .b would round to mpf at 53 bits)
            ends = [round_fraction(to_fraction(mpmath.mp.make_mpf(end)), fmt) for end in (low, high)]
            if ends[0] == ends[1]:
                return ends[0]
            precision *= 2
    finally:
        iv.prec = saved
    raise AssertionError("the oracle did not settle")


def logits_loss_interval(x: float, y: float, w: float = 1.0):
    def enclosure(iv):
        X, Y, W = iv.mpf(x), iv.mpf(y), iv.mpf(w)
        linear = (1 - Y) * X if x > 0 else Y * -X
        return W * (linear + iv.log(1 + iv.exp(-abs(X))))

    return enclosure


def logits_grad_interval(x: float, y: float, w: float = 1.0, count: int = 1):
    def enclosure(iv):
        X, Y, W = iv.mpf(x), iv.mpf(y), iv.mpf(w)
        return W * (1 / (1 + iv.exp(-X)) - Y) / count

    return enclosure


@pytest.mark.parametrize(
    "fmt, x, y",
    [
        (F16, 1022.0, 0.97265625),  # (1 - y)·x = 27.9453125, a float16 midpoint, + softplus(-1022)
        (BF16, 76.0, 0.8515625),  # (1 - y)·x = 11.28125, a bfloat16 midpoint, + 9.8e-34
        (F16, -1022.0, 0.02734375),  # y·|x|, the same midpoint, on the other side of 0
        (F32, 300.0, 1 - 2.0**-6 - 2.0**-24),  # (1 - y)·x = 300·(2^18 + 1)·2^-24: 25 bits, a float32 midpoint, + e^-300
    ],
)
def test_a_loss_a_hair_above_a_midpoint_rounds_up(fmt, x, y):
    inputs = {"logits": np.array([x], dtype=fmt.numpy_dtype), "target": np.array([y], dtype=fmt.numpy_dtype)}
    value = reference("bce_with_logits", inputs, "none", fmt)
    want = interval_rounding(logits_loss_interval(x, y), fmt)
    assert value.rounded[0] == want
    assert round_to_format(value.exact[0], fmt) == want  # the exact value kept rounds as the exact one does


def midpoint_targets(fmt, count: int) -> list[float]:
    """Targets y in [1/4, 1/2) with their last bit set: 1 - y in (1/2, 3/4] is a midpoint of ``fmt``."""
    step = 2.0 ** -(fmt.precision + 1)
    return [0.25 + (2 * k + 1) * step for k in range(count)]


@pytest.mark.parametrize("fmt", [F16, BF16])
def test_gradients_a_hair_below_a_midpoint_round_down(fmt):
    """(1 - y) - σ(-x) with 1 - y a midpoint and σ(-x) far below any working precision: each rounds to the
    neighbour below 1 - y, half of them against ties-to-even."""
    y = midpoint_targets(fmt, 8)
    x = [300.0] * len(y)
    inputs = {"logits": np.array(x, dtype=fmt.numpy_dtype), "target": np.array(y, dtype=fmt.numpy_dtype)}
    value = reference("bce_with_logits", inputs, "none", fmt, gradient=True)
    want = [interval_rounding(logits_grad_interval(a, b), fmt) for a, b in zip(x, y)]
    assert value.rounded.tolist() == want


@pytest.mark.parametrize("sign", [1, -1])
def test_float64_gradient_next_to_a_midpoint_with_a_subnormal_logit(sign):
    """w·(σ(x) - y) = w·(1/2 - y) + w·x/4 - ...: with w·(1/2 - y) a float64 midpoint (3·(1/4 + 2^-54)) and
    x = ±2^-1074, the sign of x decides the rounding; and at y = 1/2 the mean gradient tanh(x/2)/2/3 of
    x = 18·2^-1074 lies just below the midpoint 1.5·2^-1074."""
    x, y, w = sign * 2.0**-1074, 0.25 - 2.0**-54, 3.0
    inputs = {"logits": np.array([x]), "target": np.array([y]), "weight": np.array([w])}
    value = reference("bce_with_logits", inputs, "none", F64, gradient=True)
    assert value.rounded[0] == interval_rounding(logits_grad_interval(x, y, w), F64, start=4096)
    x = sign * 18 * 2.0**-1074
    inputs = {"logits": np.full(3, x), "target": np.full(3, 0.5)}
    value = reference("bce_with_logits", inputs, "mean", F64, gradient=True)
    assert value.rounded.tolist() == [interval_rounding(logits_grad_interval(x, 0.5, count=3), F64, start=4096)] * 3


def test_an_elements_rounding_does_not_depend_on_the_other_elements():
    """The same element alone, and beside elements that need far more precision (e^-3000 next to a tie):
    the same correct rounding."""
    alone = {"logits": np.array([1022.0], dtype=np.float16), "target": np.array([0.97265625], dtype=np.float16)}
    crowd = {"logits": np.array([1022.0, 3000.0, 0.5], dtype=np.float16), "target": np.array([0.97265625, 0.75, 0.3], dtype=np.float16)}
    want = interval_rounding(logits_loss_interval(1022.0, 0.97265625), F16)
    for gradient in (False, True):
        want = interval_rounding((logits_grad_interval if gradient else logits_loss_interval)(1022.0, 0.97265625), F16)
        first = reference("bce_with_logits", alone, "none", F16, gradient=gradient).rounded[0]
        among = reference("bce_with_logits", crowd, "none", F16, gradient=gradient).rounded[0]
        assert first == among == want


def test_a_probability_gradient_on_a_midpoint_rounds_to_even():
    """w·((1 - y)/(1 - p) - y/p) is rational: 5.390625 here, a bfloat16 midpoint, exactly (the quotients
    at any working precision land on either side of it)."""
    p, y, w = 0.625, 0.234375, 3.234375
    exact = Fraction(w) * ((1 - Fraction(y)) / (1 - Fraction(p)) - Fraction(y) / Fraction(p))
    inputs = {"probs": np.array([p], dtype=BF16.numpy_dtype), "target": np.array([y], dtype=BF16.numpy_dtype),
              "weight": np.array([w], dtype=BF16.numpy_dtype)}
    value = reference("bce", inputs, "none", BF16, gradient=True)
    assert value.rounded[0] == round_to_format(exact, BF16)
    assert value.exact[0] == mpmath.mpf(exact.numerator) / exact.denominator


@pytest.mark.parametrize("fmt, x", [(F64, 1000.0), (F32, 200.0)])
def test_the_ulp_of_a_gradient_a_hair_below_one_is_the_spacing_below_one(fmt, x):
    """σ(x) - 0 for large x: the exact value lies in (1 - 2^-p, 1) and rounds to 1, but its ULP is the spacing
    below 1, 2^-p (the README's definition); a result 6 such spacings below 1 is 6 ULP off, not 3."""
    from conformance.verdicts import judge, tolerance_for

    inputs = {"logits": np.array([x], dtype=fmt.numpy_dtype), "target": np.array([0.0], dtype=fmt.numpy_dtype)}
    value = reference("bce_with_logits", inputs, "none", fmt, gradient=True)
    assert value.rounded[0] == 1.0 and value.exact[0] < 1
    spacing_below_one = Fraction(1, 2**fmt.precision)
    got = 1 - 6 * spacing_below_one
    judgement = judge(np.array([float(got)]), value, fmt, tolerance_for(fmt.name))
    # |got - exact| / 2^-p = 6 - σ(-x)/2^-p: 6 to within far less than 2^-40
    assert judgement.max_ulp == pytest.approx(6.0, abs=2.0**-40)
    assert not judgement.passed
