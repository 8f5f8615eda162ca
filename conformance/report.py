"""``python -m conformance report RESULTS... [--out DIR]``: one report over several results files.

Reads results files (or folders of ``*.jsonl``), one run each (a framework at some versions, on
some machine), and writes to ``--out``:

- ``summary.md``: for a CI job summary, the most wanted first: the accuracy tables (the worst error in ULPs
  per run · API and dtype, one table per quantity, marked by the most severe verdict, with where it occurs; then per
  input region, ``conformance.regions``), the problems with their reproducers, the regression gate (``--against``:
  the diff against a baseline), the verdicts per run, the APIs ranked by forward error, the conditioned results and
  the largest explained errors, the mechanisms, the runs of one framework at different versions (only what
  differs) and the runs' environments. Every table is at most 8 columns wide, every list is capped, and the whole
  file stays under ``SUMMARY_LIMIT`` bytes (200 KiB) however many results go in.
- ``report.html``: one self-contained page in the same order, with filters (outcome, framework, dtype, quantity),
  the verdict matrix, the ULP-error distribution and the sweep cases' plots (``conformance.report_html``,
  ``conformance.report_plots``; needs matplotlib).
- ``junit.xml``: a test suite per run, a test case per result (``conformance.junit``).

Each file is written to a temporary file in ``--out`` and renamed over the old one, and is the same
bytes for the same inputs (no timestamps; every iteration in a fixed order).

The exit status is 0 even when the results hold failures: the report only describes them. The
framework runs (``python -m conformance run``, the pytest plugin) and ``python -m conformance diff``
are the gates. It is 2, with ``error: ...`` on stderr, when no results file is found, one cannot be
read, or the outputs cannot be written.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from conformance import dtypes, numerics, regions
from conformance import outputs as output_files
from conformance.diff import Diff, DiffError, compare, read_side, sections, summary_line
from conformance.diff import markdown as diff_markdown
from conformance.results import LISTED_PROBLEMS, Result, ResultsError, Run, read_runs, results_files
from conformance.summary import Mechanism, _ulp, failure_text, mechanisms
from conformance.verdicts import tolerance_for

EXIT_USAGE = 2
SUMMARY_LIMIT = 200 * 1024  # bytes: a job summary read on one page (GitHub refuses one over 1 MiB)

# The six counts of a matrix cell, in this order. "fail" counts every problem: fail, unexpected
# pass (a known divergence that no longer diverges) and error. "conditioned" is no problem: past the
# tolerance, within the condition-aware bound (conformance.conditioning).
STATES = ("exact", "acceptable", "conditioned", "fail", "known_divergence", "unsupported")
STATE_NAMES = {
    "exact": "exact",
    "acceptable": "acceptable",
    "conditioned": "conditioned",
    "fail": "fail",
    "known_divergence": "known divergence",
    "unsupported": "unsupported",
}
PROBLEM_VERDICTS = ("fail", "unexpected_pass", "error")
ERROR_QUANTITIES = ("value", "grad", "grad_target")  # compared with the exact value; the rest are relations
QUANTITY_ORDER = {"value": 0, "grad": 1, "grad_target": 2}
CELL_LEGEND = (
    "Each cell: exact · acceptable · conditioned · fail · known divergence · unsupported "
    "(fail counts every problem: fail, unexpected pass and error; conditioned is none: past the tolerance, within "
    "the condition-aware bound); **bold**: the cell has a problem; –: no results."
)

# caps: the Markdown is read in a CI page; the HTML page may show more
MD_PROBLEMS = 25
MD_CONDITIONED = 25
MD_WORST = 25
MD_MECHANISMS = 200  # rows of the mechanisms table (the catalogues hold under a hundred entries)
MD_RANKED = 100
MD_APIS_PER_RUN = 60
MD_VERSION_ROWS = 150
MAX_FILE_COLUMNS = 40  # case files past this many are summed into one "other files" column
HTML_PROBLEMS = 300
HTML_CONDITIONED = 300
HTML_WORST = 100


def state_of(verdict: str) -> str:
    """The matrix column a verdict counts in; a verdict this suite does not know counts as a problem."""
    if verdict in ("exact", "acceptable", "conditioned", "known_divergence", "unsupported"):
        return verdict
    return "fail"


def is_problem(verdict: str) -> bool:
    return state_of(verdict) == "fail"


def case_file(result: Result) -> str:
    """The case file's stem: the part of ``<file stem>/<id>`` before the slash."""
    if "/" in result.case:
        return result.case.split("/", 1)[0]
    return Path(result.file).stem if result.file else result.case


def where(result: Result) -> str:
    """``extreme_logits/minus-inf-t0 · float32 · none`` (and the quantity when not the value)."""
    parts = [result.case, result.dtype, result.reduction] + ([result.quantity] if result.quantity != "value" else [])
    return " · ".join(parts)


def ulp_key(value: float | None) -> float:
    """A max ULP error for sorting, largest first: NaN counts as infinite, no value as -1."""
    if value is None:
        return -1.0
    value = float(value)
    return math.inf if math.isnan(value) else value


