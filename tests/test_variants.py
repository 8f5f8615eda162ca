"""Named variants: exact values under documented contracts, and the `acceptable` verdict."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from conformance import divergences, variants
from conformance.adapters import Api, Framework
from conformance.cases import load_file
from conformance.divergences import KnownDivergence
from conformance.dtypes import FORMATS, cast, round_fraction
from conformance.reference import _rounded_sigmoid, reference
from conformance.runner import Check, Runner

F32, F64 = FORMATS["float32"], FORMATS["float64"]
CLAMP, CLIP = variants.get("log_clamp(-100)"), variants.get("prob_clip(1e-7)")


def arrays(fmt, **values):
    return {name: cast([Fraction(v) if math.isfinite(v) else v for v in vals], fmt) for name, vals in values.items()}


def test_every_variant_names_its_source():
    for variant in variants.VARIANTS.values():
        assert variant.source.startswith("https://") and variant.summary
    with pytest.raises(ValueError, match="unknown variant"):
        variants.get("log_clamp(-50)")


def test_log_clamp_caps_each_log_term_at_100():
    inputs = arrays(F64, probs=[0.0, 0.0, 1.0, 0.5, 1e-50], target=[1.0, 0.5, 0.0, 1.0, 1.0])
    value = reference("bce", inputs, "none", F64, CLAMP)
    assert list(value.rounded) == [100.0, 50.0, 100.0, math.log(2), 100.0]  # -log(1e-50) = 115 > 100
    exact = reference("bce", inputs, "none", F64)
    assert math.isinf(exact.rounded[0]) and exact.rounded[4] == pytest.approx(115.12925464970229)


def test_prob_clip_uses_the_ends_the_dtype_has():
    # float32: eps = fl32(1e-7), 1 - eps = 0.99999988 (1 - 2**-23); float64: 1 - 1e-7 rounded in float64
    for fmt in (F32, F64):
        eps = float(np.array(1e-7).astype(fmt.numpy_dtype))
        high = float(np.array(1 - eps).astype(fmt.numpy_dtype))
        inputs = arrays(fmt, probs=[0.0, 1.0], target=[1.0, 0.0])
        value = reference("bce", inputs, "none", fmt, CLIP)
        with mpmath.workprec(200):
            want = [-mpmath.log(mpmath.mpf(eps)), -mpmath.log(1 - mpmath.mpf(high))]
        for got, exact in zip(value.exact, want):
            assert abs(got - exact) < mpmath.mpf(2) ** -150
    assert float(np.float32(1) - np.float32(1e-7)) == 1 - 2**-23


def test_two_step_variant_rounds_the_sigmoid_first():
    # float32 sigmoid(20) rounds to 1: the clamped loss of target 0 is 100, the exact loss is 20
    inputs = arrays(F32, logits=[20.0], target=[0.0])
    assert reference("bce_with_logits", inputs, "none", F32, CLAMP, two_step=True).rounded[0] == 100.0
    assert reference("bce_with_logits", inputs, "none", F32).rounded[0] == np.float32(20.000000002)


@pytest.mark.parametrize("variant", [CLAMP, CLIP])
def test_two_step_variant_gradient_on_a_tie_settles_at_once(variant, monkeypatch):
    # bfloat16 x = 3.828125 has the rounded sigmoid p = 0.98046875 (251·2**-8), and y = 0.177734375 (91·2**-9):
    # the chain product w·(p - y) = 0.802734375 (411·2**-9) lies exactly halfway between two bfloat16 values.
    # As a quotient then a product it came out a working-precision rounding either side of the tie (exact at
    # 80 bits, 7e-49 below at 160), so Ziv's test doubled the precision again and again (108k such elements
    # of cases/scale.yaml ran for minutes); formed exactly, it settles at the first precision, half to even.
    from conformance import reference as reference_module

    bf16 = FORMATS["bfloat16"]
    inputs = arrays(bf16, logits=[3.828125, 0.5], target=[0.177734375, 0.25])
    assert float(reference_module._rounded_sigmoid(inputs["logits"], bf16)[0]) == 251 * 2**-8
    monkeypatch.setattr(reference_module, "MAX_PRECISION", 2 * (2 * bf16.precision + 64))  # no doubling allowed
    slow = reference("bce_with_logits", inputs, "none", bf16, variant, two_step=True, gradient=True, fast=False)
    assert slow.exact[0] == mpmath.mpf(411) / 512
    assert float(slow.rounded[0]) == 0.8046875  # 206·2**-8, the even neighbour of the tie
    many = {name: np.repeat(values, 1024) for name, values in inputs.items()}  # the fast path, whose ties go to mpmath
    fast = reference("bce_with_logits", many, "none", bf16, variant, two_step=True, gradient=True)
    assert np.array_equal(np.asarray(fast.rounded[::1024]).astype(np.float64), np.asarray(slow.rounded).astype(np.float64))


F16, BF16 = FORMATS["float16"], FORMATS["bfloat16"]


@pytest.mark.parametrize("variant", [CLAMP, CLIP], ids=lambda v: v.name)
def test_two_step_variant_gradient_settles_an_exact_tie(variant):
    # The two-step gradient under either variant is ((p - y)/max(p(1 - p), floor))·p(1 - p) = p - y here,
    # with p the rounded sigmoid: p - y is exactly a midpoint of the 16-bit format, which an inexact
    # division at any working precision lands on either side of (the Ziv loop never settled: ReferenceError).
    # Evaluated in exact rationals it rounds to even at the first precision, on both paths.
    cases = [  # dtype, logit, target, p, exact p - y, its rounding (ties to even)
        (F16, -0.0004887580871582031, 1.0, 0.499755859375, -0.500244140625, -0.5),  # -(0.5 + ulp/2)
        (F16, -1.1005859375, 0.5, 0.2496337890625, -0.2503662109375, -0.25048828125),  # -(0.25 + 1.5 ulp)
        (BF16, -0.003936767578125, 1.0, 0.498046875, -0.501953125, -0.5),
    ]
    for fmt, x, y, p, exact, rounded in cases:
        assert float(np.asarray(x, fmt.numpy_dtype)) == x and _rounded_sigmoid(np.array([x]), fmt)[0] == p
        inputs = arrays(fmt, logits=[x], target=[y])
        slow = reference("bce_with_logits", inputs, "none", fmt, variant, two_step=True, gradient=True, fast=False)
        assert slow.precision == 2 * (2 * fmt.precision + 64)  # settled at once
        assert slow.rounded[0] == rounded and slow.exact[0] == exact and isinstance(slow.exact[0], mpmath.mpf)
        # the fast path knows p - y exactly (TwoSum) where the floor / clip is inactive: the tie rounds to even there too
        many = arrays(fmt, logits=[x] * 1024, target=[y] * 1024)
        fast = reference("bce_with_logits", many, "none", fmt, variant, two_step=True, gradient=True)
        assert fast.approx is not None and (fast.approx == exact).all() and (fast.bound == 0).all()
        assert (fast.rounded == rounded).all()
        assert fast.exact_at(0) == exact
        # the mean's gradient divides the exact value by the count: p - y over 1024, a tie again
        mean = reference("bce_with_logits", many, "mean", fmt, variant, two_step=True, gradient=True)
        assert (mean.rounded == rounded / 1024).all()


def test_two_step_variant_gradient_is_exact_zero_where_the_sigmoid_saturates():
    # float16's floor 1e-12 is 0 in the dtype: at p = 1 (x = 20), (p - y)/max(0, 0) is NaN or inf, and the
    # sigmoid's backward p(1 - p) = 0 silences it: an exact zero on both paths
    inputs = arrays(F16, logits=[20.0, 20.0, -20.0, -20.0], target=[1.0, 0.0, 0.0, 0.5])
    slow = reference("bce_with_logits", inputs, "none", F16, CLAMP, two_step=True, gradient=True, fast=False)
    assert list(slow.rounded) == [0.0, 0.0, 0.0, 0.0] and not np.signbit(slow.rounded).any()
    many = {name: np.repeat(values, 256) for name, values in inputs.items()}
    fast = reference("bce_with_logits", many, "none", F16, CLAMP, two_step=True, gradient=True)
    assert not np.isnan(fast.approx).any() and (fast.rounded == 0).all() and not np.signbit(fast.rounded).any()


CASE = """\
schema_version: 1
description: variant tests
cases:
  - id: ends
    why: p at 0 and 1
    probs: [0, 1, 0.5]
    target: [1, 0, 1]
    dtypes: [float64]
    reductions: [none]
