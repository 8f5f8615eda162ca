"""Robustness of a conformance run: results written as produced and reports atomically (a run killed at
any moment), a framework call that crashes its process (under pytest-xdist), one that hangs (the time
limit and, for a hang in C code, the xdist watchdog), the same bytes from a serial and a parallel run,
and the floor on the number of tests.

Each run is a pytest subprocess with a small third-party adapter (``trap``, written to tmp_path): NumPy's
stable formula, except on the case ``trap/trap`` (logits 7), where it does what ``ROBUST_TRAP`` says, and
on ``trap/trap2`` (logits 8), what ``ROBUST_TRAP2`` says.
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

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "cases" / "seed.yaml"
TRAP_CHECK = "trap/trap-trap.bce_with_logits-float64-sum"
TRAP2_CHECK = "trap/trap2-trap.bce_with_logits-float64-sum"

ADAPTER = """
import ctypes, dataclasses, os, signal, time
import numpy as np
from conformance.adapters import Framework
from conformance.adapters.rounded import load as load_rounded


def trap(inputs, reduction):
    logits = np.asarray(inputs["logits"], dtype=np.float64)
    if reduction == "sum" and (7.0 in logits or 8.0 in logits):  # the cases trap/trap and trap/trap2
        what = os.environ.get("ROBUST_TRAP" if 7.0 in logits else "ROBUST_TRAP2", "")
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


def load():
    stable = next(a for a in load_rounded().apis if a.name == "rounded.stable_bce_with_logits")

    def call(inputs, reduction):
        trap(inputs, reduction)
        return stable.call(inputs, reduction)

    api = dataclasses.replace(stable, name="trap.bce_with_logits", framework="trap", call=call)
    return Framework("trap", {"numpy": np.__version__}, [api])
