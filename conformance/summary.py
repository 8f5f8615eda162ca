"""Readable text from result records: a failure's message, and a per-framework summary in Markdown."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache

from conformance import divergences
from conformance.cases import CaseError
from conformance.results import Result
from conformance.runner import EMPTY, OBSERVED
from conformance.verdicts import Verdict

COLUMNS = [
    Verdict.EXACT,
    Verdict.ACCEPTABLE,
    Verdict.CONDITIONED,
    Verdict.KNOWN_DIVERGENCE,
    Verdict.FAIL,
    Verdict.UNEXPECTED_PASS,
    Verdict.UNSUPPORTED,
    Verdict.ERROR,
]


def _ulp(value) -> str:
    if value is None:
        return "-"
    value = float(value)
    if math.isinf(value) or math.isnan(value):
        return repr(value)
    return f"{value:.3g}"


def element_line(element: dict) -> str:
    """``[i, j] logits=0x.. target=0x..: got 0x.., want 0.8000.. (rounded 0x..), 7 ULP``, then, for an element
    whose condition-aware bound is known (conformance.conditioning), ``, bound 3 ULP, condition 2.5e+03``; NaN
    (an element within the tolerance, whose bound is not computed) is left out."""
    index = element.get("index") or []
    where = f"[{', '.join(map(str, index))}] " if index else ""
    inputs = " ".join(f"{name}={value}" for name, value in element.get("inputs", {}).items())
    conditioning = "".join(
        f", {name} {_ulp(element[key])}{unit}"
        for key, name, unit in (("bound_ulp", "bound", " ULP"), ("condition", "condition", ""))
        if element.get(key) is not None and not math.isnan(float(element[key]))
    )
    return (
        f"{where}{inputs + ': ' if inputs else ''}got {element['got']} ({float.fromhex(element['got'])!r}), "
        f"want {element['want']} "
        f"(rounded {element['want_rounded']}), {_ulp(element['ulp'])} ULP{conditioning}"
    )


def failure_text(result: Result) -> str:
    """What a failing result says: the check, why, the worst elements, and a one-line reproducer."""
    quantity = "" if result.quantity == "value" else f" · {result.quantity}"
    lines = [f"{result.case} · {result.api} · {result.dtype} · {result.reduction}{quantity}: {result.verdict}: {result.message}"]
    if result.reduced_by:
        lines.append(f"  reduced by: {result.reduced_by}")
    if result.source:
        lines.append(f"  source: {result.source}")
    if result.worst:
        lines.append("  worst elements:" if len(result.worst) > 1 or result.worst[0].get("index") else "  result:")
        lines.extend(f"    {element_line(e)}" for e in result.worst)
    if result.repro:
        lines.append(f"  reproduce: {result.repro}")
    return "\n".join(lines)


def summary_markdown(results: list[Result]) -> str:
    """Per framework: verdict counts per API, then every failure, documented variant, conditioned result, known
    divergence, empty input and unsupported reason."""
    out = []
    by_framework: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_framework[result.framework].append(result)
    for framework in sorted(by_framework):
        group = by_framework[framework]
        versions = ", ".join(f"{k} {v}" for k, v in sorted(group[0].framework_versions.items()))
        out.append(f"## {framework} ({versions}): {len(group)} results\n")
        out.append("| API | op | " + " | ".join(v.value for v in COLUMNS) + " | max ULP (exact) | floor-accepted |")
        out.append("|---|---|" + "---:|" * (len(COLUMNS) + 2))
        apis: dict[str, list[Result]] = defaultdict(list)
        for result in group:
            apis[result.api].append(result)
        for api, rows in apis.items():
            counts = Counter(r.verdict for r in rows)
            worst = max(
                (
                    r.max_ulp
                    for r in rows
                    if r.verdict == Verdict.EXACT.value
                    and r.quantity in ("value", "grad", "grad_target")  # a relation's distance is no error against the exact value
                    and not r.floor_accepted
                    and r.max_ulp is not None
                ),
                default=None,
            )
            cells = " | ".join(str(counts.get(v.value, 0)) for v in COLUMNS)
            floor = sum(r.floor_accepted for r in rows if r.verdict == Verdict.EXACT.value)
            out.append(f"| `{api}` | {rows[0].op} | {cells} | {_ulp(worst)} | {floor} |")
        out.append(
            "\n_max ULP (exact)_: the largest error of the results within tolerance, leaving out those with "
            "elements accepted only through the absolute floor (_floor-accepted_ counts those elements: exact "
            "values below the smallest normal number, returned flushed to zero or nearly so)."
        )
        out.append("")
        problems = [r for r in group if Verdict(r.verdict).is_problem]
        if problems:
            out.append(f"### Failures ({len(problems)})\n")
            out.extend(f"```\n{failure_text(r)}\n```" for r in problems)
            out.append("")
        acceptable: dict[tuple[str, str], list[Result]] = defaultdict(list)
        for r in group:
            if r.verdict == Verdict.ACCEPTABLE.value:
                acceptable[(r.api, r.variant)].append(r)
        if acceptable:
            out.append(f"### Acceptable: documented variants ({sum(map(len, acceptable.values()))} results)\n")
            for (api, variant), rows in acceptable.items():
                worst = max((r.max_ulp for r in rows if r.max_ulp is not None), default=None)
                within = max((r.variant_max_ulp for r in rows if r.variant_max_ulp is not None), default=None)
                dtypes = ", ".join(sorted({r.dtype for r in rows}))
                out.append(
                    f"- `{api}` under **{variant}** ({len(rows)} results; {dtypes}): off the exact value by up to "
                    f"{_ulp(worst)} ULP, within {_ulp(within)} ULP of the variant. Source: {rows[0].source}"
                )
            out.append("")
        out.extend(conditioned_markdown([r for r in group if r.verdict == Verdict.CONDITIONED.value]))
        out.extend(mechanisms_markdown(group))
        empty: dict[tuple[str, str], list[str]] = defaultdict(list)  # what each API does with no elements
        for r in group:
            observed = r.message.split(OBSERVED, 1)[-1]  # a known divergence's message: its reason, then this
            if observed.startswith(EMPTY) and r.quantity in ("value", "grad", "grad_target"):
                quantity = "" if r.quantity == "value" else f" {r.quantity}"
                empty[(r.api, f"{r.reduction}{quantity}: {observed[len(EMPTY):]} ({r.verdict})")].append(r.dtype)
        if empty:
            out.append(f"### Empty inputs ({sum(map(len, empty.values()))} results)\n")
            out.extend(f"- `{api}` {what}; {', '.join(dtypes)}" for (api, what), dtypes in empty.items())
            out.append("")
        unsupported = Counter(r.message for r in group if r.verdict == Verdict.UNSUPPORTED.value)
        if unsupported:
            out.append(f"### Unsupported ({sum(unsupported.values())} results)\n")
            out.extend(f"- {reason} ({count})" for reason, count in sorted(unsupported.items()))
            out.append("")
    return "\n".join(out).rstrip() + "\n"


@dataclass
class Mechanism:
    """What one known divergence explained over a set of results, computed from their ``explained`` figures."""

    id: str
    framework: str
    reason: str = ""
    source: str = ""
    results: int = 0  # results it explains some element of
    known: int = 0  # of those, the known_divergence ones (the others are fails with elements in no region)
    elements: int = 0
    max_ulp: float | None = None
    apis: dict[str, None] = field(default_factory=dict)
    # dtype -> input -> [least, greatest]; the logits per side of 0 ("logit-", "logit+")
    spans: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, result: Result, figures: dict) -> None:
        self.results += 1
        self.known += result.verdict == Verdict.KNOWN_DIVERGENCE.value
        self.elements += int(figures.get("elements", 0))
        ulp = figures.get("max_ulp")
        if ulp is not None and (self.max_ulp is None or float(ulp) > self.max_ulp):
            self.max_ulp = float(ulp)
        self.apis[result.api] = None
        spans = self.spans.setdefault(result.dtype, {})
        for name in ("logit", "probability", "target"):
            for low, high in figures.get(name, ()):
                key = name if name != "logit" else f"logit{'-' if high < 0 else '+'}"  # a side of 0 each
                old = spans.get(key)
                spans[key] = [low, high] if old is None else [min(old[0], low), max(old[1], high)]

    def results_text(self) -> str:
        """``12``, or ``12 (3 fail)`` where some of them are fails with other elements in no region."""
        return f"{self.results}" + (f" ({self.results - self.known} fail)" if self.known < self.results else "")

    def span_text(self) -> str:
        """``float32: logit -87.3 to -14.6, 2 to 40, target 0``: where it explained elements, per dtype."""
        parts = []
        for dtype in sorted(self.spans):
            spans = self.spans[dtype]
            inner = []
            for name in ("logit", "probability", "target"):
                sides = [spans[key] for key in (f"{name}-", f"{name}+", name) if key in spans]
                if sides:
                    inner.append(f"{name} " + ", ".join(_span(low, high) for low, high in sides))
            parts.append(f"{dtype}: {', '.join(inner)}" if inner else dtype)
        return "; ".join(parts)


def _span(low: float, high: float) -> str:
    return _number(low) + ("" if low == high else f" to {_number(high)}")


def _number(value: float) -> str:
    return repr(value) if math.isinf(value) or math.isnan(value) else f"{value:.4g}"


def mechanisms(results: list[Result]) -> list[Mechanism]:
    """Each known divergence that explains something in ``results``, with its figures, in order of first use; its
    reason and source from its catalogue entry where the framework's built-in catalogue has it."""
    out: dict[tuple[str, str], Mechanism] = {}
    for result in results:
        for name, figures in result.explained.items():
            key = (result.framework, name)
            if key not in out:
                entry = _catalogue(result.framework).get(name)
                reason = entry.reason if entry else (result.message.split(OBSERVED, 1)[0] if result.divergence == name else "")
                out[key] = Mechanism(name, result.framework, reason, entry.source if entry else (result.source if result.divergence == name else ""))
            out[key].add(result, figures)
    return list(out.values())


