"""Metamorphic relations: symmetry, mean against sum / n, and the two-step path against the fused one."""

import math

import mpmath
import numpy as np
import pytest

from conformance import metamorphic
from conformance.adapters import Api, Framework, load_framework
from conformance.cases import load_file
from conformance.dtypes import FORMATS
from conformance.runner import Check, Runner, enumerate_checks
from conformance.verdicts import Tolerance

F32, F64 = FORMATS["float32"], FORMATS["float64"]
TOL = Tolerance(4, 0.0)

CASE = """\
schema_version: 1
description: relation tests
cases:
  - id: mixed
    why: ordinary logits, binary and soft targets
    logits: [-3.0, -0.5, 0.0, 0.75, 6.0]
    target: [0, 1, 0.5, 0.25, 1]
    dtypes: [float32]
    reductions: [none, mean, sum]
    gradients: false
"""


@pytest.fixture
def case(tmp_path):
    path = tmp_path / "unit.yaml"
    path.write_text(CASE)
    return load_file(path)[0]


def test_mirroring_needs_exact_one_minus_y():
    inputs = {"logits": np.array([1.0], np.float32), "target": np.array([0.25], np.float32)}
    assert metamorphic.mirrors_exactly(inputs, F32)
    mirrored = metamorphic.mirrored(inputs)
    assert mirrored["logits"][0] == -1.0 and mirrored["target"][0] == 0.75 and mirrored["target"].dtype == np.float32
    inexact = {"logits": np.array([1.0], np.float32), "target": np.array([np.float32(1e-9)], np.float32)}
    assert not metamorphic.mirrors_exactly(inexact, F32)  # 1 - 1e-9 is not a float32
    assert not metamorphic.mirrors_exactly({**inputs, "pos_weight": np.ones(1, np.float32)}, F32)


def test_mirroring_checks_that_one_minus_y_is_exact_in_float64_too():
    """1 - y must be exact, not merely equal to its own rounding: in float64, 1 - 2^-60 rounds to 1 (the
    old check compared the float64 1 - y with the rounding of the exact 1 - y, and accepted it)."""
    from fractions import Fraction

    from conformance.dtypes import round_to_format

    logits = np.array([1.0, 2.0])
    for y, exact in ((2.0**-60, False), (2.0**-53, True), (0.25, True), (1.0 + 2.0**-52, True), (-(2.0**60), False), (3.0, True)):
        assert metamorphic.mirrors_exactly({"logits": logits, "target": np.array([0.5, y])}, F64) is exact, y
    assert not metamorphic.mirrors_exactly({"logits": logits, "target": np.array([0.5, np.nan])}, F64)
    assert not metamorphic.mirrors_exactly({"logits": logits, "target": np.array([0.5, np.inf])}, F64)
    # float32 too: 1 - 2^-149 is no float32 (nor float64), though both round it to 1
    assert not metamorphic.mirrors_exactly({"logits": logits, "target": np.array([0.5, 2.0**-149], np.float32)}, F32)
    # elementwise against exact rationals, on every float16 value and on float32 / float64 samples
    rng = np.random.default_rng(5)
    for name in ("float16", "bfloat16", "float32", "float64"):
        fmt = FORMATS[name]
        if name in ("float16", "bfloat16"):
            ys = np.arange(1 << 16, dtype=np.uint16).view(fmt.numpy_dtype).astype(np.float64)
        else:
            low = -1074 if name == "float64" else -149
            ys = np.ldexp(rng.uniform(1, 2, 3000), rng.integers(low, 60, 3000)).astype(fmt.numpy_dtype).astype(np.float64)
            ys = np.concatenate([ys, -ys, rng.uniform(-2, 2, 3000).astype(fmt.numpy_dtype).astype(np.float64)])

        def truth(y):
            if not math.isfinite(y):
                return False
            rounded = round_to_format(1 - Fraction(y), fmt)
            return math.isfinite(rounded) and Fraction(rounded) == 1 - Fraction(y)

        assert metamorphic.one_minus_is_exact(ys, fmt).tolist() == [truth(y) for y in ys], name