"""

CASES = """\
schema_version: 1
description: four small cases, the second and the last the adapter's traps (their only check is the sum)
defaults: {dtypes: [float64], reductions: [none, mean, sum]}
cases:
  - {id: before, why: runs before the trap, logits: [1.0, -2.0, 0.5], target: [0, 1, 1]}
  - {id: trap, why: the adapter's trap, logits: [7.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
  - {id: after, why: runs after the trap, logits: [3.0, -0.25], target: [1, 0]}
  - {id: trap2, why: the adapter's second trap, logits: [8.0, 1.0], target: [0, 1], reductions: [sum], gradients: false}
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
        "ROBUST_MARK",
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
    """Nothing in ``out`` but the files named: no summary, timing or temporary file, whole or half-written."""
    assert sorted(p.name for p in out.iterdir()) == sorted(names)


# ---------------------------------------------------------------------------------------------
# 1. a run killed at any moment


def test_a_killed_run_leaves_every_finished_result_and_no_half_written_report(tmp_path, trap, uninterrupted):
    out, mark = tmp_path / "killed", tmp_path / "trap-reached"
    process = subprocess.Popen(
        command(*trap, "--conformance-out", str(out), "--conformance-timeout", "0"),
        cwd=tmp_path,
        env={**os.environ, "ROBUST_TRAP": "sleep", "ROBUST_MARK": str(mark)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), "the run never reached the trap"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    whole = lines(uninterrupted)
    before = sum(1 for check in records(uninterrupted) if check.startswith("trap/before-"))
    assert before == 3 * 2 + 2  # 3 reductions x (value, grad) + symmetry + mean-vs-sum
    killed = lines(out / "trap.jsonl")
    # the environment and every check before the trap, each a whole line, the same bytes as the whole run's
    assert killed == whole[: 1 + before]
    run_ = read_run(out / "trap.jsonl")
    assert run_.truncated == 0 and [r.id for r in run_.results] == list(records(uninterrupted))[:before]
    no_reports_but(out, "trap.jsonl")


def test_without_xdist_a_crash_leaves_the_results_before_it(tmp_path, trap, uninterrupted):
    out = tmp_path / "crashed"
    done = run(tmp_path, *trap, "--conformance-out", str(out), env={"ROBUST_TRAP": "segv"})
    assert done.returncode != 0
    assert "Segmentation fault" in done.stderr  # pytest's faulthandler
    before = sum(1 for check in records(uninterrupted) if check.startswith("trap/before-"))
    assert lines(out / "trap.jsonl") == lines(uninterrupted)[: 1 + before]
    no_reports_but(out, "trap.jsonl")


# ---------------------------------------------------------------------------------------------
# 2. a framework call that crashes the process, under xdist


def test_under_xdist_a_crash_is_that_checks_error_and_the_others_run(tmp_path, trap, uninterrupted):
    out = tmp_path / "crashed"
    done = run(
        tmp_path, *trap, "-n", "2", "--conformance-out", str(out), env={"ROBUST_TRAP": "segv", "ROBUST_TRAP2": "abort"}
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "node down" in done.stdout  # xdist's word for a crashed worker, which it replaced
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)  # every check, once, in the checks' order
    for check, number, name in ((TRAP_CHECK, 11, "SIGSEGV"), (TRAP2_CHECK, 6, "SIGABRT")):
        crashed = got.pop(check)
        assert crashed["verdict"] == "error"
        assert crashed["message"].startswith(f"worker crashed: signal {number} ({name}): pytest-xdist worker gw"), (
            crashed
        )
        want.pop(check)
    assert got == want  # the other checks' results, as in a run without the crashes
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2 and all(f"[{TRAP_CHECK}]" in line or f"[{TRAP2_CHECK}]" in line for line in failed)
    assert "| 2 |" in (out / "trap.summary.md").read_text(encoding="utf-8")  # the summary counts the 2 errors


# ---------------------------------------------------------------------------------------------
# 3. a framework call that hangs


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


def test_under_xdist_hangs_are_stopped_by_the_time_limit_or_the_watchdog(tmp_path, trap, uninterrupted):
    """trap: a sleep, which SIGALRM stops in the worker; trap2: a sleep with SIGALRM blocked, as in C code
    that never returns to Python, which the watchdog ends with its worker."""
    out = tmp_path / "hung"
    started = time.monotonic()
    env = {"ROBUST_TRAP": "sleep", "ROBUST_TRAP2": "block", "CONFORMANCE_TIMEOUT": "1"}
    done = run(tmp_path, *trap, "-n", "2", "--conformance-out", str(out), env=env)
    assert time.monotonic() - started < 45  # not the 100 s sleeps
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("node down") == 1  # the watchdog's worker; SIGALRM stopped the first hang
    assert "hung past the time limit of 1 s; ending the worker" in done.stderr
    got, want = records(out / "trap.jsonl"), records(uninterrupted)
    assert list(got) == list(want)
    stopped, ended = got.pop(TRAP_CHECK), got.pop(TRAP2_CHECK)
    assert stopped["verdict"] == ended["verdict"] == "error"
    assert stopped["message"].startswith("timeout: the framework call ran past the time limit of 1 s and was stopped")
    assert ended["message"].startswith("timeout: the framework call ran past the time limit of 1 s")
    assert ended["message"].endswith("it did not return to Python, so the watchdog ended pytest-xdist worker gw1") or (
        ended["message"].endswith("it did not return to Python, so the watchdog ended pytest-xdist worker gw0")
    )
    want.pop(TRAP_CHECK), want.pop(TRAP2_CHECK)
    assert got == want


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
# 4. the same bytes, serial or parallel


def test_xdist_and_serial_runs_give_the_same_bytes(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    one = run(tmp_path, "--framework", "rounded", "--conformance-cases", str(SEED), "--conformance-out", str(serial))
    assert one.returncode == 0, one.stdout + one.stderr
    two = run(
        tmp_path,
        "--framework",
        "rounded",
        "--conformance-cases",
        str(SEED),
        "--conformance-out",
        str(parallel),
        "-n",
        "2",
    )
    assert two.returncode == 0, two.stdout + two.stderr
    assert "bringing up nodes" in two.stdout  # it ran under xdist
    for name in ("rounded.jsonl", "rounded.summary.md"):
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name
    no_reports_but(parallel, "rounded.jsonl", "rounded.summary.md", "rounded.timing.json")


# ---------------------------------------------------------------------------------------------
# 5. too few tests fail the run, under xdist too


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "xdist"])
def test_a_run_that_ran_no_check_fails(tmp_path, parallel):
    args = ["--framework", "rounded", "--conformance-cases", str(SEED), "-k", "no_such_check"] + (
        ["-n", "2"] if parallel else []
    )
    done = run(tmp_path, *args)
    assert done.returncode != 0
    assert "bce-conformance: 0 conformance tests ran, fewer than the floor of 1" in done.stdout