def natural_key(text: str) -> tuple:
    """``torch 2.9.0`` before ``torch 2.13.0``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text))


class Counts:
    """The verdict counts of a set of results."""

    __slots__ = ("by_verdict",)

    def __init__(self) -> None:
        self.by_verdict: dict[str, int] = {}

    def add(self, verdict: str, count: int = 1) -> None:
        self.by_verdict[verdict] = self.by_verdict.get(verdict, 0) + count

    def merge(self, other: Counts) -> None:
        for verdict, count in other.by_verdict.items():
            self.add(verdict, count)

    def __getitem__(self, state: str) -> int:
        if state == "fail":
            return sum(n for verdict, n in self.by_verdict.items() if state_of(verdict) == "fail")
        return self.by_verdict.get(state, 0)

    @property
    def total(self) -> int:
        return sum(self.by_verdict.values())

    @property
    def problems(self) -> int:
        return self["fail"]

    def cell(self) -> str:
        """``12·3·2·0·4·1``: exact · acceptable · conditioned · fail · known divergence · unsupported."""
        return "·".join(str(self[state]) for state in STATES)

    def sentence(self) -> str:
        """``92 exact, 0 acceptable, 3 conditioned, 0 fail, 38 known divergence, 0 unsupported`` (problems named
        apart)."""
        text = ", ".join(f"{self[state]} {STATE_NAMES[state]}" for state in STATES)
        extra = [
            f"{self.by_verdict[v]} {v.replace('_', ' ')}"
            for v in sorted(self.by_verdict)
            if state_of(v) == "fail" and v != "fail"
        ]
        return text + (f" ({', '.join(extra)} among the fails)" if extra else "")


@dataclass
class RunReport:
    """One run: its results counted per API and case file."""

    run: Run
    label: str  # unique among the report's runs
    index: int
    apis: list[str]  # in the order the results file first names them
    files: list[str]  # case file stems, sorted
    matrix: dict[str, dict[str, Counts]]  # api -> case file -> counts
    api_totals: dict[str, Counts]
    by_quantity: dict[str, dict[str, Counts]]  # api -> quantity -> counts
    totals: Counts

    @property
    def framework(self) -> str:
        return self.run.framework

    @property
    def results(self) -> list[Result]:
        return self.run.results


@dataclass
class WorstGroup:
    """The results of one (run, API, verdict, divergence or variant): their largest error."""

    run: RunReport
    api: str
    verdict: str
    name: str  # the divergence's id or the variant's name
    worst: float | None
    example: Result
    count: int
    dtypes: list[str]
    source: str


@dataclass
class ApiRank:
    """One (run, API) in the ranking by forward error: its results compared with the exact value (the loss and
    its gradients, not the relations; unsupported ones left out), counted by verdict, and their errors."""

    run: RunReport
    api: str
    judged: int  # results compared with the exact value
    exact: int
    acceptable: int
    conditioned: int
    known_divergence: int
    problems: int  # fail, unexpected pass, error
    worst: float | None  # the largest max_ulp of those results that are no error (None: no such result)
    median: float | None  # the median of their max_ulp (NaN read as inf)

    def key(self) -> tuple:
        """Fewer problems, then fewer known divergences, then fewer conditioned results, then a smaller worst and
        median error rank first; an API with nothing judged last; then the run's order and the API's name."""
        return (
            self.judged == 0,
            self.problems,
            self.known_divergence,
            self.conditioned,
            ulp_key(self.worst),
            ulp_key(self.median),
            self.run.index,
            self.api,
        )


# the cell classes of the accuracy tables, the most severe first: a cell takes the most severe of its results'
STATE_SEVERITY = ("fail", "known_divergence", "conditioned", "acceptable", "exact", "unsupported")


def most_severe(states: Iterable[str]) -> str:
    states = set(states)
    return next((s for s in STATE_SEVERITY if s in states), "unsupported")


@dataclass
class AccuracyCell:
    """The results of one (run, API, dtype, quantity): their worst error and the most severe verdict class."""

    counts: Counts
    state: str  # STATE_SEVERITY's most severe among the results that are not unsupported ("unsupported": only those)
    worst: float | None  # the largest max_ulp of those results (NaN read as inf); None: none has one
    result: Result | None  # the result that has it (the first by id among equals)
    errors: int  # `error` results, which have no error in ULPs
    floor: bool  # that result's largest error lies on elements accepted through the absolute floor
    where: str  # where it occurs: the region and the inputs of its worst element, or the reduction and case
    exact_worst: float | None = None  # the largest max_ulp of the cell's exact results, those the floor decided left out


@dataclass
class RegionCell:
    """One (run, API, quantity, region) over the run's elementwise results: elements, misses, worst error."""

    elements: int = 0
    missed: int = 0
    worst: float | None = None
    result: Result | None = None  # the result holding the worst element
    x: str = ""  # that element's input and target, hex
    target: str = ""
    missed_states: set = field(default_factory=set)  # the verdict classes of the results with misses here
    floor: bool = False  # the worst element is past the tolerance, accepted through the absolute floor

    @property
    def state(self) -> str:
        return most_severe(self.missed_states) if self.missed else "exact"


@dataclass
class AccuracyRow:
    run: RunReport
    api: str
    cells: dict[tuple[str, str], AccuracyCell]  # (dtype, quantity) -> cell
    regions: dict[tuple[str, str], RegionCell]  # (quantity, region) -> cell

    @property
    def state(self) -> str:
        return most_severe(c.state for c in self.cells.values())


@dataclass
class Report:
    runs: list[RunReport]
    files: list[str]  # every case file stem, sorted
    quantities: list[str]  # every quantity, value first
    totals: Counts
    problems: list[tuple[RunReport, Result]]  # in run order, then by result id
    worst: list[WorstGroup]  # largest error first
    version_groups: dict[str, list[RunReport]]  # framework -> its runs, when it has more than one
    sweeps: dict[str, list[tuple[RunReport, Result]]]  # sweep case -> its results that carry elements
    # the conditioned results: the largest error over the condition-aware bound first, then in run order and by id
    conditioned: list[tuple[RunReport, Result]] = field(default_factory=list)
    ranking: list[ApiRank] = field(default_factory=list)  # every (run, API), best first (``ApiRank.key``)
    # each run's known divergences by mechanism, with their figures computed from its results (summary.mechanisms)
    mechanisms: list[tuple[RunReport, Mechanism]] = field(default_factory=list)
    accuracy: list[AccuracyRow] = field(default_factory=list)  # every (run, API) with a value or gradient result
    dtypes: list[str] = field(default_factory=list)  # of those results, in conformance.dtypes order
    accuracy_quantities: list[str] = field(default_factory=list)  # ERROR_QUANTITIES present, in that order
    against: Diff | None = None  # the diff against a baseline (``report --against``)
    against_name: str = ""
    inputs: list[Path] = field(default_factory=list)  # the results files read (the key of the figures' cache)

    @property
    def result_count(self) -> int:
        return self.totals.total