def test_symmetry_distances():
    holds, largest, rows = metamorphic.symmetry(np.array([1.0, math.nan]), np.array([1.0 + 2**-23, math.nan]), F32, TOL)
    assert holds and largest == 1.0
    holds, largest, _ = metamorphic.symmetry(np.array([1.0]), np.array([math.nan]), F32, TOL)
    assert not holds and largest == math.inf


def test_mean_vs_sum_bound():
    terms = np.array([mpmath.mpf(v) for v in (1.0, 2.0, 3.0)], dtype=object)
    holds, distance, bound = metamorphic.mean_vs_sum(2.0, 6.0, terms, F32)
    assert holds and distance == 0.0 and bound > 0
    holds, distance, _ = metamorphic.mean_vs_sum(2.001, 6.0, terms, F32)
    assert not holds and distance > 1000
    assert metamorphic.mean_vs_sum(math.inf, math.inf, terms, F32)[0]
    assert not metamorphic.mean_vs_sum(math.nan, 6.0, terms, F32)[0]


def test_well_conditioned_region():
    loss = lambda x, y: mpmath.log1p(mpmath.exp(-x)) if y == 1 else mpmath.log1p(mpmath.exp(x))  # noqa: E731
    assert metamorphic.well_conditioned(0.5, 0.0, 1.0, None, loss(0.5, 0), F32)  # condition number 1.7
    assert not metamorphic.well_conditioned(3.0, 0.0, 1.0, None, loss(3.0, 0), F32)  # 6.5: an ULP of p moves L by 6.5
    assert not metamorphic.well_conditioned(20.0, 0.0, 1.0, None, loss(20.0, 0), F32)  # sigmoid(20) rounds to 1 in float32
    assert not metamorphic.well_conditioned(20.0, 0.0, 1.0, None, loss(20.0, 0), F64)  # the loss hangs on 1 - p: 2.4e7
    assert not metamorphic.well_conditioned(-100.0, 1.0, 1.0, None, loss(-100.0, 1), F32)  # sigmoid(-100) is below float32's normals
    assert not metamorphic.well_conditioned(math.inf, 1.0, 1.0, None, mpmath.mpf(0), F64)


def test_relations_are_enumerated_per_api_and_dtype(case):
    numpy = load_framework("rounded")
    relations = [(c.api.name, c.reduction, c.quantity) for c in enumerate_checks([case], numpy.apis) if c.quantity in metamorphic.RELATIONS]
    assert ("rounded.stable_bce_with_logits", "none", "symmetry") in relations
    assert ("rounded.stable_bce_with_logits", "mean", "mean-vs-sum") in relations
    assert ("rounded.hand_sigmoid+rounded.hand_bce", "none", "vs-fused") in relations
    assert not any(api == "rounded.stable_bce_with_logits" and q == "vs-fused" for api, _, q in relations)


def test_numpy_stable_formula_keeps_every_relation_and_the_hand_formulas_symmetry_is_within_its_conditioning(case):
    numpy = load_framework("rounded")
    runner = Runner(numpy)
    verdicts = {
        (c.api.name, c.quantity): runner.run(c) for c in enumerate_checks([case], numpy.apis) if c.quantity in metamorphic.RELATIONS
    }
    stable = {q: r.verdict for (api, q), r in verdicts.items() if api == "rounded.stable_bce_with_logits"}
    assert stable == {"symmetry": "exact", "mean-vs-sum": "exact"}
    hand = verdicts[("rounded.hand_sigmoid+rounded.hand_bce", "symmetry")]
    # 1 - sigmoid(6) in float32 keeps few digits: the two-step path's loss receives p rounded, which no
    # two-step implementation avoids, so the broken symmetry is within the conditioning of both sides
    assert hand.verdict == "conditioned" and hand.max_ulp > 100 and hand.bound_ratio <= 4
    assert verdicts[("rounded.hand_sigmoid+rounded.hand_bce", "vs-fused")].verdict == "exact"


def asymmetric(inputs, reduction):
    x, y = inputs["logits"].astype(np.float64), inputs["target"].astype(np.float64)
    loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    loss = np.where(x > 0, loss * 1.01, loss)  # wrong on one side only
    out = {"none": loss, "mean": loss.mean(), "sum": loss.sum() * 1.01}[reduction]
    return np.asarray(out, dtype=inputs["logits"].dtype)


