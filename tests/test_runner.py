"""The runner: verdicts from real NumPy calls, and every way an API can misbehave."""

import json
from pathlib import Path

import numpy as np
import pytest

from conformance import divergences, metamorphic
from conformance.adapters import Api, Framework, Unsupported, load_framework
from conformance.cases import load_file
from conformance.divergences import KnownDivergence
from conformance.runner import Check, Runner, enumerate_checks
from conformance.verdicts import Verdict

CASE = """\
schema_version: 1
description: runner tests
cases:
  - id: mixed
    why: a few ordinary logits
    logits: [[-2.0, 0.5], [3.0, 0.0]]
    target: [[0, 1], [0.5, 1]]
    weight: [2.0, 0.5]
"""


@pytest.fixture
def case(tmp_path):
    path = tmp_path / "unit.yaml"
    path.write_text(CASE)
    return load_file(path)[0]


def double(name="double.api", call=None, **kwargs):
    """A test double of an API, standing in for a framework that misbehaves."""
    return Api(
        name=name,
        framework="double",
        op="bce_with_logits",
        call=call,
        reduced_by="numpy",
        repro=lambda args, dtype, reduction: f"repro({sorted(args)}, {dtype}, {reduction})",
        **kwargs,
    )


def run(api, case, dtype="float32", reduction="none", known=(), quantity="value"):
    framework = Framework("double", {"double": "1"}, [api])
    return Runner(framework, known).run(Check(case, api, dtype, reduction, quantity))


def subject_stable(inputs, reduction):
    """The rounded subject's stable logits formula: the same bits on any host."""
    subject = load_framework("rounded")
    api = next(a for a in subject.apis if a.op == "bce_with_logits")
    return api.call(inputs, reduction)


def test_the_stable_formula_is_exact_and_the_hand_formula_is_caught(case):
    subject = load_framework("rounded")
    runner = Runner(subject)
    checks = enumerate_checks([case], subject.apis)
    assert {c.api.name for c in checks} == {"rounded.stable_bce_with_logits", "rounded.hand_sigmoid+rounded.hand_bce"}
    # per API and default dtype: 3 default reductions x (value, grad), then the relations (every 1 - y is
    # exact and there is no pos_weight, so both get symmetry and mean-vs-sum; the two-step path also vs-fused)
    relations = {"rounded.stable_bce_with_logits": 2, "rounded.hand_sigmoid+rounded.hand_bce": 3}
    assert len(checks) == 2 * (2 * 3 * 2) + 2 * sum(relations.values())
    grads = [c for c in checks if c.quantity == "grad"]
    assert len(grads) == 2 * 2 * 3 and all(c.id.endswith("-grad") for c in grads)
    for name, count in relations.items():
        mine = [c for c in checks if c.api.name == name and c.quantity in metamorphic.RELATIONS]
        assert len(mine) == 2 * count and all(c.id.endswith(f"-{c.reduction}-{c.quantity}") for c in mine)
    results = {}
    for check in checks:
        result = results[check.id] = runner.run(check)
        assert result.quantity == check.quantity
        if check.quantity == "grad":  # the subject has no autodiff: unsupported, with the reason
            assert result.verdict == Verdict.UNSUPPORTED.value, result
            assert result.message == "the rounded subject has no automatic differentiation"
        elif check.api.name == "rounded.stable_bce_with_logits":  # values and relations alike
            assert result.verdict == Verdict.EXACT.value, result
            assert result.max_ulp <= 1
    # 1 - sigmoid(3) loses about 3 bits in float64, beyond the 4 ULP tolerance: the two-step path's own
    # conditioning (its loss receives p = σ(3) rounded, and -log(1 - p) magnifies that rounding), so the
    # result is `conditioned`, not a failure, with its bound and condition number on the worst element
    hand = next(
        c
        for c in checks
        if c.api.name.startswith("rounded.hand") and (c.dtype, c.reduction, c.quantity) == ("float64", "none", "value")
    )
    result = runner.run(hand)
    assert result.verdict == "conditioned" and result.worst[0]["index"] == [1, 0] and 4 < result.worst[0]["ulp"] < 16
    assert result.worst[0]["ulp"] <= 4 * result.worst[0]["bound_ulp"] and result.worst[0]["condition"] > 4
    # which breaks its symmetry there too (L(-3, 0.5) takes no 1 - p of a p near 1), within the conditioning
    # of both sides; its mean is still its sum / n: the relation between reductions says nothing about the terms
    symmetry = results["unit/mixed-rounded.hand_sigmoid+rounded.hand_bce-float64-none-symmetry"]
    assert symmetry.verdict == "conditioned" and "relation symmetry misses the tolerance" in symmetry.message
    assert symmetry.worst[0]["index"] == [1, 0] and 4 < symmetry.max_ulp < 16 and symmetry.bound_ratio <= 4
    assert results["unit/mixed-rounded.hand_sigmoid+rounded.hand_bce-float64-mean-mean-vs-sum"].verdict == "exact"


