"""``python -m conformance diff BASELINE CURRENT``: what changed between two results sets, and whether it regressed.

A results set is every results file read from a path (a folder standing for every ``*.jsonl`` in it).
Results are matched by (run, ``Result.id``), the run being the results file's name (``jax``,
``jax-0.6``: one framework may run at two versions in one set); when each side is a single file,
the run is its framework, so that two files of one framework (two versions) compare with each other.
The same key twice in one set is a usage error.

Verdicts are ranked: exact 0, acceptable 1, conditioned 1 (past the tolerance, within the condition-aware
bound: no problem, but worse than exact), known_divergence 2, unsupported 2, and fail, unexpected_pass,
error 3. ``max_ulp`` is compared with None read as 0 and NaN as inf. So exact → conditioned got worse,
known_divergence or fail → conditioned is an improvement, acceptable ↔ conditioned is another change.

A **regression** (exit 1) is any of:

1. a new failure: the current verdict is a problem (fail, unexpected_pass, error) and the baseline's
   was not, or the result is new;
2. a verdict that got worse: its rank went up, or it became ``unsupported`` from any other verdict
   (coverage lost); a new failure is not listed here again;
3. ULP growth: the same verdict, and max_ulp grew by more than the threshold (finite to inf counts);
4. a disappeared result: in the baseline and not in the current set, its run being in both;
5. an absent run: a run of the baseline with no results file in the current set, listed once as such
   with its count of results (they are not listed one by one as disappeared: a run planned with no checks
   is still missed).

Results are compared within the runs present on both sides. A **new run** (a results file of the current
set whose run the baseline does not have) is listed once, with its count of results by verdict; its
results have no baseline to be compared with, so only its problems (fail, unexpected_pass, error) are
listed, as new failures. With ``--common-runs`` (``compare(..., common_runs=True)``) the runs on one side
only are listed and nothing more: an absent run, and a new run's problems, are then no regression. That
is how to diff one framework's results against a whole baseline folder (``diff baselines/ results/`` with
only ``results/python_math.jsonl``); the regression gate (``tox -e diff``) leaves it off, so a framework
missing from the current set fails it.

Not regressions: **improvements** (the rank went down, ``unsupported`` became a verdict that is no
problem, or the same verdict with max_ulp shrinking by more than the threshold) and **other
changes** (the same rank with another verdict, another known-divergence id or variant; and new
results that are no problem).

The counts also say how many results in both sets became ``conditioned``, by their baseline verdict
(known_divergence and fail named, whenever any did): the divergences and failures that the problem's
conditioning, not the framework, explains.

Like with like: each results file records its host's **numerics environment** (``conformance.numerics``:
CPU flags, numpy's SIMD dispatch, torch's CPU capability, ...). Where a run's baseline and current records
differ, the diff says so first, under a heading per run naming each field that changed, and lists every
changed result of that run under it. There the expectations decide, not the last bits of the host's
kernels: a result is **expected with the environment** (no regression) when

- it became a known divergence through an entry whose ``when:`` (recorded in the result) does not hold
  on the baseline's numerics, i.e. the entry says it happens on hosts like the current one only; or
- its verdict is unchanged and only its max_ulp grew (an ``exact`` result is still within its tolerance:
  the verdict is the expectation); or
- it was ``exact`` and is ``conditioned``: past the tolerance, but within k × the condition-aware bound of
  every element past it (the host's kernels spend the rounding slack the problem's conditioning allows,
  which is no failure; a result past its conditioning is one, and a regression).

Every other change is classified as above, so a new failure on a new host is still a regression. Where a
side has no numerics record (results taken before it was recorded), the heading says so and nothing is
excused.

The diff **fails closed**: it compares whole, valid results files only, read strictly
(``conformance.results.read_run(path, strict=True)``). A file that is empty, has no header (or a
misplaced one), is of another format or version (a version 2 file: regenerate it), has a line that cannot
be read (a cut-off last line too), a record that is not a valid result, a check recorded twice, or fewer
or more records than its header planned, is a usage error (exit 2) naming each file and line, on either
side: a damaged baseline line would otherwise hide the regressions of the results it held (they would be
"new"), a cut-off current file would pass by losing its failures. So is a folder with no results files,
and an ``--ulp-threshold`` that is NaN, infinite or negative (NaN or inf would let every ULP growth pass).
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from conformance import numerics
from conformance.results import Result, ResultsError, Run, read_runs, results_files, write_atomically
from conformance.verdicts import Verdict

EXIT_REGRESSION = 1
EXIT_USAGE = 2
LISTED = 200  # items listed per category; the counts are always complete
RANK = {
    Verdict.EXACT: 0,
    Verdict.ACCEPTABLE: 1,
    Verdict.CONDITIONED: 1,
    Verdict.KNOWN_DIVERGENCE: 2,
    Verdict.UNSUPPORTED: 2,
    Verdict.FAIL: 3,
    Verdict.UNEXPECTED_PASS: 3,
    Verdict.ERROR: 3,
}


class DiffError(Exception):
    """Results sets that cannot be compared: a duplicated key, an unknown verdict, a threshold that is no
    finite number of ULPs at least 0."""


@dataclass(frozen=True)
class Change:
    """One result's change: ``before`` is None for a new result, ``after`` for a disappeared one."""

    framework: str  # the run: the results file's name, or the framework when comparing two single files
    id: str
    before: Result | None
    after: Result | None


