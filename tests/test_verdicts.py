"""Tolerances, the elementwise judgement, and `expect` literals."""

import decimal
import json
import math
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest

from conformance.dtypes import FORMATS
from conformance.verdicts import Tolerance, default_tolerances, expectation_holds, judge, tolerance_for

F32, F64 = FORMATS["float32"], FORMATS["float64"]
REPO = Path(__file__).resolve().parents[1]
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
        # every element whose interval held 1 (or 0.5, for y = 0.5) once went to mpmath, the results a few ULPs off
        # too; the strict bound |σ(x) - y| < max(y, 1 - y) (reference.gradient_under) places the exact value
        # below the power of two, so only a few ties are left
        assert fast.under is not None
        # left to mpmath: the correctly rounded results' few ties; for the results off by -8 .. 8 half ULPs, those
        # about 4 ULPs off, the tolerance itself, which no interval decides (and a few more)
        on_the_tolerance = int(np.sum(np.abs(np.asarray(b.ulps) - tolerance.max_ulp) <= 0.5))
        assert sum(asked) <= (0 if n == 0 else on_the_tolerance) + got.size // 50, (sum(asked), on_the_tolerance)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [None, 0.1])
def test_gradient_bound_is_strict_and_refused_where_the_formula_gives_none(reduction, smoothing):
    """gradient_under: above every exact gradient's magnitude (computed by mpmath), at most max(y, 1 - y) over the
    count; None for a weighted loss, the loss on probabilities, a target outside [0, 1] and a variant."""
    from conformance.reference import gradient_under

    rng = np.random.default_rng(7)
    # |x| up to 70: σ(x) rounds to 1 in float32 from 17 on, and stays apart from 1 at mpmath's working precision
    x = np.concatenate([np.clip(rng.normal(0, 30, 40), -70, 70), [-70.0, 70.0, 0.0]]).astype(np.float32)
    y = np.concatenate([rng.choice(np.float32([0, 0.25, 0.5, 1, 1e-30]), 40), [0.5, 0.5, 1]]).astype(np.float32)
    inputs = {"logits": x, "target": y}
    if smoothing is not None:
        inputs["label_smoothing"] = np.array(smoothing)
    bound = gradient_under("bce_with_logits", inputs, reduction, None, True, False, x.size)
    with mpmath.workprec(400):  # σ(x) - y' apart from ±1 and ±1/2 at |x| <= 70
        ls = mpmath.mpf(smoothing or 0)
        for xi, yi, b in zip(x.tolist(), y.tolist(), bound):
            exact = 1 / (1 + mpmath.exp(-mpmath.mpf(xi))) - (mpmath.mpf(yi) * (1 - ls) + ls / 2)
            assert abs(exact / (x.size if reduction == "mean" else 1)) < b, (xi, yi)
    ceiling = np.maximum(y, 1 - y.astype(np.float64)) / (x.size if reduction == "mean" else 1)
    assert np.all(bound <= ceiling * (1 + 2.0**-48))
    assert gradient_under("bce_with_logits", {**inputs, "weight": y}, reduction, None, True, False, x.size) is None
    assert gradient_under("bce", {"probs": y, "target": y}, reduction, None, True, False, x.size) is None
    assert gradient_under("bce_with_logits", {**inputs, "target": y + 1}, reduction, None, True, False, x.size) is None
    assert gradient_under("bce_with_logits", inputs, reduction, None, False, False, x.size) is None


# ---------------------------------------------------------------------------------------------
# `expect` literals from peers' tests: the documented rule, its message, and the {value, rtol, atol} form.
# The inputs are those of Keras's own tests (keras/src/backend/*/nn_test.py, test_binary_crossentropy;
# keras/src/losses/losses_test.py, BinaryCrossentropyTest.test_scalar_weighted); their literals are Keras's
# float32 results, which its assertAllClose (rtol = atol = 1e-6) and assertAlmostEqual (decimal=3) accept.
# The exact values are the project's reference, computed here.