def test_wrong_values_fail_with_worst_elements_and_a_reproducer(case):
    def off_by_a_lot(inputs, reduction):
        out = subject_stable(inputs, reduction)
        out[1, 0] *= np.float32(1.001)
        return out

    result = run(double(call=off_by_a_lot), case)
    assert result.verdict == "fail"
    assert "ULP exceeds the float32 tolerance" in result.message
    worst = result.worst[0]
    assert worst["index"] == [1, 0]
    assert worst["inputs"] == {"logits": "0x1.8p+1", "target": "0x1p-1", "weight": "0x1p+1"}
    assert worst["ulp"] > 1000
    assert result.repro.startswith("repro(['input', 'target', 'weight'], float32, none)")
    json.loads(result.to_json())  # serialisable


def test_silent_change_of_dtype_fails(case):
    result = run(double(call=lambda i, r: subject_stable(i, r).astype(np.float32)), case, dtype="float64")
    assert result.verdict == "fail" and "returned float32 for float64 inputs" in result.message


def test_wrong_shape_is_an_error(case):
    result = run(double(call=lambda i, r: subject_stable(i, "mean")), case, reduction="none")
    assert result.verdict == "error" and "shape" in result.message


def test_an_exception_is_the_checks_error_not_the_runs(case):
    def raises(inputs, reduction):
        raise RuntimeError("kernel exploded\nsecond line")

    result = run(double(call=raises), case)
    assert result.verdict == "error"
    assert result.message == "the call raised RuntimeError: kernel exploded"


def test_non_float_result_is_an_error(case):
    result = run(double(call=lambda i, r: np.array([["a", "b"], ["c", "d"]])), case)
    assert result.verdict == "error"


def test_unsupported_combinations_say_why(case):
    declared = run(double(call=subject_stable, unsupported={"weight": "this API has no weight"}), case)
    assert declared.verdict == "unsupported" and declared.message == "this API has no weight"
    dtype = run(double(call=subject_stable, dtypes=("float32",)), case, dtype="float64")
    assert dtype.verdict == "unsupported" and "does not take float64" in dtype.message

    def refuses(inputs, reduction):
        raise Unsupported("not on this backend")

    dynamic = run(double(call=refuses), case)
    assert dynamic.verdict == "unsupported" and dynamic.message == "not on this backend"


def entry(where=None, **kwargs):
    """A known divergence over the double's APIs; ``where``: its region as written in a catalogue (default: values)."""
    regions = where if isinstance(where, list) else [where or {"quantity": "value"}]
    fields = dict(id="entry", api=("double.*",), reason="because", source="https://example.invalid/1")
    fields.update(kwargs)
    return KnownDivergence(where=tuple(divergences._region(r) for r in regions), **fields)


def test_known_divergence_covers_a_failure_and_keeps_its_reason(case):
    result = run(double(call=lambda i, r: subject_stable(i, r) * np.float32(2)), case, known=[entry()])
    assert result.verdict == "known_divergence"
    assert result.message.startswith("because Observed: max error")
    assert result.source == "https://example.invalid/1" and result.divergence == "entry"
    assert result.explained["entry"]["elements"] == 4 and result.in_regions == ["entry"]


def test_an_entry_over_a_result_that_passes_is_reached_not_explaining(case):
    """The result stays exact; the entry is an unexpected pass of the run (divergences.account)."""
    result = run(double(call=subject_stable), case, known=[entry()])
    assert result.verdict == "exact" and result.in_regions == ["entry"] and not result.explained
    (account,) = divergences.account([entry()], [result])
    assert account.status == "unexpected_pass" and "all match (unexpected pass)" in account.problem()
    assert divergences.account([entry()], [])[0].status == "stale"


def test_divergence_filters_by_dtype_and_reduction(case):
    narrow = entry({"dtype": "float64", "reduction": "mean"})
    result = run(double(call=lambda i, r: subject_stable(i, r) * np.float32(2)), case, known=[narrow])
    assert result.verdict == "fail" and not result.in_regions  # float32 / none is not covered


def weighted_grad(inputs, reduction):
    """d/dx of the weighted loss: w·(sigmoid(x) - y), in float64 and rounded once to the input's dtype."""
    x, y = inputs["logits"].astype(np.float64), inputs["target"].astype(np.float64)
    grad = np.broadcast_to(inputs["weight"].astype(np.float64), x.shape) * (1 / (1 + np.exp(-x)) - y)
    return (grad / x.size if reduction == "mean" else grad).astype(inputs["logits"].dtype)