@dataclass
class Diff:
    versions: dict[str, tuple[str, str]]  # framework: (baseline labels, current labels), "-" where absent
    ulp_threshold: float
    # run -> what changed in its numerics environment (conformance.numerics.changes), for runs where it did
    # or where a side did not record it
    numerics: dict[str, list[str]] = field(default_factory=dict)
    environment: list[Change] = field(default_factory=list)  # expected with the changed numerics environment
    new_failures: list[Change] = field(default_factory=list)
    worse: list[Change] = field(default_factory=list)
    ulp_growth: list[Change] = field(default_factory=list)
    disappeared: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    other: list[Change] = field(default_factory=list)
    new_results: list[Change] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # runs of the baseline with no results file in the current set
    new_runs: list[str] = field(default_factory=list)  # runs of the current set with no results file in the baseline
    # run of either side only -> its count of results by verdict (its results are compared with nothing)
    one_side_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    common_runs: bool = False  # runs on one side only are listed, not regressions (--common-runs)
    # baseline verdict -> how many results in both sets had it and are now conditioned
    to_conditioned: dict[str, int] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Change]:
        return self.new_failures + self.worse + self.ulp_growth + self.disappeared

    @property
    def regressed(self) -> bool:
        """Whether the diff fails (exit 1): a regressed result, or a run absent from the current set (unless
        only the runs on both sides are compared)."""
        return bool(self.regressions or self.absent_regressions)

    @property
    def absent_regressions(self) -> list[str]:
        """The absent runs that count as regressions: all of them, unless only common runs are compared."""
        return [] if self.common_runs else self.absent

    @property
    def other_changes(self) -> list[Change]:
        return self.other + self.new_results + self.environment


def _verdict(result: Result) -> Verdict:
    try:
        return Verdict(result.verdict)
    except ValueError:
        raise DiffError(f"result {result.framework}/{result.id}: unknown verdict {result.verdict!r}") from None


def _ulp(result: Result) -> float:
    value = result.max_ulp
    if value is None:
        return 0.0
    return math.inf if math.isnan(value) else float(value)


def _run_name(run: Run, single: bool) -> str:
    return run.framework if single else run.path.stem


def _index(runs: list[Run], name: str, single: bool) -> dict[tuple[str, str], Result]:
    index: dict[tuple[str, str], Result] = {}
    where: dict[tuple[str, str], Path] = {}
    for run in runs:
        for result in run.results:
            key = (_run_name(run, single), result.id)
            if key in index:
                raise DiffError(
                    f"{name}: result {key[0]}/{result.id} appears twice ({where[key]} and {run.path})"
                )
            _verdict(result)
            index[key] = result
            where[key] = run.path
    return index


def _labels(runs: list[Run], single: bool) -> dict[str, str]:
    labels: dict[str, set[str]] = defaultdict(set)
    for run in runs:
        labels[_run_name(run, single)].add(run.label)
    return {framework: ", ".join(sorted(names)) for framework, names in labels.items()}