def test_broken_relations_fail_with_their_distances(case):
    api = Api("double.logits", "double", "bce_with_logits", asymmetric, "numpy", lambda a, d, r: "")
    runner = Runner(Framework("double", {}, [api]))
    results = {c.quantity: runner.run(c) for c in enumerate_checks([case], [api]) if c.quantity in metamorphic.RELATIONS}
    assert results["symmetry"].verdict == "fail" and "relation symmetry does not hold" in results["symmetry"].message
    assert results["symmetry"].worst and results["symmetry"].max_ulp > 1000
    assert results["mean-vs-sum"].verdict == "fail"


def test_weight_and_pos_weight_enter_the_condition_number():
    # L = w·softplus(x) for y = 0 and dL/dp = w/(1 - p): a weight scales both, so it cannot change the verdict
    x, y = 1.0, 0.0
    loss = mpmath.log1p(mpmath.exp(x))
    assert metamorphic.well_conditioned(x, y, 1.0, None, loss, F32) == metamorphic.well_conditioned(x, y, 5.0, None, 5 * loss, F32)
    # pos_weight q multiplies only the positive term: with y = 0.5 it tilts the condition number
    assert metamorphic.well_conditioned(0.0, 0.5, 1.0, 1.0, mpmath.log(2), F32)
    with mpmath.workprec(100):
        lq = 10 * 0.5 * mpmath.log1p(mpmath.exp(-0.0)) + 0.5 * mpmath.log(2)
    assert metamorphic.well_conditioned(0.0, 0.5, 1.0, 10.0, lq, F32) is True


def test_an_api_raising_unsupported_gives_unsupported_relations(case):
    from conformance.adapters import Unsupported

    def refuses(inputs, reduction):
        raise Unsupported("not on this backend")

    api = Api("double.logits", "double", "bce_with_logits", refuses, "numpy", lambda a, d, r: "")
    runner = Runner(Framework("double", {}, [api]))
    for check in enumerate_checks([case], [api]):
        if check.quantity in metamorphic.RELATIONS:
            result = runner.run(check)
            assert result.verdict == "unsupported" and result.message == "not on this backend"


def test_a_wrong_shape_is_reported_as_the_apis_not_as_a_raise(case):
    api = Api("double.logits", "double", "bce_with_logits", lambda i, r: np.zeros(2, np.float32), "numpy", lambda a, d, r: "")
    runner = Runner(Framework("double", {}, [api]))
    symmetry = next(c for c in enumerate_checks([case], [api]) if c.quantity == "symmetry")
    result = runner.run(symmetry)
    assert result.verdict == "error" and result.message == "double.logits returned shape (2,), expected (5,)"
    assert result.max_ulp is None


