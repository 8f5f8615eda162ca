"""The runner: verdicts from real NumPy calls, and every way an API can misbehave."""

import json
from pathlib import Path

import numpy as np
import pytest

from conformance import divergences, metamorphic
from conformance.adapters import Api, Framework, Unsupported, load_framework
from conformance.cases import load_file
from conformance.divergences import KnownDivergence
from conformance.dtypes import get_format
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


SCALAR_CASES = """\
schema_version: 1
description: 0-d inputs through every op, reduction, quantity and relation
defaults: {dtypes: [float16, bfloat16, float32, float64], reductions: [none, mean, sum], target_gradients: true}
cases:
  - {id: logit, why: a 0-d logit and target, logits: 0.5, target: 1}
  - {id: logit-soft, why: a soft 0-d target whose 1 - y is exact, logits: -1.25, target: 0.25}
  - {id: logit-weighted, why: 0-d weights, logits: 2.0, target: 0, weight: 1.5, pos_weight: 3.0}
  - {id: logit-smoothed, why: label smoothing of a 0-d target, logits: -0.75, target: 1, label_smoothing: 0.1}
  - {id: prob, why: a 0-d probability, probs: 0.25, target: 0.5, weight: 2.0}
"""

# what the relations on a 0-d input compare: each one's message, which says it ran on one element
RELATION_MESSAGES = {
    "symmetry": "L(x, y) and L(-x, 1 - y) differ by up to",
    "mean-vs-sum": "/ 1: ",
    "vs-fused": "ULP apart on the 1 well-conditioned elements",
}


def scalar_results(tmp_path, framework: Framework) -> dict[str, object]:
    path = tmp_path / "scalars.yaml"
    path.write_text(SCALAR_CASES)
    cases = load_file(path)
    assert all(case.inputs(get_format("float32"))[case.kind].shape == () for case in cases)
    runner = Runner(framework)
    with np.errstate(all="ignore"):
        return {check.id: (check, runner.run(check)) for check in enumerate_checks(cases, framework.apis)}


def test_0d_inputs_run_through_every_op_reduction_quantity_and_relation(tmp_path):
    # the careful subject (gradients by hand) and the rounded one (relations on the blog's formulas): each result
    # is fixed by construction; on a 0-d input `none` is 0-d, and its mean and sum are the loss itself
    careful = careful_subject()
    results = scalar_results(tmp_path, careful) | scalar_results(tmp_path, load_framework("rounded"))
    covered = {(c.api.op, c.reduction, c.quantity) for c, r in results.values() if r.verdict != "unsupported"}
    quantities = ("value", "grad", "grad_target")
    for op in ("bce", "bce_with_logits", "sigmoid_bce"):
        assert {(op, reduction, q) for reduction in ("none", "mean", "sum") for q in quantities} <= covered, op
    assert {("bce_with_logits", "none", "symmetry"), ("sigmoid_bce", "none", "vs-fused")} <= covered
    assert {(op, "mean", "mean-vs-sum") for op in ("bce", "bce_with_logits", "sigmoid_bce")} <= covered
    errors = [f"{check_id}: {r.message}" for check_id, (c, r) in results.items() if r.verdict == "error"]
    assert not errors
    for check_id, (check, result) in results.items():
        if check.api.framework == "careful" and result.verdict != "unsupported":
            # careful's every step is IEEE 754 in the dtype on correctly rounded elementary functions: exact
            # wherever the problem is well conditioned, which it is at these moderate inputs
            assert result.verdict == "exact", (check_id, result.message)
            assert check.quantity in metamorphic.RELATIONS or result.worst[0]["index"] == []
        if check.api.name == "rounded.stable_bce_with_logits" and result.verdict != "unsupported":
            assert result.verdict == "exact", (check_id, result.message)
        if check.quantity in metamorphic.RELATIONS and result.verdict != "unsupported":
            assert RELATION_MESSAGES[check.quantity] in result.message, (check_id, result.message)
    # the mean of one element is that element: the same result, in value and gradient, as `none` and `sum`
    for quantity in ("", "-grad", "-grad_target"):
        name = "scalars/logit-careful.bce_with_logits-float32-{}" + quantity
        means = [results[name.format(reduction)][1] for reduction in ("none", "mean", "sum")]
        assert len({m.worst[0]["got"] for m in means}) == 1, quantity


def careful_subject() -> Framework:
    from conformance.adapters import load_adapter

    return load_adapter(f"{Path(__file__).resolve().parent / 'subjects' / 'careful.py'}:load")


