"""The report's accuracy tables: input regions, the cells by (run, API, dtype, quantity) and by region, summary.md's
order and widths, and the regression gate shown with ``report --against``. Subjects are synthetic records."""

from __future__ import annotations

import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
from test_report import mixed_results, result, run_of, write_run

from conformance import regions
from conformance.cli import main as cli_main
from conformance.dtypes import FORMATS, get_format, round_to_format
from conformance.report import SUMMARY_LIMIT, accuracy_cell, build, summary_markdown, where_it_occurs

F32 = get_format("float32")


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_saturation_bound_is_where_sigmoid_rounds_to_one(name):
    """Past (p + 1)·ln 2, σ(x) rounds to 1 in the format; a hundredth below, it does not (computed exactly)."""
    fmt = get_format(name)
    bound = regions.saturation_bound(fmt)
    with mpmath.workprec(4 * fmt.precision + 64):

        def sigmoid(x: float) -> float:
            return round_to_format(1 / (1 + mpmath.exp(-mpmath.mpf(x))), fmt)

        assert sigmoid(bound * (1 + 1e-9)) == 1.0
        assert sigmoid(bound - 0.01) < 1.0


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_exp_overflow_bound_is_where_exp_leaves_the_format(name):
    fmt = get_format(name)
    bound = regions.exp_overflow_bound(fmt)
    assert mpmath.exp(mpmath.mpf(bound) * (1 + 1e-12)) > fmt.largest
    assert mpmath.exp(mpmath.mpf(bound) * (1 - 1e-12)) < fmt.largest


def test_each_element_lies_in_the_first_region_that_takes_it():
    x = np.array([0.5, 0.5, 20.0, -20.0, 100.0, 100.0, 1e-40, np.inf, 0.5, 1e-40])
    y = np.array([0.0, 0.5, 0.5, 1.0, 0.5, 1.0, 0.5, 0.0, np.nan, np.inf])
    names = [regions.REGIONS[i] for i in regions.classify("logits", x, y, F32)]
    assert names == [
        "moderate", "soft targets", "saturation", "saturation", "exp overflow", "exp overflow", "subnormal",
        "special", "special", "special",
    ]  # fmt: skip
    # probabilities: within epsilon of 0 or 1 (0 and 1 included) is saturation; no exp overflow
    p = np.array([0.0, 1.0, 1e-8, 1 - 2**-24, 0.5, 0.5, 1e-40])
    t = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.25, 0.0])
    names = [regions.REGIONS[i] for i in regions.classify("probs", p, t, F32)]
    assert names == ["saturation", "saturation", "saturation", "saturation", "moderate", "soft targets", "subnormal"]


def test_a_result_folds_into_its_regions_with_the_worst_element():
    inputs = {"logits": np.array([0.5, 0.25, 20.0, 30.0, 1e-40], dtype=np.float32), "target": np.array([0.0], np.float32)}
    ulps = [0.25, 3.0, 9.0, 9.0, 1e30]
    missing = np.array([False, False, True, True, False])
    figures = regions.summarize("logits", inputs, (5,), ulps, missing, F32, 4.0)
    assert list(figures) == ["subnormal", "saturation", "moderate"]  # REGIONS' order
    assert figures["moderate"] == {"elements": 2, "missed": 0, "max_ulp": 3.0, "x": "0x1p-2", "target": "0x0p+0"}
    # equal errors: the first element in C order
    assert figures["saturation"] == {"elements": 2, "missed": 2, "max_ulp": 9.0, "x": "0x1.4p+4", "target": "0x0p+0"}
    # past the tolerance yet not missed: accepted through the absolute floor
    assert figures["subnormal"]["floor"] is True and figures["subnormal"]["missed"] == 0
    assert regions.summarize("logits", {"logits": np.zeros(0), "target": np.zeros(0)}, (0,), [], None, F32, 4.0) == {}


def _regions(**cells) -> dict:
    return {
        name.replace("_", " "): {"elements": n, "missed": m, "max_ulp": u, "x": x, "target": "0x0p+0"}
        for name, (n, m, u, x) in cells.items()
    }