def test_the_vectorised_relations_agree_with_the_exact_ones(monkeypatch):
    """From VECTORISED_FROM elements on, symmetry and vs-fused are measured in float64: the same
    verdicts, the same well-conditioned elements, distances within 2^-40 of the exact ones."""
    from conformance import metamorphic
    from conformance.dtypes import FORMATS
    from conformance.reference import reference
    from conformance.verdicts import Tolerance

    fmt = FORMATS["float32"]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 30, 1500), [np.inf, -np.inf, np.nan, 0.0, 17.0, -104.0]]).astype(np.float32)
    xs, ys = np.meshgrid(x, np.array([0, 0.25, 1], dtype=np.float32), indexing="ij")
    inputs = {"logits": xs, "target": ys}
    exact = reference("bce_with_logits", inputs, "none", fmt)
    first = exact.rounded + rng.integers(-6, 7, exact.rounded.shape) * np.abs(exact.rounded) * 2.0**-23
    second = np.where(rng.random(first.shape) < 0.02, np.nan, exact.rounded)
    tolerance = Tolerance(4.0, fmt.smallest_normal)
    fast = (metamorphic.symmetry(first, second, fmt, tolerance), metamorphic.versus_fused(second, first, inputs, exact, fmt, tolerance))
    monkeypatch.setattr(metamorphic, "VECTORISED_FROM", 10**9)
    slow = (metamorphic.symmetry(first, second, fmt, tolerance), metamorphic.versus_fused(second, first, inputs, exact, fmt, tolerance))
    (holds, largest, rows), (fused_holds, inside, outside) = fast
    (holds2, largest2, rows2), (fused_holds2, inside2, outside2) = slow
    assert (holds, fused_holds) == (holds2, fused_holds2)
    assert largest == largest2 or abs(largest - largest2) <= 2**-40 * largest2
    assert [r[0] for r in rows[:50]] == [r[0] for r in rows2[:50]]
    assert [r[0] for r in inside] == [r[0] for r in inside2] and len(outside) == len(outside2)
    assert np.allclose([r[3] for r in inside], [r[3] for r in inside2], rtol=2**-40, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_the_mirror_of_0d_inputs_is_0d_arrays(dtype):
    # numpy's arithmetic on a 0-d array returns a numpy scalar, which a framework's conversion need not take
    fmt = FORMATS[dtype]
    inputs = {name: np.asarray(value, dtype=fmt.numpy_dtype) for name, value in (("logits", 0.5), ("target", 0.25))}
    mirror = metamorphic.mirrored(inputs)
    for name, want in (("logits", -0.5), ("target", 0.75)):
        assert type(mirror[name]) is np.ndarray and mirror[name].shape == () and mirror[name].dtype == fmt.numpy_dtype
        assert float(mirror[name]) == want


def test_torchs_relations_take_0d_inputs(tmp_path):
    # the symmetry feeds torch the mirrored inputs and vs-fused both paths: on a 0-d case each is a 0-d tensor
    pytest.importorskip("torch")
    path = tmp_path / "scalar.yaml"
    path.write_text(
        "schema_version: 1\ndescription: 0-d\ncases:\n"
        "  - {id: scalar, why: 0-d, logits: 0.5, target: 0.25, dtypes: [bfloat16, float32],\n"
        "     reductions: [none, mean, sum], gradients: false}\n"
    )
    torch_framework = load_framework("torch")
    apis = [a for a in torch_framework.apis if not a.name.startswith("keras")]  # Keras's backend is its own concern
    framework = Framework("torch", torch_framework.versions, apis)
    checks = [c for c in enumerate_checks(load_file(path), apis) if c.quantity in metamorphic.RELATIONS]
    assert {c.quantity for c in checks} == set(metamorphic.RELATIONS)
    runner = Runner(framework)
    for check in checks:
        result = runner.run(check)
        assert result.verdict != "error", (check.id, result.message)
        assert "raised" not in result.message, (check.id, result.message)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_torchs_conversion_takes_numpy_scalars(dtype):
    # what numpy's arithmetic on 0-d arrays returns: a numpy scalar, which torch.from_numpy refuses
    pytest.importorskip("torch")
    fmt = FORMATS[dtype]
    name = "torch.nn.functional.binary_cross_entropy_with_logits"
    api = next(a for a in load_framework("torch").apis if a.name == name)
    scalars = {"logits": fmt.numpy_dtype.type(0.5), "target": fmt.numpy_dtype.type(1)}
    arrays = {name: np.asarray(value) for name, value in scalars.items()}
    for reduction in ("none", "mean"):
        got = api.call(scalars, reduction)
        assert got.shape == () and got.dtype == fmt.numpy_dtype
        assert got.tobytes() == api.call(arrays, reduction).tobytes()


# ---------------------------------------------------------------------------------------------
# vs-fused under the two-step API's declared variant, and under label smoothing

CLAMPED_CASE = """\
schema_version: 1
description: the two-step path under torch's -100 clamp
cases:
  - id: past-the-clamp
    why: float64 sigmoid(x) is a normal number down to x = -708, where -log p passes 100 from x = -100 on
    logits: [-600.0, -200.0, -150.0, -3.0, 0.5, 2.0]
    target: [1, 1, 1, 1, 1, 1]
    dtypes: [float64]
    reductions: [none]
    gradients: false
"""


def clamped_two_step(inputs, reduction):
    """The rounded subject's sigmoid (exp correctly rounded, the rest IEEE 754), then the log terms clamped at
    -100 as torch's binary_cross_entropy does, with log and log1p correctly rounded: fixed by construction."""
    from conformance.adapters import numpy as numpy_adapter
    from conformance.adapters.rounded import xp

    x, y = inputs["logits"], inputs["target"]
    floor, one = x.dtype.type(-100), x.dtype.type(1)
    with np.errstate(all="ignore"):
        p = numpy_adapter.hand_sigmoid(x, xp)
        return -(y * np.maximum(xp.log(p), floor) + (one - y) * np.maximum(xp.log1p(-p), floor))


def test_vs_fused_compares_where_the_declared_variant_agrees_with_the_mathematics(tmp_path):
    # past x = -100 the two-step loss is 100 (the declared log_clamp(-100)), the fused one -x: the two-step path
    # owes the variant there, so those elements are not compared; where the clamp is inactive they are
    path = tmp_path / "clamped.yaml"
    path.write_text(CLAMPED_CASE)
    case = load_file(path)[0]
    fused = next(a for a in load_framework("rounded").apis if a.op == "bce_with_logits")
    two_step = Api("clamped.sigmoid+bce", fused.framework, "sigmoid_bce", clamped_two_step, "none only", lambda a, d, r: "", variants=("log_clamp(-100)",))
    runner = Runner(Framework(fused.framework, {}, [fused, two_step]))
    result = runner.run(Check(case, two_step, "float64", "none", quantity="vs-fused"))
    assert result.verdict == "exact", result.message
    # x = 2 is ill conditioned (its loss 0.127 hangs on p: condition 7.9), the three past -100 owe the variant
    assert "on the 2 well-conditioned elements" in result.message and "on the other 4" in result.message
    # the same API declaring no variant: the clamp is a miss of the relation
    undeclared = Api("clamped.sigmoid+bce", fused.framework, "sigmoid_bce", clamped_two_step, "none only", lambda a, d, r: "")
    runner = Runner(Framework(fused.framework, {}, [fused, undeclared]))
    assert runner.run(Check(case, undeclared, "float64", "none", quantity="vs-fused")).verdict == "fail"


@pytest.mark.parametrize("repeat", [1, metamorphic.VECTORISED_FROM], ids=["per-element", "vectorised"])
def test_vs_fused_conditions_on_the_smoothed_target(repeat):
    # x = 30, y = 1 smoothed by 0.1 to 0.95: the loss 0.95·softplus(-30) + 0.05·softplus(30) = 1.5 hangs on
    # 1 - p = 9.4e-14 through its 0.05 term: condition number 3.5e11, not a well-conditioned element, whatever
    # the unsmoothed y = 1 (condition 1/30) says. The two-step path's loss of the correctly rounded sigmoid
    # departs from the fused loss by 5.5e-6 relative there, and that is no fault of it.
    from fractions import Fraction

    from conformance import variants
    from conformance.dtypes import cast
    from conformance.reference import reference

    inputs = {
        "logits": cast([Fraction(30), Fraction(1)] * repeat, F64),
        "target": cast([Fraction(1), Fraction(1)] * repeat, F64),
        "label_smoothing": np.asarray(0.1),
    }
    exact = reference("bce_with_logits", inputs, "none", F64)
    # the clamp is inactive at these logits: the variant's two-step value is the loss of the rounded sigmoid
    rounded_sigmoid = reference("bce_with_logits", inputs, "none", F64, variants.get("log_clamp(-100)"), two_step=True)
    fused, two_step = np.asarray(exact.rounded, dtype=np.float64), np.asarray(rounded_sigmoid.rounded, dtype=np.float64)
    assert abs(two_step[0] - fused[0]) / fused[0] > 1e-6  # the smoothed term's 1 - p, rounded
    holds, inside, outside = metamorphic.versus_fused(two_step, fused, inputs, exact, F64, TOL)
    assert holds and len(inside) == repeat and len(outside) == repeat
    assert all(row[0][0] % 2 == 0 for row in outside)  # x = 30 is the one left out
    with mpmath.workprec(200):
        assert not metamorphic.well_conditioned(30.0, 1.0, 1.0, None, exact.exact_at(0), F64, 4, label_smoothing=0.1)
        assert metamorphic.well_conditioned(30.0, 1.0, 1.0, None, exact.exact_at(0), F64, 4)  # unsmoothed: it would be
