"""The pytest plugin and the conformance suite, run in a pytest subprocess with the rounded subject."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conformance.plugin import TEST_PREFIX
from conformance.results import Result

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
SEED_VALUE_CHECKS = (2 + 1) * 2 * 3  # blog-3x3: 2 logits APIs, blog-hand-computation: 1 probs API; x 2 dtypes x 3 reductions
SEED_GRAD_CHECKS = SEED_VALUE_CHECKS  # each value check's gradient counterpart: skipped, the subject has no autodiff
# the metamorphic relations, in both dtypes: (case, API) -> relation tests' id suffixes (reduction-relation).
# blog-3x3's binary targets mirror exactly, so both logits APIs test symmetry; every API tests mean
# against sum / n; the two-step hand path is compared with the fused stable formula. All of them pass but
# the hand path's float64 symmetry, the rounded subject's known divergence (xfail).
SEED_RELATIONS = {
    ("seed/blog-3x3", "rounded.stable_bce_with_logits"): ("none-symmetry", "mean-mean-vs-sum"),
    ("seed/blog-3x3", "rounded.hand_sigmoid+rounded.hand_bce"): ("none-symmetry", "mean-mean-vs-sum", "none-vs-fused"),
    ("seed/blog-hand-computation", "rounded.hand_bce"): ("mean-mean-vs-sum",),
}
SEED_RELATION_IDS = {
    f"{case}-{api}-{dtype}-{suffix}"
    for (case, api), suffixes in SEED_RELATIONS.items()
    for dtype in ("float32", "float64")
    for suffix in suffixes
}
SEED_RELATION_CHECKS = len(SEED_RELATION_IDS)
SEED_CHECKS = SEED_VALUE_CHECKS + SEED_GRAD_CHECKS + SEED_RELATION_CHECKS
SEED_XFAILED = 0  # the hand path's float64 symmetry misses the tolerance within its conditioning: it passes
SEED_PASSING = SEED_VALUE_CHECKS + SEED_RELATION_CHECKS - SEED_XFAILED  # every value check and relation; gradients skip
NO_AUTODIFF = "unsupported: the rounded subject has no automatic differentiation"
BLOG_STABLE_F32_MEAN = "seed/blog-3x3-rounded.stable_bce_with_logits-float32-mean"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("CONFORMANCE_FRAMEWORK", "CONFORMANCE_ADAPTER", "CONFORMANCE_CASES", "CONFORMANCE_OUT", "CONFORMANCE_MIN_TESTS", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cases(tmp_path) -> Path:
    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(SEED, folder / "seed.yaml")
    return folder


def run_suite(pytester, *args, framework: str | None = "rounded", cases: Path | None = None):
    argv = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider"]
    if framework is not None:
        argv += ["--framework", framework]
    if cases is not None:
        argv += ["--conformance-cases", str(cases)]
    return pytester.runpytest_subprocess(*argv, *args)


def output(result) -> str:
    return "\n".join(result.outlines + result.errlines)


def records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [record for record in map(json.loads, lines) if "format" not in record]  # the environment line left out


def divergence_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "divergences.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_collect_only_ids(pytester, cases):
    # --conformance-min-tests 0: with the default floor of 1, --collect-only exits 1 (see the xfail below)
    result = run_suite(pytester, "--collect-only", "-q", "--conformance-min-tests", "0", cases=cases)
    assert result.ret == 0, output(result)
    ids = [line for line in result.outlines if "::test_conformance[" in line]
    assert len(ids) == len(set(ids)) == SEED_CHECKS
    assert len([line for line in ids if line.endswith("-grad]")]) == SEED_GRAD_CHECKS
    relation_ids = {
        line.split("::test_conformance[", 1)[1][:-1]
        for line in ids
        if line.endswith(("-symmetry]", "-mean-vs-sum]", "-vs-fused]"))
    }
    assert relation_ids == SEED_RELATION_IDS
    assert f"test_conformance.py::test_conformance[{BLOG_STABLE_F32_MEAN}]" in result.outlines
    assert f"test_conformance.py::test_conformance[{BLOG_STABLE_F32_MEAN}-grad]" in result.outlines
    assert "test_conformance.py::test_conformance[seed/blog-hand-computation-rounded.hand_bce-float64-sum]" in result.outlines
    assert "test_conformance.py::test_conformance[seed/blog-hand-computation-rounded.hand_bce-float64-sum-grad]" in result.outlines
    assert any(line.endswith("::test_known_divergences_are_current") for line in result.outlines)
    assert not any("blog-hand-computation-rounded.stable" in line for line in ids)  # probs get no logits API
    assert not any("blog-hand-computation" in line and line.endswith("-symmetry]") for line in ids)  # nor a mirror


def test_collect_only_with_the_default_floor_exits_0(pytester, cases):
    result = run_suite(pytester, "--collect-only", "-q", cases=cases)
    assert f"{SEED_CHECKS + 1} tests collected" in output(result)
    assert result.ret == 0


def test_k_selects_and_out_writes_one_line_per_executed_test(pytester, cases, tmp_path):
    out = tmp_path / "results"
    result = run_suite(
        pytester, "-k", "stable_bce_with_logits and float64", "--conformance-out", str(out), "-q", "-rs", cases=cases
    )
    # the 3 values and the 2 relations pass; the 3 gradients are skipped (NumPy has no autodiff)
    result.assert_outcomes(passed=3 + 2, skipped=3)
    assert result.ret == 0
    assert NO_AUTODIFF in output(result)
    lines = records(out / "rounded.jsonl")
    assert len(lines) == 8
    assert {(r["case"], r["api"], r["dtype"], r["reduction"], r["quantity"]) for r in lines} == {
        ("seed/blog-3x3", "rounded.stable_bce_with_logits", "float64", reduction, quantity)
        for reduction in ("none", "mean", "sum")
        for quantity in ("value", "grad")
    } | {
        ("seed/blog-3x3", "rounded.stable_bce_with_logits", "float64", "none", "symmetry"),
        ("seed/blog-3x3", "rounded.stable_bce_with_logits", "float64", "mean", "mean-vs-sum"),
    }
    assert {(r["quantity"], r["verdict"]) for r in lines} == {
        ("value", "exact"),
        ("grad", "unsupported"),
        ("symmetry", "exact"),
        ("mean-vs-sum", "exact"),
    }
    assert (out / "rounded.summary.md").read_text(encoding="utf-8").startswith("## rounded")


def test_no_framework_is_an_error(pytester, cases):
    result = run_suite(pytester, framework=None, cases=cases)
    assert result.ret != 0
    text = output(result)
    assert "--framework" in text
    assert "passed" not in result.outlines[-1]


def test_unknown_framework_is_an_error(pytester, cases):
    result = run_suite(pytester, framework="notaframework", cases=cases)
    assert result.ret not in (0, 5)  # an error, not an empty green run
    text = output(result)
    assert "unknown framework 'notaframework'" in text
    assert "test_conformance" not in text


def test_bad_case_file_is_an_error(pytester, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.yaml").write_text(SEED.read_text(encoding="utf-8").replace("target:", "targte:", 1), encoding="utf-8")
    result = run_suite(pytester, cases=folder)
    assert result.ret not in (0, 5)
    assert "bad.yaml" in output(result) and "targte" in output(result)


def test_min_tests_floor_fails_a_green_run(pytester, cases):
    result = run_suite(pytester, "--conformance-min-tests", "100000", cases=cases)
    result.assert_outcomes(passed=SEED_PASSING + 1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)  # no test fails ...
    assert result.ret != 0  # ... yet the run fails
    assert f"bce-conformance: {SEED_CHECKS} checks ran, fewer than the floor of 100000" in output(result)


def test_known_divergence_on_a_passing_check_is_an_unexpected_pass(pytester, cases, tmp_path):
    divergences = divergence_file(
        tmp_path,
        "- id: not-really\n"
        "  api: rounded.stable_bce_with_logits\n"
        "  where: {dtype: float32, reduction: mean, quantity: value}\n"
        "  reason: claims a divergence that is not there\n"
        "  source: https://example.invalid/issue\n",
    )
    result = run_suite(pytester, "--conformance-divergences", str(divergences), cases=cases)
    # every check passes as before (the entry explains nothing: each result its region reaches matches), and the
    # whole run fails on the entry: an unexpected pass of the catalogue
    result.assert_outcomes(passed=SEED_PASSING + 1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)  # + the currency test
    assert result.ret == 1
    text = output(result)
    assert "known divergence 'not-really'" in text and "all match (unexpected pass)" in text


def test_stale_known_divergence_fails_the_currency_test(pytester, cases, tmp_path):
    divergences = divergence_file(
        tmp_path,
        "- id: gone\n  api: '*'\n  where: {case: seed/no-such-case}\n  reason: fixed long ago\n  source: https://example.invalid/2\n",
    )
    result = run_suite(pytester, "--conformance-divergences", str(divergences), cases=cases)
    result.assert_outcomes(passed=SEED_PASSING, failed=1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)
    failed = [line for line in result.outlines if line.startswith("FAILED")]
    assert len(failed) == 1 and "test_known_divergences_are_current" in failed[0]
    assert f"gone ({divergences})" in output(result)


def test_known_divergence_that_matches_a_failure_is_xfail(pytester, tmp_path):
    folder = tmp_path / "probe_cases"
    folder.mkdir()
    (folder / "probe.yaml").write_text(
        "schema_version: 1\ndescription: d\ncases:\n"
        "  - {id: sat, why: the hand sigmoid rounds sigmoid(17) to 1, logits: [17.0], target: [0], dtypes: [float32], reductions: [none]}\n",
        encoding="utf-8",
    )
    result = run_suite(pytester, cases=folder)
    # the hand formula fails, with no entry for this file: its sigmoid(17) is 1 (1 + e^-17 rounds to 1), so its loss
    # is -log(1 - 1) = inf, where a correctly rounded sigmoid (1 - 2^-24) keeps it finite, near 17: beyond the
    # conditioning of the two-step path. Its symmetry fails with it (L(-17, 1) is finite). Both APIs' gradients
    # are skipped (the subject has no autodiff). Passing: the stable formula's value, the stable formula's
    # symmetry, the hand path's vs-fused (x = 17 is not well conditioned for it) and the known-divergence test
    result.assert_outcomes(passed=1 + 2 + 1, failed=2, skipped=2)
    failed = {line.split("[", 1)[1].rstrip("]") for line in result.outlines if line.startswith("FAILED")}
    hand = "probe/sat-rounded.hand_sigmoid+rounded.hand_bce-float32-none"
    assert failed == {hand, f"{hand}-symmetry"}
    divergences = divergence_file(
        tmp_path,
        "- id: sat\n  api: rounded.hand_*\n  where: {quantity: [value, symmetry], logit: {gt: 16}}\n  reason: log 0\n"
        "  source: https://example.invalid/3\n",
    )
    result = run_suite(pytester, "--conformance-divergences", str(divergences), cases=folder)
    # the entry covers the value and the symmetry, not the gradient, nor the other relations (which would be
    # unexpected passes)
    result.assert_outcomes(passed=1 + 2 + 1, xfailed=2, skipped=2)
    assert result.ret == 0


def test_xdist_gives_the_same_results(pytester, cases, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    result = run_suite(pytester, "--conformance-out", str(serial), "--conformance-min-tests", str(SEED_CHECKS), cases=cases)
    result.assert_outcomes(passed=SEED_PASSING + 1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)
    assert result.ret == 0 and "fewer than the floor" not in output(result)  # a floor that is met
    result = run_suite(pytester, "-n", "2", "--conformance-out", str(parallel), cases=cases)
    result.assert_outcomes(passed=SEED_PASSING + 1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)
    assert result.ret == 0
    assert "2 workers" in output(result)

    def key(r):
        return r["case"], r["api"], r["dtype"], r["reduction"], r["quantity"], r["verdict"]

    one, two = records(serial / "rounded.jsonl"), records(parallel / "rounded.jsonl")
    assert len(one) == len(two) == SEED_CHECKS
    assert sorted(map(key, one)) == sorted(map(key, two))
    assert len(set(map(key, two))) == SEED_CHECKS  # no result recorded twice
    for folder in (serial, parallel):  # each check's seconds reach the timing file, from xdist workers too
        seconds = json.loads((folder / "rounded.timing.json").read_text(encoding="utf-8"))["checks"]
        assert sorted(seconds) == sorted(Result.from_dict(r).id for r in records(folder / "rounded.jsonl"))


def test_xdist_floor_counts_worker_results(pytester, cases):
    result = run_suite(pytester, "-n", "2", "--conformance-min-tests", str(SEED_CHECKS + 1), cases=cases)
    result.assert_outcomes(passed=SEED_PASSING + 1, xfailed=SEED_XFAILED, skipped=SEED_GRAD_CHECKS)
    assert result.ret != 0
    assert f"{SEED_CHECKS} checks ran, fewer than the floor of {SEED_CHECKS + 1}" in output(result)


@pytest.mark.parametrize(
    ("verdict", "outcome"),
    [
        ("exact", None),
        ("acceptable", None),
        ("conditioned", None),  # past the tolerance, within the condition-aware bound: no failure
        ("known_divergence", "xfail"),
        ("unsupported", "skip"),
        ("fail", "fail"),
        ("unexpected_pass", "fail"),
        ("error", "fail"),
    ],
)
def test_verdict_outcome(verdict, outcome):
    from conformance.plugin import verdict_outcome
    from conformance.results import Result

    result = Result(
        case="c/a", framework="fw", api="fw.bce", op="bce", dtype="float32", reduction="none", verdict=verdict,
        max_ulp=12.0, bound_ratio=2.5, condition=3.2e4, message="max error 12 ULP ...",
    )  # fmt: skip
    raised = {"xfail": pytest.xfail.Exception, "skip": pytest.skip.Exception, "fail": pytest.fail.Exception}
    if outcome is None:
        verdict_outcome(result)  # passes: no exception
    else:
        with pytest.raises(raised[outcome]):
            verdict_outcome(result)


@pytest.mark.parametrize("expression", ["blog-3x3 and float32 and not grad", "SYMMETRY or (hand-computation and sum)"])
def test_k_selects_the_checks_that_run_k_selects(pytester, cases, expression):
    """`pytest -k` and `python -m conformance run -k` read one language over the same ids: they select the same checks."""
    from conformance.cli import select
    from conformance.runner import plan

    result = run_suite(pytester, "--collect-only", "-q", "--conformance-min-tests", "0", "-k", expression, cases=cases)
    assert result.ret == 0, output(result)
    collected = [line.split(TEST_PREFIX, 1)[1][:-1] for line in result.outlines if TEST_PREFIX in line]
    selected = [check.id for check in select(plan("rounded", [cases]).checks, expression)]
    assert collected and collected == selected


BROKEN = REPO / "tests" / "subjects" / "broken_relations.py"  # a subject whose relations fail, and its cases


def test_a_failed_relation_shows_the_reproducer_that_run_prints(pytester, tmp_path):
    """Under pytest, a failed relation's test shows its reproducer (the relation's two calls), the one `run` writes."""
    from conformance.cli import main

    cases = BROKEN.with_suffix(".yaml")
    assert main(["run", "--adapter", f"{BROKEN}:load", "--cases", str(cases), "--out", str(tmp_path / "run"), "--progress", "none"]) == 1
    by_run = {(r["api"], r["quantity"]): r["repro"] for r in records(tmp_path / "run" / "broken.jsonl")}
    out = tmp_path / "pytest"
    result = run_suite(pytester, "--adapter", f"{BROKEN}:load", "--conformance-out", str(out), framework=None, cases=cases)
    assert result.ret == 1, output(result)
    text = output(result)
    failed = [r for r in records(out / "broken.jsonl") if r["verdict"] == "fail" and r["quantity"] in ("symmetry", "mean-vs-sum", "vs-fused")]
    assert {r["quantity"] for r in failed} == {"symmetry", "mean-vs-sum", "vs-fused"}
    for record in failed:
        assert record["repro"] and record["repro"] == by_run[(record["api"], record["quantity"])]
        assert f"reproduce: {record['repro']}" in text, record["repro"]
