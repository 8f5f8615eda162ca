"""junit.xml: unique (classname, name) across runs, a time per test case from the run's timing file, <error> for
error verdicts, and valid against pytest's junit-10.xsd. Subjects are synthetic records."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from test_report import conditioned, mixed_results, result, sweep_results, write_run

from conformance import outputs
from conformance.cli import main as cli_main

xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (the test extra) validates junit.xml against the xsd")

# pytest's schema as its main branch ships it (tests/data/README.md: pytest-dev/pytest,
# testing/example_scripts/junit-10.xsd, MIT), verbatim
XSD = Path(__file__).with_name("data") / "junit-10.xsd"


def schema():
    text = XSD.read_text(encoding="utf-8")
    # pytest's own: a test case's error is <error>, as pytest writes it (an unmerged pull request's copy says errors)
    assert text.count('<xs:element name="error">') == 1 and text.count('<xs:element ref="error"/>') == 1
    return xmlschema.XMLSchema(text)


def _report(tmp_path: Path, runs: dict[str, list], timing: dict[str, dict] | None = None) -> ET.Element:
    folder = tmp_path / "results"
    for name, results in runs.items():
        write_run(folder / f"{name}.jsonl", results)
        if timing and name in timing:
            (folder / f"{name}.timing.json").write_text(json.dumps(timing[name]), encoding="utf-8")
    assert cli_main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    return tmp_path / "out" / "junit.xml"


def _every_verdict(framework="fw", version="1.0") -> list:
    return mixed_results(framework, version) + [
        conditioned(framework=framework, versions={framework: version}),
        result("delta/u", framework=framework, versions={framework: version}, verdict="fail",
               message="ünïcödé ∞ \x00\x07 control \ufffe and " + "long " * 600),
    ] + sweep_results(framework, version)  # fmt: skip


def test_two_versions_of_one_framework_never_share_a_classname_and_name(tmp_path):
    path = _report(tmp_path, {"jax-a": _every_verdict("jax", "0.6.2"), "jax-b": _every_verdict("jax", "0.10.2")})
    cases = list(ET.parse(path).getroot().iter("testcase"))
    keys = [(c.get("classname"), c.get("name")) for c in cases]
    assert len(keys) == 2 * len(_every_verdict()) and len(set(keys)) == len(keys)
    assert {k[0].split(".")[0] for k in keys} == {"jax_0_6_2", "jax_0_10_2"}


def test_each_test_case_has_the_time_its_run_spent_on_it(tmp_path):
    results = mixed_results()
    spent = {r.id: 0.25 * (i + 1) for i, r in enumerate(results[:3])}
    path = _report(tmp_path, {"fw": results}, {"fw": {"started": "x", "seconds": 9, "checks": spent}})
    root = ET.parse(path).getroot()
    times = {c.get("name"): c.get("time") for c in root.iter("testcase")}
    assert [times[name] for name in spent] == ["0.250", "0.500", "0.750"]
    assert all(times[r.id] == "0.000" for r in results[3:])  # none recorded: 0
    assert root.find("testsuite").get("time") == root.get("time") == "1.500"


def test_a_run_records_the_seconds_of_each_result_in_its_timing_file(tmp_path):
    seed = Path(__file__).resolve().parents[1] / "cases" / "seed.yaml"
    argv = ["run", "--framework", "rounded", "--cases", str(seed), "--out", str(tmp_path), "--progress", "none"]
    assert cli_main(argv) == 0
    ids = [json.loads(line) for line in (tmp_path / "rounded.jsonl").read_text(encoding="utf-8").splitlines()[1:]]
    timing = json.loads((tmp_path / "rounded.timing.json").read_text(encoding="utf-8"))
    assert len(timing["checks"]) == len(ids) and all(seconds >= 0 for seconds in timing["checks"].values())
    assert sum(timing["checks"].values()) <= timing["seconds"] + 1e-3


def test_error_results_are_errors_and_the_rest_failures(tmp_path):
    root = ET.parse(_report(tmp_path, {"fw": _every_verdict()})).getroot()
    errors = [c for c in root.iter("testcase") if c.find("error") is not None]
    failures = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert [c.find("error").get("type") for c in errors] == ["error"]
    assert sorted(c.find("failure").get("type") for c in failures) == ["fail", "fail", "unexpected_pass"]
    assert (root.get("errors"), root.get("failures")) == ("1", "3")


def test_junit_xml_is_valid_against_pytests_junit_10_xsd(tmp_path):
    path = _report(tmp_path, {"fw": _every_verdict(), "jax": _every_verdict("jax", "0.10.2")})
    assert [f"{e.path}: {e.reason}" for e in schema().iter_errors(str(path))] == []
    assert ET.parse(path).getroot().find(".//error") is not None  # the error verdict's element, validated too


def test_the_schema_check_catches_what_the_old_writer_did(tmp_path):
    """A `skipped` count on the root and <properties> in a test case (as junit.xml had them) are refused."""
    path = _report(tmp_path, {"fw": mixed_results()})
    root = ET.parse(path).getroot()
    root.set("skipped", "5")
    assert not schema().is_valid(ET.tostring(root, encoding="unicode"))
    root.attrib.pop("skipped")
    ET.SubElement(next(root.iter("testcase")), "properties")
    assert not schema().is_valid(ET.tostring(root, encoding="unicode"))


def test_labels_that_read_alike_as_names_get_distinct_prefixes():
    from conformance.junit import classname_prefixes

    assert classname_prefixes(["jax 0.1", "jax 0_1", "jax-0.1", "jax 0.1 [b/jax.jsonl]", "!!", "??"]) == [
        "jax_0_1", "jax_0_1-2", "jax-0_1", "jax_0_1_b_jax_jsonl", "run", "run-2",
    ]  # fmt: skip


def test_an_id_recorded_twice_is_two_test_cases(tmp_path):
    twice = [result("alpha/c1"), result("alpha/c1", verdict="fail", message="again")]
    write_run(tmp_path / "results" / "fw.jsonl", twice)
    # a damaged file: reported as far as it can be read, and the report exits 2 saying so
    assert cli_main(["report", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 2
    cases = list(ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testcase"))
    assert [c.get("name") for c in cases] == ["alpha/c1-fw.api_a-float32-none", "alpha/c1-fw.api_a-float32-none #2"]
    assert cases[1].find("failure") is not None


@pytest.mark.parametrize(
    "checks", ['{"a": Infinity}', '{"a": NaN}', '{"a": true}', '{"a": -1}', '{"a": "1"}', "[1]", '{"a": 1e999}']
)
def test_a_timing_entry_that_is_no_time_reads_as_none(tmp_path, checks):
    results = mixed_results()
    folder = tmp_path / "results"
    write_run(folder / "fw.jsonl", results)
    text = f'{{"started": "x", "seconds": 1, "checks": {checks.replace("a", results[0].id)}}}'
    (folder / "fw.timing.json").write_text(text, encoding="utf-8")
    assert cli_main(["report", str(folder), "--out", str(tmp_path / "out")]) == 0
    path = tmp_path / "out" / "junit.xml"
    assert {c.get("time") for c in ET.parse(path).getroot().iter("testcase")} == {"0.000"}
    assert schema().is_valid(str(path))


def test_the_timing_file_holds_the_seconds_each_check_took_as_measured_where_it_ran(tmp_path):
    """A check's time is its own (measured around it, by the run or the pytest worker that ran it), not the gap
    between two arrivals, which pytest-xdist's interleaved workers make meaningless; none given, no entry."""
    results = [result("alpha/c1"), result("alpha/c2"), result("alpha/c3")]
    for folder, given in (("a", (1.5, None, 0.25)), ("b", (7.0, 8.0, None))):
        with outputs.locked(tmp_path / folder, "fw") as out:
            files = outputs.RunFiles(out, "fw", {"framework": "fw"}, len(results))
            for r, seconds in zip(results, given):
                files.write(r, seconds)
            files.commit(results, "summary\n")
    timing = json.loads((tmp_path / "a" / "fw.timing.json").read_text(encoding="utf-8"))
    assert timing["checks"] == {results[0].id: 1.5, results[2].id: 0.25}
    assert (tmp_path / "a" / "fw.jsonl").read_bytes() == (tmp_path / "b" / "fw.jsonl").read_bytes()
