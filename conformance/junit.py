"""junit.xml for CI test-report viewers: a ``<testsuite>`` per run, a ``<testcase>`` per result.

- classname ``<run label>.<case file stem>`` (the label's spaces and dots as ``_``: ``jax_0_6_2.seed``; ``-2``,
  ``-3``... after a label that reads the same so), so that two runs of one framework (the version matrix's two
  JAX runs) never share a (classname, name); name the result's id (`` #2``... for an id a damaged results
  file records again);
- ``time``: the seconds its check took, from the ``<name>.timing.json`` beside its results file (``checks``,
  measured around each check, in the worker or in the pytest-xdist worker that ran it); 0 where there is none.
  The suites and the root sum them;
- fail and unexpected pass are a ``<failure>``, error an ``<error>`` (the call raised, or returned no float of
  the right shape), each with the failure text (the check, why, the worst elements, a reproducer);
- unsupported is ``<skipped>``; a known divergence is ``<skipped type="known_divergence">`` with
  the divergence's id and reason;
- exact and acceptable pass;
- conditioned (past the tolerance, within the condition-aware bound) passes too, neither skipped nor
  failed, with its text (the check, why, the bound ratio and condition number, the worst elements with their
  bounds) as ``<system-out>``.

The suites' ``tests``, ``failures``, ``errors`` and ``skipped`` attributes count them, the root's its
``tests``, ``failures`` and ``errors``: the attributes pytest's ``junit-10.xsd`` allows there
(``tests/test_junit.py`` validates against it, verbatim).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from conformance.report import Report, case_file, environment_rows, is_problem
from conformance.results import read_timing
from conformance.summary import failure_text

MESSAGE_CHARS = 1000
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """Text XML 1.0 can hold: control characters (but tab and newlines) become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


def _message(text: str) -> str:
    text = clean(text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def classname_prefix(label: str) -> str:
    """A run label as the first part of a dotted classname: ``jax 0.6.2`` → ``jax_0_6_2``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_") or "run"


def classname_prefixes(labels: list[str]) -> list[str]:
    """``classname_prefix`` of each label, made distinct: labels that differ only in what it replaces
    (``jax 0.1``, ``jax 0_1``) get ``-2``, ``-3``... after the first."""
    out: list[str] = []
    for label in labels:
        base = name = classname_prefix(label)
        n = 1
        while name in out:
            n += 1
            name = f"{base}-{n}"
        out.append(name)
    return out


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def render(report: Report) -> bytes:
    """The junit.xml bytes for a report (UTF-8, with an XML declaration)."""
    root = ET.Element("testsuites", name="bce-conformance")
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for run, prefix in zip(report.runs, classname_prefixes([run.label for run in report.runs])):
        suite = ET.SubElement(root, "testsuite", name=clean(run.label))
        properties = ET.SubElement(suite, "properties")
        for name, text in environment_rows(run.run):
            ET.SubElement(properties, "property", name=clean(name), value=clean(text))
        seconds = read_timing(run.run.path)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "time": 0.0}
        taken: set[tuple[str, str]] = set()
        for result in run.results:
            spent = seconds.get(result.id, 0.0)
            classname, name = clean(f"{prefix}.{case_file(result)}"), clean(result.id)
            again = 1
            while (classname, name) in taken:  # an id recorded twice (a damaged file): two test cases still
                again += 1
                name = f"{clean(result.id)} #{again}"
            taken.add((classname, name))
            case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=_seconds(spent))
            counts["tests"] += 1
            counts["time"] += spent
            if is_problem(result.verdict):
                kind = "error" if result.verdict == "error" else "failure"
                counts["errors" if kind == "error" else "failures"] += 1
                text = failure_text(result)
                element = ET.SubElement(case, kind, message=_message(text.splitlines()[0]), type=clean(result.verdict))
                element.text = clean(text)
            elif result.verdict == "known_divergence":
                counts["skipped"] += 1
                reason = (
                    f"known divergence {result.divergence}: {result.message}" if result.divergence else result.message
                )
                ET.SubElement(case, "skipped", type="known_divergence", message=_message(reason))
            elif result.verdict == "unsupported":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", type="unsupported", message=_message(result.message))
            elif result.verdict == "conditioned":
                figures = ", ".join(
                    f"{name} {'-' if value is None else repr(float(value))}"
                    for name, value in (("bound_ratio", result.bound_ratio), ("condition", result.condition))
                )
                ET.SubElement(case, "system-out").text = clean(f"conditioned: {figures}\n{failure_text(result)}")
        for key in ("tests", "failures", "errors", "skipped"):
            suite.set(key, str(counts[key]))
        suite.set("time", _seconds(counts["time"]))
        for key in totals:
            totals[key] += counts[key]
    for key in ("tests", "failures", "errors"):
        root.set(key, str(totals[key]))
    root.set("time", _seconds(totals["time"]))
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
