"""Fault injection: SIGKILL runs and reports at random moments, then check that nothing was lost or mixed.

    python tests/fault_injection.py [--kills 20] [--seed 0] [--work DIR]

Each round starts ``python -m conformance run`` (the ``rounded`` subject on cases/seed.yaml) or
``python -m conformance report`` into a folder that already holds a complete set, kills the whole
process group (the run and its checks' worker) after a random delay within the command's measured
duration, and checks the invariants:

1. the complete files are exactly those of a complete run (``rounded.jsonl``, ``rounded.summary.md``),
   whether the killed run had got to replace them or not: never a half or mixed set;
2. the killed run's ``.partial`` file, when there is one, is its header (with the planned count) and
   a prefix of the complete run's records, at most its last line cut short;
3. the report's three files (``summary.md``, ``report.html``, ``junit.xml``) are all of one report, the
   old or the new, once the next writer has taken the folder (``conformance.outputs.locked``);
4. after that, no staging file or journal is left.

It exits 1 on the first broken invariant, naming it; the project's own tests run a few rounds of it
(tests/test_outputs.py).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from conformance import outputs
from conformance.results import read_run

CASES = REPO / "cases" / "seed.yaml"
RUN_FILES = ("rounded.jsonl", "rounded.summary.md")
REPORT_FILES = ("summary.md", "report.html", "junit.xml")


def run_command(out: Path, name: str = "rounded") -> list[str]:
    return [sys.executable, "-m", "conformance", "run", "--framework", "rounded", "--cases", str(CASES), "--out", str(out), "--name", name]


def report_command(results: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "conformance", "report", str(results), "--out", str(out)]


def complete(command: list[str]) -> float:
    """Runs ``command`` to its end; its duration."""
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "MPLBACKEND": "Agg"})
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.monotonic() - started


def killed(command: list[str], delay: float) -> int | None:
    """Starts ``command`` in a process group of its own and SIGKILLs the group after ``delay`` seconds;
    its exit status if it ended first."""
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, "MPLBACKEND": "Agg"}
    )
    try:
        return process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None
    finally:
        try:  # (the run's checks' worker, in a session of its own, dies with the run: PR_SET_PDEATHSIG)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def snapshot(folder: Path, names) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names if (folder / name).exists()}


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"invariant broken: {what}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="rounds (default 20), half of them runs, half reports")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", help="working folder (default: a temporary one, removed at the end)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="fault-injection-"))
    try:
        return rounds(work, args.kills, rng)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def rounds(work: Path, kills: int, rng: random.Random) -> int:
    reference, results, other = work / "reference", work / "results", work / "other"
    run_seconds = complete(run_command(reference))
    complete(run_command(other))
    complete(run_command(other, "second"))  # the new report's input: two runs
    want_run = snapshot(reference, RUN_FILES)
    old_report, new_report = work / "old-report", work / "new-report"
    report_seconds = complete(report_command(reference / "rounded.jsonl", old_report))
    complete(report_command(other, new_report))
    generations = [snapshot(old_report, REPORT_FILES), snapshot(new_report, REPORT_FILES)]
    check(generations[0] != generations[1], "the two reports differ")
    print(f"complete run {run_seconds:.1f} s, report {report_seconds:.1f} s; {kills} kills")
    shutil.copytree(reference, results)
    reports = work / "reports"
    shutil.copytree(old_report, reports)
    outcome = {"killed": 0, "finished": 0}
    for round_ in range(kills):
        if round_ % 2 == 0:  # a rerun into a folder with a complete set
            delay = rng.uniform(0, run_seconds * 1.1)
            status = killed(run_command(results), delay)
            with outputs.locked(results, "rounded"):  # the next writer's first step: a cut-off commit rolled forward
                pass
            check(snapshot(results, RUN_FILES) == want_run, f"round {round_}: the complete set changed (killed at {delay:.2f} s)")
            partial = results / "rounded.jsonl.partial"
            if partial.exists():
                run = read_run(partial)
                want_ids = [r.id for r in read_run(reference / "rounded.jsonl").results]
                check([r.id for r in run.results] == want_ids[: len(run.results)], f"round {round_}: the partial file is no prefix")
                check(run.truncated <= 1, f"round {round_}: {run.truncated} lines cut short")
        else:  # a new report over an old one
            delay = rng.uniform(0, report_seconds * 1.1)
            status = killed(report_command(other, reports), delay)
            with outputs.locked(reports, "report"):
                pass
            got = snapshot(reports, REPORT_FILES)
            check(got in generations, f"round {round_}: the report's files are a mix of two reports (killed at {delay:.2f} s)")
            if got == generations[1]:  # back to the old one for the next round
                shutil.rmtree(reports)
                shutil.copytree(old_report, reports)
        for folder in (results, reports):
            left = [p.name for p in folder.iterdir() if p.name.endswith((".new", ".commit", ".tmp", ".lock"))]
            check(not left, f"round {round_}: left behind in {folder}: {left}")
        outcome["killed" if status is None else "finished"] += 1
    print(f"OK: {outcome['killed']} killed, {outcome['finished']} finished before the kill; every invariant held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