PEER_FILE = """schema_version: 1
description: peers' vectors
cases:
  - id: keras-probs
    why: keras nn_test test_binary_crossentropy, from_logits=False
    probs: [0.1, 0.2, 0.3, 0.4]
    target: [0.1, 0.9, 0.2, 1.0]
    dtypes: [float32, float64]
    expect: {EXPECT_PROBS}
  - id: keras-logits-weighted
    why: keras losses_test test_scalar_weighted, from_logits=True, sample_weight 2.3
    logits: [[10.0, -10.0, 10.0], [10.0, 10.0, -10.0]]
    target: [[1, 0, 1], [0, 1, 1]]
    weight: 2.3
    dtypes: [float32]
    expect: {EXPECT_LOGITS}
"""
KERAS_PROBS = "[0.32508277, 1.47080801, 0.52613434, 0.91629048]"  # Keras's results, as its test states them


def peer_cases(tmp_path, probs="{float64: {sum: 1}}", logits="{sum: 1}"):
    from conformance.cases import load_file

    path = tmp_path / "peers.yaml"
    path.write_text(PEER_FILE.replace("{EXPECT_PROBS}", probs).replace("{EXPECT_LOGITS}", logits), encoding="utf-8")
    return path, {case.id: case for case in load_file(path)}


def exact_of(case, dtype: str, reduction: str) -> np.ndarray:
    from conformance.reference import reference

    return reference(case.ops[0] if case.kind == "probs" else "bce_with_logits", case.inputs(FORMATS[dtype]), reduction, FORMATS[dtype]).exact


def rounded_to_digits(exact: mpmath.mpf, digits: int, step: int = 0) -> str:
    """The exact value rounded to ``digits`` significant digits, moved by ``step`` units of the last one."""
    with mpmath.workprec(400):
        text = mpmath.nstr(exact, 80, strip_zeros=False)
    value = decimal.Decimal(text)
    place = value.adjusted() - digits + 1
    rounded = value.quantize(decimal.Decimal(1).scaleb(place), rounding=decimal.ROUND_HALF_EVEN)
    return str(rounded + step * decimal.Decimal(1).scaleb(place))


@pytest.mark.parametrize(("dtype", "digit_counts"), [("float64", (4, 8, 12)), ("float32", (3, 6))])
def test_a_literal_of_d_digits_holds_when_it_is_the_exact_value_rounded_to_d_digits(tmp_path, dtype, digit_counts):
    """At these digit counts a neighbour at the last digit names another value of the dtype than the correct
    rounding, so only the rule "rounded to d digits" decides."""
    _, cases = peer_cases(tmp_path)
    for case in cases.values():
        if dtype not in case.dtypes:
            continue
        for reduction in ("none", "mean", "sum"):
            for want in exact_of(case, dtype, reduction).ravel():
                for digits in digit_counts:
                    assert expectation_holds(rounded_to_digits(want, digits), want, FORMATS[dtype])
                    for step in (-1, 1):
                        neighbour = rounded_to_digits(want, digits, step)
                        assert not expectation_holds(neighbour, want, FORMATS[dtype]), (case.id, reduction, neighbour)


def test_peers_literals_off_by_more_than_a_rounding_are_refused_naming_the_accepted_forms(tmp_path):
    from conformance.runner import ExactValues, ExpectationError

    path, cases = peer_cases(tmp_path, probs="{float32: {none: " + KERAS_PROBS + "}}")
    exact = exact_of(cases["keras-probs"], "float32", "none")
    with pytest.raises(ExpectationError) as info:
        ExactValues().reference(cases["keras-probs"], "bce", F32, "none")
    message = str(info.value)
    literals = json.loads(KERAS_PROBS)
    first_wrong = next(i for i, (literal, want) in enumerate(zip(literals, exact)) if not expectation_holds(literal, want, F32))
    digits = len(decimal.Decimal(repr(literals[first_wrong])).as_tuple().digits)
    for words in (
        f"{path}:", "case 'keras-probs'", "field 'expect.float32.none'", f"at [{first_wrong}]", "contradicts the exact float32 value",
        f"rounded to them ({rounded_to_digits(exact[first_wrong], digits)})", f"with {digits} significant digits",
        "the shortest repr of the correctly rounded float32 value", "a hexadecimal literal", "{value: ", "rtol: R, atol: A}",
    ):
        assert words in message, (words, message)


