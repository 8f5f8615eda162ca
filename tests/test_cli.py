"""The command line, run in-process: ``conformance.cli.main([...])`` with the rounded subject (NumPy's
formulas with every step correctly rounded: its results are the same on any host)."""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main, parser
from conformance.dtypes import to_hex

REPO = Path(__file__).resolve().parents[1]
CASES = REPO / "cases"
SEED = CASES / "seed.yaml"
RECORD_KEYS = {"case", "framework", "api", "op", "dtype", "reduction", "quantity", "verdict", "max_ulp", "worst"}
SUBJECT_APIS = {"rounded.hand_bce", "rounded.hand_sigmoid+rounded.hand_bce", "rounded.stable_bce_with_logits"}
# seed: blog-3x3 (logits: 2 APIs) and blog-hand-computation (probs: 1 API), 2 dtypes x 3 reductions each
SEED_VALUE_CHECKS = (2 + 1) * 2 * 3
# the metamorphic relations that apply, per (case, API), each in both dtypes: (reduction, relation).
# blog-3x3's binary targets mirror exactly (1 - y is 0 or 1), so both logits APIs get `symmetry`;
# every API gets `mean-vs-sum`; the two-step hand path is compared with the stable formula (`vs-fused`).
# Probabilities have no mirror, and the fused API has nothing to compare with.
SEED_RELATIONS = {
    ("seed/blog-3x3", "rounded.stable_bce_with_logits"): {("none", "symmetry"), ("mean", "mean-vs-sum")},
    ("seed/blog-3x3", "rounded.hand_sigmoid+rounded.hand_bce"): {
        ("none", "symmetry"),
        ("mean", "mean-vs-sum"),
        ("none", "vs-fused"),
    },
    ("seed/blog-hand-computation", "rounded.hand_bce"): {("mean", "mean-vs-sum")},
}
SEED_RELATION_CHECKS = 2 * sum(map(len, SEED_RELATIONS.values()))
# every value check has its gradient counterpart, and each (case, API, dtype) its relations
SEED_CHECKS = 2 * SEED_VALUE_CHECKS + SEED_RELATION_CHECKS
RELATIONS = {"symmetry", "mean-vs-sum", "vs-fused"}
NO_AUTODIFF = "the rounded subject has no automatic differentiation"  # the reason of every gradient check

# a file stem ("probe") that none of the shipped known-divergence globs cover
# gradients: false, since these tests are about the loss (numpy's gradient checks are all unsupported)
SATURATING = """\
schema_version: 1
description: the hand formula's sigmoid rounds to 1 in float32, so log(1 - p) is log 0
defaults: {gradients: false}
cases:
  - id: sat
    why: the hand sigmoid(17) is 1 in float32 (1 + e^-17 rounds to 1); correctly rounded it is 1 - 2^-24
    logits: [17.0]
    target: [0]
    dtypes: [float32]
    reductions: [none]
"""

# on it: both logits APIs' values and their symmetry (1 - 0 is exact), and the hand path's vs-fused
PROBE_CHECKS = 2 + 2 + 1