def test_an_accuracy_cell_takes_the_worst_error_and_the_most_severe_verdict():
    results = [
        result("a/c1", max_ulp=0.5, regions=_regions(moderate=(3, 0, 0.5, "0x1p-1"))),
        result("a/c2", verdict="known_divergence", max_ulp=float("inf"), divergence="d",
               regions=_regions(saturation=(2, 2, float("inf"), "-0x1.4p+4"), moderate=(1, 0, 1.0, "0x1p+0"))),
        result("a/c3", verdict="error", max_ulp=None, message="raised"),
        result("a/c4", verdict="unsupported", message="no"),
        result("a/c5", max_ulp=2.0, reduction="mean"),
    ]  # fmt: skip
    cell = accuracy_cell(results)
    assert cell.state == "fail"  # the error result: a problem, the most severe
    assert cell.worst == float("inf") and cell.result.case == "a/c2"
    assert cell.where == "saturation: x = -20, y = 0"
    assert cell.errors == 1 and cell.exact_worst == 2.0 and not cell.floor
    assert cell.counts.total == 5
    # without the error: the known divergence colours it
    assert accuracy_cell([r for r in results if r.verdict != "error"]).state == "known_divergence"
    assert accuracy_cell([results[3]]).state == "unsupported" and accuracy_cell([results[3]]).worst is None
    # a reduction: the case; an older record without regions: the worst element's inputs, classified here
    assert where_it_occurs(results[4]) == "mean of a/c5"
    old = result("a/c6", max_ulp=1.0, worst=[{"inputs": {"logits": "0x1.2cp+6", "target": "0x1p-1"}, "got": "0x0p+0"}])
    assert where_it_occurs(old) == "saturation: x = 75, y = 0.5"  # float32: 17.3 < 75 < 88.7


def test_the_worst_of_a_floor_accepted_result_is_marked():
    flushed = result("a/c1", dtype="float32", max_ulp=1e30, floor_accepted=2)
    assert accuracy_cell([flushed]).floor and accuracy_cell([flushed]).state == "exact"
    # beside a known divergence, the exact results' accuracy leaves what the floor decided out
    divergent = result("a/c2", verdict="known_divergence", divergence="d")
    cell = accuracy_cell([flushed, result("a/c3", max_ulp=0.75), divergent])
    assert cell.state == "known_divergence" and cell.exact_worst == 0.75
    assert not accuracy_cell([result("a/c1", dtype="float32", max_ulp=3.0, floor_accepted=2)]).floor


def test_region_cells_gather_an_apis_results_over_dtypes():
    results = [
        result("a/c1", dtype="float32", max_ulp=0.5, regions=_regions(moderate=(3, 0, 0.5, "0x1p-1"))),
        result("a/c2", dtype="float64", verdict="fail", max_ulp=9.0, message="off",
               regions=_regions(moderate=(4, 1, 9.0, "0x1p+1"), soft_targets=(2, 0, 0.1, "0x1p+0"))),
    ]  # fmt: skip
    (row,) = build([run_of(results)]).accuracy
    moderate = row.regions[("value", "moderate")]
    assert (moderate.elements, moderate.missed, moderate.worst, moderate.x) == (7, 1, 9.0, "0x1p+1")
    assert moderate.state == "fail" and moderate.result.dtype == "float64"
    assert row.regions[("value", "soft targets")].state == "exact"  # no element missed there
    assert set(row.cells) == {("float32", "value"), ("float64", "value")}


def _tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _columns(row: str) -> int:
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|")))


def _wide_report():
    runs = []
    for framework, version in (("torch", "2.9.0"), ("torch", "2.13.0"), ("jax", "0.10.2")):
        results = []
        for dtype in FORMATS:
            for r in mixed_results(framework, version):
                r.dtype = dtype
                results.append(r)
        results += [result("a/g", api=f"{framework}.api_a", framework=framework, quantity="grad", max_ulp=2.0)]
        results += [result("a/s", api=f"{framework}.api_a", framework=framework, quantity="symmetry")]
        runs.append(run_of(results, framework, version))
    return build(runs)