@cache
def _catalogue(framework: str) -> dict:
    try:
        return {entry.id: entry for entry in divergences.builtin(framework)}
    except CaseError:  # a catalogue that does not read: the results' own messages stand in
        return {}


def mechanisms_markdown(results: list[Result]) -> list[str]:
    found = mechanisms(results)
    if not found:
        return []
    known = sum(r.verdict == Verdict.KNOWN_DIVERGENCE.value for r in results)
    out = [
        f"### Known divergences ({known} results, {len(found)} mechanisms)\n",
        (
            "Per mechanism, computed from this run: the results it explains, the elements, the largest error and where "
            "(per dtype, the span of the inputs of the elements it explained).\n"
        ),
    ]
    for m in found:
        partly = f", {m.results - m.known} of them fails with other elements unexplained" if m.known < m.results else ""
        apis = ", ".join(f"`{api}`" for api in m.apis)
        out.append(
            f"- **{m.id}** ({m.results} results{partly}; {m.elements} elements; worst {_ulp(m.max_ulp)} ULP; {apis}; "
            f"{m.span_text()}): {m.reason}"
        )
        if m.source:
            out.append(f"  Source: {m.source}")
    out.append("")
    return out


def conditioned_markdown(results: list[Result]) -> list[str]:
    """The section of the conditioned results, a line each: the check, its largest error, its largest error over
    the condition-aware bound and its largest condition number (of the elements past the tolerance)."""
    if not results:
        return []
    out = [
        f"### Conditioned: within the condition-aware bound ({len(results)} results)\n",
        (
            "Past the tolerance, but each element past it within k × its condition-aware bound (the error of an "
            "ideal implementation that rounds its inputs and its output to the dtype): the problem's conditioning, "
            "not the API, explains the error. _bound ratio_: the largest error over that bound (at most k); "
            "_condition_: the largest relative condition number.\n"
        ),
    ]
    out.extend(
        f"- `{r.id}`: max {_ulp(r.max_ulp)} ULP, bound ratio {_ulp(r.bound_ratio)}, condition {_ulp(r.condition)}"
        for r in results
    )
    out.append("")
    return out


def partial_markdown(results: list[Result], planned: int, why: str, kept: str) -> str:
    """The summary of a run that did not finish: it says so first, with how many of the planned checks
    have results, why it stopped, and which complete results it left in place (``kept``)."""
    head = (
        f"# PARTIAL RUN: {len(results)} of {planned} planned checks have results\n\n"
        f"This run did not finish: {why}. Its results so far are in the `.partial` file beside this one; "
        f"{kept}\n\n"
    )
    return head + (summary_markdown(results) if results else "")