BLOG_WRONG_EXPECT = """\
schema_version: 1
description: the blog example with a wrong expected mean
cases:
  - id: blog-3x3
    why: the mean is 0.80000683, not 0.9
    logits: [[1.9072, 1.1079, 1.4906], [-0.6584, -0.0512, 0.7608], [-0.0614, 0.6583, 0.1095]]
    target: [[0, 1, 1], [1, 1, 1], [0, 0, 0]]
    expect: {mean: "0.9"}
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("CONFORMANCE_FRAMEWORK", "CONFORMANCE_CASES", "CONFORMANCE_OUT", "CONFORMANCE_MIN_TESTS"):
        monkeypatch.delenv(name, raising=False)


def records(path: Path) -> list[dict]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    return [record for record in map(json.loads, lines) if "format" not in record]  # the environment line left out


def write_case(folder: Path, text: str, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# run


def test_run_seed_writes_results_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    results = records(out / "rounded.jsonl")
    assert len(results) == SEED_CHECKS
    for record in results:
        assert RECORD_KEYS <= set(record), set(record)
        assert record["framework"] == "rounded"
        assert record["api"] in SUBJECT_APIS
        assert record["dtype"] in ("float32", "float64") and record["reduction"] in ("none", "mean", "sum")
    values = [r for r in results if r["quantity"] == "value"]
    grads = [r for r in results if r["quantity"] == "grad"]
    relations = [r for r in results if r["quantity"] in RELATIONS]
    assert len(values) == len(grads) == SEED_VALUE_CHECKS
    assert len(relations) == SEED_RELATION_CHECKS == len(results) - 2 * SEED_VALUE_CHECKS
    for record in values:
        assert record["verdict"] == "exact"
        assert isinstance(record["max_ulp"], float) and 0 <= record["max_ulp"] <= 4
        assert record["worst"] and all("got" in w and "want" in w for w in record["worst"])
    for record in grads:  # NumPy has no autodiff: every gradient check is unsupported, with the reason
        assert record["verdict"] == "unsupported" and record["message"] == NO_AUTODIFF
        assert record["max_ulp"] is None and record["worst"] == [] and record["repro"] == ""

    def key(r):
        return r["case"], r["api"], r["dtype"], r["reduction"]

    assert sorted(map(key, grads)) == sorted(map(key, values))  # one gradient check for each value check
    assert len(set(map(key, values))) == SEED_VALUE_CHECKS
    assert {r["case"] for r in results} == {"seed/blog-3x3", "seed/blog-hand-computation"}
    assert {(r["case"], r["op"]) for r in results} == {
        ("seed/blog-3x3", "bce_with_logits"),
        ("seed/blog-3x3", "sigmoid_bce"),
        ("seed/blog-hand-computation", "bce"),
    }
    means = [r for r in values if r["case"] == "seed/blog-3x3" and r["reduction"] == "mean" and r["dtype"] == "float64"]
    assert len(means) == 2 and {w["want"][:12] for r in means for w in r["worst"]} == {"0.8000068296"}

    # the metamorphic relations: exactly those that apply, once per dtype, and all of them hold
    assert sorted((r["case"], r["api"], r["dtype"], r["reduction"], r["quantity"]) for r in relations) == sorted(
        (case, api, dtype, reduction, relation)
        for (case, api), applying in SEED_RELATIONS.items()
        for dtype in ("float32", "float64")
        for reduction, relation in applying
    )
    # every relation holds but the hand formula's float64 symmetry, which is within its conditioning
    hand_symmetry = ("seed/blog-3x3", "rounded.hand_sigmoid+rounded.hand_bce", "float64", "symmetry")
    assert all(r["verdict"] == "exact" for r in relations if (r["case"], r["api"], r["dtype"], r["quantity"]) != hand_symmetry)
    assert all(r["divergence"] == "" and r["repro"] == "" for r in relations if r["verdict"] == "exact")
    relation = {(r["api"], r["dtype"], r["quantity"]): r for r in relations if r["case"] == "seed/blog-3x3"}
    for dtype in ("float32", "float64"):
        # the stable formula is exactly symmetric for binary targets: max(x,0) - x·y and max(-x,0) + x·(1-y) are equal
        stable = relation[("rounded.stable_bce_with_logits", dtype, "symmetry")]
        assert stable["max_ulp"] == 0.0 and stable["message"] == "L(x, y) and L(-x, 1 - y) differ by up to 0 ULP"
        # the hand formula is not (its 1 - sigmoid(x) rounds): within the tolerance in float32, past it in
        # float64 even with every elementary function correctly rounded (x = 1.4906, y = 1), but within the
        # conditioning of both sides: the two-step path's loss receives p rounded, which 1 - p magnifies
        hand = relation[("rounded.hand_sigmoid+rounded.hand_bce", dtype, "symmetry")]
        if dtype == "float32":
            assert 0 < hand["max_ulp"] <= 4 and hand["worst"] and hand["verdict"] == "exact", hand
        else:
            assert hand["max_ulp"] > 4 and hand["verdict"] == "conditioned" and hand["divergence"] == "", hand
            assert hand["worst"][0]["index"] == [0, 2] and hand["worst"][0]["ulp"] <= 4 * hand["worst"][0]["bound_ulp"]
        # and it agrees with the stable formula where sigmoid is well conditioned: 8 of the 9 elements
        # (at x = 1.4906, y = 1 the condition number 1/-log(sigmoid(x)) is 4.9, above the 4 ULP tolerance)
        fused = relation[("rounded.hand_sigmoid+rounded.hand_bce", dtype, "vs-fused")]
        assert fused["message"].startswith("vs rounded.stable_bce_with_logits: up to ")
        assert "on the 8 well-conditioned elements" in fused["message"] and "on the other 1 " in fused["message"]
        assert fused["max_ulp"] <= 2 * 4
    for r in relations:
        if r["quantity"] == "mean-vs-sum":  # the subject's mean is its sum divided by n, rounded once, as numpy's
            assert r["reduction"] == "mean" and r["worst"] == [] and 0 <= r["max_ulp"] <= 0.5, r
            assert " vs sum / n " in r["message"] and "/ 9: " in r["message"]
    summary = (out / "rounded.summary.md").read_text(encoding="utf-8")
    assert summary.startswith("## rounded (bce-conformance ")
    assert all(f"`{api}`" in summary for api in SUBJECT_APIS)
    assert f"{SEED_CHECKS} results" in summary and f"{SEED_CHECKS} results written to" in text
    assert f"### Unsupported ({SEED_VALUE_CHECKS} results)" in summary
    assert f"- {NO_AUTODIFF} ({SEED_VALUE_CHECKS})" in summary
    assert f"3 APIs, {SEED_CHECKS} checks" in text


def test_run_bad_case_file_exits_2(tmp_path, capsys):
    bad = write_case(tmp_path / "cases", SATURATING.replace("target: [0]", "target: [0, 1]"), "broken.yaml")
    status = main(["run", "--framework", "rounded", "--cases", str(bad), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("error: ")
    assert str(bad) in captured.err and "'sat'" in captured.err and "'target'" in captured.err
    assert not (tmp_path / "out").exists()


def test_run_missing_cases_path_exits_2(tmp_path, capsys):
    status = main(["run", "--framework", "rounded", "--cases", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert status == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_run_unknown_framework_exits_2(tmp_path, capsys):
    status = main(["run", "--framework", "numpyy", "--cases", str(SEED), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert status == 2
    assert "unknown framework 'numpyy'" in captured.err and "numpy" in captured.err
    assert not (tmp_path / "out").exists()


def test_run_without_framework_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--cases", str(SEED)])
    assert info.value.code == 2
    assert "--framework" in capsys.readouterr().err


def test_run_below_min_results_exits_1(tmp_path, capsys):
    out = tmp_path / "out"
    floor = SEED_CHECKS + 1
    status = main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out), "--min-results", str(floor)])
    text = capsys.readouterr().out
    assert status == 1
    # the unsupported gradient checks are results too, and count towards the floor
    assert f"FAILED: {SEED_CHECKS} results, fewer than the floor of {floor}" in text
    assert len(records(out / "rounded.jsonl")) == SEED_CHECKS  # the results are still written
    assert main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out), "--min-results", str(SEED_CHECKS)]) == 0


def test_run_failing_hand_formula_exits_1_with_repro(tmp_path, capsys):
    path = write_case(tmp_path / "cases", SATURATING, "probe.yaml")
    out = tmp_path / "out"
    status = main(["run", "--framework", "rounded", "--cases", str(path), "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 1
    assert f"FAILED: 2 of {PROBE_CHECKS} results are problems" in text
    results = records(out / "rounded.jsonl")
    assert len(results) == PROBE_CHECKS and "grad" not in {r["quantity"] for r in results}  # gradients: false
    # the hand formula's loss is -log(1 - 1) = inf, where a two-step path on the correctly rounded sigmoid
    # (1 - 2^-24) stays finite: beyond the two-step path's conditioning, a fail, and so is its symmetry
    # (L(-17, 1) = -log(sigmoid(-17)) is finite); x = 17 is outside the region where the two-step path is well
    # conditioned (sigmoid(17) within an epsilon of 1), so vs-fused asks nothing of it
    relations = {(r["api"], r["quantity"]): r for r in results if r["quantity"] != "value"}
    assert {key: r["verdict"] for key, r in relations.items()} == {
        ("rounded.stable_bce_with_logits", "symmetry"): "exact",
        ("rounded.hand_sigmoid+rounded.hand_bce", "symmetry"): "fail",
        ("rounded.hand_sigmoid+rounded.hand_bce", "vs-fused"): "exact",
    }
    mirrored = relations[("rounded.hand_sigmoid+rounded.hand_bce", "symmetry")]["worst"][0]
    assert mirrored["want"] == "inf" and float.fromhex(mirrored["got"]) == 17.0  # L(17, 0) and L(-17, 1)
    vs_fused = relations[("rounded.hand_sigmoid+rounded.hand_bce", "vs-fused")]
    assert "on the 0 well-conditioned elements" in vs_fused["message"]
    by_api = {r["api"]: r for r in results if r["quantity"] == "value"}
    assert set(by_api) == {"rounded.hand_sigmoid+rounded.hand_bce", "rounded.stable_bce_with_logits"}
    assert by_api["rounded.stable_bce_with_logits"]["verdict"] == "exact"  # max(x,0) - x*y + log1p(exp(-|x|))
    hand = by_api["rounded.hand_sigmoid+rounded.hand_bce"]
    assert hand["case"] == "probe/sat" and hand["verdict"] == "fail"
    assert hand["divergence"] == "" and "exceeds the float32 tolerance" in hand["message"]
    assert "beyond 4 × the condition-aware bound" in hand["message"]
    assert math.isinf(float(hand["max_ulp"]))
    (worst,) = hand["worst"]
    assert worst["inputs"] == {"logits": "0x1.1p+4", "target": "0x0p+0"}
    assert worst["got"] == "inf" and 17 < float(worst["want"]) < 17.0000001 and math.isfinite(worst["bound_ulp"])
    assert isinstance(hand["repro"], str) and hand["repro"]
    assert hand["repro"] in text  # printed with the failure
    assert "probe/sat" in (out / "rounded.summary.md").read_text(encoding="utf-8")

    # the reproducer is one line of Python that needs only numpy and shows the wrong value
    done = subprocess.run([sys.executable, "-c", hand["repro"]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    assert "inf" in done.stdout


def test_run_with_extra_divergence_file_turns_a_failure_into_a_known_divergence(tmp_path, capsys):
    path = write_case(tmp_path / "cases", SATURATING, "probe.yaml")
    divergences = tmp_path / "div.yaml"
    divergences.write_text(
        "- id: probe-saturates\n  api: rounded.hand_*\n  where: {quantity: [value, symmetry]}\n  reason: log 0\n"
        "  source: https://example.invalid/1\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    status = main(["run", "--framework", "rounded", "--cases", str(path), "--out", str(out), "--divergences", str(divergences)])
    assert status == 0, capsys.readouterr().out
    hand = next(r for r in records(out / "rounded.jsonl") if r["api"].startswith("rounded.hand"))
    assert hand["verdict"] == "known_divergence" and hand["divergence"] == "probe-saturates"
    assert hand["source"] == "https://example.invalid/1"


def test_run_with_stale_divergence_exits_1(tmp_path, capsys):
    path = write_case(tmp_path / "cases", SATURATING, "probe.yaml")
    divergences = tmp_path / "div.yaml"
    divergences.write_text(
        "- id: probe-saturates\n  api: rounded.hand_*\n  where: {quantity: [value, symmetry]}\n  reason: log 0\n  source: s\n"
        "- id: probe-gone\n  api: '*'\n  where: {case: probe/no-such-case}\n  reason: r\n  source: s\n",
        encoding="utf-8",
    )
    status = main(["run", "--framework", "rounded", "--cases", str(path), "--out", str(tmp_path / "out"), "--divergences", str(divergences)])
    text = capsys.readouterr().out
    assert status == 1
    assert "known divergence 'probe-gone'" in text and "probe-saturates" not in text.split("FAILED", 1)[1]


# ---------------------------------------------------------------------------------------------
# validate


def test_validate_shipped_cases(capsys):
    assert main(["validate", str(CASES)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and f"cases in {len(list(CASES.glob('*.yaml')))} files" in out


def test_validate_contradicting_expect_exits_2(tmp_path, capsys):
    path = write_case(tmp_path, BLOG_WRONG_EXPECT, "wrong.yaml")
    status = main(["validate", str(path)])
    err = capsys.readouterr().err
    assert status == 2  # a wrong case file is an input error
    assert str(path) in err and "'blog-3x3'" in err and "expect" in err
    assert "0.9" in err and "contradicts" in err and "0.80000682" in err


def test_validate_correct_expect_literals(tmp_path, capsys):
    good = BLOG_WRONG_EXPECT.replace(
        'expect: {mean: "0.9"}', 'expect: {float64: {mean: "0.8000068296765118448"}, float32: {mean: "0.80000682553706109"}}'
    )
    assert main(["validate", str(write_case(tmp_path, good, "good.yaml"))]) == 0
    assert "OK: 1 cases in 1 files" in capsys.readouterr().out


def test_validate_bad_case_file_exits_2_with_problem_count(tmp_path, capsys):
    path = write_case(tmp_path, SATURATING.replace("logits:", "logit:"), "typo.yaml")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'logit'" in err and "1 problem(s)" in err


# ---------------------------------------------------------------------------------------------
# explain


def test_explain_blog_example(capsys):
    assert main(["explain", f"{SEED}::blog-3x3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seed/blog-3x3 (")
    assert "0.8000068296765118448" in out  # the exact mean of the float64 inputs
    assert "0.80000682553706109" in out  # of the float32 inputs
    float32, float64 = out.split("== float32", 1)[1].split("== float64", 1)
    assert "0.80000682553706109" in float32 and "0.8000068296765118448" in float64
    assert "0.8000068296765118448" not in float32
    assert "kind: logits" in out and "shape: (3, 3)" in out
    assert (1.9072).hex() in float64  # the cast inputs, in hex


@pytest.mark.parametrize("spec, words", [("{seed}::no-such-case", ["no such case", "no-such-case"]), ("{seed}", ["FILE::ID"])])
def test_explain_unknown_case_exits_2(capsys, spec, words):
    assert main(["explain", spec.format(seed=SEED)]) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words), err


# ---------------------------------------------------------------------------------------------
# summary


def test_summary_of_a_results_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out)]) == 0
    capsys.readouterr()
    markdown = tmp_path / "summary.md"
    assert main(["summary", str(out), "--out", str(markdown)]) == 0
    text = capsys.readouterr().out
    header = "| API | op | exact | acceptable | conditioned | known_divergence | fail | unexpected_pass | unsupported | error |"
    assert header in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {f"`{api}`" for api in SUBJECT_APIS}
    cells = [c.strip() for c in rows["`rounded.stable_bce_with_logits`"].split("|")[2:-1]]
    # 6 value checks and the 4 relations (symmetry, mean-vs-sum, in 2 dtypes) exact, the 6 gradients unsupported
    assert cells[:9] == ["bce_with_logits", "10", "0", "0", "0", "0", "0", "6", "0"]
    assert f"- {NO_AUTODIFF} ({SEED_VALUE_CHECKS})" in text
    assert f"{SEED_CHECKS} results from 1 files; 0 problems" in text
    assert markdown.read_text(encoding="utf-8") in text


def test_summary_with_failures_exits_1(tmp_path, capsys):
    path = write_case(tmp_path / "cases", SATURATING, "probe.yaml")
    out = tmp_path / "out"
    assert main(["run", "--framework", "rounded", "--cases", str(path), "--out", str(out)]) == 1
    capsys.readouterr()
    assert main(["summary", str(out / "rounded.jsonl")]) == 1
    text = capsys.readouterr().out
    assert "### Failures (2)" in text and f"{PROBE_CHECKS} results from 1 files; 2 problems" in text


def test_summary_of_an_empty_folder_exits_2(tmp_path, capsys):
    assert main(["summary", str(tmp_path)]) == 2
    assert "no results files" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# one exit-status convention for every command: 0 done, 1 a check failed, 2 usage and input errors


def test_the_top_level_help_names_every_command_with_a_line_each_and_the_exit_statuses(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    commands = parser()._subparsers._group_actions[0].choices
    assert len(commands) == 8
    description = text.split("positional arguments:", 1)[0]
    for name in commands:
        assert name in description, (name, description)  # the description names every command, not a few
        help_line = next(action.help for action in parser()._subparsers._group_actions[0]._choices_actions if action.dest == name)
        assert re.search(rf"^\s+{name}\s+{re.escape(help_line[:30])}", text, re.MULTILINE), (name, text)
    statuses = text.split("exit status", 1)[1]
    assert all(re.search(rf"^\s+{code}\s", statuses, re.MULTILINE) for code in (0, 1, 2)), statuses


def _bad_results(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bad.jsonl"
    path.write_text("not a results record\n", encoding="utf-8")
    return path


def _bad_case(folder: Path) -> Path:
    return write_case(folder, SATURATING.replace("logits:", "logit:"), "typo.yaml")


# (command, what is wrong) -> argv, with {missing}, {bad_case}, {bad_results}, {seed} and {tmp} filled in
INPUT_ERRORS = {
    ("run", "missing path"): ["run", "--framework", "rounded", "--cases", "{missing}", "--out", "{tmp}/out"],
    ("run", "bad case file"): ["run", "--framework", "rounded", "--cases", "{bad_case}", "--out", "{tmp}/out"],
    ("run", "unknown framework"): ["run", "--framework", "no-such-framework", "--cases", "{seed}", "--out", "{tmp}/out"],
    ("run", "-k selecting nothing"): ["run", "--framework", "rounded", "--cases", "{seed}", "--out", "{tmp}/out", "-k", "no-such-check"],
    ("run", "malformed -k"): ["run", "--framework", "rounded", "--cases", "{seed}", "--out", "{tmp}/out", "-k", "float32 and ("],
    ("sweep", "unknown framework"): ["sweep", "--framework", "no-such-framework", "--bits", "0:8", "--out", "{tmp}/out"],
    ("sweep", "bad --bits"): ["sweep", "--framework", "rounded", "--bits", "8:0", "--workers", "0", "--out", "{tmp}/out"],
    ("validate", "missing path"): ["validate", "{missing}"],
    ("validate", "bad case file"): ["validate", "{bad_case}"],
    ("explain", "missing path"): ["explain", "{missing}::blog-3x3"],
    ("explain", "bad case file"): ["explain", "{bad_case}::sat"],
    ("explain", "unknown case id"): ["explain", "{seed}::blog-3x4"],
    ("summary", "missing path"): ["summary", "{missing}"],
    ("summary", "bad results file"): ["summary", "{bad_results}"],
    ("report", "missing path"): ["report", "{missing}", "--out", "{tmp}/report"],
    ("report", "bad results file"): ["report", "{bad_results}", "--out", "{tmp}/report"],
    ("diff", "missing path"): ["diff", "{missing}", "{missing}"],
    ("diff", "bad results file"): ["diff", "{bad_results}", "{bad_results}"],
    ("baseline", "missing path"): ["baseline", "{missing}", "{tmp}/baselines"],
    ("baseline", "bad results file"): ["baseline", "{bad_results}", "{tmp}/baselines"],
}


def test_every_command_has_its_input_errors_checked():
    assert {command for command, _ in INPUT_ERRORS} == set(parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command, wrong", list(INPUT_ERRORS))
def test_a_missing_path_or_bad_input_exits_2_with_an_error_and_no_traceback(tmp_path, capsys, monkeypatch, command, wrong):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    fields = {
        "missing": str(tmp_path / "nowhere"),
        "bad_case": str(_bad_case(tmp_path / "cases")),
        "bad_results": str(_bad_results(tmp_path / "results")),
        "seed": str(SEED),
        "tmp": str(tmp_path),
    }
    argv = [arg.format(**fields) for arg in INPUT_ERRORS[(command, wrong)]]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, (argv, err)
    assert err.strip() and "Traceback" not in err
    if wrong == "missing path":
        assert fields["missing"] in err, err


# ---------------------------------------------------------------------------------------------
# explain: the ids nearest a mistyped one


@pytest.mark.parametrize(
    "spec, suggested",
    [
        ("{seed}::blog-3x4", ["{seed}::blog-3x3"]),  # one typo
        ("{seed}::blog-hand-computaton", ["{seed}::blog-hand-computation"]),
        ("{seed}::blog", ["{seed}::blog-3x3"]),
        ("{seed}", ["{seed}::blog-3x3", "{seed}::blog-hand-computation"]),  # no id: the file's ids
    ],
)
def test_explain_suggests_the_ids_nearest_a_mistyped_one(capsys, spec, suggested):
    assert main(["explain", spec.format(seed=SEED)]) == 2
    err = capsys.readouterr().err
    listed = err.split(": ")[-1].strip().split(", ")
    assert listed == [s.format(seed=SEED) for s in suggested], err


def test_explain_of_an_id_near_none_lists_the_files_ids(capsys):
    assert main(["explain", f"{SEED}::zzzz"]) == 2
    err = capsys.readouterr().err
    assert "did you mean" not in err and f"{SEED}::blog-3x3, {SEED}::blog-hand-computation" in err


# ---------------------------------------------------------------------------------------------
# run -k: pytest's -k language over the check ids


def seed_ids() -> list[str]:
    from conformance.runner import plan

    return [check.id for check in plan("rounded", [SEED]).checks]


@pytest.mark.parametrize(
    "expression, chosen",
    [
        ("blog-3x3 and float32 and not grad", lambda i: "blog-3x3" in i and "float32" in i and "grad" not in i),
        ("SYMMETRY or (hand-computation and sum)", lambda i: "symmetry" in i or ("hand-computation" in i and "sum" in i)),
        ("stable_bce", lambda i: "stable_bce" in i),
    ],
)
def test_run_k_selects_the_checks_as_pytest_k_does(tmp_path, capsys, expression, chosen):
    wanted = [i for i in seed_ids() if chosen(i.lower())]
    assert 0 < len(wanted) < SEED_CHECKS
    out = tmp_path / "out"
    status = main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out), "-k", expression])
    text = capsys.readouterr().out
    assert status == 0, text
    got = [f"{r['case']}-{r['api']}-{r['dtype']}-{r['reduction']}" + ("" if r["quantity"] == "value" else f"-{r['quantity']}") for r in records(out / "rounded.jsonl")]
    assert got == wanted  # in the plan's order
    assert f"selected: {len(wanted)} of {SEED_CHECKS} checks (-k {expression!r})" in text
    assert f"{len(wanted)} results written to" in text
    assert "known divergences are judged stale or not on a whole run only" in text


def test_run_k_that_selects_nothing_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(out), "-k", "float16"]) == 2
    err = capsys.readouterr().err
    assert f"-k 'float16' selects none of the {SEED_CHECKS} checks" in err
    assert not out.exists()


def test_a_stale_divergence_is_judged_on_a_whole_run_not_on_a_selection(tmp_path, capsys):
    path = write_case(tmp_path / "cases", SATURATING, "probe.yaml")
    divergences = tmp_path / "div.yaml"
    divergences.write_text(
        "- id: probe-saturates\n  api: rounded.hand_*\n  where: {quantity: [value, symmetry]}\n  reason: log 0\n  source: s\n",
        encoding="utf-8",
    )
    argv = ["run", "--framework", "rounded", "--cases", str(path), "--out", str(tmp_path / "out"), "--divergences", str(divergences)]
    assert main(argv) == 0  # the whole run: the entry explains both failures
    capsys.readouterr()
    assert main([*argv, "-k", "stable"]) == 0  # a selection without them cannot tell a stale entry
    assert "FAILED" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# a failed relation's reproducer: its two calls


BROKEN = REPO / "tests" / "subjects" / "broken_relations.py"  # a subject whose relations fail, and its cases
BROKEN_CASES = BROKEN.with_suffix(".yaml")


def printed(repro: str) -> list:
    """What a reproducer prints, a Python literal a line."""
    done = subprocess.run([sys.executable, "-c", repro], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [ast.literal_eval(line) for line in done.stdout.splitlines()]


def test_a_failed_relation_prints_a_reproducer_of_its_two_calls(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "--adapter", f"{BROKEN}:load", "--cases", str(BROKEN_CASES), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    failed = {(r["api"], r["quantity"]): r for r in records(out / "broken.jsonl") if r["verdict"] == "fail"}
    assert {("broken.fused", "symmetry"), ("broken.fused", "mean-vs-sum"), ("broken.two_step", "vs-fused")} <= set(failed)
    for (_, relation), record in failed.items():
        if relation not in RELATIONS:
            continue
        assert record["repro"] and f"  reproduce: {record['repro']}" in text, record  # printed with the failure
        first, second = printed(record["repro"])
        if relation == "mean-vs-sum":  # the mean and the sum the message compares
            assert f"mean {to_hex(first)} vs sum / n {to_hex(second)} / 4" in record["message"], (first, second, record["message"])
        else:  # the worst element's two results: the call and its mirrored call, or the two-step and the fused call
            (worst_first,), (worst_second,) = first, second
            worst = record["worst"][0]
            assert {worst_first, worst_second} == {float.fromhex(worst["got"]), float.fromhex(worst["want"])}, (first, second, worst)
            x = float.fromhex(worst["inputs"]["logits"])
            logits = re.findall(r"'input': \"\['([^']+)'\]\"", record["repro"])
            assert [float.fromhex(h) for h in logits] == ([x, -x] if relation == "symmetry" else [x, x]), record["repro"]


# ---------------------------------------------------------------------------------------------
# progress: on stderr, a line per case file and the elapsed time; nothing of it in stdout or the files


def two_files(folder: Path) -> list[Path]:
    first = write_case(folder, SEED.read_text(encoding="utf-8"), "a_seed.yaml")
    second = write_case(folder, SATURATING, "b_probe.yaml")
    return [first, second]


def test_run_shows_a_line_per_case_file_and_the_elapsed_time_on_stderr(tmp_path, capsys):
    first, second = two_files(tmp_path / "cases")
    assert main(["run", "--framework", "rounded", "--cases", str(tmp_path / "cases"), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert re.fullmatch(rf"{re.escape(str(first))}: {SEED_CHECKS} checks, \d+\.\d s", lines[0]), lines
    assert re.fullmatch(rf"{re.escape(str(second))}: {PROBE_CHECKS} checks, \d+\.\d s", lines[1]), lines
    assert re.fullmatch(rf"{SEED_CHECKS + PROBE_CHECKS} checks in \d+\.\d s", lines[-1]), lines
    assert " s\n" not in captured.out and "checks in" not in captured.out  # no time on stdout


@pytest.mark.parametrize("mode", ["lines", "bar"])
def test_progress_changes_neither_stdout_nor_the_results_files(tmp_path, capsys, mode):
    if mode == "bar":
        pytest.importorskip("tqdm")
    two_files(tmp_path / "cases")
    out = tmp_path / "out"
    outputs = {}
    for progress in ("none", mode):
        argv = ["run", "--framework", "rounded", "--cases", str(tmp_path / "cases"), "--out", str(out), "--progress", progress]
        assert main(argv) == 1
        captured = capsys.readouterr()
        files = {name: (out / name).read_bytes() for name in ("rounded.jsonl", "rounded.summary.md")}
        outputs[progress] = captured.out, files
        if progress == "none":
            assert captured.err == ""
        else:
            lines = re.split(r"[\r\n]", captured.err)  # a bar redraws its line after a carriage return
            assert any(re.fullmatch(rf"{SEED_CHECKS + PROBE_CHECKS} checks in \d+\.\d s", line) for line in lines), lines
            assert b"checks in" not in b"".join(files.values())
    assert outputs["none"] == outputs[mode]
