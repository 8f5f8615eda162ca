"""The condition-aware bounds (conformance/conditioning.py) and the `conditioned` verdict built on them.

Subjects fixed by construction: closed forms of the bounds where the quantity is linear in the input that
moves, the witness property (the vectorised float64 path never above the exact one, and close to it), and
test doubles that return the correct rounding moved by a chosen number of ULPs."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from conformance import conditioning, reference
from conformance.adapters import Api, Framework
from conformance.cases import load_file
from conformance.dtypes import get_format
from conformance.runner import Check, Runner
from conformance.verdicts import Judgement, Tolerance, Verdict, conditioning_of, default_tolerances

F32, F16, F64 = get_format("float32"), get_format("float16"), get_format("float64")


def deviations(formula, quantity, inputs, fmt, two_step=False, exact=False, monkeypatch=None):
    shape = np.broadcast_shapes(*(np.shape(v) for k, v in inputs.items() if k != "label_smoothing"))
    if exact:  # no dtype goes through the float64 path
        monkeypatch.setattr(conditioning.fast_reference, "MAX_PRECISION", 0)
    return conditioning.term_deviations(formula, quantity, two_step, inputs, fmt, np.ones(shape, dtype=bool))


@pytest.mark.parametrize("exact", [False, True], ids=["float64 path", "mpmath path"])
def test_a_half_target_gradient_moves_with_the_target_alone(exact, monkeypatch):
    """σ(x) - y at y = 1/2: d/dy = -1, so the target's box is the bound. 0.5 is a power of two: the gap below
    it is half the gap above (float32: 2^-25 and 2^-24), and the box is half of each."""
    x = np.array([0.0], dtype=np.float32)  # x = 0 moves by half the smallest subnormal: nothing at this scale
    d = deviations("bce_with_logits", "grad", {"logits": x, "target": np.array([0.5], np.float32)}, F32, exact=exact, monkeypatch=monkeypatch)
    # y down by 2^-26 raises the gradient by 2^-26; y up by 2^-25 lowers it by 2^-25
    assert d.above[0] == pytest.approx(2.0**-26, rel=1e-6) and d.above[0] <= 2.0**-26 * (1 + 1e-12)
    assert d.below[0] == pytest.approx(2.0**-25, rel=1e-6) and d.below[0] <= 2.0**-25 * (1 + 1e-12)


def test_a_hard_label_stays_and_a_soft_one_moves():
    """Targets of exactly 0 and 1 are exact in every dtype; 0.25 is not a computed-exactly label."""
    x = np.array([2.0, 2.0], dtype=np.float32)
    hard = deviations("bce_with_logits", "grad", {"logits": x, "target": np.array([1.0, 0.0], np.float32)}, F32)
    soft = deviations("bce_with_logits", "grad", {"logits": x, "target": np.array([0.25, 0.75], np.float32)}, F32)
    # the hard labels' gradient moves only with x, whose box is half the gaps at 2: 2^-23 above, 2^-24 below
    sigma_prime = float(reference.sigmoid(mpmath.mpf(2)) * (1 - reference.sigmoid(mpmath.mpf(2))))
    assert hard.above == pytest.approx(sigma_prime * 2.0**-23, rel=1e-4)
    assert hard.below == pytest.approx(sigma_prime * 2.0**-24, rel=1e-4)
    assert (soft.above > hard.above * 1.5).all()  # plus the target's own half ULP


def test_the_fast_path_is_a_lower_bound_of_the_exact_witness_and_close_to_it(monkeypatch):
    rng = np.random.default_rng(7)
    x = rng.normal(0, 8, 200).astype(np.float32)
    y = rng.choice([0.0, 1.0, 0.5, 0.3], 200).astype(np.float32)
    w = rng.uniform(0.1, 3, 200).astype(np.float32)
    inputs = {"logits": x, "target": y, "weight": w}
    for quantity in ("value", "grad"):
        for two_step in (False, True):
            fast = deviations("bce_with_logits", quantity, inputs, F32, two_step)
            with monkeypatch.context() as patch:
                exact = deviations("bce_with_logits", quantity, inputs, F32, two_step, exact=True, monkeypatch=patch)
            for side in ("below", "above"):
                f, e = getattr(fast, side), getattr(exact, side)
                finite = np.isfinite(e)
                assert (np.isinf(f) == np.isinf(e)).all(), (quantity, two_step, side)
                assert (f[finite] <= e[finite] * (1 + 1e-9) + 1e-300).all(), (quantity, two_step, side)
                # the float64 witnesses lose their evaluations' error bounds (a relative 2^-45 of the value) and, for
                # the two-step op, the margin that keeps p inside its box: a tiny part of the witness
                scale = np.abs(np.asarray(reference.reference(
                    "bce_with_logits", inputs, "none", F32, gradient=quantity == "grad", fast=False).rounded))
                lost = e[finite] - f[finite]
                assert (lost <= e[finite] * 2.0**-16 + scale[finite] * 2.0**-40 + 1e-300).all(), (quantity, two_step, side)


def test_a_two_step_probability_that_rounds_to_1_has_no_bound_above():
    """bce on p = σ(x) rounded: at x = 20 in float32, σ(x) is within half an ULP of 1, and -log(1 - p) at p = 1 is
    infinite: an infinite two-step loss is what an ideal two-step implementation may return."""
    inputs = {"logits": np.array([20.0, 1.0], dtype=np.float32), "target": np.array([0.0, 0.0], np.float32)}
    d = deviations("bce_with_logits", "value", inputs, F32, two_step=True)
    assert d.above[0] == math.inf and math.isfinite(d.above[1])
    fused = deviations("bce_with_logits", "value", inputs, F32)
    assert math.isfinite(fused.above[0])  # the fused loss does not receive p


def test_a_reduction_adds_its_terms_deviations_over_its_count():
    inputs = {"logits": np.array([[0.5, -1.5], [3.0, 0.25]], np.float32), "target": np.array([[0.3, 1], [0, 0.5]], np.float32)}
    terms = deviations("bce_with_logits", "value", inputs, F32)
    everything = np.ones((), dtype=bool)
    total = conditioning.result_deviations("bce_with_logits", "value", False, inputs, F32, "sum", False, everything)
    mean = conditioning.result_deviations("bce_with_logits", "value", False, inputs, F32, "mean", False, everything)
    assert float(total.above) == pytest.approx(terms.above.sum(), rel=1e-12)
    assert float(mean.below) == pytest.approx(terms.below.sum() / 4, rel=1e-12)
    rows = conditioning.result_deviations("bce_with_logits", "value", False, inputs, F32, "none", True, np.ones(2, bool))
    assert rows.above == pytest.approx(terms.above.sum(axis=-1) / 2, rel=1e-12)
    grad = conditioning.result_deviations("bce_with_logits", "grad", False, inputs, F32, "mean", False, np.ones((2, 2), bool))
    per_term = deviations("bce_with_logits", "grad", inputs, F32)
    assert grad.above == pytest.approx(per_term.above / 4, rel=1e-12)


def test_label_smoothing_moves_the_smoothed_target_by_its_rounding():
    """y' = y·(1 - ls) + ls/2 is computed in the dtype: at y = 1, ls = 0.1, y' = 0.95 (gap 2^-24 in float32)."""
    inputs = {"logits": np.array([0.0], np.float32), "target": np.array([1.0], np.float32), "label_smoothing": np.array(0.1)}
    d = deviations("bce_with_logits", "grad", inputs, F32)
    assert d.above[0] == pytest.approx(2.0**-25, rel=1e-5) and d.below[0] == pytest.approx(2.0**-25, rel=1e-5)


def judgement(errors, missing) -> Judgement:
    errors = np.asarray(errors, dtype=np.float64)
    return Judgement(False, float(errors.max()), [], ulps=tuple(errors.ravel()), missing=np.asarray(missing))


def test_the_rule_every_missing_element_within_k_times_its_bound():
    tolerance = Tolerance(4, 0, condition_factor=4)
    errors, missing = np.array([1.0, 9.0, 30.0]), np.array([False, True, True])
    conditions = np.array([1.0, 3.0, 40.0])
    within = conditioning_of(missing, errors, np.array([0.5, 2.5, 8.0]), conditions, tolerance)
    assert within.within and within.missing == 2 and within.beyond == 0
    assert within.ratio == pytest.approx(3.75) and within.condition == 40.0
    beyond = conditioning_of(missing, errors, np.array([0.5, 2.0, 8.0]), conditions, tolerance)
    assert not beyond.within and beyond.beyond == 1  # 9 > 4 × 2
    unknown = conditioning_of(missing, errors, np.array([0.5, np.nan, 8.0]), conditions, tolerance)
    assert not unknown.within and unknown.ratio == math.inf  # no bound known: never excused
    infinite = conditioning_of(missing, np.array([0, math.inf, 1]), np.array([1, math.inf, 1]), conditions, tolerance)
    assert infinite.within  # an infinite result where the box reaches a pole
    assert not conditioning_of(missing, np.array([0, math.inf, 1]), np.array([1, 1e30, 1]), conditions, tolerance).within


def test_condition_factor_is_a_datum_of_the_tolerances_file():
    assert {t.condition_factor for t in default_tolerances().values()} == {4.0}


CASE = """\
schema_version: 1
description: conditioning tests
cases:
  - id: half
    why: the logits gradient at target 1/2 near x = 0 is ill-conditioned in the target, well-conditioned at 1
    logits: [0.001, 1.0]
    target: [0.5, 1]
    gradients: true