def zero_mean_of_nothing(inputs, reduction):
    """The stable formula, but the mean of no elements is 0 (as a framework may define it), not NaN."""
    if reduction == "mean" and inputs["logits"].size == 0:
        return np.zeros((), dtype=inputs["logits"].dtype)
    return subject_stable(inputs, reduction)


def test_mean_vs_sum_does_not_apply_to_an_empty_input_whatever_its_mean(tmp_path):
    # sum / n is undefined for n = 0: the relation says so and holds vacuously (for a NaN mean and for a 0 mean),
    # and the value check judges that mean against the exact NaN
    path = tmp_path / "empty.yaml"
    path.write_text(EMPTY_CASE)
    case = load_file(path)[0]
    for api in (double("double.zero_mean", call=zero_mean_of_nothing), double("double.nan_mean", call=subject_stable)):
        with np.errstate(invalid="ignore"):
            relation = run(api, case, reduction="mean", quantity="mean-vs-sum")
            value = run(api, case, reduction="mean")
        assert relation.verdict == Verdict.EXACT.value, relation.message
        mean = "0x0p+0" if api.name == "double.zero_mean" else "nan"
        assert relation.message == (
            "empty input: mean = sum / n is undefined for n = 0, so the relation does not apply "
            f"(the API's mean {mean} and sum 0x0p+0 are judged by their own checks, against the exact NaN and 0)"
        )
        assert value.verdict == (Verdict.FAIL.value if api.name == "double.zero_mean" else Verdict.EXACT.value)
    with pytest.raises(ValueError, match="undefined for n = 0"):  # the relation itself needs n > 0
        metamorphic.mean_vs_sum(0.0, 0.0, np.empty((0,), dtype=object), get_format("float32"))


def test_a_dtype_change_on_an_empty_none_result_fails_and_says_so(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(EMPTY_CASE)
    case = load_file(path)[0]
    widening = double("double.widens", call=lambda inputs, r: subject_stable(inputs, r).astype(np.float64))
    result = run(widening, case, reduction="none")
    assert result.verdict == Verdict.FAIL.value
    assert result.message == "empty input: returned shape (0,) in float64 for float32 inputs (a silent change of dtype)"
    assert result.repro.startswith("repro(['input', 'target'], float32, none)")  # the whole (empty) input
    total = run(widening, case, reduction="sum")
    assert total.message == (
        "empty input: returned 0x0p+0 (0.0) in float64 for float32 inputs (a silent change of dtype)"
    )


def test_every_relation_on_an_empty_input_says_so(tmp_path):
    path = tmp_path / "empty.yaml"
    rows = "  - {id: empty-2d, why: rows of nothing, logits: [[], []], target: [[], []], dtypes: [float64]}\n"
    path.write_text(EMPTY_CASE + rows)
    subject = load_framework("rounded")
    runner = Runner(subject)
    checks = [c for c in enumerate_checks(load_file(path), subject.apis) if c.quantity in metamorphic.RELATIONS]
    assert {c.quantity for c in checks} == set(metamorphic.RELATIONS)
    for check in checks:
        with np.errstate(invalid="ignore"):
            result = runner.run(check)
        assert result.verdict == Verdict.EXACT.value, (check.id, result.message)
        assert result.message.startswith("empty input: "), (check.id, result.message)


def test_known_divergences_explain_0d_results(tmp_path):
    path = tmp_path / "scalar.yaml"
    path.write_text(SCALAR_CASES)
    case = next(c for c in load_file(path) if c.id == "logit")
    doubled = double(call=lambda i, r: subject_stable(i, r) * i["logits"].dtype.type(2))
    for reduction in ("none", "mean"):
        inside = run(doubled, case, reduction=reduction, known=[entry({"logit": {"gt": 0}})])
        assert inside.verdict == Verdict.KNOWN_DIVERGENCE.value and inside.explained["entry"]["elements"] == 1
        outside = run(doubled, case, reduction=reduction, known=[entry({"logit": {"lt": 0}})])
        assert outside.verdict == Verdict.FAIL.value and not outside.in_regions
    mirror_region = entry({"quantity": "symmetry", "logit": {"lt": 0}})
    lopsided_0d = run(double(call=lopsided), case, quantity="symmetry", known=[mirror_region])
    assert lopsided_0d.verdict == Verdict.KNOWN_DIVERGENCE.value  # explained through its mirror, -0.5


def test_a_crash_reading_the_catalogue_is_the_checks_error(case, monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("planted")

    monkeypatch.setattr(divergences, "explain", broken)
    result = run(double(call=lambda i, r: subject_stable(i, r) * np.float32(2)), case, known=[entry()])
    assert result.verdict == Verdict.ERROR.value and "IndexError: planted" in result.message
    assert "a bug in the suite" in result.message