def test_a_gradient_less_double_gets_unsupported_gradient_checks(case):
    checks = enumerate_checks([case], [double(call=subject_stable)])
    assert [c.quantity for c in checks[:2]] == ["value", "grad"]  # each value check, then its gradient
    # per dtype: 3 reductions x (value, grad), then the relations of a fused logits API (no vs-fused)
    per_dtype = ["value", "grad"] * 3 + ["symmetry", "mean-vs-sum"]
    assert [c.quantity for c in checks] == per_dtype * 2
    assert [c.dtype for c in checks] == ["float32"] * len(per_dtype) + ["float64"] * len(per_dtype)
    grads = [c for c in checks if c.quantity == "grad"]
    assert len(grads) == len([c for c in checks if c.quantity == "value"]) == 2 * 3
    # the relations call the loss only: a gradient-less API still gets them
    framework = Framework("double", {"double": "1"}, [checks[0].api])
    for check in checks:
        if check.quantity in metamorphic.RELATIONS:
            assert Runner(framework).run(check).verdict == "exact", check.id
    result = run(double(call=subject_stable), case, quantity="grad")
    assert result.verdict == "unsupported" and result.message == "double.api has no gradient in this adapter"
    declared = run(double(call=subject_stable, unsupported={"grad": "no autodiff here"}), case, quantity="grad")
    assert declared.verdict == "unsupported" and declared.message == "no autodiff here"
    assert run(double(call=subject_stable), case).verdict == "exact"  # the value check is unaffected


def test_divergence_filters_by_quantity(case):
    wrong_grad = double(call=subject_stable, grad=lambda i, r: weighted_grad(i, r) * np.float32(2))
    assert run(double(call=subject_stable, grad=weighted_grad), case, quantity="grad").verdict == "exact"
    assert run(wrong_grad, case, quantity="grad").verdict == "fail"
    assert run(wrong_grad, case, quantity="grad", known=[entry()]).verdict == "fail"  # the region is of values
    covered = run(wrong_grad, case, quantity="grad", known=[entry({"quantity": "grad"})])
    assert covered.verdict == "known_divergence" and covered.quantity == "grad"
    assert run(wrong_grad, case, known=[entry({"quantity": "grad"})]).verdict == "exact"  # the value is not covered


def lopsided(inputs, reduction):
    """The stable loss, 1% too large for positive logits: right at (x, y) or at (-x, 1 - y), never both."""
    x = inputs["logits"]
    loss = subject_stable(inputs, "none")
    loss = np.where(x > 0, loss * loss.dtype.type(1.01), loss)
    return {"none": loss, "mean": np.mean(loss), "sum": np.sum(loss)}[reduction]


def test_divergence_filters_relations_by_their_name(case):
    symmetry = next(c for c in enumerate_checks([case], [double(call=lopsided)]) if c.quantity == "symmetry")
    assert symmetry.reduction == "none" and symmetry.dtype == "float32"
    broken = run(double(call=lopsided), case, quantity="symmetry")
    assert broken.verdict == "fail" and broken.quantity == "symmetry" and broken.max_ulp > 1000
    assert run(double(call=lopsided), case, quantity="mean-vs-sum").verdict == "exact"  # reductions are consistent
    assert run(double(call=lopsided), case, quantity="symmetry", known=[entry()]).verdict == "fail"  # value only
    assert run(double(call=lopsided), case, quantity="symmetry", known=[entry({"quantity": "grad"})]).verdict == "fail"
    covered = run(double(call=lopsided), case, quantity="symmetry", known=[entry({"quantity": "symmetry"})])
    assert covered.verdict == "known_divergence" and covered.divergence == "entry"
    assert covered.message.startswith("because Observed: relation symmetry does not hold")
    # an element is explained where it or its mirror (-x, 1 - y) lies in the region: x < 0 holds the mirror of x > 0
    mirrored = run(double(call=lopsided), case, quantity="symmetry", known=[entry({"quantity": "symmetry", "logit": {"lt": 0}})])
    assert mirrored.verdict == "known_divergence"
    passing = run(double(call=subject_stable), case, quantity="symmetry", known=[entry({"quantity": ["value", "symmetry"]})])
    assert passing.verdict == "exact" and passing.in_regions == ["entry"]