def test_peers_literals_hold_within_the_tolerance_they_carry(tmp_path):
    from conformance.runner import ExactValues

    own = "{float32: {none: {value: " + KERAS_PROBS + ", rtol: 1.0e-6, atol: 1.0e-6}}}"
    _, cases = peer_cases(tmp_path, probs=own, logits="{mean: {value: 7.666, atol: 1.5e-3}}")
    ExactValues().reference(cases["keras-probs"], "bce", F32, "none")  # no ExpectationError
    ExactValues().reference(cases["keras-logits-weighted"], "bce_with_logits", F32, "mean")
    mean = exact_of(cases["keras-logits-weighted"], "float32", "mean")[()]
    assert not expectation_holds(7.666, mean, F32)  # 4 digits: the exact value rounds to rounded_to_digits(mean, 4)
    assert rounded_to_digits(mean, 4) != "7.666"
    assert "7.666" in _problem(7.666, mean) and f"({rounded_to_digits(mean, 4)})" in _problem(7.666, mean)
    for literal in ({"value": 7.666, "atol": 1e-4}, {"value": 7.666, "rtol": 1e-5}, {"value": "7.666", "rtol": 1e-5, "atol": 1e-5}):
        assert not expectation_holds(literal, mean, F32), literal
    assert "beyond atol + rtol·|exact|" in _problem({"value": 7.666, "rtol": 1e-5}, mean)


def _problem(literal, exact):
    from conformance.verdicts import expectation_problem

    problem = expectation_problem(literal, exact, F32)
    assert problem is not None
    return problem


def test_own_tolerance_is_atol_plus_rtol_times_the_exact_value_inclusive():
    exact = mpmath.mpf(2)
    assert expectation_holds({"value": "2.5", "atol": 0.5}, exact, F64)
    assert expectation_holds({"value": "1.5", "rtol": 0.25}, exact, F64)
    assert expectation_holds({"value": "2.75", "rtol": 0.25, "atol": 0.25}, exact, F64)
    assert not expectation_holds({"value": "2.5000001", "atol": 0.5}, exact, F64)
    assert not expectation_holds({"value": "1.4999999", "rtol": 0.25}, exact, F64)
    assert expectation_holds({"value": "nan", "rtol": 1}, mpmath.nan, F64)
    assert not expectation_holds({"value": "inf", "rtol": 1}, mpmath.mpf(1e308), F64)
    assert not expectation_holds({"value": 1.0, "rtol": 1}, mpmath.inf, F64)


def test_decimal_literal_rule_at_ties_zeros_and_integers():
    tie = mpmath.mpf("0.125")  # exactly between 0.12 and 0.13: either neighbour is the rounding to 2 digits
    assert expectation_holds("0.12", tie, F64) and expectation_holds("0.13", tie, F64)
    assert not expectation_holds("0.14", tie, F64)
    tiny = mpmath.mpf(2) ** -100
    assert expectation_holds("0.0", tiny, F64)  # 1e-30 rounded to one decimal place is 0.0
    assert not expectation_holds("0x0p+0", tiny, F64)  # a hex literal names one value
    assert expectation_holds(10, mpmath.mpf("10.3"), F64)  # a YAML integer has its own digits: 10 is 10.3 to 2 digits
    assert not expectation_holds(10, mpmath.mpf("10.6"), F64)


# ---------------------------------------------------------------------------------------------
# Correct rounding: errors are measured from the unrounded exact value, so a correctly rounded result is up
# to half an ULP from it. max_ulp 0.5 (correctly_rounded: true) accepts it, ties included, on both paths.