"""


def clamped_bce(inputs, reduction):
    p, y = inputs["probs"], inputs["target"]
    with np.errstate(divide="ignore"):
        return -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def run(tmp_path, call, declared, known=()):
    path = tmp_path / "unit.yaml"
    path.write_text(CASE)
    case = load_file(path)[0]
    api = Api("double.bce", "double", "bce", call, "numpy", lambda a, d, r: "", variants=declared)
    return Runner(Framework("double", {}, [api]), known).run(Check(case, api, "float64", "none"))


def test_a_declared_variant_makes_a_clamped_result_acceptable(tmp_path):
    result = run(tmp_path, clamped_bce, ("log_clamp(-100)",))
    assert result.verdict == "acceptable"
    assert result.variant == "log_clamp(-100)" and result.variant_max_ulp <= 1
    assert math.isinf(result.max_ulp)  # still far from the exact value, and reported so
    assert "BCELoss" in result.source


def test_without_the_declaration_the_same_result_fails(tmp_path):
    assert run(tmp_path, clamped_bce, ()).verdict == "fail"


def test_a_result_matching_neither_fails(tmp_path):
    result = run(tmp_path, lambda i, r: clamped_bce(i, r) * 1.001, ("log_clamp(-100)",))
    assert result.verdict == "fail"


def test_a_known_divergence_over_an_acceptable_result_explains_nothing(tmp_path):
    entry = KnownDivergence("old", ("double.*",), "clamp", "https://example.invalid")
    result = run(tmp_path, clamped_bce, ("log_clamp(-100)",), known=[entry])
    assert result.verdict == "acceptable" and result.in_regions == ["old"] and not result.explained
    assert [a.status for a in divergences.account([entry], [result])] == ["unexpected_pass"]


def test_an_acceptable_result_passes_its_pytest_test_and_a_failing_one_does_not(tmp_path):
    from conformance.plugin import verdict_outcome

    verdict_outcome(run(tmp_path, clamped_bce, ("log_clamp(-100)",)))  # acceptable: no exception
    with pytest.raises(pytest.fail.Exception):
        verdict_outcome(run(tmp_path, clamped_bce, ()))


def test_variant_gradient_keeps_its_exact_value_beyond_the_dtype():
    # Where the clip is inactive the variant's gradient is the exact one; its exact value must stay exact
    # (an mpf of the reference's precision), not the float64 rounding, or errors near the tolerance are
    # measured against the wrong number (it was: 4.0 instead of 4.44 ULP for Keras's smoothed float64 gradient)
    from conformance.variants import VARIANTS

    f64 = FORMATS["float64"]
    inputs = {
        "probs": np.array([float.fromhex("0x1.a1e4f765fd8aep-1")]),
        "target": np.array([1.0]),
        "label_smoothing": np.array(0.1),
    }
    plain = reference("bce", inputs, "none", f64, gradient=True, fast=False)
    clipped = reference("bce", inputs, "none", f64, VARIANTS["prob_clip(1e-7)"], gradient=True, fast=False)
    assert clipped.exact[0] == plain.exact[0] != mpmath.mpf(float(plain.rounded[0]))
    p, ls = Fraction(float.fromhex("0x1.a1e4f765fd8aep-1")), Fraction(0.1)
    y = 1 - ls + ls / 2
    exact = (1 - y) / (1 - p) - y / p
    with mpmath.workprec(300):
        assert abs(clipped.exact[0] - mpmath.mpf(exact.numerator) / exact.denominator) < mpmath.mpf(2) ** -200


# ---------------------------------------------------------------------------------------------
# variants an adapter defines: parameterised contracts, constants held in a stated dtype

PADDLE = variants.log_clamp(-100, grad_denominator_floor=1e-12, constants_dtype="float64", source="https://example.invalid/paddle")


def test_a_variants_constants_are_held_in_their_dtype_then_converted():
    # torch: `constexpr float EPSILON = 1e-12;` then scalar_t(EPSILON); Paddle: static_cast<T>(1e-12), a double
    float32_eps = Fraction(float(np.float32(1e-12)))
    assert CLAMP.constants_dtype == "float32"
    assert CLAMP.grad_floor(F64) == float32_eps != Fraction(1e-12)
    assert PADDLE.grad_floor(F64) == Fraction(1e-12)
    assert PADDLE.grad_floor(F32) == CLAMP.grad_floor(F32) == float32_eps
    assert CLAMP.grad_floor(F16) == PADDLE.grad_floor(F16) == 0  # below half float16's smallest subnormal
    assert CLAMP.grad_floor(BF16) == Fraction(float(np.asarray(np.float32(1e-12)).astype(BF16.numpy_dtype)))


def test_an_adapters_own_floor_is_computed_exactly_and_torchs_does_not_fit_it():
    # (p - y)/max(p(1 - p), floor) at p = 1e-13, y = 1: the floor is active; the two floors differ by 4e-9 relative
    inputs = arrays(F64, probs=[1e-13], target=[1.0])
    p = Fraction(1e-13)
    for variant, floor in ((PADDLE, Fraction(1e-12)), (CLAMP, Fraction(float(np.float32(1e-12))))):
        value = reference("bce", inputs, "none", F64, variant, gradient=True)
        assert value.rounded[0] == round_fraction((p - 1) / floor, F64)
    paddle = reference("bce", inputs, "none", F64, PADDLE, gradient=True).rounded[0]
    torch = reference("bce", inputs, "none", F64, CLAMP, gradient=True).rounded[0]
    assert abs(paddle - torch) / abs(paddle) > 1e-9  # millions of float64 ULPs apart


def test_torchs_float16_floor_is_0_and_the_backward_0_over_0_is_nan():
    # torch.nn.functional.binary_cross_entropy's float16 backward at p = y = 0 and p = y = 1 is NaN: its
    # EPSILON converted to Half is 0, and (p - y)/max(p(1 - p), 0) is 0/0; the variant says so and computes it
    inputs = arrays(F16, probs=[0.0, 1.0, 0.5], target=[0.0, 1.0, 1.0])
    value = reference("bce", inputs, "none", F16, CLAMP, gradient=True)
    assert np.isnan(value.rounded[:2]).all() and value.rounded[2] == -2.0
    assert "0 in float16" in CLAMP.summary and "NaN" in CLAMP.summary


def test_a_declared_variant_is_a_name_or_a_variant_and_is_checked():
    assert variants.get("log_clamp(-100)") is CLAMP and variants.get(PADDLE) is PADDLE
    assert variants.problems(("log_clamp(-100)", PADDLE)) == []
    assert variants.describe((PADDLE,), "sigmoid_bce") == f"{PADDLE.name} + {variants.ROUNDED_SIGMOID}"
    assert PADDLE.name == "log_clamp(-100, grad_denominator_floor=1e-12 in float64)"
    bad = variants.Variant("", "", "", log_floor=5.0, constants_dtype="float8")
    listed = variants.problems((bad,))
    assert any("name ''" in p for p in listed) and any("source must say it" in p for p in listed)
    assert any("constants_dtype 'float8'" in p for p in listed)
    assert variants.problems((variants.Variant("mine", "s", "https://x", prob_clip=0.7),)) == [
        "variant 'mine': prob_clip 0.7: an eps in (0, 1/2)"
    ]
    assert "no parameter" in variants.problems((variants.Variant("mine", "s", "https://x"),))[0]
    impostor = variants.log_clamp(-50, source="https://x", name="log_clamp(-100)")
    assert "the name of a built-in variant with other parameters" in variants.problems((impostor,))[0]
    assert "must be a tuple" in variants.problems("log_clamp(-100)")[0]


def test_variants_holding_constants_in_different_dtypes_combine():
    both = variants.combine((CLIP, CLAMP))
    assert both.grad_floor(F64) == CLAMP.grad_floor(F64) and both.clip_ends(F32) == CLIP.clip_ends(F32)
    assert both.grad_floor(F16) == 0