def _unique_labels(runs: list[Run]) -> list[str]:
    labels = [run.label for run in runs]
    seen = Counter(labels)
    return [f"{label} [{run.path}]" if seen[label] > 1 else label for label, run in zip(labels, runs)]


def quantity_order(quantity: str) -> tuple:
    return (QUANTITY_ORDER.get(quantity, 3), quantity)


def median(values: list[float]) -> float | None:
    """The median (the mean of the middle two of an even count), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def rank_api(run: RunReport, api: str, results: list[Result]) -> ApiRank:
    """A (run, API)'s row of the ranking by forward error, from its results."""
    judged = [r for r in results if r.quantity in ERROR_QUANTITIES and r.verdict != "unsupported"]
    states = Counter(state_of(r.verdict) for r in judged)
    errors = [ulp_key(r.max_ulp) for r in judged if r.verdict != "error" and r.max_ulp is not None]
    return ApiRank(
        run,
        api,
        len(judged),
        states["exact"],
        states["acceptable"],
        states["conditioned"],
        states["known_divergence"],
        states["fail"],
        max(errors, default=None),
        median(errors),
    )


def _short(hex_text: str) -> str:
    """A hex input as a short decimal: ``-20.5``, ``1e-45``, ``inf``."""
    try:
        return f"{float.fromhex(hex_text) if 'x' in hex_text else float(hex_text):.4g}"
    except ValueError:
        return hex_text


def _worst_region(result: Result) -> tuple[str, dict] | None:
    """The region of a result's largest error (ties: the first in ``regions.REGIONS``), from its record."""
    if not result.regions:
        return None
    order = {name: i for i, name in enumerate(regions.REGIONS)}
    return max(result.regions.items(), key=lambda kv: (ulp_key(kv[1].get("max_ulp")), -order.get(kv[0], 99)))


def where_it_occurs(result: Result) -> str:
    """``saturation: x = -20.5, y = 0`` for an elementwise result; ``mean of <case>`` for a reduction; the region
    is computed from the inputs of the worst element where an older record has no ``regions``."""
    found = _worst_region(result)
    if found:
        region, figures = found
        return f"{region}: x = {_short(figures['x'])}, y = {_short(figures['target'])}"
    inputs = result.worst[0].get("inputs", {}) if result.worst else {}
    kind = "logits" if "logits" in inputs else "probs" if "probs" in inputs else None
    if result.reduction == "none" and kind and "target" in inputs and "[" not in inputs[kind] + inputs["target"]:
        try:
            x, y = (float.fromhex(inputs[name]) if "x" in inputs[name] else float(inputs[name]) for name in (kind, "target"))
            region = regions.REGIONS[int(regions.classify(kind, x, y, dtypes.get_format(result.dtype)))]
        except (ValueError, KeyError):
            region = "?"
        return f"{region}: x = {_short(inputs[kind])}, y = {_short(inputs['target'])}"
    if result.reduction == "none" and result.reduced_by:  # an API that reduces along an axis: a mean per row
        return f"row means of {result.case}"
    return f"{result.reduction} of {result.case}"


def floor_only(result: Result) -> bool:
    """Exact or acceptable, its largest error past the dtype's tolerance: within it only through the absolute
    floor (flushed subnormals), so that error is the floor's decision, not the API's accuracy."""
    if not result.floor_accepted or result.max_ulp is None or state_of(result.verdict) not in ("exact", "acceptable"):
        return False
    try:
        return ulp_key(result.max_ulp) > tolerance_for(result.dtype).max_ulp
    except KeyError:
        return False


def accuracy_cell(results: list[Result]) -> AccuracyCell:
    counts = Counts()
    for r in results:
        counts.add(r.verdict)
    judged = [r for r in results if r.verdict != "unsupported"]
    with_error = [r for r in judged if r.verdict != "error" and r.max_ulp is not None]
    worst = max(with_error, key=lambda r: (ulp_key(r.max_ulp), _reverse(r.id)), default=None)
    return AccuracyCell(
        counts,
        most_severe(state_of(r.verdict) for r in judged),
        None if worst is None else ulp_key(worst.max_ulp),
        worst,
        sum(r.verdict == "error" for r in judged),
        worst is not None and floor_only(worst),
        "" if worst is None else where_it_occurs(worst),
        # what the floor decided is marked apart (ᶠ), not the exact results' accuracy
        max((ulp_key(r.max_ulp) for r in with_error if r.verdict == "exact" and not floor_only(r)), default=None),
    )


def _reverse(text: str) -> tuple:
    """A key under which ``max`` picks the first of equal texts."""
    return tuple(-ord(c) for c in text)


def accuracy_rows(reports: list[RunReport]) -> tuple[list[AccuracyRow], list[str], list[str]]:
    """Every (run, API) with value or gradient results: a cell per (dtype, quantity), a region cell per (quantity,
    region); and the dtypes and quantities present."""
    rows, all_dtypes, all_quantities = [], set(), set()
    for run in reports:
        grouped: dict[str, dict[tuple[str, str], list[Result]]] = defaultdict(lambda: defaultdict(list))
        by_region: dict[str, dict[tuple[str, str], RegionCell]] = defaultdict(dict)
        for r in run.results:
            if r.quantity not in ERROR_QUANTITIES:
                continue
            grouped[r.api][(r.dtype, r.quantity)].append(r)
            all_dtypes.add(r.dtype)
            all_quantities.add(r.quantity)
            for region, figures in (r.regions or {}).items():
                cell = by_region[r.api].setdefault((r.quantity, region), RegionCell())
                cell.elements += figures.get("elements", 0)
                cell.missed += figures.get("missed", 0)
                if figures.get("missed"):
                    cell.missed_states.add(state_of(r.verdict))
                error = ulp_key(figures.get("max_ulp"))
                if cell.result is None or error > ulp_key(cell.worst) or (error == ulp_key(cell.worst) and r.id < cell.result.id):
                    cell.worst, cell.result, cell.x, cell.target = error, r, figures.get("x", ""), figures.get("target", "")
                    cell.floor = bool(figures.get("floor"))
        for api in run.apis:
            if api in grouped:
                cells = {key: accuracy_cell(sorted(rs, key=lambda r: r.id)) for key, rs in grouped[api].items()}
                rows.append(AccuracyRow(run, api, cells, by_region.get(api, {})))
    order = {name: i for i, name in enumerate(dtypes.DTYPES)}
    return (
        rows,
        sorted(all_dtypes, key=lambda d: (order.get(d, len(order)), d)),
        [q for q in ERROR_QUANTITIES if q in all_quantities],
    )


