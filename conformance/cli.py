"""bce-conformance: binary cross-entropy checked against an exact reference, framework by framework.

Commands: run, sweep, validate, explain, summary, report, diff and baseline; python -m conformance COMMAND --help for each.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import signal
import sys
import time
from pathlib import Path

import mpmath
import numpy as np

from conformance import __version__, devices, outputs
from conformance import divergences as divergence_list
from conformance.adapters import BUILTIN, ENTRY_POINT_GROUP, FrameworkUnavailable
from conformance.cases import CaseError, find_case, load, load_file
from conformance.dtypes import get_format, round_to_format, to_hex
from conformance.environment import describe as describe_environment
from conformance.environment import header as environment_header
from conformance.isolation import executor
from conformance.outputs import OutputError, check_name
from conformance.progress import MODES as PROGRESS_MODES
from conformance.progress import Progress, ProgressError
from conformance.reference import FORMULA_OF_OP, ReferenceError
from conformance.results import (
    ResultsError,
    environment_line,
    read_run,
    results_files,
    write_atomically,
)
from conformance.runner import DEFAULT_TIMEOUT, ExactValues, ExpectationError, parse_timeout, plan
from conformance.summary import failure_text, summary_markdown
from conformance.verdicts import Verdict

DEFAULT_CASES = os.environ.get("CONFORMANCE_CASES", "cases")
# one convention for every command (EXIT_STATUSES, in each --help and the README)
EXIT_PROBLEMS = 1  # a check failed, a known divergence is stale, too few results; diff: a regression
EXIT_USAGE = 2  # usage and input errors: a bad option, a missing path, a bad case or results file, an unknown id
EXIT_INTERRUPTED = 130  # Ctrl-C: the shell's status for SIGINT; the previous results are untouched
EXIT_STATUSES = """\
exit status, every command:
  0    done, and nothing failed
  1    a check failed (a fail, error or unexpected pass; a stale known divergence; fewer results than
       --min-results), or diff found a regression
  2    a usage or input error: a bad option, a missing path, a bad case, catalogue or results file,
       an unknown case id or framework, a broken adapter, a -k that selects nothing, an output
       folder that cannot be written
  130  run was interrupted (Ctrl-C); its previous results are untouched
