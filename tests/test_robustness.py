"""Robustness of a conformance run: it fails closed. Results are written as produced and the complete set
replaced whole (a run killed or interrupted at any moment keeps the previous one), a framework call that
crashes, exits or hangs its process (even holding the GIL) is that check's error and no other's, an API's
SystemExit / KeyboardInterrupt / leftover child processes are its check's error, every selected check is
accounted for, two runs into one folder are refused, the same bytes from a serial and a parallel run,
and the floor on the number of checks run.

Each run is a pytest subprocess with a small third-party adapter (``trap``, written to tmp_path): NumPy's
stable formula, except on the case ``trap/trap`` (logits 7), where it does what ``ROBUST_TRAP`` says, and
on ``trap/trap2`` (logits 8), what ``ROBUST_TRAP2`` says, and so on to ``trap/trap6`` (logits 12).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conformance.results import read_run
from conformance.runner import CallTimeout, Runner, time_limit

pytestmark = pytest.mark.processes  # real processes killed, crashed, hung: not run again under other numerics

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
TRAP_CHECK = "trap/trap-trap.bce_with_logits-float64-sum"
TRAP2_CHECK = "trap/trap2-trap.bce_with_logits-float64-sum"
TRAP_CHECKS = [TRAP_CHECK, TRAP2_CHECK] + [f"trap/trap{n}-trap.bce_with_logits-float64-sum" for n in range(3, 7)]

ADAPTER = """
import ctypes, dataclasses, os, signal, subprocess, time
import numpy as np
from conformance.adapters import Framework
from conformance.adapters.rounded import load as load_rounded


def trap(inputs, reduction):
    logits = np.asarray(inputs["logits"], dtype=np.float64)
    what = ""
    for logit, variable in zip((7.0, 8.0, 9.0, 10.0, 11.0, 12.0), ("ROBUST_TRAP", "ROBUST_TRAP2", "ROBUST_TRAP3", "ROBUST_TRAP4", "ROBUST_TRAP5", "ROBUST_TRAP6")):
        if reduction == "sum" and logit in logits:  # the cases trap/trap, trap/trap2, ..., trap/trap6
            what = os.environ.get(variable, "")
    if reduction == "sum" and os.environ.get("ROBUST_TRAP_EVERY_SUM"):  # every call with sum
        what = os.environ["ROBUST_TRAP_EVERY_SUM"]
    if what:
        if what and os.environ.get("ROBUST_MARK"):
            open(os.environ["ROBUST_MARK"], "w").close()
        if what == "sleep":
            time.sleep(100)
        elif what == "block":  # a hang SIGALRM cannot end, as in C code that never returns to Python
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(100)
        elif what == "segv":
            ctypes.string_at(0)
        elif what == "abort":
            os.abort()
        elif what == "gil":  # C code holding the GIL (sum's loop never checks for signals): no handler or thread runs
            sum(range(10**13))
        elif what == "exit":
            raise SystemExit(0)
        elif what == "interrupt":
            raise KeyboardInterrupt
        elif what == "os_exit":
            os._exit(0)
        elif what == "orphan":  # a child left running, and a grandchild its parent leaves behind
            subprocess.Popen(["sleep", "100"])
            subprocess.Popen(["sh", "-c", "sleep 100 &"])
        elif what == "string":
            return "0.25"


def load():
    stable = next(a for a in load_rounded().apis if a.name == "rounded.stable_bce_with_logits")

    def call(inputs, reduction):
        returned = trap(inputs, reduction)
        return returned if returned is not None else stable.call(inputs, reduction)

    api = dataclasses.replace(stable, name="trap.bce_with_logits", framework="trap", call=call)
    return Framework("trap", {"numpy": np.__version__}, [api])