def _classify(before: Result, after: Result, threshold: float) -> str | None:
    """The category of a result in both sets (an attribute name of ``Diff``), or None when unchanged."""
    old, new = _verdict(before), _verdict(after)
    if new.is_problem and not old.is_problem:
        return "new_failures"
    if new is Verdict.UNSUPPORTED and old is not Verdict.UNSUPPORTED:
        return "worse"
    if old is Verdict.UNSUPPORTED and new is not Verdict.UNSUPPORTED:
        return "improvements"  # a problem here was a new failure above
    if RANK[new] != RANK[old]:
        return "worse" if RANK[new] > RANK[old] else "improvements"
    if new is old:
        if _ulp(after) > _ulp(before) + threshold:
            return "ulp_growth"
        if _ulp(after) < _ulp(before) - threshold:
            return "improvements"
    if new is not old or (before.divergence, before.variant) != (after.divergence, after.variant):
        return "other"
    return None


def _numerics(runs: list[Run], single: bool) -> dict[str, dict | None]:
    """Each run's numerics record (None where its environment record has none)."""
    return {_run_name(run, single): run.environment.get("numerics") for run in runs}


def _expected_with_environment(category: str, before: Result, after: Result, baseline_numerics: dict) -> bool:
    """Whether a change of a run whose numerics environment changed is what the expectations say of it (see
    the module's docstring)."""
    if category == "ulp_growth":
        return True
    if category == "worse" and _verdict(before) is Verdict.EXACT and _verdict(after) is Verdict.CONDITIONED:
        return True  # within the conditioning: no failure, and the kernels are the environment's
    if category == "worse" and _verdict(after) is Verdict.KNOWN_DIVERGENCE and after.when:
        try:
            condition = numerics.parse_condition(after.when)
        except numerics.ConditionError as exc:
            raise DiffError(f"result {after.framework}/{after.id}: its `when` {after.when!r}: {exc}") from None
        return not numerics.holds(condition, baseline_numerics)
    return False


def check_threshold(ulp_threshold) -> float:
    """The ULP threshold, if it is a finite number at least 0; else a ``DiffError``: with NaN every growth
    compares false and passes, with inf every growth passes, a negative one calls unchanged results grown."""
    if isinstance(ulp_threshold, bool) or not isinstance(ulp_threshold, (int, float)):
        raise DiffError(f"--ulp-threshold {ulp_threshold!r}: not a number")
    if not math.isfinite(ulp_threshold) or ulp_threshold < 0:
        raise DiffError(
            f"--ulp-threshold {ulp_threshold!r}: must be a finite number of ULPs, 0 or more "
            "(NaN or inf would let every ULP growth pass, a negative threshold flag unchanged results)"
        )
    return float(ulp_threshold)


def _verdict_counts(index: dict[tuple[str, str], Result], run: str) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for (name, _), result in index.items():
        if name == run:
            counts[result.verdict] += 1
    return dict(sorted(counts.items(), key=lambda item: (RANK[Verdict(item[0])], item[0])))


def compare(baseline_runs: list[Run], current_runs: list[Run], ulp_threshold: float = 1.0, common_runs: bool = False) -> Diff:
    """Classify every result of the runs on both sides, and list the runs of one side only (see the
    module's docstring for the categories and ``common_runs``)."""
    ulp_threshold = check_threshold(ulp_threshold)
    single = len(baseline_runs) == 1 and len(current_runs) == 1
    baseline = _index(baseline_runs, "baseline", single)
    current = _index(current_runs, "current", single)
    old_labels, new_labels = _labels(baseline_runs, single), _labels(current_runs, single)
    versions = {fw: (old_labels.get(fw, "-"), new_labels.get(fw, "-")) for fw in sorted({*old_labels, *new_labels})}
    old_numerics, new_numerics = _numerics(baseline_runs, single), _numerics(current_runs, single)
    changed = {
        run: lines
        for run in sorted(old_numerics.keys() & new_numerics.keys())
        if (lines := numerics.changes(old_numerics[run], new_numerics[run]))
    }
    diff = Diff(versions, ulp_threshold, changed, common_runs=common_runs)
    diff.absent = sorted(old_labels.keys() - new_labels.keys())
    diff.new_runs = sorted(new_labels.keys() - old_labels.keys())
    diff.one_side_counts = {run: _verdict_counts(baseline, run) for run in diff.absent} | {
        run: _verdict_counts(current, run) for run in diff.new_runs
    }
    for key in sorted(baseline.keys() | current.keys()):
        before, after = baseline.get(key), current.get(key)
        change = Change(*key, before, after)
        if key[0] in diff.absent:
            continue  # the run is listed once, as absent
        if key[0] in diff.new_runs:  # no baseline to compare with: only its problems are listed
            if not common_runs and _verdict(after).is_problem:
                diff.new_failures.append(change)
            continue
        if after is None:
            category = "disappeared"
        elif before is None:
            category = "new_failures" if _verdict(after).is_problem else "new_results"
        else:
            if after.verdict == Verdict.CONDITIONED.value != before.verdict:
                diff.to_conditioned[before.verdict] = diff.to_conditioned.get(before.verdict, 0) + 1
            category = _classify(before, after, ulp_threshold)
            recorded = old_numerics.get(key[0]) is not None and new_numerics.get(key[0]) is not None
            if category and key[0] in changed and recorded and _expected_with_environment(category, before, after, old_numerics[key[0]]):
                category = "environment"
        if category:
            getattr(diff, category).append(change)
    return diff