"""


def shifted(by_ulps, where):
    """A gradient double: the correct rounding of the exact gradient, moved by ``by_ulps`` ULPs at ``where``."""

    def grad(inputs, reduction):
        fmt = get_format(inputs["logits"].dtype.name)
        exact = reference.reference("bce_with_logits", inputs, reduction, fmt, gradient=True, fast=False)
        values = exact.rounded.copy()
        unit = conditioning.fast_reference.ulp_of(values, fmt)
        values[where] += by_ulps * unit[where]
        return values.astype(fmt.numpy_dtype)

    def call(inputs, reduction):
        fmt = get_format(inputs["logits"].dtype.name)
        return reference.reference("bce_with_logits", inputs, reduction, fmt, fast=False).rounded.astype(fmt.numpy_dtype)

    return Api("shifted", "double", "bce_with_logits", call, "numpy", lambda *a: "", grad=grad)


@pytest.fixture
def half_case(tmp_path):
    path = tmp_path / "half.yaml"
    path.write_text(CASE)
    return load_file(path)[0]


@pytest.mark.parametrize(
    ("by_ulps", "where", "verdict"),
    [
        (0, 0, Verdict.EXACT),
        # at x = 0.001, y = 1/2 the gradient is 2.5e-4 and the target's box moves it by 2^-25: ~250 ULP of bound
        (500, 0, Verdict.CONDITIONED),
        (-500, 0, Verdict.CONDITIONED),
        (5000, 0, Verdict.FAIL),  # beyond 4 × the bound
        (6, 1, Verdict.FAIL),  # x = 1, y = 1: a hard label, a bound under an ULP: 6 ULP is past 4 × it
    ],
)
def test_a_result_is_conditioned_only_within_k_times_its_bound(half_case, by_ulps, where, verdict):
    api = shifted(by_ulps, where)
    result = Runner(Framework("double", {"double": "1"}, [api])).run(Check(half_case, api, "float32", "none", "grad"))
    assert result.verdict == verdict.value, result.message
    if verdict is Verdict.CONDITIONED:
        assert result.worst[0]["bound_ulp"] > 100 and result.worst[0]["condition"] > 1
        assert result.bound_ratio <= 4 and "conditioned" in result.message


def test_exact_deviations_are_kept_across_calls_extended_by_other_masks_and_proven(tmp_path, monkeypatch):
    """conformance.cache.DeviationsEntry: mpmath's deviations of the elements it evaluated are found again by a
    later call on the same inputs (none evaluated twice, the same values), a call with another mask evaluates only
    the elements not kept yet, and an entry whose values were changed is refused and recomputed."""
    import warnings

    from conformance import cache

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "config" / "cache.key"))
    monkeypatch.setattr(cache, "_warned", set())
    evaluated = []
    exact = conditioning._exact_deviations

    def counting(formula, quantity, two_step, columns, ls, fmt):
        evaluated.append(columns["first"].size)
        return exact(formula, quantity, two_step, columns, ls, fmt)

    monkeypatch.setattr(conditioning, "_exact_deviations", counting)
    rng = np.random.default_rng(5)
    inputs = {"logits": rng.normal(0, 8, 48), "target": rng.choice([0.0, 0.5, 1.0], 48)}
    fmt = get_format("float64")  # no fast path: every element is mpmath's
    half = np.arange(48) < 24

    def deviations(mask):
        return conditioning.term_deviations("bce_with_logits", "value", False, inputs, fmt, mask)

    first = deviations(half)
    assert evaluated == [24]
    again = deviations(half)
    assert evaluated == [24]  # all from the entry
    assert np.array_equal(first.below, again.below, equal_nan=True) and np.array_equal(first.above, again.above, equal_nan=True)
    whole = deviations(np.ones(48, dtype=bool))
    assert evaluated == [24, 24]  # the other half alone
    assert np.array_equal(whole.below[half], first.below[half]) and np.array_equal(whole.above[half], first.above[half])
    (path,) = (tmp_path / "cache").rglob("*.npz")
    with np.load(path) as data:
        stored = {name: np.array(data[name]) for name in data.files}
    stored["above"] = stored["above"] * 1e6  # an entry that would excuse far more than the inputs do
    np.savez(path, **stored)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        forged = deviations(np.ones(48, dtype=bool))
    assert evaluated == [24, 24, 48] and any("MAC does not match" in str(w.message) for w in caught)
    assert np.array_equal(forged.above, whole.above)
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    deviations(half)
    assert evaluated == [24, 24, 48, 24]


def test_no_deviations_entry_for_the_sweep_or_past_the_size_limit(tmp_path, monkeypatch):
    """An entry spans every element of its inputs: none for inputs past cache.DEVIATIONS_MAX_ELEMENTS, and none
    where the caller keeps none (the float32 sweep, ``kept=False``)."""
    from conformance import cache

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "config" / "cache.key"))
    rng = np.random.default_rng(5)
    inputs = {"logits": rng.normal(0, 8, 32), "target": rng.choice([0.0, 1.0], 32)}
    fmt = get_format("float64")
    everywhere = np.ones(32, dtype=bool)
    conditioning.result_deviations("bce_with_logits", "value", False, inputs, fmt, "none", False, everywhere, kept=False)
    assert not list((tmp_path / "cache").rglob("*.npz"))
    monkeypatch.setattr(cache, "DEVIATIONS_MAX_ELEMENTS", 31)
    conditioning.result_deviations("bce_with_logits", "value", False, inputs, fmt, "none", False, everywhere)
    assert not list((tmp_path / "cache").rglob("*.npz"))
    monkeypatch.setattr(cache, "DEVIATIONS_MAX_ELEMENTS", 32)
    conditioning.result_deviations("bce_with_logits", "value", False, inputs, fmt, "none", False, everywhere)
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1


def test_a_deviations_entry_keeps_what_another_process_stored_meanwhile(tmp_path, monkeypatch):
    """Two envs open the same entry, each evaluates other elements and saves: the entry holds both."""
    from conformance import cache

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "config" / "cache.key"))
    inputs = {"first": np.linspace(-5, 5, 32), "target": np.zeros(32)}
    fmt = get_format("float64")

    def opened():
        return cache.DeviationsEntry.open("bce_with_logits", "value", False, inputs, None, fmt, 32)

    one, other = opened(), opened()
    one.below[:16], one.above[:16], one.done[:16] = 1.0, 2.0, True
    other.below[16:], other.above[16:], other.done[16:] = 3.0, 4.0, True
    assert one.save() and other.save()
    merged = opened()
    assert merged.done.all()
    assert np.array_equal(merged.below, np.repeat([1.0, 3.0], 16)) and np.array_equal(merged.above, np.repeat([2.0, 4.0], 16))