def test_half_an_ulp_accepts_correct_rounding_and_nothing_further():
    u = 2.0**-23  # float32's ULP at 1
    correctly = Tolerance(0.5, 0.0)
    tie = mpmath.mpf(1) + mpmath.mpf(u) / 2  # between 1 and 1 + u: both are half an ULP off
    near = mpmath.mpf(1) + mpmath.mpf(u) * mpmath.mpf("0.4999")
    past = mpmath.mpf(1) + mpmath.mpf(u) * mpmath.mpf("0.5001")
    got = [1.0, 1.0 + u, 1.0, 1.0 + u, 1.0, 1.0 + u]
    exact = [tie, tie, near, past, past, near]
    judgement, _ = assert_judged_alike(got, exact, F32, correctly)
    assert list(~judgement.missing) == [True, True, True, True, False, False]
    assert judgement.ulps[:2] == (0.5, 0.5)
    exact_value = [mpmath.mpf(1) + mpmath.mpf(u) * 3]  # representable: only itself is correctly rounded
    assert judge(np.array([1.0 + 3 * u]), mp(exact_value), F32, correctly).passed
    assert not judge(np.array([1.0 + 2 * u]), mp(exact_value), F32, correctly).passed


@pytest.mark.parametrize("dtype", sorted(FORMATS))
def test_correctly_rounded_refuses_the_float_below_an_exact_power_of_two(dtype):
    """The ULP is the spacing of the exact value's binade: the float below an exact 2^k is half an ULP off, like the
    neighbours of a tie, yet 2^k itself is the only correct rounding. On both paths: the fast reference's exact
    gradient at x = 0 is exactly ±1/2 (sigmoid(0) - y for targets 0 and 1)."""
    from conformance.reference import reference

    fmt = FORMATS[dtype]
    ref = reference("bce_with_logits", {"logits": np.zeros(2), "target": np.array([0.0, 1.0])}, "none", fmt, gradient=True)
    below = np.array([0.5 - 2.0 ** -(fmt.precision + 1), -0.5 + 2.0 ** -(fmt.precision + 1)])  # toward 0: the float below
    correctly = tolerance_for(dtype, {"correctly_rounded": True})
    for exact in (ref, ref.exact):
        assert list(judge(np.array([0.5, -0.5]), exact, fmt, correctly).missing) == [False, False]
        judgement = judge(below, exact, fmt, correctly)
        assert list(judgement.missing) == [True, True] and judgement.ulps == (0.5, 0.5), (dtype, judgement)
        assert judge(below, exact, fmt, Tolerance(0.75, 0.0)).passed  # half an ULP is within any larger max_ulp


def test_correctly_rounded_results_fail_any_max_ulp_below_half():
    """Why the loader refuses max_ulp < 0.5: the correctly rounded result of a value between two floats misses it."""
    u = 2.0**-23
    exact = mp([mpmath.mpf(1) + mpmath.mpf(u) / 3])
    assert not judge(np.array([1.0]), exact, F32, Tolerance(0.0, 0.0)).passed
    assert not judge(np.array([1.0]), exact, F32, Tolerance(0.25, 0.0)).passed
    assert judge(np.array([1.0]), exact, F32, tolerance_for("float32", {"correctly_rounded": True})).passed


def test_tolerances_file_refuses_a_max_ulp_below_half():
    from conformance.cases import CaseError
    from conformance.verdicts import TOLERANCES_FILE, parse_tolerances

    text = (REPO / TOLERANCES_FILE).read_text(encoding="utf-8").replace("float32: {max_ulp: 4,", "float32: {max_ulp: 0,")
    with pytest.raises(CaseError) as info:
        parse_tolerances(text, TOLERANCES_FILE)
    (problem,) = info.value.problems
    assert problem.field == "float32.max_ulp" and "max_ulp 0 is below 0.5" in problem.message


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