def _format(value: float | None) -> str:
    if value is None:
        return "-"
    return repr(value) if not math.isfinite(value) else f"{value:g}"


def _format_ulp(result: Result | None) -> str:
    return "-" if result is None else _format(result.max_ulp)


def _line(change: Change, compact: bool = False) -> str:
    before, after = change.before, change.after
    verdicts = f"{before.verdict if before else '(new)'} → {after.verdict if after else '(gone)'}"
    text = f"- `{change.id}` ({change.framework}): {verdicts}"
    if compact:
        for name in ("divergence", "variant"):
            old, new = (getattr(r, name) if r else "" for r in (before, after))
            if old != new and before and after:
                text += f", {name} {old or '-'} → {new or '-'}"
        return text
    text += f", max ULP {_format_ulp(before)} → {_format_ulp(after)}"
    if after is not None and after.when and after.divergence:
        try:
            condition = numerics.describe_condition(numerics.parse_condition(after.when))
        except numerics.ConditionError:
            condition = repr(after.when)
        text += f", known divergence {after.divergence} (when {condition})"
    if after is not None and after.verdict == Verdict.CONDITIONED.value:
        ratio, condition = _format(after.bound_ratio), _format(after.condition)
        text += f", within its conditioning (bound ratio {ratio}, condition {condition})"
    problems = [r for r in (after, before) if r is not None and _verdict(r).is_problem]
    problem = problems[0] if problems else None
    if problem and problem.message:
        first = problem.message.splitlines()[0]
        text += f": {first[:300]}{'…' if len(first) > 300 else ''}"
    return text


def _moved_order(item: tuple[str, int]) -> tuple:
    """known_divergence, then fail, then the other verdicts by rank and name (each was checked by ``_index``)."""
    verdict = Verdict(item[0])
    return ({Verdict.KNOWN_DIVERGENCE: 0, Verdict.FAIL: 1}.get(verdict, 2), RANK[verdict], verdict.value)


def _counted(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return f"{total} results" + (": " + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) if total else "")


def summary_line(diff: Diff) -> str:
    n = len(diff.regressions) + len(diff.absent_regressions)
    # only where runs are absent or new: the line stays as it was
    absent = f", {len(diff.absent_regressions)} runs absent" if diff.absent_regressions else ""
    text = (
        f"diff: {n} regressions ({len(diff.new_failures)} new failures, {len(diff.worse)} worse, "
        f"{len(diff.ulp_growth)} ULP growth, {len(diff.disappeared)} disappeared{absent}), "
        f"{len(diff.improvements)} improvements, {len(diff.other_changes)} other changes"
    )
    one_side = [f"{len(runs)} {what}" for runs, what in ((diff.absent, "absent"), (diff.new_runs, "new")) if runs]
    if one_side and (diff.common_runs or diff.new_runs):
        text += f"; runs on one side only: {', '.join(one_side)}" + (" (not compared)" if diff.common_runs else "")
    if diff.environment:
        text += f" ({len(diff.environment)} expected with the numerics environment)"
    if diff.to_conditioned:  # only then: the line stays as it was
        moved = {"known_divergence": 0, "fail": 0, **diff.to_conditioned}
        text += f"; {sum(moved.values())} now conditioned (" + ", ".join(
            f"{count} from {verdict}" for verdict, count in sorted(moved.items(), key=_moved_order)
        ) + ")"
    if diff.numerics:
        text += f"; numerics environment changed in {', '.join(diff.numerics)}"
    return text if n else text + "; no regressions"