def build(runs: list[Run]) -> Report:
    """The report's model: runs sorted by framework then version, counts, problems, conditioned results, worst
    errors, the ranking by forward error, sweeps."""
    runs = sorted(runs, key=lambda r: (r.framework, natural_key(r.label), str(r.path)))
    labels = _unique_labels(runs)
    reports: list[RunReport] = []
    all_files: set[str] = set()
    all_quantities: set[str] = set()
    totals = Counts()
    problems: list[tuple[RunReport, Result]] = []
    conditioned: list[tuple[RunReport, Result]] = []
    ranking: list[ApiRank] = []
    groups: dict[tuple, list[Result]] = defaultdict(list)
    sweeps: dict[str, list[tuple[RunReport, Result]]] = defaultdict(list)
    for index, (run, label) in enumerate(zip(runs, labels)):
        matrix: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
        api_totals: dict[str, Counts] = defaultdict(Counts)
        by_quantity: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
        run_totals = Counts()
        apis: dict[str, None] = {}
        files: set[str] = set()
        report = RunReport(run, label, index, [], [], matrix, api_totals, by_quantity, run_totals)
        # one count per (API, case file, quantity, verdict), in the order the file first names each
        keys = Counter((r.api, case_file(r), r.quantity, r.verdict) for r in run.results)
        for (api, stem, quantity, verdict), count in keys.items():
            apis.setdefault(api)
            files.add(stem)
            all_quantities.add(quantity)
            matrix[api][stem].add(verdict, count)
            api_totals[api].add(verdict, count)
            by_quantity[api][quantity].add(verdict, count)
            run_totals.add(verdict, count)
        for result in run.results:
            verdict = result.verdict
            if verdict in ("known_divergence", "acceptable"):
                name = result.divergence if verdict == "known_divergence" else result.variant
                groups[(index, result.api, verdict, name)].append(result)
            elif verdict == "conditioned":
                conditioned.append((report, result))
            elif is_problem(verdict):
                problems.append((report, result))
            if result.elements and result.elements.get("x"):
                sweeps[result.case].append((report, result))
        report.apis = list(apis)
        by_api: dict[str, list[Result]] = defaultdict(list)
        for result in run.results:
            by_api[result.api].append(result)
        ranking += [rank_api(report, api, by_api[api]) for api in report.apis]
        report.files = sorted(files)
        report.matrix = {api: dict(cells) for api, cells in matrix.items()}
        report.api_totals = dict(api_totals)
        report.by_quantity = {api: dict(cells) for api, cells in by_quantity.items()}
        all_files |= files
        totals.merge(run_totals)
        reports.append(report)
    problems.sort(key=lambda pr: (pr[0].index, pr[1].id))
    conditioned.sort(key=lambda pr: (-ulp_key(pr[1].bound_ratio), pr[0].index, pr[1].id))
    ranking.sort(key=ApiRank.key)
    worst = []
    for (index, api, verdict, name), rows in groups.items():
        largest = max(ulp_key(r.max_ulp) for r in rows)
        top = min((r for r in rows if ulp_key(r.max_ulp) == largest), key=lambda r: r.id)
        worst.append(
            WorstGroup(
                reports[index],
                api,
                verdict,
                name,
                top.max_ulp,
                top,
                len(rows),
                sorted({r.dtype for r in rows}),
                top.source,
            )
        )
    worst.sort(key=lambda g: (-ulp_key(g.worst), g.run.index, g.api, g.verdict, g.name))
    by_framework: dict[str, list[RunReport]] = defaultdict(list)
    for report in reports:
        by_framework[report.framework].append(report)
    version_groups = {fw: rs for fw, rs in sorted(by_framework.items()) if len(rs) > 1}
    for rows in sweeps.values():
        rows.sort(key=lambda rr: (rr[0].index, quantity_order(rr[1].quantity), rr[1].dtype, rr[1].id))
    return Report(
        reports,
        sorted(all_files),
        sorted(all_quantities, key=quantity_order),
        totals,
        problems,
        worst,
        version_groups,
        dict(sorted(sweeps.items())),
        conditioned,
        ranking,
        [(run, m) for run in reports for m in mechanisms(run.results)],
        *accuracy_rows(reports),
    )