"""

CASES = """\
schema_version: 1
description: small cases, all but the first and third the adapter's traps (their only check is the sum)
defaults: {dtypes: [float64], reductions: [none, mean, sum]}
cases:
  - {id: before, why: runs before the trap, logits: [1.0, -2.0, 0.5], target: [0, 1, 1]}
  - {id: trap, why: the adapter's trap, logits: [7.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: after, why: runs after the trap, logits: [3.0, -0.25], target: [1, 0]}
  - {id: trap2, why: the adapter's second trap, logits: [8.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: trap3, why: the adapter's third trap, logits: [9.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: trap4, why: the adapter's fourth trap, logits: [10.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: trap5, why: the adapter's fifth trap, logits: [11.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: trap6, why: the adapter's sixth trap, logits: [12.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (
        "CONFORMANCE_FRAMEWORK",
        "CONFORMANCE_ADAPTER",
        "CONFORMANCE_CASES",
        "CONFORMANCE_OUT",
        "CONFORMANCE_MIN_TESTS",
        "CONFORMANCE_TIMEOUT",
        "CONFORMANCE_NAME",
        "PYTEST_ADDOPTS",
        "ROBUST_TRAP",
        "ROBUST_TRAP2",
        "ROBUST_TRAP3",
        "ROBUST_TRAP4",
        "ROBUST_TRAP5",
        "ROBUST_TRAP6",
        "ROBUST_TRAP_EVERY_SUM",
        "ROBUST_MARK",
        "CONFORMANCE_ISOLATION",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def trap(tmp_path_factory) -> list[str]:
    """The arguments of a run with the trap adapter on the four cases."""
    folder = tmp_path_factory.mktemp("trap")
    (folder / "trap_adapter.py").write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    (folder / "trap.yaml").write_text(CASES, encoding="utf-8")
    return ["--adapter", f"{folder / 'trap_adapter.py'}:load", "--conformance-cases", str(folder / "trap.yaml")]


def command(*args) -> list[str]:
    return [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "-q", *args]


def run(tmp_path, *args, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A pytest subprocess (the environment, PYTHONPATH included, inherited)."""
    return subprocess.run(
        command(*args),
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def records(path: Path) -> dict[str, dict]:
    """The result records by check id (the environment line left out)."""
    out = {}
    for record in map(json.loads, lines(path)):
        if "format" not in record:
            suffix = "" if record["quantity"] == "value" else f"-{record['quantity']}"
            out[f"{record['case']}-{record['api']}-{record['dtype']}-{record['reduction']}{suffix}"] = record
    return out


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, trap) -> Path:
    """The results file of a run without the traps (ROBUST_TRAP, ROBUST_TRAP2 unset)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ROBUST_", "CONFORMANCE_")) and k != "PYTEST_ADDOPTS"
    }
    done = subprocess.run(
        command(*trap, "--conformance-out", str(out)),
        cwd=tmp_path_factory.mktemp("cwd"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "trap.jsonl"


def no_reports_but(out: Path, *names: str) -> None:
    """Nothing in ``out`` but the files named: no other summary, timing, lock or temporary file."""
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


def before_trap(uninterrupted: Path) -> int:
    before = sum(1 for check in records(uninterrupted) if check.startswith("trap/before-"))
    assert before == 3 * 2 + 2  # 3 reductions x (value, grad) + symmetry + mean-vs-sum
    return before


def complete_run(tmp_path, trap, out: Path) -> None:
    """A first, complete run into ``out``: what a later run must not damage."""
    done = run(tmp_path, *trap, "--conformance-out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr


def start_until_trap(tmp_path, args, env) -> tuple[subprocess.Popen, Path]:
    """A pytest run started in the background, once it has reached the trap (ROBUST_MARK)."""
    mark = tmp_path / "trap-reached"
    process = subprocess.Popen(
        command(*args),
        cwd=tmp_path,
        env={**os.environ, **env, "ROBUST_MARK": str(mark)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not mark.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert mark.exists(), "the run never reached the trap"
    return process, mark


def assert_untouched(out: Path, uninterrupted: Path, partial_summary_says: str) -> None:
    """The previous complete run's files as they were; the partial run's beside them, saying so."""
    assert lines(out / "trap.jsonl") == lines(uninterrupted)
    summary = (out / "trap.summary.partial.md").read_text(encoding="utf-8")
    assert summary.startswith("# PARTIAL RUN: ") and partial_summary_says in summary, summary
    assert not (out / "trap.summary.md").read_text(encoding="utf-8").startswith("# PARTIAL")


# ---------------------------------------------------------------------------------------------
# 1. a run killed or interrupted at any moment keeps the previous complete set


def test_a_killed_rerun_keeps_the_previous_results_and_leaves_its_own_as_partial(tmp_path, trap, uninterrupted):
    out = tmp_path / "out"
    complete_run(tmp_path, trap, out)
    process, _ = start_until_trap(tmp_path, [*trap, "--conformance-out", str(out), "--conformance-timeout", "0"], {"ROBUST_TRAP": "sleep"})
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    before = before_trap(uninterrupted)
    assert_untouched(out, uninterrupted, "it is running, or it was killed")
    # the killed run's own results: its header (with the checks planned) and every check before the trap
    partial = read_run(out / "trap.jsonl.partial")
    assert [r.id for r in partial.results] == list(records(uninterrupted))[:before]
    assert json.loads(lines(out / "trap.jsonl.partial")[0])["planned"] == len(records(uninterrupted))
    # the next run takes the lock of the killed one's files and replaces them all
    complete_run(tmp_path, trap, out)
    no_reports_but(out, "trap.jsonl", "trap.summary.md", "trap.timing.json")


def test_ctrl_c_keeps_the_previous_results_and_says_the_run_is_partial(tmp_path, trap, uninterrupted):
    out = tmp_path / "out"
    complete_run(tmp_path, trap, out)
    previous_summary = (out / "trap.summary.md").read_bytes()
    process, _ = start_until_trap(tmp_path, [*trap, "--conformance-out", str(out), "--conformance-timeout", "0"], {"ROBUST_TRAP": "sleep"})
    process.send_signal(signal.SIGINT)  # to the run only: its checks' worker process is in a session of its own
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, stdout + stderr
    assert "PARTIAL: 8 of " in stdout and "the previous complete results are untouched" in stdout
    assert_untouched(out, uninterrupted, "it was stopped")
    assert (out / "trap.summary.md").read_bytes() == previous_summary
    assert "8 of" in (out / "trap.summary.partial.md").read_text(encoding="utf-8").splitlines()[0]


def test_cli_ctrl_c_keeps_the_previous_results(tmp_path, trap, uninterrupted):
    out = tmp_path / "out"
    complete_run(tmp_path, trap, out)
    mark = tmp_path / "mark"
    args = [sys.executable, "-m", "conformance", "run", "--adapter", trap[1], "--cases", trap[3], "--out", str(out), "--name", "trap", "--timeout", "0"]
    process = subprocess.Popen(args, cwd=tmp_path, env={**os.environ, "ROBUST_TRAP": "sleep", "ROBUST_MARK": str(mark)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stdout + stderr
    assert "INTERRUPTED: 8 of " in stderr
    assert_untouched(out, uninterrupted, "it was interrupted (Ctrl-C)")


def test_a_second_run_into_the_same_files_is_refused(tmp_path, trap, uninterrupted):
    out = tmp_path / "out"
    process, _ = start_until_trap(tmp_path, [*trap, "--conformance-out", str(out), "--conformance-timeout", "0"], {"ROBUST_TRAP": "sleep"})
    try:
        second = run(tmp_path, *trap, "--conformance-out", str(out))
        assert second.returncode == pytest.ExitCode.USAGE_ERROR, second.stdout + second.stderr
        assert f"another run (pid {process.pid}) is writing trap.* there" in second.stderr
        cli = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--adapter", trap[1], "--cases", trap[3], "--out", str(out), "--name", "trap"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert cli.returncode == 2 and "another run" in cli.stderr, cli.stdout + cli.stderr
        other = run(tmp_path, *trap, "--conformance-out", str(out), "--conformance-name", "other")  # another name: fine
        assert other.returncode == 0, other.stdout + other.stderr
    finally:
        process.kill()
        process.communicate()
    partial = read_run(out / "trap.jsonl.partial")  # the first run's lines, none of the second's
    assert [r.id for r in partial.results] == list(records(uninterrupted))[: before_trap(uninterrupted)]


# ---------------------------------------------------------------------------------------------
# 2. a framework call that crashes or exits the process is that check's error, with or without xdist


FAULTS = {  # trap -> the start of its check's error message
    "segv": "worker crashed: signal 11 (SIGSEGV)",
    "abort": "worker crashed: signal 6 (SIGABRT)",
    "exit": "the call raised SystemExit: 0",
    "interrupt": "the call raised KeyboardInterrupt:",
    "os_exit": "worker crashed: exit status 0",
    "string": "returned <U4, which is not a float",
}


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "xdist"])
def test_a_call_that_crashes_or_exits_is_that_checks_error_and_the_others_run(tmp_path, trap, uninterrupted, parallel):
    """Serial: the six faults, one per trap; under pytest-xdist, as a user may run it, the first two."""
    faults = dict(list(FAULTS.items())[: 2 if parallel else 6])
    variables = ["ROBUST_TRAP", "ROBUST_TRAP2"] + [f"ROBUST_TRAP{n}" for n in range(3, 7)]
    out = tmp_path / "crashed"
    env = dict(zip(variables, faults))
    done = run(tmp_path, *trap, *(["-n", "2"] if parallel else []), "--conformance-out", str(out), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)  # every check, once, in the checks' order
    for check, message in zip(TRAP_CHECKS, faults.values()):
        failed = got.pop(check)
        assert failed["verdict"] == "error" and failed["message"].startswith(message), failed
        want.pop(check)
    assert got == want  # the other checks' results, as in a run without the traps
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == len(faults) and all(any(f"[{c}]" in line for c in TRAP_CHECKS) for line in failed)
    assert f"| {len(faults)} |" in (out / "trap.summary.md").read_text(encoding="utf-8")  # the summary counts the errors


def test_cli_run_an_api_that_raises_systemexit_is_its_checks_error(tmp_path, trap, uninterrupted):
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--adapter", trap[1], "--cases", trap[3], "--out", str(tmp_path), "--name", "trap"],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "ROBUST_TRAP": "exit", "ROBUST_TRAP2": "os_exit"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    got = records(tmp_path / "trap.jsonl")
    assert list(got) == list(records(uninterrupted))
    assert got[TRAP_CHECK]["message"] == "the call raised SystemExit: 0"
    assert got[TRAP2_CHECK]["message"].startswith("worker crashed: exit status 0")
    assert "FAILED: 2 of " in done.stdout


def test_crashes_without_limit_every_check_accounted_for(tmp_path, trap, uninterrupted):
    """Every call with reduction sum crashes its process (more than the 4 restarts pytest-xdist's -n 1 allowed,
    which the tox envs used to rely on): each of those checks is its error, every other check has its result."""
    out = tmp_path / "crashed"
    done = run(tmp_path, *trap, "--conformance-out", str(out), env={"ROBUST_TRAP_EVERY_SUM": "segv"}, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)
    crashed = [check for check, r in got.items() if r["message"].startswith("worker crashed: signal 11")]
    assert len(crashed) > 4 and all(c.endswith(("-sum", "-mean-vs-sum")) for c in crashed), crashed
    assert all(got[c] == want[c] for c in got if c not in crashed)


def test_checks_that_end_without_a_result_are_recorded_as_errors_and_fail_the_run(tmp_path, trap, uninterrupted):
    """In-process (no isolation) under xdist that may not restart its worker: the checks the dead worker
    never ran are accounted for, each an error, and the run fails."""
    out = tmp_path / "lost"
    env = {"ROBUST_TRAP": "os_exit", "CONFORMANCE_ISOLATION": "off"}
    done = run(tmp_path, *trap, "-n", "1", "--max-worker-restart", "0", "--conformance-out", str(out), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    got = records(out / "trap.jsonl")
    assert list(got) == list(records(uninterrupted))  # every selected check has its record
    lost = [r for r in got.values() if r["message"].startswith("no result: ")]
    assert lost and all(r["verdict"] == "error" for r in lost)
    assert f"{len(lost)} of {len(got)} selected checks ended without a result" in done.stdout
    assert json.loads(lines(out / "trap.jsonl")[0])["planned"] == len(got)


# ---------------------------------------------------------------------------------------------
# 3. a framework call that hangs is stopped, and charged to its own check


def test_a_hanging_call_is_stopped_by_the_time_limit(tmp_path, trap, uninterrupted):
    out = tmp_path / "hung"
    started = time.monotonic()
    done = run(
        tmp_path, *trap, "--conformance-out", str(out), "--conformance-timeout", "1", env={"ROBUST_TRAP": "sleep"}
    )
    assert time.monotonic() - started < 30  # not the 100 s sleep
    assert done.returncode == 1, done.stdout + done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)
    hung = got.pop(TRAP_CHECK)
    assert hung["verdict"] == "error"
    assert hung["message"] == (
        "timeout: the framework call ran past the time limit of 1 s and was stopped (--conformance-timeout / CONFORMANCE_TIMEOUT)"
    )
    want.pop(TRAP_CHECK)
    assert got == want


@pytest.mark.parametrize("hang", ["block", "gil"])
def test_a_hang_that_does_not_return_to_python_is_ended_and_charged_to_its_own_check(tmp_path, trap, uninterrupted, hang):
    """trap2: a sleep with SIGALRM blocked (C code that never returns to Python), or a C call holding the
    GIL: the run kills the worker process past the limit, records the timeout for that check, and the
    next check (trap/after's, before trap2 in the order: the first hang is trap's) runs unharmed."""
    out = tmp_path / "hung"
    started = time.monotonic()
    done = run(tmp_path, *trap, "--conformance-out", str(out), env={"ROBUST_TRAP": hang, "CONFORMANCE_TIMEOUT": "1"})
    assert time.monotonic() - started < 45  # not the 100 s sleep
    assert done.returncode == 1, done.stdout + done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)
    ended = got.pop(TRAP_CHECK)
    assert ended["verdict"] == "error"
    assert ended["message"].startswith("timeout: the framework call ran past the time limit of 1 s")
    assert "it did not return to Python, so the run killed its worker process" in ended["message"]
    want.pop(TRAP_CHECK)
    assert got == want  # no other check charged


def test_time_limit_stops_a_python_level_hang_and_0_disables_it():
    started = time.monotonic()
    with pytest.raises(CallTimeout), time_limit(0.2):
        time.sleep(10)
    assert time.monotonic() - started < 5
    with time_limit(0):
        time.sleep(0.3)  # no limit
    with time_limit(5):
        pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # nothing left armed
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:  # another timer (pytest-timeout's, say) is put back, less the time taken
        signal.setitimer(signal.ITIMER_REAL, 50)
        with time_limit(5):
            time.sleep(0.1)
        assert 45 < signal.getitimer(signal.ITIMER_REAL)[0] < 50
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_the_runner_reports_a_timeout_as_the_checks_error(tmp_path, monkeypatch):
    from conformance.runner import plan

    (tmp_path / "trap_adapter.py").write_text(textwrap.dedent(ADAPTER), encoding="utf-8")
    (tmp_path / "trap.yaml").write_text(CASES, encoding="utf-8")
    run_plan = plan(None, [tmp_path / "trap.yaml"], adapter=f"{tmp_path / 'trap_adapter.py'}:load", timeout=0.3)
    assert isinstance(run_plan.runner, Runner)
    check = next(c for c in run_plan.checks if c.id == TRAP_CHECK)
    monkeypatch.setenv("ROBUST_TRAP", "sleep")
    started = time.monotonic()
    result = run_plan.runner.run(check)
    assert time.monotonic() - started < 5
    assert result.verdict == "error" and "time limit of 0.3 s" in result.message


def test_cli_run_takes_the_time_limit(tmp_path, trap, monkeypatch, capsys):
    from conformance.cli import main

    monkeypatch.setenv("ROBUST_TRAP", "sleep")
    started = time.monotonic()
    assert main(["run", "--adapter", trap[1], "--cases", trap[3], "--out", str(tmp_path), "--timeout", "0.5"]) == 1
    assert time.monotonic() - started < 30
    assert "time limit of 0.5 s" in capsys.readouterr().out
    assert records(tmp_path / "trap.jsonl")[TRAP_CHECK]["verdict"] == "error"


# ---------------------------------------------------------------------------------------------
# 4. child processes an API leaves behind


def test_child_processes_left_running_are_killed_and_are_that_checks_error(tmp_path, trap, uninterrupted):
    out = tmp_path / "orphans"
    started = time.monotonic()
    # capture_output: an orphan holding the run's stdout open would keep this waiting for its 100 s
    done = run(tmp_path, *trap, "--conformance-out", str(out), env={"ROBUST_TRAP": "orphan"})
    assert time.monotonic() - started < 45
    assert done.returncode == 1, done.stdout + done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    left = got.pop(TRAP_CHECK)
    assert left["verdict"] == "error"
    assert left["message"].startswith("the call left child processes running, which the run killed: pid ")
    assert "sleep 100" in left["message"]
    want.pop(TRAP_CHECK)
    assert got == want


# ---------------------------------------------------------------------------------------------
# 5. the same bytes, serial or parallel, isolated or not


def test_xdist_and_serial_runs_give_the_same_bytes(tmp_path):
    serial, parallel, inline = tmp_path / "serial", tmp_path / "parallel", tmp_path / "inline"
    args = ["--framework", "rounded", "--conformance-cases", str(SEED)]
    one = run(tmp_path, *args, "--conformance-out", str(serial))
    assert one.returncode == 0, one.stdout + one.stderr
    two = run(tmp_path, *args, "--conformance-out", str(parallel), "-n", "2")
    assert two.returncode == 0, two.stdout + two.stderr
    assert "bringing up nodes" in two.stdout  # it ran under xdist
    three = run(tmp_path, *args, "--conformance-out", str(inline), env={"CONFORMANCE_ISOLATION": "off"})
    assert three.returncode == 0, three.stdout + three.stderr
    for name in ("rounded.jsonl", "rounded.summary.md"):
        assert (serial / name).read_bytes() == (parallel / name).read_bytes() == (inline / name).read_bytes(), name
    no_reports_but(parallel, "rounded.jsonl", "rounded.summary.md", "rounded.timing.json")


# ---------------------------------------------------------------------------------------------
# 6. too few checks run fail the run, under xdist too


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "xdist"])
def test_a_run_that_ran_no_check_fails(tmp_path, parallel):
    args = ["--framework", "rounded", "--conformance-cases", str(SEED), "-k", "no_such_check"] + (
        ["-n", "2"] if parallel else []
    )
    done = run(tmp_path, *args)
    assert done.returncode != 0
    assert "bce-conformance: 0 checks ran, fewer than the floor of 1" in done.stdout