SECTIONS = (  # (title, Diff attribute, compact line)
    ("New failures", "new_failures", False),
    ("Verdicts that got worse", "worse", False),
    ("ULP errors that grew by more than {threshold:g}", "ulp_growth", False),
    ("Disappeared", "disappeared", False),
    ("Expected with the numerics environment (no regressions)", "environment", False),
    ("Improvements", "improvements", False),
    ("Other changes", "other", True),
    ("New results", "new_results", True),
)


def sections(diff: Diff, listed: int = LISTED, runs=None) -> list[tuple[str, list[str]]]:
    """Each non-empty category: its title with its count, and its lines (at most ``listed``, then a count);
    ``runs``: only the changes of these runs (all where None)."""
    out = []
    for title, name, compact in SECTIONS:
        changes = [c for c in getattr(diff, name) if runs is None or c.framework in runs]
        if not changes:
            continue
        lines = [_line(change, compact) for change in changes[:listed]]
        if len(changes) > listed:
            lines.append(f"- ... and {len(changes) - listed} more")
        out.append((f"{title.format(threshold=diff.ulp_threshold)} ({len(changes)})", lines))
    return out


def markdown(diff: Diff, listed: int = LISTED) -> str:
    """The diff in Markdown: versions; then, per run whose numerics environment changed, what changed and
    every changed result of that run; then each non-empty category of the other runs (at most ``listed``
    items each); then the counts."""
    out = ["## Results diff (baseline → current)", ""]
    out.extend(f"- {framework}: {old} → {new}" for framework, (old, new) in diff.versions.items())
    if diff.absent:
        what = "not compared (--common-runs)" if diff.common_runs else "a regression"
        out += ["", f"### Runs absent from the current set ({len(diff.absent)}): {what}", ""]
        out.extend(
            f"- {run} ({diff.versions[run][0]}): no results file of this run in the current set "
            f"(baseline: {_counted(diff.one_side_counts[run])})"
            for run in diff.absent
        )
    if diff.new_runs:
        what = "not compared (--common-runs)" if diff.common_runs else "their problems are listed as new failures"
        out += ["", f"### Runs new in the current set, with no baseline ({len(diff.new_runs)}): {what}", ""]
        out.extend(f"- {run} ({diff.versions[run][1]}): {_counted(diff.one_side_counts[run])}" for run in diff.new_runs)
    for run, lines in diff.numerics.items():
        out += ["", f"### Numerics environment changed: {run}", "", *(f"- {line}" for line in lines), ""]
        of_run = sections(diff, listed, runs={run})
        out.append(
            f"Every changed result of {run} follows: the expectations (a known divergence's `when:`, the tolerance) "
            "decide which changes the new environment explains; anything else is a regression as usual."
            if of_run
            else f"No result of {run} changed."
        )
        for title, changed in of_run:
            out += ["", f"#### {run}: {title}", "", *changed]
    others = {change.framework for _, name, _ in SECTIONS for change in getattr(diff, name)} - set(diff.numerics)
    for title, lines in sections(diff, listed, runs=others):
        out += ["", f"### {title}", "", *lines]
    out += ["", summary_line(diff)]
    return "\n".join(out) + "\n"


def read_side(path: str, side: str) -> list[Run]:
    """Every results file of one side, read strictly: any problem of any file is a ``ResultsError``."""
    if not Path(path).exists():
        raise ResultsError(f"{side} {path}: no such file or folder")
    if not results_files([path]):
        raise ResultsError(f"{side} {path}: no results files (*.jsonl) in this folder: nothing to compare")
    try:
        return read_runs([path], strict=True)
    except ResultsError as exc:
        message = f"{side} {path}: the diff compares whole, valid results files only:\n{exc}"
        raise ResultsError(message, exc.problems) from None


def main(args) -> int:
    try:
        check_threshold(args.ulp_threshold)
    except DiffError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sides, errors = [], []
    for side, path in (("baseline", args.baseline), ("current", args.current)):
        try:
            sides.append(read_side(path, side))
        except ResultsError as exc:  # both sides read first: every damaged file is named at once
            errors.append(str(exc))
    if errors:
        print("\n".join(f"error: {error}" for error in errors), file=sys.stderr)
        return EXIT_USAGE
    try:
        diff = compare(*sides, args.ulp_threshold, common_runs=getattr(args, "common_runs", False))
        text = markdown(diff)
        if args.out:
            write_atomically(args.out, text)
    except (ResultsError, DiffError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(text, end="")
    return EXIT_REGRESSION if diff.regressed else 0
