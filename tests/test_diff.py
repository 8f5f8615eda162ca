"""``python -m conformance diff``: every category planted in synthetic results sets, exit codes, a real numpy run."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.diff import compare, markdown
from conformance.results import Result, ResultWriter, read_runs

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
JAX = {"framework": "jax", "framework_versions": {"jax": "0.9.2"}}
JAX_NEW = {"framework": "jax", "framework_versions": {"jax": "0.10.2"}}


def result(case="c/a", verdict="exact", max_ulp=0.0, framework="jax", **fields) -> Result:
    fields.setdefault("api", "jax.bce")
    fields.setdefault("dtype", "float32")
    fields.setdefault("reduction", "mean")
    return Result(case=case, framework=framework, op="bce", verdict=verdict, max_ulp=max_ulp, **fields)


def write(path: Path, results: list[Result], environment=JAX) -> Path:
    writer = ResultWriter(path, environment, len(results))
    for r in results:
        writer.write(r)
    writer.close()
    return path


def sets(tmp_path, baseline: list[Result], current: list[Result]) -> tuple[str, str]:
    write(tmp_path / "base" / "jax.jsonl", baseline)
    write(tmp_path / "cur" / "jax.jsonl", current, JAX_NEW)
    return str(tmp_path / "base"), str(tmp_path / "cur")


def diff_of(tmp_path, baseline, current, threshold=1.0):
    base, cur = sets(tmp_path, baseline, current)
    return compare(read_runs([base]), read_runs([cur]), threshold)


def categories(diff) -> dict[str, list[str]]:
    names = ("new_failures", "worse", "ulp_growth", "disappeared", "improvements", "other", "new_results")
    return {name: [c.id for c in getattr(diff, name)] for name in names if getattr(diff, name)}


UNCHANGED = result("c/unchanged", max_ulp=0.5)
ID = UNCHANGED.id.replace("unchanged", "a")  # the id of result() with the default case


def test_identical_sets_exit_0_with_no_regressions(tmp_path, capsys):
    rs = [UNCHANGED, result("c/b", "fail", math.inf, message="off\nsecond line"), result("c/u", "unsupported", None)]
    base, cur = sets(tmp_path, rs, rs)
    assert main(["diff", base, cur]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("no regressions")
    assert out.rstrip().splitlines()[-1].startswith("diff: 0 regressions (0 new failures, 0 worse, 0 ULP growth")
    assert "jax: jax 0.9.2 → jax 0.10.2" in out
    assert "###" not in out  # no category listed


def test_new_failure(tmp_path, capsys):
    base, cur = sets(
        tmp_path,
        [UNCHANGED, result(max_ulp=0.5)],
        [UNCHANGED, result(verdict="fail", max_ulp=40.0, message="40 ULP off\ndetails")],
    )
    assert main(["diff", base, cur]) == 1
    out = capsys.readouterr().out
    assert f"- `{ID}` (jax): exact → fail, max ULP 0.5 → 40: 40 ULP off" in out
    assert "details" not in out
    assert "### New failures (1)" in out and "Verdicts that got worse" not in out  # listed once
    assert out.rstrip().splitlines()[-1] == (
        "diff: 1 regressions (1 new failures, 0 worse, 0 ULP growth, 0 disappeared), 0 improvements, 0 other changes"
    )


def test_new_result_that_is_a_problem_is_a_new_failure(tmp_path):
    diff = diff_of(tmp_path, [UNCHANGED], [UNCHANGED, result(verdict="error", max_ulp=None, message="raised")])
    assert categories(diff) == {"new_failures": [ID]}


def test_a_problem_already_in_the_baseline_is_no_new_failure(tmp_path):
    diff = diff_of(tmp_path, [result(verdict="fail", max_ulp=3.0)], [result(verdict="error", max_ulp=None)])
    assert categories(diff) == {"other": [ID]}  # same rank, another verdict


def test_exact_to_acceptable_is_worse(tmp_path, capsys):
    base, cur = sets(tmp_path, [result()], [result(verdict="acceptable", max_ulp=3.0, variant="clamp")])
    assert main(["diff", base, cur]) == 1
    out = capsys.readouterr().out
    assert "### Verdicts that got worse (1)" in out and f"`{ID}` (jax): exact → acceptable, max ULP 0 → 3" in out


def test_acceptable_to_exact_is_an_improvement(tmp_path, capsys):
    base, cur = sets(tmp_path, [result(verdict="acceptable", max_ulp=3.0, variant="clamp")], [result()])
    assert main(["diff", base, cur]) == 0
    out = capsys.readouterr().out
    assert "### Improvements (1)" in out and "acceptable → exact" in out
    assert out.rstrip().endswith("0 regressions (0 new failures, 0 worse, 0 ULP growth, 0 disappeared), "
                                 "1 improvements, 0 other changes; no regressions")


def test_fail_to_exact_is_an_improvement(tmp_path):
    diff = diff_of(tmp_path, [result(verdict="fail", max_ulp=9.0, message="m")], [result()])
    assert categories(diff) == {"improvements": [ID]}
    assert "exact, max ULP 9 → 0: m" in markdown(diff)  # the baseline's problem is named


def test_ulp_growth_past_the_threshold_and_not_below_it(tmp_path, capsys):
    before, after = [result(max_ulp=0.5), result("c/b", max_ulp=0.5)], [result(max_ulp=1.6), result("c/b", max_ulp=1.5)]
    diff = diff_of(tmp_path, before, after)
    assert categories(diff) == {"ulp_growth": [ID]}  # 1.1 ULP more is past 1; exactly 1 is not
    base, cur = str(tmp_path / "base"), str(tmp_path / "cur")
    assert main(["diff", base, cur]) == 1
    assert "### ULP errors that grew by more than 1 (1)" in capsys.readouterr().out
    assert main(["diff", base, cur, "--ulp-threshold", "2"]) == 0
    assert main(["diff", base, cur, "--ulp-threshold", "0.5"]) == 1


def test_ulp_growth_of_a_known_divergence_and_a_relation(tmp_path):
    before = [result(verdict="known_divergence", max_ulp=5.0, divergence="d"), result(quantity="symmetry", max_ulp=0.0)]
    after = [result(verdict="known_divergence", max_ulp=50.0, divergence="d"), result(quantity="symmetry", max_ulp=4.0)]
    diff = diff_of(tmp_path, before, after)
    assert categories(diff) == {"ulp_growth": [ID, ID + "-symmetry"]}


def test_finite_to_inf_is_ulp_growth_and_none_and_nan_read_as_0_and_inf(tmp_path):
    diff = diff_of(
        tmp_path,
        [result(verdict="fail", max_ulp=5.0), result("c/n", max_ulp=None), result("c/nan", "fail", math.nan),
         result("c/to-nan", "fail", 5.0)],
        [result(verdict="fail", max_ulp=math.inf), result("c/n", max_ulp=0.0), result("c/nan", "fail", math.inf),
         result("c/to-nan", "fail", math.nan)],
    )
    assert categories(diff) == {"ulp_growth": [ID, ID.replace("c/a", "c/to-nan")]}
    assert "fail → fail, max ULP 5 → inf" in markdown(diff)
    shrunk = diff_of(tmp_path, [result(verdict="fail", max_ulp=math.inf)], [result(verdict="fail", max_ulp=7.0)])
    assert categories(shrunk) == {"improvements": [ID]}


def test_disappeared(tmp_path, capsys):
    base, cur = sets(tmp_path, [UNCHANGED, result()], [UNCHANGED])
    assert main(["diff", base, cur]) == 1
    out = capsys.readouterr().out
    assert f"### Disappeared (1)\n\n- `{ID}` (jax): exact → (gone), max ULP 0 → -" in out
    assert "0 ULP growth, 1 disappeared)" in out


def test_a_whole_framework_gone_is_one_absent_run_not_its_results_disappeared(tmp_path, capsys):
    torch = [result(f"c/{i}", framework="torch") for i in range(3)] + [result("c/f", "fail", 9.0, framework="torch")]
    write(tmp_path / "base" / "torch.jsonl", torch, {"framework": "torch"})
    base, cur = sets(tmp_path, [UNCHANGED], [UNCHANGED])
    assert main(["diff", base, cur]) == 1  # the gate stays strict: a framework missing from the current set fails
    out = capsys.readouterr().out
    assert "- torch: torch → -" in out and "### Disappeared" not in out
    assert "### Runs absent from the current set (1): a regression\n\n- torch (torch): no results file of this run in the current set (baseline: 4 results: 3 exact, 1 fail)" in out
    assert out.rstrip().endswith("diff: 1 regressions (0 new failures, 0 worse, 0 ULP growth, 0 disappeared, 1 runs absent), 0 improvements, 0 other changes")


def new_framework_against_a_baseline_folder(tmp_path) -> tuple[str, str]:
    """The user story: results of a framework the baselines do not have, diffed against the whole folder."""
    write(tmp_path / "base" / "torch.jsonl", [result(f"c/{i}", framework="torch") for i in range(5)], {"framework": "torch"})
    write(tmp_path / "base" / "jax.jsonl", [result(f"c/{i}") for i in range(4)], JAX)
    mine = [result("c/0", framework="python_math"), result("c/1", "unsupported", None, framework="python_math"), result("c/2", "fail", 3.0, framework="python_math")]
    write(tmp_path / "cur" / "python_math.jsonl", mine, {"framework": "python_math"})
    return str(tmp_path / "base"), str(tmp_path / "cur")


def test_a_new_framework_against_baselines_lists_each_run_once(tmp_path, capsys):
    base, cur = new_framework_against_a_baseline_folder(tmp_path)
    assert main(["diff", base, cur]) == 1
    out = capsys.readouterr().out
    assert "### Disappeared" not in out and "### New results" not in out
    assert "### Runs absent from the current set (2): a regression\n\n- jax (jax 0.9.2): no results file of this run in the current set (baseline: 4 results: 4 exact)\n- torch (torch): no results file of this run in the current set (baseline: 5 results: 5 exact)" in out
    assert "### Runs new in the current set, with no baseline (1): their problems are listed as new failures\n\n- python_math (python_math): 3 results: 1 exact, 1 unsupported, 1 fail" in out
    assert "### New failures (1)\n\n- `" in out and "(python_math): (new) → fail" in out
    assert out.rstrip().endswith(
        "diff: 3 regressions (1 new failures, 0 worse, 0 ULP growth, 0 disappeared, 2 runs absent), 0 improvements, "
        "0 other changes; runs on one side only: 2 absent, 1 new"
    )


def test_common_runs_compares_the_runs_on_both_sides_only(tmp_path, capsys):
    base, cur = new_framework_against_a_baseline_folder(tmp_path)
    assert main(["diff", base, cur, "--common-runs"]) == 0
    out = capsys.readouterr().out
    assert "### Runs absent from the current set (2): not compared (--common-runs)" in out
    assert "### Runs new in the current set, with no baseline (1): not compared (--common-runs)" in out
    assert "### New failures" not in out
    assert out.rstrip().endswith(
        "diff: 0 regressions (0 new failures, 0 worse, 0 ULP growth, 0 disappeared), 0 improvements, 0 other changes; "
        "runs on one side only: 2 absent, 1 new (not compared); no regressions"
    )
    # a run on both sides is compared as ever: its regressions still fail
    write(Path(cur) / "jax.jsonl", [result(f"c/{i}", "fail" if i == 0 else "exact") for i in range(3)], JAX_NEW)
    assert main(["diff", base, cur, "--common-runs"]) == 1
    out = capsys.readouterr().out
    assert "1 new failures" in out and "1 disappeared" in out and "runs on one side only: 1 absent, 1 new (not compared)" in out


def test_new_result_is_another_change(tmp_path, capsys):
    base, cur = sets(tmp_path, [UNCHANGED], [UNCHANGED, result(verdict="acceptable", max_ulp=2.0)])
    assert main(["diff", base, cur]) == 0
    out = capsys.readouterr().out
    assert f"### New results (1)\n\n- `{ID}` (jax): (new) → acceptable" in out
    assert "0 improvements, 1 other changes; no regressions" in out


def test_divergence_id_change_is_another_change(tmp_path, capsys):
    base, cur = sets(
        tmp_path,
        [result(verdict="known_divergence", max_ulp=9.0, divergence="old-id")],
        [result(verdict="known_divergence", max_ulp=9.0, divergence="new-id")],
    )
    assert main(["diff", base, cur]) == 0
    out = capsys.readouterr().out
    assert "### Other changes (1)" in out and "divergence old-id → new-id" in out


def test_becoming_unsupported_is_worse_and_back_an_improvement(tmp_path):
    before = [result(), result("c/kd", "known_divergence", 9.0, divergence="d"), result("c/f", "fail", 9.0)]
    after = [result(verdict="unsupported", max_ulp=None), *(result(c, "unsupported", None) for c in ("c/kd", "c/f"))]
    diff = diff_of(tmp_path, before, after)
    assert categories(diff) == {"worse": sorted(r.id for r in before)}  # coverage lost, even of a failure
    back = diff_of(tmp_path, after, [result(), result("c/kd", "known_divergence", 9.0, divergence="d"), result("c/f")])
    assert categories(back) == {"improvements": sorted(r.id for r in before)}


def test_results_are_matched_per_framework(tmp_path):
    write(tmp_path / "base" / "torch.jsonl", [result(framework="torch")], {"framework": "torch"})
    write(tmp_path / "cur" / "torch.jsonl", [result(framework="torch", verdict="fail")], {"framework": "torch"})
    diff = diff_of(tmp_path, [result()], [result()])
    assert [(c.framework, c.id) for c in diff.new_failures] == [("torch", ID)]


def test_listing_is_capped_and_the_counts_complete(tmp_path):
    before = [result(f"c/{i:03}") for i in range(205)]
    diff = diff_of(tmp_path, before, [])
    text = markdown(diff)
    assert len(diff.disappeared) == 205 and "### Disappeared (205)" in text and "- ... and 5 more" in text
    assert text.count("(gone)") == 200 and "c/199" in text and "c/200" not in text


def test_out_file_is_the_same_text_and_deterministic(tmp_path, capsys):
    base, cur = sets(tmp_path, [result("c/z"), result("c/b"), result()], [result("c/b", "fail", 2.0)])
    out = tmp_path / "diff.md"
    assert main(["diff", base, cur, "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert out.read_text(encoding="utf-8") == printed
    assert main(["diff", base, cur, "--out", str(out)]) == 1
    assert capsys.readouterr().out == printed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left
    assert printed.index("c/a") < printed.index("c/z")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: (str(t / "nowhere"), str(t / "cur")), "nowhere: no such file or folder"),
        (lambda t: (str(t / "empty"), str(t / "cur")), "no results files (*.jsonl)"),
        (lambda t: (str(t / "base"), str(t / "bad.jsonl")), "results format"),
        (lambda t: (str(t / "dup"), str(t / "cur")), "a.jsonl:3: result c/a-jax.bce-float32-mean recorded again (line 2"),
    ],
)
def test_usage_problems_exit_2(tmp_path, capsys, make, message):
    sets(tmp_path, [result()], [result()])
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"format": "other", "format_version": 1}) + "\n", encoding="utf-8")
    write(tmp_path / "dup" / "a.jsonl", [result(), result()])
    assert main(["diff", *make(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err
    assert "Traceback" not in captured.err and captured.out == ""


def test_one_key_twice_in_a_set_is_a_diff_error(tmp_path):
    # two files of one run in a set (reachable through the API: a folder's runs are its distinct file names)
    from conformance.diff import DiffError

    base, _ = sets(tmp_path, [result()], [result()])
    runs = read_runs([base]) + read_runs([base])
    with pytest.raises(DiffError, match="appears twice"):
        compare(runs, read_runs([base]))


def test_one_framework_at_two_versions_in_a_set_is_two_runs(tmp_path, capsys):
    # a folder holding jax.jsonl and jax-0.6.jsonl (the version matrix): matched per file name
    for folder in ("base", "cur"):
        write(tmp_path / folder / "jax.jsonl", [result("c/a", "exact", 0.5)], JAX_NEW)
        write(tmp_path / folder / "jax-0.6.jsonl", [result("c/a", "exact", 0.5)], JAX)
    write(tmp_path / "cur" / "jax-0.6.jsonl", [result("c/a", "fail", 9.0)], JAX)
    diff = compare(read_runs([tmp_path / "base"]), read_runs([tmp_path / "cur"]))
    assert [(c.framework, c.id) for c in diff.new_failures] == [("jax-0.6", result("c/a").id)]
    assert diff.versions == {"jax": ("jax 0.10.2", "jax 0.10.2"), "jax-0.6": ("jax 0.9.2", "jax 0.9.2")}


def test_two_single_files_of_one_framework_compare_by_framework(tmp_path, capsys):
    # the version change itself: results/jax.jsonl against results/jax-0.6.jsonl
    old = write(tmp_path / "jax-0.6.jsonl", [result("c/a", "known_divergence", 5.0)], JAX)
    new = write(tmp_path / "jax.jsonl", [result("c/a", "known_divergence", float("inf"))], JAX_NEW)
    assert main(["diff", str(old), str(new)]) == 1
    text = capsys.readouterr().out
    assert "- jax: jax 0.9.2 → jax 0.10.2" in text and "max ULP 5 → inf" in text


def test_a_real_numpy_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["diff", str(run), str(run)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("no regressions")

    lines = (run / "rounded.jsonl").read_text(encoding="utf-8").splitlines()
    index = next(i for i, line in enumerate(lines) if json.loads(line).get("verdict") == "exact")
    record = json.loads(lines[index])
    record.update(verdict="fail", message="planted")
    lines[index] = json.dumps(record)
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "rounded.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    shutil.copy(run / "rounded.jsonl", tmp_path / "baseline.jsonl")

    assert main(["diff", str(tmp_path / "baseline.jsonl"), str(planted)]) == 1
    out = capsys.readouterr().out
    planted_id = Result.from_json(lines[index]).id
    assert f"- `{planted_id}` (rounded): exact → fail" in out and ": planted" in out
    assert "diff: 1 regressions (1 new failures, 0 worse, 0 ULP growth, 0 disappeared)" in out


def test_baseline_keeps_every_record_but_the_sweep_elements(tmp_path, capsys):
    elements = {"x": [1.0, 2.0], "target": [0.0, 1.0], "got": [1.0, "inf"], "want": [1.0, "inf"], "ulp": [0.0, 0.5]}
    sweep = result("c/sweep", reduction="none", elements=elements)
    rs = [UNCHANGED, sweep, result("c/b", "fail", math.inf, message="off")]
    write(tmp_path / "results" / "jax.jsonl", rs)
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "gone.jsonl").write_text("stale\n")
    assert main(["baseline", str(tmp_path / "results"), str(tmp_path / "baselines")]) == 0
    assert not (tmp_path / "baselines" / "gone.jsonl").exists()
    full = [json.loads(line) for line in (tmp_path / "results" / "jax.jsonl").read_text().splitlines()]
    kept = [json.loads(line) for line in (tmp_path / "baselines" / "jax.jsonl").read_text().splitlines()]
    assert "elements" in full[2] and all("elements" not in record for record in kept)
    full[2].pop("elements")
    assert kept == full  # everything else, the environment record included, as it was
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "baselines"), str(tmp_path / "results")]) == 0
    assert "0 other changes" in capsys.readouterr().out


def conditioned(case="c/a", max_ulp=12.0, **fields) -> Result:
    fields.setdefault("bound_ratio", 2.5)
    fields.setdefault("condition", 3.2e4)
    return result(case, "conditioned", max_ulp, **fields)


def test_conditioned_ranks_with_acceptable_between_exact_and_a_known_divergence(tmp_path):
    kd, fail = {"divergence": "d"}, {"message": "off"}
    cases = {  # case: (baseline, current, category)
        "c/from-exact": (result("c/from-exact"), conditioned("c/from-exact"), "worse"),
        "c/to-exact": (conditioned("c/to-exact"), result("c/to-exact"), "improvements"),
        "c/from-kd": (result("c/from-kd", "known_divergence", 12.0, **kd), conditioned("c/from-kd"), "improvements"),
        "c/to-kd": (conditioned("c/to-kd"), result("c/to-kd", "known_divergence", 12.0, **kd), "worse"),
        "c/from-fail": (result("c/from-fail", "fail", 12.0, **fail), conditioned("c/from-fail"), "improvements"),
        "c/to-fail": (conditioned("c/to-fail"), result("c/to-fail", "fail", 12.0, **fail), "new_failures"),
        "c/from-acc": (result("c/from-acc", "acceptable", 3.0, variant="v"), conditioned("c/from-acc"), "other"),
        "c/to-unsup": (conditioned("c/to-unsup"), result("c/to-unsup", "unsupported", None), "worse"),
        "c/from-unsup": (result("c/from-unsup", "unsupported", None), conditioned("c/from-unsup"), "improvements"),
        "c/grew": (conditioned("c/grew", 12.0), conditioned("c/grew", 30.0), "ulp_growth"),
        "c/same": (conditioned("c/same"), conditioned("c/same"), None),
    }
    diff = diff_of(tmp_path, [before for before, _, _ in cases.values()], [after for _, after, _ in cases.values()])
    expected: dict[str, list[str]] = {}
    for before, _, category in cases.values():
        if category:
            expected.setdefault(category, []).append(before.id)
    assert categories(diff) == {name: sorted(ids) for name, ids in expected.items()}


def test_the_counts_say_how_many_results_became_conditioned_and_from_what(tmp_path, capsys):
    before = [
        result("c/kd1", "known_divergence", 12.0, divergence="d"),
        result("c/kd2", "known_divergence", 12.0, divergence="d"),
        result("c/f", "fail", 12.0, message="off"),
        result("c/e"),
        conditioned("c/was"),  # conditioned before: it did not become so
    ]
    after = [conditioned("c/kd1"), conditioned("c/kd2", bound_ratio=3.75), conditioned("c/f"), conditioned("c/e"),
             conditioned("c/was"), conditioned("c/new")]  # fmt: skip
    base, cur = sets(tmp_path, before, after)
    diff = compare(read_runs([base]), read_runs([cur]))
    assert diff.to_conditioned == {"known_divergence": 2, "fail": 1, "exact": 1}
    assert main(["diff", base, cur]) == 1  # exact → conditioned got worse
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == (
        "diff: 1 regressions (0 new failures, 1 worse, 0 ULP growth, 0 disappeared), 3 improvements, 1 other changes"
        "; 4 now conditioned (2 from known_divergence, 1 from fail, 1 from exact)"
    )
    kd2 = conditioned("c/kd2").id
    assert f"- `{kd2}` (jax): known_divergence → conditioned, max ULP 12 → 12, within its conditioning " \
           "(bound ratio 3.75, condition 32000)" in out  # fmt: skip
    # only failures: the known divergences are named with their 0
    only_fail = diff_of(tmp_path, [result(verdict="fail", max_ulp=9.0, message="off")], [conditioned()])
    ending = "; 1 now conditioned (0 from known_divergence, 1 from fail); no regressions"
    assert markdown(only_fail).rstrip().endswith(ending)
    # nothing became conditioned: the line is as it was
    assert "now conditioned" not in markdown(diff_of(tmp_path, [conditioned()], [conditioned()]))
