"""The known-divergence catalogue: mechanisms with regions, explained element by element.

Subjects fixed by construction: test doubles that are wrong exactly where the test makes them wrong, and the
careful subject's mutant whose softplus loses e^x below 0 (tests/subjects/careful.py), on case files written
here, which no catalogue names.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import divergences
from conformance.adapters import Api, Framework, load_framework
from conformance.cases import OPS_OF_KIND, CaseError, load_file
from conformance.dtypes import DTYPES
from conformance.metamorphic import RELATIONS
from conformance.reference import REDUCTIONS
from conformance.runner import QUANTITIES, Check, Runner, plan
from conformance.summary import mechanisms, summary_markdown

REPO = Path(__file__).resolve().parents[1]
CAREFUL = REPO / "tests" / "subjects" / "careful.py"

CASE = """\
schema_version: 1
description: catalogue tests
cases:
  - id: row
    why: logits on both sides of 0
    logits: [[-3.0, -1.0], [0.5, 2.0]]
    target: [[0, 0], [1, 1]]
    dtypes: [float32]
"""


@pytest.fixture
def case(tmp_path):
    path = tmp_path / "unit.yaml"
    path.write_text(CASE, encoding="utf-8")
    return load_file(path)[0]


def stable(inputs, reduction):
    api = next(a for a in load_framework("rounded").apis if a.op == "bce_with_logits")
    return api.call(inputs, reduction)


def wrong_where(mask_of_x):
    """The stable loss, doubled at the elements where ``mask_of_x(x)`` holds (a mean or sum of those)."""

    def call(inputs, reduction):
        loss = stable(inputs, "none")
        loss = np.where(mask_of_x(inputs["logits"]), loss * loss.dtype.type(2), loss)
        return {"none": loss, "mean": np.mean(loss, dtype=loss.dtype), "sum": np.sum(loss, dtype=loss.dtype)}[reduction]

    return call


def api(call, name="double.api"):
    return Api(name=name, framework="double", op="bce_with_logits", call=call, reduced_by="numpy", repro=lambda *a: "")


def run(call, case, known, reduction="none"):
    subject = api(call)
    return Runner(Framework("double", {"double": "1"}, [subject]), known).run(Check(case, subject, "float32", reduction))


def entry(where, id="below-zero"):
    regions = where if isinstance(where, list) else [where]
    return divergences.KnownDivergence(
        id=id, api=("double.*",), reason="doubled below zero", source="here", where=tuple(divergences._region(r) for r in regions)
    )


def test_every_element_that_misses_must_lie_in_a_region(case):
    negative = wrong_where(lambda x: x < 0)
    covered = run(negative, case, [entry({"logit": {"lt": 0}})])
    assert covered.verdict == "known_divergence" and covered.divergence == "below-zero"
    figures = covered.explained["below-zero"]
    assert figures["elements"] == 2 and figures["logit"] == [[-3.0, -1.0]] and figures["target"] == [[0.0, 0.0]]
    # the region ends at x < -2: the element at x = -1 lies outside it, so the result fails and says where
    narrow = run(negative, case, [entry({"logit": {"lt": -2}})])
    assert narrow.verdict == "fail" and narrow.explained["below-zero"]["elements"] == 1
    assert "1 element past it lie in no known divergence's region: [0, 1] logits=-0x1p+0 target=0x0p+0" in narrow.message
    assert "known divergence 'below-zero' explains the others" in narrow.message
    # two entries between them explain every element: known_divergence, both recorded
    both = run(negative, case, [entry({"logit": {"lt": -2}}), entry({"logit": -1}, id="at-minus-one")])
    assert both.verdict == "known_divergence" and set(both.explained) == {"below-zero", "at-minus-one"}
    assert both.divergence == "below-zero" and "(other elements: at-minus-one)" in both.message


def test_the_figures_give_the_span_of_the_logits_on_each_side_of_zero(case):
    both_sides = run(wrong_where(lambda x: x != 0), case, [entry({}, id="everywhere")])
    assert both_sides.explained["everywhere"]["logit"] == [[-3.0, -1.0], [0.5, 2.0]]
    (mechanism,) = mechanisms([both_sides])
    assert mechanism.span_text() == "float32: logit -3 to -1, 0.5 to 2, target 0 to 1"


def test_a_reduced_result_is_explained_by_any_element_of_its_input(case):
    negative = wrong_where(lambda x: x < 0)
    assert run(negative, case, [entry({"logit": {"lt": -2}})], reduction="mean").verdict == "known_divergence"
    assert run(negative, case, [entry({"logit": {"lt": -5}})], reduction="mean").verdict == "fail"
    assert run(negative, case, [entry({"reduction": "none", "logit": {"lt": 0}})], reduction="sum").verdict == "fail"


def test_predicates_on_targets_weights_and_smoothing_use_their_defaults(case):
    negative = wrong_where(lambda x: x < 0)
    assert run(negative, case, [entry({"target": 0})]).verdict == "known_divergence"
    assert run(negative, case, [entry({"target": {"gt": 0}})]).verdict == "fail"
    assert run(negative, case, [entry({"weight": 1, "pos_weight": 1, "label_smoothing": 0})]).verdict == "known_divergence"
    assert run(negative, case, [entry({"weight": {"gt": 1}})]).verdict == "fail"  # no weight: 1
    assert run(negative, case, [entry({"probability": {"lt": 1}})]).verdict == "fail"  # no probability on logits


def test_a_row_mean_is_explained_by_any_element_of_its_row():
    inputs = {"logits": np.array([[-3.0, 1.0], [2.0, 3.0]]), "target": np.array([[0.0, 1.0], [1.0, 1.0]])}
    region = divergences._region({"logit": {"lt": 0}})
    explained = divergences.explain([(entry({}), (region,))], inputs, "value", np.array([True, False]))
    assert explained.complete and explained.figures["below-zero"]["elements"] == 1
    second_row = divergences.explain([(entry({}), (region,))], inputs, "value", np.array([False, True]))
    assert not second_row.complete and second_row.unexplained.tolist() == [False, True]


def test_an_error_is_explained_by_any_element_and_an_empty_input_by_empty():
    inputs = {"logits": np.array([np.nan, 1.0]), "target": np.array([0.0, 1.0])}
    nan = divergences._region({"logit": np.nan})
    assert divergences.explain([(entry({}), (nan,))], inputs, "value", None).complete
    assert not divergences.explain([(entry({}), (divergences._region({"logit": 5}),))], inputs, "value", None).complete
    empty = {"logits": np.zeros(0), "target": np.zeros(0)}
    assert divergences.explain([(entry({}), (divergences._region({"empty": True}),))], empty, "value", None).complete
    assert not divergences.explain([(entry({}), (divergences._region({"logit": {"lt": 0}}),))], empty, "value", None).complete


def test_an_entry_is_judged_over_the_whole_run(case):
    negative = wrong_where(lambda x: x < 0)
    explaining, passing = entry({"logit": {"lt": 0}}), entry({"logit": {"gt": 0}}, id="above-zero")
    unreached = entry({"logit": {"gt": 100}}, id="far-away")
    results = [run(negative, case, [explaining, passing, unreached])]
    accounts = {a.entry.id: a for a in divergences.account([explaining, passing, unreached], results)}
    assert accounts["below-zero"].status == "explains" and accounts["below-zero"].elements == 2
    assert accounts["above-zero"].status == "unexpected_pass" and accounts["above-zero"].reached == 1
    assert accounts["far-away"].status == "stale" and "no result of this run lies in its region" in accounts["far-away"].problem()


def test_the_summary_computes_each_mechanisms_figures(case):
    negative = wrong_where(lambda x: x < 0)
    results = [run(negative, case, [entry({"logit": {"lt": 0}})]), run(negative, case, [entry({"logit": {"lt": 0}})], reduction="mean")]
    (mechanism,) = mechanisms(results)
    assert (mechanism.results, mechanism.known, mechanism.elements) == (2, 2, 3)
    assert mechanism.max_ulp == results[0].max_ulp and mechanism.spans["float32"]["logit-"] == [-3.0, -1.0]
    text = summary_markdown(results)
    assert "### Known divergences (2 results, 1 mechanisms)" in text
    assert "- **below-zero** (2 results; 3 elements; worst" in text and "float32: logit -3 to -1, target 0" in text


# ---------------------------------------------------------------------------------------------
# a case file never seen before, in a documented mechanism's region


MUTANT_CATALOGUE = """\
- id: softplus-loses-small-exp
  api: careful.bce_with_logits
  where:
    quantity: value
    reduction: none
    logit: {lt: 0}
    target: 0
  reason: softplus(x) as log(1 + exp(x)) rounds 1 + exp(x) to 1 once exp(x) is below half an ULP of 1.
  source: "tests/subjects/careful.py :: SoftplusOverflow"
