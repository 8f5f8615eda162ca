"""junit.xml for CI test-report viewers: a ``<testsuite>`` per run, a ``<testcase>`` per result.

- classname ``<framework>.<case file stem>``, name the result's id;
- a problem (fail, unexpected pass, error) is a ``<failure>`` whose text is the failure text
  (the check, why, the worst elements, a reproducer);
- unsupported is ``<skipped>``; a known divergence is ``<skipped type="known_divergence">`` with
  the divergence's id and reason;
- exact and acceptable pass;
- conditioned (past the tolerance, within the condition-aware bound) passes too, neither skipped nor
  failed, with its verdict, bound ratio and condition number as ``<properties>`` and its text (the
  check, why, the worst elements with their bounds and condition numbers) as ``<system-out>``.

The suites' and the root's ``tests``, ``failures``, ``errors`` (always 0: an error result is a
failure here) and ``skipped`` attributes count them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from conformance.report import Report, case_file, environment_rows, is_problem
from conformance.summary import failure_text

MESSAGE_CHARS = 1000
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def clean(text: str) -> str:
    """Text XML 1.0 can hold: control characters (but tab and newlines) become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


def _message(text: str) -> str:
    text = clean(text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."


def render(report: Report) -> bytes:
    """The junit.xml bytes for a report (UTF-8, with an XML declaration)."""
    root = ET.Element("testsuites", name="bce-conformance")
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for run in report.runs:
        suite = ET.SubElement(root, "testsuite", name=clean(run.label))
        properties = ET.SubElement(suite, "properties")
        for name, text in environment_rows(run.run):
            ET.SubElement(properties, "property", name=clean(name), value=clean(text))
        counts = {"tests": 0, "failures": 0, "skipped": 0}
        for result in run.results:
            case = ET.SubElement(
                suite, "testcase", classname=clean(f"{result.framework}.{case_file(result)}"), name=clean(result.id)
            )
            counts["tests"] += 1
            if is_problem(result.verdict):
                counts["failures"] += 1
                text = failure_text(result)
                failure = ET.SubElement(
                    case, "failure", message=_message(text.splitlines()[0]), type=clean(result.verdict)
                )
                failure.text = clean(text)
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
                properties = ET.SubElement(case, "properties")
                for name, value in (
                    ("verdict", result.verdict),
                    ("bound_ratio", result.bound_ratio),
                    ("condition", result.condition),
                ):
                    text = "-" if value is None else value if isinstance(value, str) else repr(float(value))
                    ET.SubElement(properties, "property", name=name, value=clean(text))
                ET.SubElement(case, "system-out").text = clean(failure_text(result))
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(counts["skipped"]))
        for key in totals:
            totals[key] += counts[key]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root, space=" ")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