def test_vs_fused_needs_both_paths(case):
    two_step = Api(
        name="double.two_step",
        framework="double",
        op="sigmoid_bce",
        call=subject_stable,  # the same values as the fused path: the relation holds
        reduced_by="numpy",
        repro=lambda args, dtype, reduction: "",
    )
    fused = double(name="double.fused", call=subject_stable, dtypes=("float64",))
    framework = Framework("double", {"double": "1"}, [two_step, fused])
    checks = [c for c in enumerate_checks([case], framework.apis) if c.quantity == "vs-fused"]
    assert [(c.api.name, c.dtype, c.reduction) for c in checks] == [
        ("double.two_step", "float32", "none"),
        ("double.two_step", "float64", "none"),
    ]
    results = [Runner(framework).run(c) for c in checks]
    assert results[0].verdict == "unsupported" and results[0].message == "the fused path: double.fused does not take float32"
    assert results[1].verdict == "exact" and results[1].max_ulp == 0
    # without a fused API in the framework there is nothing to compare with, and no check
    assert not [c for c in enumerate_checks([case], [two_step]) if c.quantity == "vs-fused"]


def test_expect_contradicting_the_reference_is_an_error(tmp_path):
    path = tmp_path / "bad_expect.yaml"
    path.write_text(CASE.replace("    weight: [2.0, 0.5]\n", "    expect: {mean: '0.9'}\n"))
    result = run(double(call=subject_stable), load_file(path)[0], reduction="mean")
    assert result.verdict == "error" and "contradicts the exact float32 value" in result.message
    assert f"{path}:" in result.message and "field 'expect.mean'" in result.message


def test_a_bug_in_the_suite_is_the_checks_error_and_no_known_divergence_hides_it(monkeypatch):
    from conformance.runner import Runner, plan as make_plan

    run_plan = make_plan("rounded", [str(Path(__file__).resolve().parents[1] / "cases" / "seed.yaml")])
    runner = run_plan.runner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(Runner, "_judge", broken)
    check = next(c for c in run_plan.checks if c.quantity == "value")
    result = runner.run(check)
    assert result.verdict == "error" and "ZeroDivisionError: planted" in result.message
    assert "a bug in the suite" in result.message and result.divergence == ""


EMPTY_CASE = """\
schema_version: 1
description: empty inputs
cases:
  - id: empty
    why: no elements
    logits: []
    target: []
    dtypes: [float32]
    reductions: [none, mean, sum]
"""


def test_empty_input_policy_is_recorded_and_summarised(tmp_path):
    # what an API does with no elements is on record in each result's message and in the summary's
    # "Empty inputs" section, whether it matches the exact NaN mean / 0 sum, returns something else, or raises
    from conformance.summary import summary_markdown

    path = tmp_path / "empty.yaml"
    path.write_text(EMPTY_CASE)
    case = load_file(path)[0]
    nan_mean_policy = double("double.nan_mean_policy", call=subject_stable)
    zero_mean = double("double.zero_mean", call=lambda inputs, r: np.float32(0) if r == "mean" else subject_stable(inputs, r))

    def refuses(inputs, reduction):
        if reduction != "none":
            raise ValueError("cannot reduce an empty tensor")
        return subject_stable(inputs, reduction)

    raising = double("double.raises", call=refuses)
    with np.errstate(invalid="ignore"):
        results = {(api.name, r): run(api, case, reduction=r) for api in (nan_mean_policy, zero_mean, raising) for r in ("none", "mean", "sum")}
    assert results[("double.nan_mean_policy", "mean")].verdict == Verdict.EXACT.value
    assert results[("double.nan_mean_policy", "mean")].message == "empty input: returned nan"
    assert results[("double.nan_mean_policy", "sum")].message == "empty input: returned 0x0p+0 (0.0)"
    assert results[("double.nan_mean_policy", "none")].message == "empty input: returned shape (0,)"
    assert results[("double.zero_mean", "mean")].verdict == Verdict.FAIL.value
    assert results[("double.zero_mean", "mean")].message.startswith("empty input: returned 0x0p+0 (0.0): max error inf ULP")
    assert results[("double.raises", "sum")].verdict == Verdict.ERROR.value
    assert results[("double.raises", "sum")].message == "empty input: the call raised ValueError: cannot reduce an empty tensor"
    known = entry({"empty": True}, id="refuses-empty", api=("double.raises",), reason="it refuses.", source="here")
    listed = run(raising, case, reduction="mean", known=[known])
    assert listed.verdict == Verdict.KNOWN_DIVERGENCE.value
    summary = summary_markdown(list(results.values()) + [listed])
    section = summary.split("### Empty inputs (10 results)\n", 1)[1]
    assert "- `double.nan_mean_policy` mean: returned nan (exact); float32" in section
    assert "- `double.zero_mean` mean: returned 0x0p+0 (0.0): max error inf ULP" in section
    assert "- `double.raises` sum: the call raised ValueError: cannot reduce an empty tensor (error); float32" in section
    assert "- `double.raises` mean: the call raised ValueError: cannot reduce an empty tensor (known_divergence); float32" in section