# ---------------------------------------------------------------- environment text


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_text(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return str(value)


def subnormal_text(subnormals: Any) -> str:
    """``float32 subnormals kept; float64 results flushed to zero and inputs read as zero``."""
    if not isinstance(subnormals, dict):
        return _text(subnormals)
    if "probe" in subnormals:
        return _text(subnormals["probe"])
    parts = []
    for dtype in sorted(subnormals):
        probe = subnormals[dtype]
        if not isinstance(probe, dict):
            parts.append(f"{dtype} {_text(probe)}")
        elif "probe" in probe:
            parts.append(f"{dtype} {_text(probe['probe'])}")
        else:
            what = [
                name
                for name, key in (
                    ("results flushed to zero", "flushed_to_zero"),
                    ("inputs read as zero", "inputs_as_zero"),
                )
                if probe.get(key)
            ]
            parts.append(f"{dtype} {' and '.join(what) if what else 'subnormals kept'}")
    return "; ".join(parts)


def environment_rows(run: Run) -> list[tuple[str, str]]:
    """(field, text) for a run's header; fields the environment lacks are left out."""
    env = run.environment or {}
    rows = [
        (
            "results",
            f"{run.path}: {len(run.results)} results" + (f", {run.truncated} lines cut short" if run.truncated else ""),
        )
    ]
    versions = run.versions
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))))
    if env.get("settings"):
        rows.append(("settings", _text(env["settings"])))
    if "python" in env:
        implementation = env.get("implementation")
        rows.append(("Python", f"{env['python']}" + (f" ({implementation})" if implementation else "")))
    for key, name in (("platform", "platform"), ("machine", "machine"), ("cpu", "CPU"), ("device", "device")):
        if env.get(key) not in (None, ""):
            rows.append((name, _text(env[key])))
    if env.get("subnormals") not in (None, "", {}):
        rows.append(("subnormals", subnormal_text(env["subnormals"])))
    if isinstance(env.get("numerics"), dict):
        rows.append(("numerics", numerics.summary(env["numerics"])))
    elif env:
        rows.append(("numerics", "not recorded (results taken before the numerics environment was recorded)"))
    if "mpmath" in env:
        backend = env.get("mpmath_backend")
        rows.append(("mpmath", f"{env['mpmath']}" + (f" ({backend})" if backend else "")))
    if "numpy" in env and run.framework != "numpy":
        rows.append(("NumPy", _text(env["numpy"])))
    if "suite" in env:
        rows.append(("suite", f"bce-conformance {_text(env['suite'])}"))
    if not env:
        rows.append(("environment", "not recorded (a results file without an environment record)"))
    return rows


# ---------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_escape(text: str) -> str:
    """Text that Markdown shows as written (no emphasis, no HTML, no links of its own making)."""
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text.replace("\n", " "))


def _md_code(text: str) -> str:
    """Inline code that survives backticks and pipes in the text."""
    text = text.replace("\n", " ").replace("|", "\\|")
    ticks = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str, info: str = "text") -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def _md_counts(counts: Counts | None) -> str:
    if counts is None or counts.total == 0:
        return "–"
    return f"**{counts.cell()}**" if counts.problems else counts.cell()


def shown_files(files: list[str], limit: int = MAX_FILE_COLUMNS) -> tuple[list[str], list[str]]:
    """The case files given a column of their own, and those summed into "other files"."""
    return (files, []) if len(files) <= limit else (files[:limit], files[limit:])


def _sum(counts: Iterable[Counts]) -> Counts:
    total = Counts()
    for c in counts:
        total.merge(c)
    return total


def _cap_note(hidden: int, what: str, see: str = "report.html and junit.xml") -> str:
    return f"... and {hidden} more {what} (see {see})"


def matrix_markdown(report: Report) -> list[str]:
    files, others = shown_files(report.files)
    out = ["## Verdicts: APIs × case files", "", CELL_LEGEND, ""]
    header = ["run", "API", *files] + ([f"{len(others)} other files"] if others else []) + ["all"]
    out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    out.append("|---|---|" + "---:|" * (len(header) - 2))
    for run in report.runs:
        for i, api in enumerate(run.apis[:MD_APIS_PER_RUN]):
            row = [_md_cell(run.label) if i == 0 else "", _md_code(api)]
            row += [_md_counts(run.matrix[api].get(f)) for f in files]
            if others:
                row.append(_md_counts(_sum(run.matrix[api][f] for f in others if f in run.matrix[api])))
            row.append(_md_counts(run.api_totals[api]))
            out.append("| " + " | ".join(row) + " |")
        if len(run.apis) > MD_APIS_PER_RUN:
            hidden = run.apis[MD_APIS_PER_RUN:]
            rest = _sum(run.api_totals[a] for a in hidden)
            out.append(
                f"| | {_cap_note(len(hidden), 'APIs', 'report.html')} |"
                + " |" * (len(header) - 3)
                + f" {_md_counts(rest)} |"
            )
    out.append("")
    if len(report.quantities) > 1:
        out += [
            "### By quantity",
            "",
            "value: the loss; grad / grad_target: its gradients; the rest: metamorphic relations.",
            "",
        ]
        header = ["run", "API", *report.quantities]
        out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        out.append("|---|---|" + "---:|" * (len(header) - 2))
        for run in report.runs:
            for i, api in enumerate(run.apis[:MD_APIS_PER_RUN]):
                row = [_md_cell(run.label) if i == 0 else "", _md_code(api)]
                row += [_md_counts(run.by_quantity[api].get(q)) for q in report.quantities]
                out.append("| " + " | ".join(row) + " |")
        out.append("")
    return out


RANKING_NOTE = (
    "Every run's APIs ranked together on their results against the exact value (the loss and its gradients; "
    "relations and unsupported results left out; judged counts them): fewer problems, then fewer known "
    "divergences, then fewer conditioned results, then a smaller worst error rank first, so that an API exact "
    "where another is only conditioned ranks above it. worst ULP: the largest error of those results (error "
    "results, which have none, left out); median ULP: the median of their largest errors."
)
RANKING_HEADER = (
    "rank", "run", "API", "judged", "exact", "acceptable", "conditioned", "known divergence", "problems",
    "worst ULP", "median ULP",
)  # fmt: skip
# summary.md's form, at most 8 columns: run and API in one, exact · acceptable · conditioned in one
RANKING_MD_HEADER = (
    "rank", "run · API", "judged", "exact · acceptable · conditioned", "known divergence", "problems", "worst ULP",
    "median ULP",
)  # fmt: skip


def ranking_cells(row: ApiRank) -> list[str]:
    """A ranking row's counts and errors, as text (after its rank, run and API)."""
    counts = (row.judged, row.exact, row.acceptable, row.conditioned, row.known_divergence, row.problems)
    return [*map(str, counts), _ulp(row.worst), _ulp(row.median)]


