"""``python -m conformance report``: summary.md, report.html and junit.xml from synthetic results
(and from one real run of the seed cases through the rounded subject). No framework is imported."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from conformance import junit
from conformance.cli import main as cli_main
from conformance.report import SUMMARY_LIMIT, build, summary_markdown
from conformance.results import Result, ResultWriter, Run

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
OUTPUTS = ("summary.md", "report.html", "junit.xml")
ENVIRONMENT = {
    "framework": "torch",
    "framework_versions": {"torch": "2.13.0"},
    "settings": {"deterministic": "True"},  # settings are strings (results.schema.json)
    "suite": "0.1.0",
    "python": "3.11.9",
    "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
    "machine": "x86_64",
    "cpu": "Some CPU @ 3.0GHz",
    "device": "cpu",
    "subnormals": {
        "float32": {"flushed_to_zero": False, "inputs_as_zero": False},
        "float64": {"flushed_to_zero": True, "inputs_as_zero": True},
    },
    "mpmath": "1.3.0",
    "mpmath_backend": "gmpy",
}


def result(case="alpha/c1", api="fw.api_a", verdict="exact", framework="fw", versions=None, **fields) -> Result:
    fields.setdefault("max_ulp", 0.0 if verdict == "exact" else math.inf if verdict != "unsupported" else None)
    fields.setdefault("dtype", "float32")
    fields.setdefault("reduction", "none")
    return Result(
        case=case,
        framework=framework,
        api=api,
        op="bce_with_logits",
        verdict=verdict,
        framework_versions=versions or {framework: "1.0"},
        file=f"cases/{case.split('/')[0]}.yaml",
        **fields,
    )


def run_of(results: list[Result], framework="fw", version="1.0", environment=None, path=None) -> Run:
    env = {"framework": framework, "framework_versions": {framework: version}} if environment is None else environment
    return Run(Path(path or f"{framework}-{version}.jsonl"), env, results)


def write_run(path: Path, results: list[Result], environment: dict | None = None) -> Path:
    writer = ResultWriter(path, environment or {}, len(results))
    for r in results:
        writer.write(r)
    writer.close()
    return path


def sweep_results(
    framework: str, version: str, dtype: str = "float32", case: str = "logit_sweep/sweep"
) -> list[Result]:
    """A sweep case's value results for two APIs: the stable formula (within half an ULP) and the
    two-step hand formula (saturating to inf, NaN at the extremes), targets 0, 0.5 and 1."""
    ftype = np.float32 if dtype == "float32" else np.float64
    half = np.logspace(-3, 4, 40)
    logits = np.concatenate([-half[::-1], [0.0], half]).astype(ftype).astype(float)
    x = np.tile(logits, 3)
    t = np.repeat([0.0, 0.5, 1.0], len(logits))
    with np.errstate(all="ignore"):
        exact = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        want = exact.astype(ftype).astype(float)
        spacing = np.spacing(np.abs(want).astype(ftype)).astype(float)
        p = (1 / (1 + np.exp(-x.astype(ftype)))).astype(ftype)
        hand = (-(t * np.log(p) + (1 - t) * np.log1p(-p))).astype(ftype).astype(float)
    out = []
    versions = {framework: version}
    for api, got in ((f"{framework}.stable", want.copy()), (f"{framework}.hand_sigmoid+{framework}.hand_bce", hand)):
        with np.errstate(all="ignore"):
            ulp = np.where(np.isfinite(got), np.abs(got - exact) / spacing, np.inf)
        worst = float(np.max(ulp))
        out.append(
            result(
                case,
                api,
                "exact" if worst <= 4 else "known_divergence",
                framework,
                versions,
                dtype=dtype,
                max_ulp=worst,
                median_ulp=float(np.median(ulp)),
                divergence="" if worst <= 4 else "hand-formula-saturates",
                message="" if worst <= 4 else "the hand formula saturates",
                elements={
                    k: [float(v) for v in vs]
                    for k, vs in (("x", x), ("target", t), ("got", got), ("want", want), ("ulp", ulp))
                },
            )
        )
    return out


def mixed_results(framework="fw", version="1.0") -> list[Result]:
    """Two APIs over two case files, every verdict."""
    versions = {framework: version}
    a, b = f"{framework}.api_a", f"{framework}.api_b"
    spec = [
        ("alpha/c1", a, "exact"),
        ("alpha/c2", a, "exact"),
        ("alpha/c3", a, "acceptable"),
        ("alpha/c4", a, "fail"),
        ("alpha/c5", a, "unexpected_pass"),
        ("alpha/c6", a, "error"),
        ("alpha/c7", a, "known_divergence"),
        ("alpha/c8", a, "unsupported"),
        ("beta/c1", a, "exact"),
        ("beta/c1", b, "known_divergence"),
        ("beta/c2", b, "known_divergence"),
        ("beta/c3", b, "unsupported"),
    ]
    out = []
    for case, api, verdict in spec:
        extra = {}
        if verdict == "known_divergence":
            extra = {
                "divergence": "div-x",
                "message": "diverges. Observed: inf",
                "source": "https://github.com/o/r/issues/1",
            }
        elif verdict == "acceptable":
            extra = {"variant": "clamped", "max_ulp": 7.0}
        elif verdict == "unsupported":
            extra = {"message": "float16 unsupported"}
        elif verdict in ("fail", "error", "unexpected_pass"):
            extra = {"message": f"{verdict} here <b>bold</b> & more"}
        out.append(result(case, api, verdict, framework, versions, **extra))
    return out


def test_matrix_counts_per_api_and_case_file():
    report = build([run_of(mixed_results())])
    (run,) = report.runs
    assert run.apis == ["fw.api_a", "fw.api_b"]
    assert run.files == ["alpha", "beta"]
    # exact · acceptable · conditioned · fail (fail + unexpected pass + error) · known divergence · unsupported
    assert run.matrix["fw.api_a"]["alpha"].cell() == "2·1·0·3·1·1"
    assert run.matrix["fw.api_a"]["beta"].cell() == "1·0·0·0·0·0"
    assert "alpha" not in run.matrix["fw.api_b"]
    assert run.matrix["fw.api_b"]["beta"].cell() == "0·0·0·0·2·1"
    assert run.api_totals["fw.api_a"].cell() == "3·1·0·3·1·1"
    assert report.totals.total == 12 and report.totals.problems == 3
    text = summary_markdown(report)
    # results · exact · acceptable · conditioned · known divergence · problems · unsupported
    assert "| fw 1.0 | 12 | 3 | 1 | 0 | 3 | 3 | 2 |" in text
    assert "## Problems: 3" in text
    # the known divergence (inf) before the acceptable variant (7 ULP)
    worst = [(g.api, g.verdict, g.name, g.count) for g in report.worst]
    assert worst == [
        ("fw.api_a", "known_divergence", "div-x", 1),
        ("fw.api_b", "known_divergence", "div-x", 2),
        ("fw.api_a", "acceptable", "clamped", 1),
    ]


def test_two_versions_of_a_framework_side_by_side():
    old = mixed_results("torch", "2.9.0")
    new = mixed_results("torch", "2.13.0")
    new[3].verdict = "exact"  # alpha/c4 fixed in 2.13.0
    other = mixed_results("jax", "0.10.2")
    # given newest first: the report orders by framework, then by version (2.9.0 before 2.13.0)
    report = build([run_of(new, "torch", "2.13.0"), run_of(other, "jax", "0.10.2"), run_of(old, "torch", "2.9.0")])
    assert [r.label for r in report.runs] == ["jax 0.10.2", "torch 2.9.0", "torch 2.13.0"]
    assert list(report.version_groups) == ["torch"]
    text = summary_markdown(report)
    section = text.split("## Versions side by side", 1)[1].split("\n## ", 1)[0]
    assert "| API · case file | torch 2.9.0 | torch 2.13.0 |" in section
    # only the rows whose counts differ: beta's, the same in both, is left out
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `torch.api_a` · **all** | **3·1·0·3·1·1** | **4·1·0·2·1·1** |",
        "| `torch.api_a` · alpha | **2·1·0·3·1·1** | **3·1·0·2·1·1** |",
    ]
    # and what the version change altered, through conformance.diff
    assert "**From torch 2.9.0 to torch 2.13.0**: diff: 0 regressions" in section
    assert "- Improvements (1)" in section and f"`{new[3].id}` (torch): {old[3].verdict} → exact" in section
    # in the accuracy table, the two torch runs' rows follow each other
    assert [(row.run.label, row.api) for row in report.accuracy] == [
        ("jax 0.10.2", "jax.api_a"), ("jax 0.10.2", "jax.api_b"),
        ("torch 2.9.0", "torch.api_a"), ("torch 2.9.0", "torch.api_b"),
        ("torch 2.13.0", "torch.api_a"), ("torch 2.13.0", "torch.api_b"),
    ]  # fmt: skip


def test_same_label_twice_is_told_apart():
    report = build([run_of(mixed_results(), path="a/fw.jsonl"), run_of(mixed_results(), path="b/fw.jsonl")])
    assert [r.label for r in report.runs] == ["fw 1.0 [a/fw.jsonl]", "fw 1.0 [b/fw.jsonl]"]


def test_summary_stays_under_1_mib_for_200k_results():
    runs = []
    long_message = "the value is off " * 40
    for r in range(4):
        framework = f"fw{r}"
        results = []
        for i in range(50_000):
            verdict = ("exact", "fail", "known_divergence", "unsupported", "acceptable")[i % 5]
            results.append(
                Result(
                    case=f"file{i % 60}/case{i}",
                    framework=framework,
                    api=f"{framework}.api{i % 97}",
                    op="bce",
                    dtype="float32",
                    reduction="none",
                    verdict=verdict,
                    max_ulp=float(i % 1000),
                    message=long_message if verdict == "fail" else "",
                    divergence=f"div{i % 400}" if verdict == "known_divergence" else "",
                    variant="v" if verdict == "acceptable" else "",
                    repro="print(" + "1" * 300 + ")",
                )
            )
        runs.append(run_of(results, framework))
    report = build(runs)
    assert report.result_count == 200_000
    text = summary_markdown(report)
    assert len(text.encode("utf-8")) < SUMMARY_LIMIT <= 1024 * 1024
    assert "... and 39975 more problems" in text
    assert "... and 37 more APIs" in text
    # the last guard: whatever is left is cut at a line, with a note
    small = summary_markdown(report, limit=5000)
    assert len(small.encode("utf-8")) <= 5000
    assert small.endswith("hold everything._\n")


def test_environment_header_and_missing_keys():
    full = run_of(mixed_results("torch", "2.13.0"), "torch", "2.13.0", environment=ENVIRONMENT)
    bare = run_of(mixed_results("jax", "0.10.2"), "jax", "0.10.2", environment={"framework": "jax"})
    text = summary_markdown(build([full, bare]))
    for expected in (
        "- **results**: torch-2.13.0.jsonl: 12 results",
        "- **versions**: torch 2.13.0",
        "- **settings**: deterministic=True",
        (
            "- **Python**: 3.11.9 · **platform**: Linux-6.1.0-x86\\_64-with-glibc2.36 · **machine**: x86\\_64 · "
            "**CPU**: Some CPU @ 3.0GHz · **device**: cpu · "
            "**subnormals**: float32 subnormals kept; float64 results flushed to zero and inputs read as zero · "
            "**mpmath**: 1.3.0 (gmpy) · **suite**: bce-conformance 0.1.0"
        ),
    ):
        assert expected in text
    jax = text.split("### jax 0.10.2", 1)[1].split("###", 1)[0]
    assert "- **versions**: jax 0.10.2" in jax and "Python" not in jax


def _html(tmp_path: Path) -> str:
    results_dir = tmp_path / "results"
    write_run(
        results_dir / "torch.jsonl", mixed_results("torch", "2.13.0") + sweep_results("torch", "2.13.0"), ENVIRONMENT
    )
    write_run(
        results_dir / "jax.jsonl",
        mixed_results("jax", "0.10.2")
        + sweep_results("jax", "0.10.2", "float64")
        + sweep_results("jax", "0.10.2", case="logit_sweep/other"),
        {"framework": "jax", "framework_versions": {"jax": "0.10.2"}},
    )
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "out")]) == 0
    return (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_html_is_self_contained_with_its_plots_and_filters(tmp_path):
    page = _html(tmp_path)
    lowered = page.lower()
    for loader in ("<script src", "<link", "<iframe", "<object", "<embed", "@import", "url(http", "url('http", 'url("http'):
        assert loader not in lowered, loader
    # one inline script (the filters), which loads nothing
    assert lowered.count("<script") == 1 and "fetch(" not in lowered and "xmlhttprequest" not in lowered
    # any src=/href= to the network sits on an <a> (a link in the text, not a load)
    for tag, attribute in re.findall(
        r"<(\w+)[^>]*?\s((?:xlink:)?(?:src|href))\s*=\s*[\"']?\s*(?:https?:)?//", page, re.IGNORECASE
    ):
        assert tag.lower() == "a", (tag, attribute)
    # every image is inline data
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'<img src="([^"]+)"', page))
    assert '<a href="https://github.com/o/r/issues/1" rel="noreferrer">' in page
    # text is escaped: a message's markup shows as text
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    # a PNG figure per sweep case and quantity: logit_sweep/sweep (torch float32, jax float64) and jax's second
    captions = re.findall(r'<figure class="plot"[^>]*><figcaption><b>([^<]+)</b>', page)
    assert sorted(captions) == ["logit_sweep/other", "logit_sweep/sweep"]
    # the ids on the page are unique
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))


def test_junit_counts_failures_and_skips(tmp_path):
    results_dir = tmp_path / "results"
    write_run(results_dir / "fw.jsonl", mixed_results(), {"framework": "fw", "framework_versions": {"fw": "1.0"}})
    write_run(results_dir / "jax.jsonl", sweep_results("jax", "0.10.2"))
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "out")]) == 0
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert root.tag == "testsuites"
    # junit-10.xsd allows no `skipped` on the root: the suites count them
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("14", "2", "1", None)
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["fw 1.0", "jax 0.10.2"]
    fw = suites["fw 1.0"]
    assert (fw.get("tests"), fw.get("failures"), fw.get("errors"), fw.get("skipped")) == ("12", "2", "1", "5")
    cases = fw.findall("testcase")
    assert [c.get("classname") for c in cases[:2]] == ["fw_1_0.alpha", "fw_1_0.alpha"]
    assert cases[0].get("name") == "alpha/c1-fw.api_a-float32-none"
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert sorted(f.get("type") for f in failures) == ["fail", "unexpected_pass"]
    assert [c.find("error").get("type") for c in cases if c.find("error") is not None] == ["error"]
    assert "fail here <b>bold</b> & more" in failures[0].text
    skipped = [c.find("skipped") for c in cases if c.find("skipped") is not None]
    assert sorted(s.get("type") for s in skipped) == ["known_divergence"] * 3 + ["unsupported"] * 2
    assert skipped[0].get("message").startswith("known divergence div-x: diverges")
    assert suites["jax 0.10.2"].get("skipped") == "1"


def test_outputs_are_byte_identical_across_invocations(tmp_path):
    results_dir = tmp_path / "results"
    versions = {"torch": "2.13.0"}
    conditioned_results = [
        conditioned("gamma/c1", "torch.api_a", "torch", versions),
        conditioned("gamma/c2", "torch.api_b", "torch", versions, bound_ratio=2.5),  # a tie of the bound ratio
    ]
    write_run(
        results_dir / "torch.jsonl",
        mixed_results("torch", "2.13.0") + sweep_results("torch", "2.13.0") + conditioned_results,
        ENVIRONMENT,
    )
    write_run(results_dir / "jax.jsonl", mixed_results("jax", "0.10.2"))
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "one")]) == 0
    # a second process, with another hash seed
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "report", str(results_dir), "--out", str(tmp_path / "two")],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for name in OUTPUTS:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    # written in place: no temporary file left behind
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(OUTPUTS)
    assert "wrote" in done.stdout and "results from 2 runs" in done.stdout


def test_exit_2_without_results(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results files") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_exit_2_on_unreadable_results(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "bce-conformance-results", "format_version": 99, "environment": {}}\n', encoding="utf-8")
    assert cli_main(["report", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert cli_main(["report", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_exit_0_although_results_fail(tmp_path, capsys):
    write_run(tmp_path / "r" / "fw.jsonl", mixed_results())
    assert cli_main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    counts = (
        "3 exact, 1 acceptable, 0 conditioned, 3 fail, 3 known divergence, 2 unsupported "
        "(1 error, 1 unexpected pass among the fails)"
    )
    assert f"12 results from 1 runs: {counts}" in out


def test_report_on_a_real_run_of_the_rounded_subject(tmp_path, capsys):
    results_dir = tmp_path / "results"
    assert cli_main(["run", "--framework", "rounded", "--cases", str(SEED), "--out", str(results_dir)]) == 0
    lines = (results_dir / "rounded.jsonl").read_text(encoding="utf-8").splitlines()
    count = len(lines) - 1  # the environment line
    capsys.readouterr()
    out = tmp_path / "report"
    assert cli_main(["report", str(results_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{count} results from 1 runs" in printed
    summary = (out / "summary.md").read_text(encoding="utf-8")
    assert "### rounded " in summary and "`rounded.stable_bce_with_logits`" in summary
    assert summary.index("## Accuracy") < summary.index("## Problems") < summary.index("## Regression gate")
    root = ET.parse(out / "junit.xml").getroot()
    assert int(root.get("tests")) == count
    (suite,) = root.findall("testsuite")  # named by the run's label, which prefixes its classnames
    assert {c.get("classname") for c in root.iter("testcase")} == {f"{junit.classname_prefix(suite.get('name'))}.seed"}
    page = (out / "report.html").read_text(encoding="utf-8")
    # the accuracy table: a row per API of the subject's three
    assert page.split('<table id="accuracy"', 1)[1].split("</table>", 1)[0].count('<tr id="api-') == 3
    assert "No sweep case in these results" in page


def test_sweep_plot_takes_errors_up_to_the_largest_float64():
    # a float64 error of 1e308 ULP (a wrong result where the exact value is subnormal) is finite: the ceiling,
    # 10 ** (decades + 1), overflowed; it stops at 1e300 and larger values are drawn there
    from conformance import report_plots

    assert report_plots._ceiling([np.array([1.7e308, 3.0])], 10.0) == 1e300
    assert report_plots._ceiling([np.array([2.0e37])], 10.0) == 1e39


# ---------------------------------------------------------------- the verdict `conditioned`

CONDITIONED_ELEMENT = {
    "index": [1],
    "inputs": {"logits": "0x1.8p+4", "target": "0x1.99999ap-4"},
    "got": "0x1.2p+1",
    "want": "2.2500001",
    "want_rounded": "0x1.2p+1",
    "ulp": 12.0,
    "bound_ulp": 4.5,
    "condition": 32000.0,
}


def conditioned(case="gamma/c1", api="fw.api_a", framework="fw", versions=None, **fields) -> Result:
    """A result past the tolerance but within k × its condition-aware bound, fixed by construction."""
    fields.setdefault("max_ulp", 12.0)
    fields.setdefault("bound_ratio", 2.5)
    fields.setdefault("condition", 32000.0)
    fields.setdefault("message", "max error 12 ULP exceeds the float32 tolerance of 4 ULP, but ...: conditioned")
    fields.setdefault("worst", [dict(CONDITIONED_ELEMENT)])
    return result(case, api, "conditioned", framework, versions, **fields)


def test_conditioned_counts_in_its_own_state_and_is_no_problem():
    results = mixed_results() + [conditioned(), conditioned("gamma/c2", bound_ratio=3.75, condition=1.5e6)]
    report = build([run_of(results)])
    (run,) = report.runs
    assert run.matrix["fw.api_a"]["gamma"].cell() == "0·0·2·0·0·0"
    assert run.api_totals["fw.api_a"].cell() == "3·1·2·3·1·1"
    assert report.totals.problems == 3 and report.totals["conditioned"] == 2
    assert all(r.verdict != "conditioned" for _, r in report.problems)
    # listed apart, the largest bound ratio first
    assert [r.case for _, r in report.conditioned] == ["gamma/c2", "gamma/c1"]
    text = summary_markdown(report)
    assert "1 acceptable, 2 conditioned, 3 fail" in text
    assert "| fw 1.0 | 14 | 3 | 1 | 2 | 3 | 3 | 2 |" in text
    section = text.split("## Conditioned: 2 (past the tolerance, within the condition-aware bound)", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "| bound ratio | condition | max ULP | run | API | result |" in section
    assert "| 3.75 | 1.5e+06 | 12 | fw 1.0 | `fw.api_a` | `gamma/c2 · float32 · none` |" in section
    assert "| 2.5 | 3.2e+04 | 12 | fw 1.0 | `fw.api_a` | `gamma/c1 · float32 · none` |" in section
    assert "## Problems: 3" in text  # the conditioned results are not among them


def test_conditioned_in_the_html_page_and_its_distribution():
    from conformance import report_html

    results = mixed_results() + [conditioned(), conditioned("gamma/c2", api="fw.api_b", max_ulp=40.0)]
    report = build([run_of(results)])
    page = report_html.render(report)
    assert report_html.STATE_COLORS["conditioned"] not in {
        color for state, color in report_html.STATE_COLORS.items() if state != "conditioned"
    }
    assert '<span class="n conditioned">2</span>' in page  # the run's totals, in the runs table
    assert '<h3>Conditioned: 2 (past the tolerance, within the condition-aware bound)</h3>' in page
    # each row: bound ratio, condition number, max ULP; the text with the element's bound and condition
    assert "<tr><td class=num>2.5</td><td class=num>3.2e+04</td><td class=num>40</td>" in page
    assert "12 ULP, bound 4.5 ULP, condition 3.2e+04" in page
    from conformance import report_plots

    (row,) = [row for row in report_plots.distribution_rows(report) if row.api == "fw.api_b"]
    assert row.bins[report_plots.ulp_bin(40.0)] == 1 and "conditioned" in row.states
    assert '<h2 id="ranking">APIs ranked by forward error</h2>' in page and 'href="#ranking"' in page


def _ranked(text: str) -> list[list[str]]:
    section = text.split("## APIs ranked by forward error", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "`" in line]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def test_apis_ranked_by_problems_then_divergences_then_conditioned_then_worst_error():
    one = [
        # exact everywhere, up to 3 ULP: first (the other run's API has a documented variant 7 ULP off)
        result("alpha/c1", "fw.exact_3", max_ulp=3.0),
        result("alpha/c2", "fw.exact_3", max_ulp=1.0),
        # exact but for one conditioned result: below every API exact everywhere, however small its errors
        result("alpha/c1", "fw.conditioned", max_ulp=0.0),
        conditioned("alpha/c2", "fw.conditioned", max_ulp=5.0),
        # a known divergence: below the conditioned; its error (inf) does not matter before that
        result("alpha/c1", "fw.divergence", "known_divergence", max_ulp=6.0, divergence="d"),
        # a problem: last of those judged; the error result's max ULP (none) is left out of worst and median
        result("alpha/c1", "fw.problem", "fail", max_ulp=9.0, message="off"),
        result("alpha/c2", "fw.problem", "error", max_ulp=None, message="raised"),
        # relations and unsupported results are not judged against the exact value
        result("alpha/c1", "fw.exact_3", "fail", max_ulp=99.0, quantity="symmetry", message="off"),
        result("alpha/c1", "fw.nothing", "unsupported", message="no float16"),
    ]
    other = [
        result("alpha/c1", "other.exact_half", max_ulp=0.5, framework="other"),
        result("alpha/c2", "other.exact_half", max_ulp=0.25, framework="other"),
        result("alpha/c3", "other.exact_half", "acceptable", max_ulp=7.0, variant="v", framework="other"),
    ]
    report = build([run_of(one), run_of(other, "other")])
    order = [(row.run.label, row.api) for row in report.ranking]
    assert order == [
        ("fw 1.0", "fw.exact_3"),
        ("other 1.0", "other.exact_half"),
        ("fw 1.0", "fw.conditioned"),
        ("fw 1.0", "fw.divergence"),
        ("fw 1.0", "fw.problem"),
        ("fw 1.0", "fw.nothing"),
    ]
    rows = _ranked(summary_markdown(report))
    # rank · run · API · judged · exact · acceptable · conditioned · known divergence · problems · worst · median
    assert rows[0] == ["1", "fw 1.0 · `fw.exact_3`", "2", "2 · 0 · 0", "0", "0", "3", "2"]
    assert rows[1] == ["2", "other 1.0 · `other.exact_half`", "3", "2 · 1 · 0", "0", "0", "7", "0.5"]
    assert rows[2] == ["3", "fw 1.0 · `fw.conditioned`", "2", "1 · 0 · 1", "0", "0", "5", "2.5"]
    assert rows[3] == ["4", "fw 1.0 · `fw.divergence`", "1", "0 · 0 · 0", "1", "0", "6", "6"]
    assert rows[4] == ["5", "fw 1.0 · `fw.problem`", "2", "0 · 0 · 0", "0", "**2**", "9", "9"]
    assert rows[5] == ["6", "fw 1.0 · `fw.nothing`", "0", "0 · 0 · 0", "0", "0", "-", "-"]


def test_ties_in_the_ranking_keep_the_runs_order_and_the_api_name():
    results = [result("alpha/c1", api, max_ulp=1.0) for api in ("fw.b", "fw.a")]
    report = build([run_of(results, "zeta"), run_of(list(results), "alpha")])
    assert [(row.run.label, row.api) for row in report.ranking] == [
        ("alpha 1.0", "fw.a"), ("alpha 1.0", "fw.b"), ("zeta 1.0", "fw.a"), ("zeta 1.0", "fw.b"),
    ]  # fmt: skip


def test_junit_passes_a_conditioned_result_with_its_bound_and_condition(tmp_path):
    results_dir = tmp_path / "results"
    write_run(results_dir / "fw.jsonl", mixed_results() + [conditioned()])
    assert cli_main(["report", str(results_dir), "--out", str(tmp_path / "out")]) == 0
    root = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("13", "2", "1")
    (case,) = [c for c in root.iter("testcase") if c.get("name") == "gamma/c1-fw.api_a-float32-none"]
    assert case.find("failure") is None and case.find("skipped") is None and case.find("error") is None
    # junit-10.xsd allows no <properties> in a test case: the figures open its text
    out = case.find("system-out").text
    assert out.startswith("conditioned: bound_ratio 2.5, condition 32000.0\n")
    assert "gamma/c1 · fw.api_a · float32 · none: conditioned: max error 12 ULP" in out
    assert "12 ULP, bound 4.5 ULP, condition 3.2e+04" in out


def test_the_framework_summary_has_a_conditioned_column_and_section():
    from conformance.summary import COLUMNS, element_line
    from conformance.summary import summary_markdown as framework_summary

    assert [v.value for v in COLUMNS][:3] == ["exact", "acceptable", "conditioned"]
    text = framework_summary(mixed_results() + [conditioned(), conditioned("gamma/c2", quantity="grad")])
    header = "| API | op | exact | acceptable | conditioned | known_divergence | fail |"
    assert header in text
    assert "| `fw.api_a` | bce_with_logits | 3 | 1 | 2 | 1 | 1 | 1 | 1 | 1 |" in text
    section = text.split("### Conditioned: within the condition-aware bound (2 results)\n", 1)[1].split("\n### ", 1)[0]
    assert "- `gamma/c1-fw.api_a-float32-none`: max 12 ULP, bound ratio 2.5, condition 3.2e+04" in section
    assert "- `gamma/c2-fw.api_a-float32-none-grad`: max 12 ULP, bound ratio 2.5, condition 3.2e+04" in section
    failures = text.split("### Failures (3)", 1)[1].split("\n### ", 1)[0]
    assert "conditioned" not in failures
    # an element's bound and condition number where it has them; an element within the tolerance (NaN) or an
    # older record (no fields) has none
    assert element_line(CONDITIONED_ELEMENT).endswith("12 ULP, bound 4.5 ULP, condition 3.2e+04")
    assert element_line({**CONDITIONED_ELEMENT, "bound_ulp": "nan", "condition": "nan"}).endswith("12 ULP")
    plain = {k: v for k, v in CONDITIONED_ELEMENT.items() if k not in ("bound_ulp", "condition")}
    assert element_line(plain).endswith("12 ULP")