def test_summary_leads_with_accuracy_then_problems_then_the_gate_and_stays_narrow():
    report = _wide_report()
    assert len(report.problems) == 3 * len(FORMATS) * 3  # mixed_results holds 3 per run and dtype
    text = summary_markdown(report)
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads[:4] == [
        "## Accuracy: the worst error in ULPs per API and dtype",
        f"## Problems: {len(report.problems)} (fail, unexpected pass, error)",
        "## Regression gate",
        "## Verdicts per run",
    ]
    tables = _tables(text)
    assert len(tables) >= 5  # accuracy (value, grad), verdicts per run, ranking, largest explained errors
    for table in tables:
        assert max(_columns(row) for row in table) <= 8, table[0]
    value = text.split("### value", 1)[1].split("\n### ", 1)[0]
    assert "| run · API | float16 | bfloat16 | float32 | float64 |" in value
    assert len(text.encode("utf-8")) <= SUMMARY_LIMIT <= 200 * 1024


def _baseline_and_current(tmp_path: Path, regress: bool) -> Path:
    write_run(tmp_path / "baseline" / "fw.jsonl", mixed_results())
    current = mixed_results()
    if regress:
        current[0].verdict, current[0].message = "fail", "off"
    return write_run(tmp_path / "current" / "fw.jsonl", current)


@pytest.mark.parametrize("regress", [False, True])
def test_the_report_shows_the_regression_gate_against_a_baseline(tmp_path, regress):
    _baseline_and_current(tmp_path, regress)
    out = tmp_path / "out"
    argv = ["report", str(tmp_path / "current"), "--out", str(out), "--against", str(tmp_path / "baseline")]
    assert cli_main(argv) == 0  # the report only describes: diff is the gate
    summary = (out / "summary.md").read_text(encoding="utf-8")
    page = (out / "report.html").read_text(encoding="utf-8")
    verdict = "fails" if regress else "passes"
    assert f"## Regression gate: {verdict} against `{tmp_path / 'baseline'}`" in summary
    assert ("1 regressions (1 new failures" in summary) == regress and ("; no regressions" in summary) != regress
    assert f"<b>The gate {verdict}</b>" in page and ('class="gate bad"' in page) == regress


def test_a_missing_baseline_is_a_usage_error(tmp_path, capsys):
    _baseline_and_current(tmp_path, False)
    argv = ["report", str(tmp_path / "current"), "--out", str(tmp_path / "out"), "--against", str(tmp_path / "nope")]
    assert cli_main(argv) == 2
    assert "--against: baseline" in capsys.readouterr().err


def test_every_accuracy_cell_carries_what_the_filters_read():
    from conformance import report_html

    report = _wide_report()
    page = report_html.render(report)
    table = page.split('<table id="accuracy"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td [^>]*>", table)
    assert len(cells) == len(report.accuracy) * len(report.dtypes) * len(report.accuracy_quantities)
    assert all('data-dtype="' in c and 'data-quantity="' in c for c in cells)
    rows = re.findall(r"<tr id=\"api-[^\"]+\"[^>]*>", table)
    assert len(rows) == len(report.accuracy) and all('data-framework="' in r and 'data-outcome="' in r for r in rows)
    for select in ("outcome", "framework", "dtype", "quantity"):
        assert f'<select name="{select}">' in page


def test_a_run_records_the_regions_of_each_elementwise_result(tmp_path):
    import json

    from conformance.cases import load

    seed = Path(__file__).resolve().parents[1] / "cases" / "seed.yaml"
    argv = ["run", "--framework", "rounded", "--cases", str(seed), "--out", str(tmp_path), "--progress", "none"]
    assert cli_main(argv) == 0
    records = [json.loads(line) for line in (tmp_path / "rounded.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    cases = {case.full_name: case for case in load([seed])}
    judged = [r for r in records if r["quantity"] in ("value", "grad") and r["verdict"] not in ("unsupported", "error")]
    assert any(r["reduction"] == "none" for r in judged) and any(r["reduction"] != "none" for r in judged)
    for record in judged:
        if record["reduction"] != "none":
            assert "regions" not in record, record["case"]
            continue
        figures = record["regions"]
        assert list(figures) == [name for name in regions.REGIONS if name in figures]
        # the regions share out the result's elements and hold its worst error
        assert sum(f["elements"] for f in figures.values()) == int(np.prod(cases[record["case"]].shape))
        assert max(float(f["max_ulp"]) for f in figures.values()) == float(record["max_ulp"])