def ranking_markdown(report: Report) -> list[str]:
    if not report.ranking:
        return []
    out = ["## APIs ranked by forward error", "", RANKING_NOTE, ""]
    out.append("| " + " | ".join(RANKING_MD_HEADER) + " |")
    out.append("|---:|---|" + "---:|" * (len(RANKING_MD_HEADER) - 2))
    for rank, row in enumerate(report.ranking[:MD_RANKED], 1):
        judged, exact, acceptable, conditioned, divergent, problems, worst, middle = ranking_cells(row)
        if row.problems:
            problems = f"**{problems}**"
        cells = [judged, f"{exact} · {acceptable} · {conditioned}", divergent, problems, worst, middle]
        out.append(f"| {rank} | {_md_cell(row.run.label)} · {_md_code(row.api)} | " + " | ".join(cells) + " |")
    if len(report.ranking) > MD_RANKED:
        out.append(f"\n{_cap_note(len(report.ranking) - MD_RANKED, 'APIs', 'report.html')}")
    out.append("")
    return out


def version_rows(group: list[RunReport]) -> list[tuple[str, str, list[Counts | None]]]:
    """(API, case file or "all", one cell per run) for a framework's runs side by side."""
    apis: dict[str, None] = {}
    for run in group:
        apis.update(dict.fromkeys(run.apis))
    rows = []
    for api in apis:
        rows.append((api, "all", [run.api_totals.get(api) for run in group]))
        files = sorted({f for run in group if api in run.matrix for f in run.matrix[api]})
        for f in files:
            rows.append((api, f, [run.matrix[api].get(f) if api in run.matrix else None for run in group]))
    return rows


def cells_differ(cells: list[Counts | None]) -> bool:
    texts = {c.cell() if c is not None and c.total else "" for c in cells}
    return len(texts) > 1


VERSION_CHANGES_LISTED = 20  # per category, between two consecutive runs of one framework


def version_changes(group: list[RunReport]) -> list[tuple[RunReport, RunReport, Diff]]:
    """What changed from each run of a framework to the next (the older version first): ``diff.compare``."""
    return [(old, new, compare([old.run], [new.run])) for old, new in pairwise(group)]


def versions_markdown(report: Report) -> list[str]:
    if not report.version_groups:
        return []
    out = [
        "## Versions side by side",
        "",
        ("One framework's runs next to each other: only the rows (API · case file) whose verdict counts differ "
        "(exact · acceptable · conditioned · fail · known divergence · unsupported), then what changed."),
        "",
    ]
    for framework, group in report.version_groups.items():
        out += [f"### {_md_cell(framework)}", ""]
        rows = [row for row in version_rows(group) if cells_differ(row[2])]
        if not rows:
            out += ["The same verdict counts in every API and case file.", ""]
        else:
            header = ["API · case file", *(run.label for run in group)]
            out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
            out.append("|---|" + "---:|" * len(group))
            for api, f, cells in rows[:MD_VERSION_ROWS]:
                place = "**all**" if f == "all" else _md_cell(f)
                out.append(f"| {_md_code(api)} · {place} | " + " | ".join(_md_counts(c) for c in cells) + " |")
            if len(rows) > MD_VERSION_ROWS:
                out.append(f"| {_cap_note(len(rows) - MD_VERSION_ROWS, 'rows', 'report.html')} |" + " |" * len(group))
            out.append("")
        for old, new, changes in version_changes(group):
            out += [f"**From {_md_cell(old.label)} to {_md_cell(new.label)}**: {summary_line(changes)}", ""]
            for title, lines in sections(changes, VERSION_CHANGES_LISTED):
                out += [f"- {title}", *(f"  {line}" for line in lines)]
            out.append("")
    return out


CONDITIONED_NOTE = (
    "No problems: each element past the tolerance lies within k × its condition-aware bound, the error of an ideal "
    "implementation that rounds its inputs and its output to the dtype (conformance.conditioning). bound ratio: "
    "the largest error over that bound; condition: the largest relative condition number (both of the elements "
    "past the tolerance). The largest bound ratio first."
)


def problems_markdown(report: Report) -> list[str]:
    out = [f"## Problems: {len(report.problems)} (fail, unexpected pass, error)", ""]
    if not report.problems:
        return out + ["No problems: no fail, unexpected pass or error.", ""]
    for run, result in report.problems[:MD_PROBLEMS]:
        out += [f"**{_md_cell(run.label)}** · `{result.verdict}`", "", _fence(failure_text(result)), ""]
    if len(report.problems) > MD_PROBLEMS:
        out += [_cap_note(len(report.problems) - MD_PROBLEMS, "problems"), ""]
    return out


def worst_markdown(report: Report) -> list[str]:
    out = []
    if report.conditioned:
        out += [
            f"## Conditioned: {len(report.conditioned)} (past the tolerance, within the condition-aware bound)",
            "",
            CONDITIONED_NOTE,
            "",
            "| bound ratio | condition | max ULP | run | API | result |",
            "|---:|---:|---:|---|---|---|",
        ]
        for run, result in report.conditioned[:MD_CONDITIONED]:
            out.append(
                f"| {_ulp(result.bound_ratio)} | {_ulp(result.condition)} | {_ulp(result.max_ulp)} | "
                f"{_md_cell(run.label)} | {_md_code(result.api)} | {_md_code(where(result))} |"
            )
        if len(report.conditioned) > MD_CONDITIONED:
            out.append(f"\n{_cap_note(len(report.conditioned) - MD_CONDITIONED, 'conditioned results')}")
        out.append("")
    if report.worst:
        out += [
            "## Largest errors among known divergences and documented variants",
            "",
            (
                "One row per run, API and divergence (or variant): its largest error in ULPs and the result that "
                "shows it (case · dtype · reduction)."
            ),
            "",
            "| max ULP | run | API | verdict | divergence / variant | results | dtypes | worst result |",
            "|---:|---|---|---|---|---:|---|---|",
        ]
        for g in report.worst[:MD_WORST]:
            out.append(
                f"| {_ulp(g.worst)} | {_md_cell(g.run.label)} | {_md_code(g.api)} | {g.verdict.replace('_', ' ')} | "
                f"{_md_cell(g.name) or '–'} | {g.count} | {', '.join(g.dtypes)} | {_md_code(where(g.example))} |"
            )
        if len(report.worst) > MD_WORST:
            out.append(f"\n{_cap_note(len(report.worst) - MD_WORST, 'groups', 'report.html')}")
        out.append("")
    return out