"""


def new_case(tmp_path: Path, logits, target) -> Path:
    path = tmp_path / "never_seen.yaml"
    path.write_text(
        "schema_version: 1\ndescription: a case no catalogue names\ncases:\n"
        f"  - {{id: fresh, why: new inputs, logits: {logits}, target: {target}, dtypes: [float32], reductions: [none], gradients: false}}\n",
        encoding="utf-8",
    )
    return path


def fused_value(tmp_path, logits, target):
    catalogue = tmp_path / "mutant.yaml"
    catalogue.write_text(MUTANT_CATALOGUE, encoding="utf-8")
    run_plan = plan(None, [new_case(tmp_path, logits, target)], [catalogue], adapter=f"{CAREFUL}:load_softplus_overflow")
    (check,) = [c for c in run_plan.checks if c.api.op == "bce_with_logits" and c.quantity == "value"]
    return run_plan.runner.run(check)


def test_a_new_case_in_a_mechanisms_region_is_a_known_divergence_without_editing_the_catalogue(tmp_path):
    result = fused_value(tmp_path, [-20.0, -25.0, -30.0], [0, 0, 0])
    assert result.verdict == "known_divergence" and result.divergence == "softplus-loses-small-exp"
    assert result.explained["softplus-loses-small-exp"]["elements"] == 3


def test_one_element_outside_every_region_makes_the_result_fail(tmp_path):
    result = fused_value(tmp_path, [-20.0, -25.0, 30.0], [0, 0, 1])  # y = 1, x = 30: softplus(-30) lost too
    assert result.verdict == "fail"
    assert "1 element past it lie in no known divergence's region: [2] logits=0x1.ep+4 target=0x1p+0" in result.message
    assert result.explained["softplus-loses-small-exp"]["elements"] == 2


# ---------------------------------------------------------------------------------------------
# the files


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("- id: x\n  api: a\n  reason: r\n  source: s\n", None, "missing: where"),
        ("- id: x\n  api: a\n  where: {logit: {below: 0}}\n  reason: r\n  source: s\n", "where.logit", "unknown field(s): below"),
        ("- id: x\n  api: a\n  where: {logits: 1}\n  reason: r\n  source: s\n", "where.logits", "unknown field(s): logits"),
        ("- id: x\n  api: a\n  where: {target: [zero]}\n  reason: r\n  source: s\n", "where.target", "'zero' is not"),
        ("- id: x\n  api: a\n  where: {}\n  reason: r\n  source: s\n  versions: torch\n", "versions", "versions: 'torch'"),
        ("- id: x\n  api: a\n  case: c/*\n  where: {}\n  reason: r\n  source: s\n", "case", "unknown field(s): case"),
        ("- id: x\n  api: a\n  where: {quantity: nonsense}\n  reason: r\n  source: s\n", "where.quantity", "'nonsense' is not one of ['value'"),
        ("- id: x\n  api: a\n  where: {dtype: [float32, float8]}\n  reason: r\n  source: s\n", "where.dtype", "'float8'"),
    ],
    ids=["no-where", "bad-bound", "unknown-predicate", "not-a-number", "versions", "old-case-field", "unknown-quantity", "unknown-dtype"],
)
def test_a_bad_entry_names_the_file_the_entry_and_the_field(text, field, words):
    with pytest.raises(CaseError) as caught:
        divergences._parse(text, "mine.yaml")
    (problem,) = caught.value.problems
    assert problem.file == "mine.yaml" and problem.case == "x" and problem.line is not None
    assert (problem.field or None) == field or (field and problem.field.startswith(field)), problem
    assert words in problem.message, problem


def test_the_schemas_scope_names_are_the_suites():
    # a region scoped to a name the suite never produces would silently match nothing
    definitions = divergences.schema()["definitions"]
    assert set(definitions["op"]["enum"]) == set().union(*OPS_OF_KIND.values())
    assert tuple(definitions["dtype"]["enum"]) == DTYPES
    assert tuple(definitions["reduction"]["enum"]) == REDUCTIONS
    assert tuple(definitions["quantity"]["enum"]) == QUANTITIES + RELATIONS


BUILTIN = divergences.builtin_files()
# constants of the mechanisms as their sources state them (an epsilon, a clamp, a format's limit), not measurements
SOURCE_CONSTANTS = {"0", "1", "-1", "2", "1e-12", "1e-7", "-100", "100", "65504", "0.5", "16", "32", "64", "8", "3", "508", "440"}
NUMBER = re.compile(r"(?<![\w.#/^])-?\d+(?:\.\d+)?(?:e-?\d+)?(?![\w])")  # an operand after / or ^ is math


@pytest.mark.parametrize("framework", BUILTIN)
def test_a_builtin_catalogue_reads_and_every_entry_has_its_versions(framework):
    for entry in divergences.builtin(framework):
        assert entry.versions, f"{framework}: {entry.id} has no versions"


@pytest.mark.parametrize("framework", BUILTIN)
def test_a_builtin_catalogue_types_no_measured_figure(framework):
    """Figures are computed from the results (the summary's per-mechanism lines): a reason holds words, and at
    most the constants its source states."""
    found = {
        entry.id: sorted(set(NUMBER.findall(re.sub(r"2\*\*-?\d+|10\*\*-?\d+|2\^-?\d+|float\d+|int\d+|bfloat16|X86_V\d|log1p|expm1|#\d+", "", entry.reason))) - SOURCE_CONSTANTS)
        for entry in divergences.builtin(framework)
    }
    assert not {k: v for k, v in found.items() if v}, "measured figures in reasons"


def test_the_catalogues_name_few_literal_cases():
    named = [
        pattern
        for framework in BUILTIN
        for entry in divergences.builtin(framework)
        for region in entry.where
        for name, patterns in region.scope
        if name == "case"
        for pattern in patterns
    ]
    assert len(named) <= 50, named


def test_validate_checks_the_catalogues_and_names_a_bad_entry(tmp_path, capsys):
    from conformance.cli import main

    bad = tmp_path / "mine.yaml"
    bad.write_text("- id: x\n  api: a\n  where: {logit: {below: 0}}\n  reason: r\n  source: s\n", encoding="utf-8")
    assert main(["validate", str(REPO / "cases" / "seed.yaml")]) == 0
    assert f"known divergences in {len(BUILTIN)} catalogues" in capsys.readouterr().out
    assert main(["validate", str(REPO / "cases" / "seed.yaml"), "--divergences", str(bad)]) == 2
    assert f"{bad}:3: entry 'x' field 'where.logit.below': unknown field(s): below" in capsys.readouterr().err


def test_figures_with_infinite_logits_survive_the_results_file():
    from conformance.results import Result

    figures = divergences._figures("logits", np.array([-np.inf, 2.0, np.inf]), np.array([0.0, 1.0, 1.0]), 3, np.inf)
    result = Result("c/a", "f", "api", "bce_with_logits", "float32", "none", "known_divergence", explained={"e": figures})
    back = Result.from_json(result.to_json())
    assert back.explained == {"e": {"elements": 3, "max_ulp": np.inf, "logit": [[-np.inf, -np.inf], [2.0, np.inf]], "target": [[0.0, 1.0]]}}
    (mechanism,) = mechanisms([back])
    assert mechanism.span_text() == "float32: logit -inf, 2 to inf, target 0 to 1"


BOUND_VALUES = st.sampled_from([-np.inf, -100.0, -16.635532, -1.0, -0.0, 0.0, 2.0**-149, 1.0, 16.635532, 88.72, np.inf, np.nan])


@given(
    logits=st.lists(st.floats(width=32, allow_nan=False), max_size=40).map(sorted),
    bounds=st.dictionaries(st.sampled_from(["gt", "ge", "lt", "le"]), BOUND_VALUES | st.floats(width=32), max_size=3),
    members=st.lists(BOUND_VALUES | st.floats(width=32), min_size=1, max_size=3),
    target=st.sampled_from([0.0, 0.5, 1.0]),
    target_bound=st.sampled_from([None, {"lt": 0.5}, {"ge": 0.5}, 1.0, [0.0, 1.0]]),
    use_members=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_reaches_by_binary_search_is_the_mask_anywhere(logits, bounds, members, target, target_bound, use_members):
    """``Region.reaches`` (the float32 sweep's binary search over a monotone run of logits) answers as
    ``Region.mask(...).any()`` does on every element, for intervals, points (NaN, ±0, ±inf among them) and a
    target's own predicate."""
    raw = {"logit": members if use_members else bounds}
    if target_bound is not None:
        raw["target"] = target_bound
    region = divergences._region(raw)
    x = np.array(logits, dtype=np.float32)
    inputs = {"logits": x, "target": np.float32(target)}
    assert region.reaches(inputs, "logits") == bool(region.mask(inputs, x.shape).any())