"""


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_run(args) -> int:
    try:
        run_plan = plan(
            args.framework, args.cases, args.divergences, adapter=args.adapter, timeout=args.timeout, device=args.device
        )
        name = check_name(args.name or run_plan.framework.name)
        selected = select(run_plan.checks, args.select)
        progress = Progress(selected, args.progress)
    except (CaseError, FrameworkUnavailable, OutputError, SelectionError, ProgressError) as exc:
        return _fail(str(exc))
    environment = describe_environment(run_plan.framework, run_plan.numerics, off_cpu=bool(run_plan.runner.device))
    print(run_plan.header(), flush=True)
    if len(selected) < len(run_plan.checks):
        print(f"selected: {len(selected)} of {len(run_plan.checks)} checks (-k {args.select!r})", flush=True)
    print(f"environment: {environment_header(environment)}", flush=True)
    try:
        with outputs.locked(args.out, name) as out:
            return _run_locked(run_plan, selected, progress, environment, out, name, args)
    except OutputError as exc:
        return _fail(str(exc))
    except OSError as exc:  # a full disk or a folder made unwritable mid-run: the complete results are the last run's
        return _fail(f"cannot write the results to {args.out}: {exc}; the previous complete results are untouched")


class SelectionError(Exception):
    """A ``-k`` expression that cannot be read, or that selects no check."""


def select(checks: list, expression: str | None) -> list:
    """The checks whose id ``expression`` selects, in pytest's ``-k`` language (pytest's own parser:
    ``and``, ``or``, ``not``, parentheses; a word selects the ids it is a case-insensitive substring of),
    so that ``run -k`` and the pytest suite's ``-k`` select the same checks. No expression (or an empty
    one, as pytest reads it): every check. ``SelectionError`` for a malformed expression or one that
    selects nothing: no checks run must never look like a run that passed."""
    if not expression:
        return list(checks)
    from _pytest.mark import expression as pytest_expression

    malformed = (SyntaxError, getattr(pytest_expression, "ParseError", SyntaxError))  # pytest 8's ParseError, 9's SyntaxError
    try:
        compiled = pytest_expression.Expression.compile(expression)
    except malformed as exc:
        raise SelectionError(f"-k {expression!r}: {getattr(exc, 'msg', None) or exc}") from None

    def matcher(check_id: str):
        def matches(word: str, /, **arguments) -> bool:
            if arguments:
                raise SelectionError(f"-k {expression!r}: {word}(...): a -k word takes no arguments")
            return word.lower() in check_id

        return matches

    chosen = [check for check in checks if compiled.evaluate(matcher(check.id.lower()))]
    if not chosen:
        raise SelectionError(f"-k {expression!r} selects none of the {len(checks)} checks; nothing was run")
    return chosen


def _run_locked(run_plan, selected: list, progress: Progress, environment, out: Path, name: str, args) -> int:
    """The run of the ``selected`` checks, holding the lock of ``out/name.*``: results stream to
    ``name.jsonl.partial``; the results, summary and timing replace the previous ones together once
    every selected check has a result. An interrupted run leaves the previous files as they were and
    a partial summary. Progress goes to stderr (conformance.progress), never into a file or stdout."""
    files = outputs.RunFiles(out, name, environment, len(selected))
    results = []
    progress.start()
    try:
        with executor(run_plan) as execute:
            for check in selected:
                began = time.monotonic()
                result = execute(check)
                files.write(result, time.monotonic() - began)
                results.append(result)
                progress.done(check)
                if Verdict(result.verdict).is_problem:
                    progress.print(failure_text(result))
    except KeyboardInterrupt:
        progress.finish()
        print(f"INTERRUPTED: {files.stopped(results, 'it was interrupted (Ctrl-C)')}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
    summary = summary_markdown(results)
    path = files.commit(results, summary)
    print(summary)
    status = 0
    problems = [r for r in results if Verdict(r.verdict).is_problem]
    if problems:
        print(f"FAILED: {len(problems)} of {len(results)} results are problems (fail, unexpected pass or error)")
        status = EXIT_PROBLEMS
    if len(selected) == len(run_plan.checks):  # a whole run judges the catalogue: a part cannot tell a stale entry
        for problem in run_plan.catalogue_problems(results):
            print(f"FAILED: {problem}")
            status = EXIT_PROBLEMS
    else:
        print(f"note: the known divergences are judged stale or not on a whole run only; -k ran {len(selected)} of {len(run_plan.checks)} checks")
    if len(results) < args.min_results:
        print(f"FAILED: {len(results)} results, fewer than the floor of {args.min_results}")
        status = EXIT_PROBLEMS
    print(f"{len(results)} results written to {path}", flush=True)
    progress.finish()
    return status


def cmd_validate(args) -> int:
    """0 when the case files (their `expect` literals included) and the catalogues are valid; 2 otherwise: a
    wrong case file is an input error, as a run's unreadable case file is."""
    try:
        cases = load(args.paths)
    except CaseError as exc:
        print(exc, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    catalogue_problems, entries = [], 0  # the built-in known-divergence catalogues, and any given, against their schema
    readers = [(divergence_list.builtin, name) for name in divergence_list.builtin_files()]
    for read, name in readers + [(divergence_list.read_file, path) for path in args.divergences]:
        try:
            entries += len(read(name))
        except CaseError as exc:
            catalogue_problems += exc.problems
    if catalogue_problems:
        print("\n".join(map(str, catalogue_problems)), file=sys.stderr)
        print(f"{len(catalogue_problems)} problem(s)", file=sys.stderr)
        return EXIT_USAGE
    exact_values = ExactValues()
    problems = []
    for case in cases:  # the `expect` literals are checked against the reference
        for dtype in case.dtypes:
            for reduction in case.expected(dtype):
                for op in {FORMULA_OF_OP[op]: op for op in case.ops}.values():
                    try:
                        exact_values.reference(case, op, get_format(dtype), reduction)
                    except ExpectationError as exc:  # located already: file:line, case, field
                        problems.append(str(exc))
                    except ReferenceError as exc:
                        problems.append(f"{case.file}:{case.line}: case {case.id!r} field 'expect': {dtype}: {exc}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_USAGE
    print(f"OK: {len(cases)} cases in {len({c.file for c in cases})} files; {entries} known divergences in {len(readers) + len(args.divergences)} catalogues")
    return 0


def _case_suggestions(spec: str, shown: int = 5) -> str:
    """``; did you mean: FILE::ID, ...`` for a ``FILE::ID`` whose id is not in FILE: the ids nearest it
    (difflib's ratio), or, with none near, FILE's first ids; and FILE's ids for a spec without ``::``."""
    file_part, sep, case_id = spec.rpartition("::")
    if not sep:
        file_part, case_id = spec, ""
    try:
        ids = [case.id for case in load_file(file_part)]
    except CaseError:  # no such file, or a bad one: the error already says so
        return ""
    if not ids or case_id in ids:
        return ""
    near = difflib.get_close_matches(case_id, ids, n=shown, cutoff=0.6) if case_id else []
    listed = near or ids[:shown]
    more = "" if near or len(ids) <= shown else f" (and {len(ids) - shown} more)"
    lead = "did you mean" if near else f"its {len(ids)} case{'s' if len(ids) != 1 else ''} include" if more else "its cases"
    return f"; {lead}: {', '.join(f'{file_part}::{i}' for i in listed)}{more}"


def _decimal(value) -> str:
    return mpmath.nstr(value, 25, min_fixed=-6, max_fixed=10) if mpmath.isfinite(value) else str(value)


def cmd_explain(args) -> int:
    """A case's cast inputs and exact values per dtype. A generated tensor (or a product's grid) is
    shown as what its generator expands to, its range and its first and last values; the `none`
    results of such a case at its first and last few elements, and its mean and sum up to a size."""
    from conformance.generators import summary
    from conformance.reference import reference

    shown, reduced_up_to = 4, 1024
    try:
        case = find_case(args.case)
    except CaseError as exc:
        return _fail(f"{exc}{_case_suggestions(args.case)}")
    exact_values = ExactValues()
    print(f"{case.full_name} ({case.file}:{case.line}): {case.why}")
    print(f"kind: {case.kind}; ops: {', '.join(case.ops)}; shape: {case.shape}")
    big = bool(case.generated) or case.product
    size = int(np.prod(case.shape))
    if case.product:
        print(f"product: every {case.kind} value ({case.shape[0]}) against every target ({case.shape[1]})")

    def tensor_lines(name: str, values: np.ndarray) -> list[str]:
        if name not in case.generated and not (case.product and name in (case.kind, "target")):
            return [f"  {name}: {[to_hex(v) for v in np.asarray(values, dtype=np.float64).ravel()]}"]
        along = ""
        if case.product and name == case.kind:
            values, along = values[:, 0], f" (each against every target: shape {case.shape})"
        elif case.product and name == "target":
            values, along = values[0, :], f" (each against every {case.kind} value: shape {case.shape})"
        lines = summary(values, shown)
        if name not in case.generated and len(lines) == 2 and lines[1].startswith("values:"):
            return [f"  {name}: {lines[1].split(': ', 1)[1]}{along}"]  # a product's short literal target
        head = f"{case.generated[name].description} → " if name in case.generated else ""
        return [f"  {name}: {head}{lines[0]}{along}"] + [f"    {line}" for line in lines[1:]]

    def sample(inputs: dict) -> tuple[dict, list[tuple]]:  # the first and last few elements, flat order
        flat = sorted(set(range(min(shown, size))) | set(range(max(size - shown, 0), size)))
        picked = {
            key: np.broadcast_to(array, case.shape).reshape(-1)[flat] if key in case.values else array
            for key, array in inputs.items()
        }
        return picked, [np.unravel_index(i, case.shape) for i in flat]

    for dtype in case.dtypes:
        fmt = get_format(dtype)
        print(f"\n== {dtype}")
        inputs = exact_values.inputs(case, fmt)
        for name, values in inputs.items():
            for line in tensor_lines(name, values):
                print(line)
        for formula, op in {FORMULA_OF_OP[op]: op for op in case.ops}.items():
            for reduction in case.reductions:
                sampled = big and reduction == "none" and size > 2 * shown
                if big and reduction != "none" and size > reduced_up_to:
                    print(f"  {formula} {reduction}: over {size} elements, not computed here (explain stops at {reduced_up_to})")
                    continue
                try:
                    if sampled:
                        picked, indices = sample(inputs)
                        value = reference(formula, picked, "none", fmt)
                    else:
                        value = exact_values.reference(case, op, fmt, reduction)
                except (ExpectationError, ReferenceError) as exc:
                    print(f"  {formula} {reduction}: {exc}")
                    continue
                ops = ", ".join(o for o in case.ops if FORMULA_OF_OP[o] == formula)
                if sampled:
                    print(f"  {formula} ({ops}) {reduction}: {size} elements; the first and last {shown}:")
                    items = list(zip(indices, value.exact))
                else:
                    print(f"  {formula} ({ops}) {reduction}:")
                    items = list(np.ndenumerate(value.exact))
                for position, (index, exact) in enumerate(items):
                    if sampled and position == shown:
                        print("    ...")
                    rounded = round_to_format(exact, fmt) if not mpmath.isnan(exact) else float("nan")
                    where = f"[{', '.join(map(str, index))}] " if index else ""
                    print(f"    {where}exact {_decimal(exact)}  ->  {dtype} {to_hex(rounded)} ({rounded!r})")
    return 0


def cmd_summary(args) -> int:
    """The summary of every record that can be read (a lenient read: a run cut short is still worth a look),
    but an incomplete or damaged file is said so, on stderr and atop the Markdown, and exits 2: a summary of
    part of a run must not pass for one of the whole run."""
    files = results_files(args.results)
    if not files:
        return _fail(f"no results files (*.jsonl) in {', '.join(args.results)}")
    try:
        runs = [read_run(f) for f in files]
    except ResultsError as exc:
        return _fail(str(exc))
    incomplete = [run for run in runs if run.problems]
    for run in incomplete:
        print(f"warning: {run.path}: incomplete or damaged; summarised as far as it can be read:", file=sys.stderr)
        for problem in run.problems:
            print(f"  {problem}", file=sys.stderr)
    results = [r for run in runs for r in run.results]
    text = summary_markdown(results)
    if incomplete:
        names = ", ".join(f"`{run.path}`" for run in incomplete)
        text = (
            f"> **Incomplete results**: {names} cannot be read whole (see the warnings of `python -m conformance "
            f"summary`); this summary is of the records that could be read.\n\n{text}"
        )
    if args.out:
        write_atomically(args.out, text)
    print(text)
    problems = sum(Verdict(r.verdict).is_problem for r in results)
    print(f"{len(results)} results from {len(files)} files; {problems} problems")
    if incomplete:
        print(f"INCOMPLETE: {len(incomplete)} of {len(files)} results files are incomplete or damaged (see the warnings)")
        return EXIT_USAGE
    return EXIT_PROBLEMS if problems else 0


def cmd_report(args) -> int:
    from conformance.report import main as report_main  # matplotlib is imported only when a report is made

    return report_main(args)


def cmd_baseline(args) -> int:
    """Rewrites the baseline folder from a results folder: each results file (read back whole) with its
    records less their sweep ``elements`` (the report's plot data, 85 % of a results file's bytes, which
    the diff never reads), baseline files with no results file removed."""
    files = results_files([args.results])
    if not files:
        return _fail(f"no results files (*.jsonl) in {args.results}")
    runs, errors = [], []
    for path in files:  # every file read, strictly, before any baseline is written: all or nothing
        try:
            runs.append(read_run(path, strict=True))
        except ResultsError as exc:
            errors.append(str(exc))
        else:
            if not runs[-1].environment:
                errors.append(f"{path}: its header has an empty environment record")
    if errors:
        return _fail("\n".join(errors) + "\nnot a whole run: rerun it before making it a baseline; no baseline was changed")
    baselines = Path(args.baselines)
    for run in runs:
        lines = [environment_line(run.environment, run.planned)]
        lines += [dataclasses.replace(r, elements=None).to_json() for r in run.results]
        write_atomically(baselines / run.path.name, "\n".join(lines) + "\n")
        print(f"{baselines / run.path.name}: {run.label}, {len(run.results)} results")
    for stale in sorted(set(baselines.glob("*.jsonl")) - {baselines / f.name for f in files}):
        stale.unlink()
        print(f"{stale}: removed (no results file of that name)")
    return 0


def cmd_sweep(args) -> int:
    from conformance import sweep

    try:
        start, stop, step = sweep.parse_bits(args.bits)
        spec = sweep.Spec(
            framework=args.framework,
            start=start,
            stop=stop,
            step=step,
            targets=sweep.parse_targets(args.targets),
            apis=tuple(args.api),
            quantities=tuple(dict.fromkeys(args.quantities)),
        )
        name = check_name(args.name or f"sweep-float32-{args.framework}")
        framework, _ = sweep.loaded(spec.framework)
        apis = sweep.selected_apis(framework, spec.apis)  # an unknown --api is an error before any output
        with outputs.locked(args.out, name) as out:
            print(
                f"sweep: {args.framework}, float32 bit patterns {spec.bits_text()} ({spec.count} patterns), "
                f"targets {', '.join(f'{t:g}' for t in spec.targets)}, {', '.join(spec.quantities)}; "
                f"APIs: {', '.join(api.name for api in apis)}",
                flush=True,
            )
            started = time.monotonic()
            chunk = sweep.CHUNK if args.chunk is None else args.chunk
            path = sweep.sweep(spec, out, name, chunk, args.workers, args.scheduler, args.progress)
    except (sweep.SweepError, FrameworkUnavailable, OutputError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"cannot write the sweep to {args.out}: {exc}; the finished chunks on disk are kept")
    except KeyboardInterrupt:
        print("interrupted: the finished chunks are on disk; the same command resumes from them", file=sys.stderr)
        return EXIT_INTERRUPTED
    results = read_run(path).results
    print(f"{len(results)} results in {time.monotonic() - started:.1f} s: {path}")
    for result in results:
        figure = f"max {result.max_ulp:.3g} ULP" if result.max_ulp is not None else result.message
        print(f"  {result.case} {result.api} {result.quantity}: {result.verdict}, {figure}")
    failed = [r for r in results if r.verdict in (Verdict.FAIL.value, Verdict.ERROR.value)]
    return EXIT_PROBLEMS if failed else 0


def cmd_diff(args) -> int:
    from conformance.diff import main as diff_main

    return diff_main(args)


def _timeout(text: str) -> float:
    try:
        return parse_timeout(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number ≥ 0")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m conformance", description=__doc__, epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    top.add_argument("--version", action="version", version=f"bce-conformance {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = {"epilog": EXIT_STATUSES, "formatter_class": argparse.RawDescriptionHelpFormatter}

    run = sub.add_parser("run", help="run the cases through one framework's APIs and write the results", **common)
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--framework",
        help=f"one of: {', '.join(BUILTIN)}, or an installed adapter's name (entry point group {ENTRY_POINT_GROUP})",
    )
    which.add_argument(
        "--adapter",
        metavar="MODULE:OBJECT",
        help="a third-party adapter instead: module:object or path/to/file.py:object, object a zero-argument "
        "callable returning a conformance.adapters.Framework (see docs/adapters.md)",
    )
    run.add_argument(
        "--device",
        default=devices.from_environment(),
        help="where the framework computes (env CONFORMANCE_DEVICE; default cpu): torch cuda[:N], JAX gpu[:N], "
        "TensorFlow GPU:N; a device that is not there is an error naming those that are",
    )
    run.add_argument("--cases", nargs="+", default=[DEFAULT_CASES], help="case files or folders (default: cases)")
    run.add_argument("--out", default="results", help="folder for <framework>.jsonl and .summary.md (default: results)")
    run.add_argument("--name", help="the results files' name: <name>.jsonl (default: the framework's name)")
    run.add_argument("--divergences", nargs="*", default=[], help="extra known-divergence files")
    run.add_argument("--min-results", type=_count, default=1, help="fail when fewer results than this (default 1)")
    run.add_argument(
        "--timeout",
        type=_timeout,
        default=os.environ.get("CONFORMANCE_TIMEOUT", str(DEFAULT_TIMEOUT)),  # a string: argparse checks it like a given one
        metavar="SECONDS",
        help=f"time limit of each framework call; past it the check is an error (env CONFORMANCE_TIMEOUT; "
        f"default {DEFAULT_TIMEOUT:g}; 0: no limit)",
    )
    run.add_argument(
        "-k",
        "--select",
        metavar="EXPRESSION",
        help="run only the checks whose id the expression selects, as pytest's -k does: words (each a case-insensitive "
        "substring of the id), and, or, not, parentheses; e.g. -k 'blog-3x3 and float32 and not grad'; the known "
        "divergences are judged stale or not on a whole run only; selecting nothing is exit 2",
    )
    run.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="progress on stderr: a bar (tqdm) with a line per case file, or the lines alone; then the elapsed time "
        "(default auto: the bar on a terminal, the lines otherwise)",
    )
    run.set_defaults(func=cmd_run)

    sweep = sub.add_parser(
        "sweep",
        help="every finite float32 logit (or --bits' slice) against targets 0 and 1 through one framework's fused "
        "and two-step APIs, judged per element; results that report, summary and diff read",
        **common,
    )
    sweep.add_argument("--framework", required=True, help=f"one of: {', '.join(BUILTIN)}, or an installed adapter's name")
    sweep.add_argument(
        "--bits",
        default="0:0x100000000",
        metavar="START:STOP[:STEP]",
        help="the float32 bit patterns swept, as a Python slice (decimal or 0x hex; non-finite patterns left out); "
        "default every pattern; e.g. ::1024 for 4 M patterns across every binade",
    )
    sweep.add_argument("--targets", default="0,1", help="comma-separated, of 0, 1 and 0.5 (default 0,1)")
    sweep.add_argument(
        "--api", action="append", default=[], help="one API by name (repeatable; default every fused and two-step API)"
    )
    sweep.add_argument(
        "--quantities", nargs="+", choices=("value", "grad"), default=["value", "grad"], help="default: value grad"
    )
    sweep.add_argument("--chunk", type=_count, default=None, help="patterns per chunk (default 2^24)")
    sweep.add_argument(
        "--workers",
        type=_count,
        default=None,
        help="Dask LocalCluster worker processes (default one per core; 0: in this process, no Dask)",
    )
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="run the chunks on the Dask cluster at this address")
    sweep.add_argument("--out", default="results", help="folder for <name>.jsonl and <name>.chunks/ (default: results)")
    sweep.add_argument("--name", help="the results file's name (default: sweep-float32-<framework>)")
    sweep.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="a tqdm bar with its ETA on a terminal, one line per chunk otherwise (default auto)",
    )
    sweep.set_defaults(func=cmd_sweep)

    validate = sub.add_parser(
        "validate",
        help="check case files, and their `expect` values against the reference, and the known-divergence catalogues",
        **common,
    )
    validate.add_argument("paths", nargs="+")
    validate.add_argument(
        "--divergences", action="append", default=[], help="a known-divergence file to check besides the built-in ones; repeatable"
    )
    validate.set_defaults(func=cmd_validate)

    explain = sub.add_parser("explain", help="print a case's cast inputs and exact reference values per dtype", **common)
    explain.add_argument("case", metavar="FILE::ID")
    explain.set_defaults(func=cmd_explain)

    summary = sub.add_parser("summary", help="summarize results files (or folders of them) in Markdown", **common)
    summary.add_argument("results", nargs="+")
    summary.add_argument("--out", help="also write the Markdown to this file")
    summary.set_defaults(func=cmd_summary)

    report = sub.add_parser(
        "report", help="combine results files into summary.md, report.html (with plots) and junit.xml", **common
    )
    report.add_argument("results", nargs="+", help="results files (.jsonl) or folders of them")
    report.add_argument("--out", default="results", help="folder for summary.md, report.html, junit.xml (default: results)")
    report.add_argument(
        "--against",
        metavar="BASELINE",
        help="baseline results (a file or folder, as for diff): the report shows the regression gate's diff against "
        "them (the exit status stays the report's: diff is the gate)",
    )
    report.set_defaults(func=cmd_report)

    diff = sub.add_parser(
        "diff", help="compare a results set with a baseline; exits 1 on any regression", **common
    )
    diff.add_argument("baseline", help="baseline results file or folder")
    diff.add_argument("current", help="current results file or folder")
    diff.add_argument(
        "--ulp-threshold", type=float, default=1.0,
        help="an unchanged verdict whose max ULP error grew by more than this is a regression (default 1)",
    )
    diff.add_argument("--out", help="also write the Markdown diff to this file")
    diff.add_argument(
        "--common-runs", action="store_true",
        help="compare only the runs present on both sides; a run on one side only is listed, not a regression "
        "(to diff one framework's results against a whole baseline folder; the gate leaves it off)",
    )
    diff.set_defaults(func=cmd_diff)

    baseline = sub.add_parser(
        "baseline", help="rewrite a baseline folder from a results folder (tox -m baseline)", **common
    )
    baseline.add_argument("results", help="the results folder")
    baseline.add_argument("baselines", help="the baseline folder, e.g. baselines")
    baseline.set_defaults(func=cmd_baseline)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # as the command line (argv from sys.argv), `... | head` ends quietly; not `run`, which writes to its
    # checks' worker and must see a dead one as an error, not die of SIGPIPE; nor a caller's process
    if argv is None and args.command != "run":
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    return args.func(args)