MECHANISMS_NOTE = (
    "Per run and catalogue entry, computed from the results (nothing here is typed into the catalogue): the results "
    "whose elements it explains, those elements, their largest error in ULPs, and per dtype the span of the inputs "
    "it explained them on. A maintainer upgrading a framework reads these against the catalogue's `versions:`."
)


def mechanisms_markdown(report: Report) -> list[str]:
    if not report.mechanisms:
        return []
    out = [
        "## Known divergences by mechanism",
        "",
        MECHANISMS_NOTE,
        "",
        "| mechanism | run | results | elements | worst ULP | where | source |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for run, m in report.mechanisms[:MD_MECHANISMS]:
        out.append(
            f"| **{_md_cell(m.id)}** | {_md_cell(run.label)} | {m.results_text()} | {m.elements} | {_ulp(m.max_ulp)} | "
            f"{_md_cell(m.span_text())} | {_md_cell(m.source)} |"
        )
    if len(report.mechanisms) > MD_MECHANISMS:
        out.append(f"\n{_cap_note(len(report.mechanisms) - MD_MECHANISMS, 'mechanisms', 'report.html')}")
    out.append("")
    return out


def runs_markdown(report: Report) -> list[str]:
    out = ["## Runs", ""]
    for run in report.runs:
        rows = environment_rows(run.run)
        out += [f"### {_md_cell(run.label)}", "", f"{run.totals.total} results: {run.totals.sentence()}", ""]
        # the file, versions and settings a line each; the machine and numerics on one line
        first = [(name, text) for name, text in rows if name in ("results", "versions", "settings", "environment", "numerics")]
        rest = [(name, text) for name, text in rows if name not in dict(first)]
        out += [f"- **{name}**: {_md_escape(text)}" for name, text in first]
        if rest:
            out.append("- " + " · ".join(f"**{name}**: {_md_escape(text)}" for name, text in rest))
        out.append("")
    return out


STATE_MARKS = {  # a cell's verdict class in Markdown, where there is no colour but emoji
    "fail": "🟥",
    "known_divergence": "🟧",
    "conditioned": "🟪",
    "acceptable": "🟦",
    "exact": "🟩",
    "unsupported": "⬜",
}
MARKS_LEGEND = (
    "🟥 problem (fail, unexpected pass, error) · 🟧 known divergence · 🟪 conditioned · 🟦 acceptable · 🟩 exact · "
    "n/a: unsupported · –: no results"
)


def _accuracy_cell_md(cell: AccuracyCell | None) -> str:
    if cell is None:
        return "–"
    if cell.state == "unsupported":
        return "n/a"
    text = f"{STATE_MARKS[cell.state]} {_ulp(cell.worst)}{'ᶠ' if cell.floor else ''}"
    if cell.errors:
        text += f" +{cell.errors} error"
    if cell.where:
        text += f" · {_md_escape(cell.where)}"
    if cell.exact_worst is not None and cell.state != "exact":
        text += f" (exact ≤ {_ulp(cell.exact_worst)})"
    return text


def _per_run(rows: list[AccuracyRow]) -> list[tuple[RunReport, list[AccuracyRow]]]:
    grouped: dict[int, tuple[RunReport, list[AccuracyRow]]] = {}
    for row in rows:
        grouped.setdefault(row.run.index, (row.run, []))[1].append(row)
    return list(grouped.values())


def accuracy_markdown(report: Report) -> list[str]:
    if not report.accuracy:
        return []
    out = [
        "## Accuracy: the worst error in ULPs per API and dtype",
        "",
        ("Each cell: the largest error in ULPs against the correctly rounded exact value among the results that are "
        "not unsupported (every case and reduction), marked by the most severe verdict among them, and where it "
        "occurs (the input region and element, or the reduction and case); then, where other verdicts share the "
        "cell, the largest error of its exact results (those the floor decided left out). ᶠ: on elements accepted "
        "only through the absolute floor."),
        "",
        MARKS_LEGEND,
        "",
    ]
    for quantity in report.accuracy_quantities:
        out += [f"### {quantity}", "", "| run · API | " + " | ".join(report.dtypes) + " |"]
        out.append("|---|" + "---|" * len(report.dtypes))
        for run, rows in _per_run(report.accuracy):
            # a row of n/a (nothing judged: the API has no such quantity) is left out
            rows = [row for row in rows if any(c.state != "unsupported" for (_, q), c in row.cells.items() if q == quantity)]
            for row in rows[:MD_APIS_PER_RUN]:
                cells = [_accuracy_cell_md(row.cells.get((d, quantity))) for d in report.dtypes]
                out.append(f"| {_md_cell(run.label)} · {_md_code(row.api)} | " + " | ".join(cells) + " |")
            if len(rows) > MD_APIS_PER_RUN:
                out.append(f"| {_cap_note(len(rows) - MD_APIS_PER_RUN, 'APIs', 'report.html')} |" + " |" * len(report.dtypes))
        out.append("")
    return out


def regions_markdown(report: Report) -> list[str]:
    used = [r for r in regions.REGIONS if any(r == key[1] for row in report.accuracy for key in row.regions)]
    if not used:
        return []
    f32 = dtypes.get_format("float32")
    out = [
        "## Accuracy by input region",
        "",
        "The elementwise results of each API per input region (`conformance/regions.py`): the largest error in ULPs "
        "over every dtype, and the elements that missed the tolerance out of those there (ᶠ: the worst element is accepted "
        "only through the absolute floor). float32's bounds: "
        + "; ".join(f"{r}: {regions.describe(r, 'logits', f32)}" for r in used)
        + ".",
        "",
    ]
    for quantity in report.accuracy_quantities:
        by_run = [(run, [row for row in rows if any(q == quantity for q, _ in row.regions)]) for run, rows in _per_run(report.accuracy)]
        if not any(rows for _, rows in by_run):
            continue
        out += [f"### {quantity}", "", "| run · API | " + " | ".join(used) + " |", "|---|" + "---|" * len(used)]
        for row in (row for _, rows in by_run for row in rows[:MD_APIS_PER_RUN]):
            cells = []
            for region in used:
                cell = row.regions.get((quantity, region))
                cells.append(
                    "–"
                    if cell is None
                    else f"{STATE_MARKS[cell.state]} {_ulp(cell.worst)}{'ᶠ' if cell.floor else ''} ({cell.missed}/{cell.elements})"
                )
            out.append(f"| {_md_cell(row.run.label)} · {_md_code(row.api)} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def gate_markdown(report: Report) -> list[str]:
    if report.against is None:
        return [
            "## Regression gate",
            "",
            ("No baseline given (`python -m conformance report RESULTS --against BASELINE`); `python -m conformance diff` "
            "is the gate itself."),
            "",
        ]
    verdict = "fails" if report.against.regressed else "passes"
    text = diff_markdown(report.against).replace("## Results diff (baseline → current)", "", 1).lstrip("\n")
    text = re.sub(r"^(#+) ", lambda m: "#" * max(len(m.group(1)), 2) + "# ", text, flags=re.MULTILINE)  # under this heading
    return [f"## Regression gate: {verdict} against `{report.against_name}`", "", text.rstrip(), ""]


def runs_counts_markdown(report: Report) -> list[str]:
    out = [
        "## Verdicts per run",
        "",
        "| run | results | exact | acceptable | conditioned | known divergence | problems | unsupported |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in report.runs:
        c = run.totals
        cells = [c.total, c["exact"], c["acceptable"], c["conditioned"], c["known_divergence"], c.problems, c["unsupported"]]
        out.append(f"| {_md_cell(run.label)} | " + " | ".join(map(str, cells)) + " |")
    out += ["", "The verdicts per API and case file, and per quantity: report.html's matrix.", ""]
    return out


def summary_markdown(report: Report, limit: int = SUMMARY_LIMIT) -> str:
    """summary.md, the most wanted first: the accuracy tables, the problems with their reproducers, the regression
    gate, then the verdicts per run, the ranking, the conditioned and explained errors, the mechanisms, the versions
    side by side and the runs' environments; cut to ``limit`` bytes at a line."""
    out = [
        "# BCE conformance report",
        "",
        f"{report.result_count} results from {len(report.runs)} runs: {report.totals.sentence()}.",
        "",
    ]
    out += (
        accuracy_markdown(report)
        + regions_markdown(report)
        + problems_markdown(report)
        + gate_markdown(report)
        + runs_counts_markdown(report)
        + ranking_markdown(report)
        + worst_markdown(report)
        + mechanisms_markdown(report)
        + versions_markdown(report)
        + runs_markdown(report)
    )
    text = "\n".join(out).rstrip() + "\n"
    return cut(
        text, limit, "\n_... the summary is cut here to stay under 200 KiB; report.html and junit.xml hold everything._\n"
    )


def cut(text: str, limit: int, note: str) -> str:
    """``text`` if it fits in ``limit`` UTF-8 bytes, else its longest prefix of whole lines that fits with ``note``."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = limit - len(note.encode("utf-8"))
    head = data[:room].decode("utf-8", errors="ignore")
    head = head[: head.rfind("\n") + 1] if "\n" in head else ""
    return head + note


# ---------------------------------------------------------------- writing


def render_all(report: Report) -> dict[str, bytes]:
    """The three outputs' bytes, by file name."""
    from conformance import junit, report_html  # report_html imports matplotlib

    return {
        "summary.md": summary_markdown(report).encode("utf-8"),
        "report.html": report_html.render(report).encode("utf-8"),
        "junit.xml": junit.render(report),
    }


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


REPORT_NAME = "report"  # the lock and staging name of summary.md, report.html and junit.xml (conformance.outputs)


def main(args) -> int:
    """``report`` subcommand: ``args.results`` (files or folders), ``args.out`` (folder). Exit 0
    whatever the verdicts (the framework runs and ``diff`` are the gates); 2 on unusable input, and on a
    results file that is not a whole run (the report is still written, and the warning names it)."""
    files = results_files(args.results)
    if not files:
        return _fail(f"no results files (*.jsonl) in {', '.join(map(str, args.results))}")
    try:
        runs = read_runs(args.results)
    except ResultsError as exc:
        return _fail(str(exc))
    incomplete = [run for run in runs if run.problems]
    for run in incomplete:  # reported as far as it can be read, and said: the report then exits 2
        print(f"warning: {run.path}: not a whole, valid run; reported as far as it can be read:", file=sys.stderr)
        for problem in run.problems[:LISTED_PROBLEMS]:
            print(f"  {problem}", file=sys.stderr)
    report = build(runs)
    report.inputs = [Path(path) for path in files]
    if getattr(args, "against", None):
        try:
            report.against = compare(read_side(args.against, "baseline"), runs)
        except (ResultsError, DiffError) as exc:
            return _fail(f"--against: {exc}")
        report.against_name = str(args.against)
    rendered = render_all(report)
    try:  # one writer at a time; the three files replaced together, or (a kill, a full disk) not at all
        with output_files.locked(args.out, REPORT_NAME) as out:
            for path in output_files.replace_together(out, REPORT_NAME, rendered):
                print(f"wrote {path} ({_size(len(rendered[path.name]))})")
    except output_files.OutputError as exc:
        return _fail(f"cannot write the report: {exc}")
    print(f"{report.result_count} results from {len(report.runs)} runs: {report.totals.sentence()}")
    if incomplete:
        return _fail(f"{len(incomplete)} of {len(runs)} results files are incomplete or damaged: {', '.join(str(r.path) for r in incomplete)}")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE
