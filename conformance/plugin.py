"""The pytest plugin: every (case, API, dtype, reduction) becomes one parametrized test.

Registered through the ``pytest11`` entry point. It does nothing until a test asks for the
``conformance_check`` argument (``conformance/suite/test_conformance.py`` does):

    pytest --pyargs conformance.suite --framework torch [--conformance-cases cases] [-k blog]

or, for a framework this project does not ship (docs/adapters.md):

    pytest --pyargs conformance.suite --adapter path/to/my_adapter.py:load

Options (and the environment variables that set their defaults): ``--framework``
(CONFORMANCE_FRAMEWORK), ``--adapter`` (CONFORMANCE_ADAPTER), ``--conformance-cases``
(CONFORMANCE_CASES), ``--conformance-out`` (CONFORMANCE_OUT), ``--conformance-min-tests``
(CONFORMANCE_MIN_TESTS), ``--conformance-timeout`` (CONFORMANCE_TIMEOUT), ``--conformance-divergences``.
Results travel in each report's ``user_properties``, so pytest-xdist workers' results reach the
process that writes them.

Robustness: each result is a line of ``<name>.jsonl`` as soon as it arrives (flushed), and at the end
of the session the file is rewritten atomically in the checks' order, so a serial run and an xdist
run give the same bytes and a run killed at any moment leaves every finished result readable; the
summary is written atomically. Each framework call runs under a time limit (SIGALRM; an ``error``
naming the limit). Under pytest-xdist (``-n``), a check whose framework call crashes its worker
process (a segfault, an abort) is recorded as an ``error`` naming the crash, xdist replaces the
worker and the other checks run; a call that hangs in C code past the limit is ended by a watchdog
that stops the worker, recorded alike. Without ``-n`` a crash ends the whole run (the results up to
it stay in the file): crash isolation needs ``-n``.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conformance.adapters import FrameworkUnavailable
from conformance.cases import CaseError
from conformance.environment import describe as describe_environment
from conformance.environment import header as environment_header
from conformance.results import Result, ResultWriter, environment_line, write_atomically, write_timing
from conformance.runner import DEFAULT_TIMEOUT, Plan, plan, timeout_message
from conformance.summary import failure_text, summary_markdown
from conformance.verdicts import Verdict

RESULT_PROPERTY = "conformance_result"
plan_key = pytest.StashKey[Plan]()
environment_key = pytest.StashKey[dict]()
WATCHDOG_EXIT = 124  # an xdist worker's exit status when the watchdog ended it (a call hung past the time limit)
TEST_PREFIX = "::test_conformance["  # a conformance test's node id: <path>::test_conformance[<check id>]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "bce-conformance")
    group.addoption(
        "--framework",
        default=os.environ.get("CONFORMANCE_FRAMEWORK"),
        help="framework under test: numpy, torch, tensorflow, jax, or an installed adapter's name "
        "(entry point group conformance.adapters) (env CONFORMANCE_FRAMEWORK)",
    )
    group.addoption(
        "--adapter",
        default=os.environ.get("CONFORMANCE_ADAPTER"),
        metavar="MODULE:OBJECT",
        help="a third-party adapter instead of --framework: module:object or path/to/file.py:object, object a "
        "zero-argument callable returning a conformance.adapters.Framework (env CONFORMANCE_ADAPTER)",
    )
    group.addoption(
        "--conformance-cases",
        action="append",
        default=None,
        help="case file or folder; repeatable (env CONFORMANCE_CASES; default: cases)",
    )
    group.addoption(
        "--conformance-divergences", action="append", default=[], help="extra known-divergence file; repeatable"
    )
    group.addoption(
        "--conformance-out",
        default=os.environ.get("CONFORMANCE_OUT"),
        help="folder for <framework>.jsonl and <framework>.summary.md (env CONFORMANCE_OUT)",
    )
    group.addoption(
        "--conformance-name",
        default=os.environ.get("CONFORMANCE_NAME"),
        help="the results files' name: <name>.jsonl, <name>.summary.md (env CONFORMANCE_NAME; default: the framework's name)",
    )
    group.addoption(
        "--conformance-min-tests",
        type=int,
        default=int(os.environ.get("CONFORMANCE_MIN_TESTS", "1")),
        help="fail the run when fewer conformance tests ran (env CONFORMANCE_MIN_TESTS; default 1)",
    )
    group.addoption(
        "--conformance-timeout",
        type=float,
        default=float(os.environ.get("CONFORMANCE_TIMEOUT", DEFAULT_TIMEOUT)),
        metavar="SECONDS",
        help="time limit of each framework call; a call past it is stopped and its check is an error "
        f"(env CONFORMANCE_TIMEOUT; default {DEFAULT_TIMEOUT:g}; 0: no limit)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ConformanceReporter(config), "conformance-reporter")
    framework, adapter = config.getoption("framework"), config.getoption("adapter")
    if not framework and not adapter:
        return
    if framework and adapter:
        raise pytest.UsageError(
            f"bce-conformance: --framework {framework} and --adapter {adapter} both given (or set by "
            "CONFORMANCE_FRAMEWORK and CONFORMANCE_ADAPTER): choose one"
        )
    paths = config.getoption("conformance_cases") or [os.environ.get("CONFORMANCE_CASES", "cases")]
    timeout = config.getoption("conformance_timeout")
    if timeout < 0:
        raise pytest.UsageError(f"bce-conformance: --conformance-timeout {timeout:g}: a number of seconds, 0 for no limit")
    try:
        config.stash[plan_key] = plan(
            framework, paths, config.getoption("conformance_divergences"), adapter=adapter, timeout=timeout
        )
    except (CaseError, FrameworkUnavailable) as exc:
        raise pytest.UsageError(f"bce-conformance: {exc}") from None
    if hasattr(config, "workerinput"):  # an xdist worker: a call hung in C code ends the worker, and xdist replaces it
        stderr = os.dup(2)  # the worker's stderr before pytest captures it around each test
        config.stash[plan_key].runner.watchdog = lambda seconds: _end_worker(seconds, stderr)


def _end_worker(seconds: float, stderr: int) -> None:
    """The watchdog of an xdist worker (from its own thread): a framework call outlived the time limit
    even though SIGALRM was raised; the worker says so, with every thread's stack, and exits with
    WATCHDOG_EXIT, which the controller records as the check's timeout."""
    os.write(stderr, f"bce-conformance: a framework call hung past the time limit of {seconds:g} s; ending the worker\n".encode())
    faulthandler.dump_traceback(file=stderr, all_threads=True)
    os._exit(WATCHDOG_EXIT)


def _plan(config: pytest.Config) -> Plan:
    if plan_key not in config.stash:
        raise pytest.UsageError(
            "bce-conformance: choose the framework under test with --framework NAME or CONFORMANCE_FRAMEWORK=NAME, "
            "or a third-party adapter with --adapter MODULE:OBJECT or CONFORMANCE_ADAPTER=MODULE:OBJECT"
        )
    return config.stash[plan_key]


def pytest_report_header(config: pytest.Config) -> list[str]:
    if plan_key not in config.stash:
        return []
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("CONFORMANCE_")]
    environment = _environment(config)
    return [config.stash[plan_key].header(), f"environment: {environment_header(environment)}"] + (
        [f"variables: {' '.join(env)}"] if env else []
    )


def _environment(config: pytest.Config) -> dict:
    """The run's environment record (probed once per process)."""
    if environment_key not in config.stash:
        run_plan = config.stash[plan_key]
        config.stash[environment_key] = describe_environment(run_plan.framework, run_plan.numerics)
    return config.stash[environment_key]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conformance_check" not in metafunc.fixturenames:
        return
    checks = _plan(metafunc.config).checks
    metafunc.parametrize("conformance_check", checks, ids=[check.id for check in checks])


@pytest.fixture(scope="session")
def conformance_plan(request: pytest.FixtureRequest) -> Plan:
    """The framework, cases, known divergences and checks of this run."""
    return _plan(request.config)


@pytest.fixture
def conformance_result(request: pytest.FixtureRequest, conformance_plan: Plan, conformance_check) -> Result:
    """Runs the check and attaches its result to the test's report."""
    result = conformance_plan.runner.run(conformance_check)
    request.node.user_properties.append((RESULT_PROPERTY, result.to_json()))
    return result


class ConformanceReporter:
    """Collects the results from the reports (local or from xdist workers), writes them, and
    fails a run with fewer conformance tests than the floor."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.results: list[Result] = []
        self.writer: ResultWriter | None = None
        self.floor_failure = ""
        self.started = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or hasattr(self.config, "workerinput"):
            return  # an xdist worker's reports are recorded by its controller
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                self.record(Result.from_json(value))

    def record(self, result: Result) -> None:
        self.results.append(result)
        out = self.config.getoption("conformance_out")
        if out:
            if self.writer is None:
                self.writer = ResultWriter(Path(out) / f"{self.name(result)}.jsonl", _environment(self.config))
            self.writer.write(result)

    def name(self, result: Result) -> str:
        return self.config.getoption("conformance_name") or result.framework

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report, sched) -> None:
        """pytest-xdist (on the controller): a worker died while running ``crashitem``. A conformance
        check's crash is its ``error`` record; xdist reports the test as failed and runs the others."""
        if plan_key not in self.config.stash or TEST_PREFIX not in crashitem:
            return
        check_id = crashitem.split(TEST_PREFIX, 1)[1].removesuffix("]")
        run_plan = self.config.stash[plan_key]
        check = next((c for c in run_plan.checks if c.id == check_id), None)
        if check is None:
            return
        worker = getattr(report, "node", None)
        status = _exit_status(worker)
        name = getattr(getattr(worker, "gateway", None), "id", "?")
        if status == WATCHDOG_EXIT:
            message = (
                f"{timeout_message(run_plan.runner.timeout)}: it did not return to Python, so the watchdog "
                f"ended pytest-xdist worker {name}"
            )
        else:
            message = (
                f"worker crashed: {_describe_status(status)}: pytest-xdist worker {name} died while running "
                "this check (the framework's call crashed the process); the other checks ran on a new worker"
            )
        self.record(run_plan.runner.error(check, message))

    def ordered(self) -> list[Result]:
        """The results in the checks' order (their collection order), whatever order they arrived in."""
        if plan_key not in self.config.stash:
            return self.results
        index = {check.id: i for i, check in enumerate(self.config.stash[plan_key].checks)}
        return sorted(self.results, key=lambda r: (index.get(r.id, len(index)), r.id))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.writer is not None:
            self.writer.close()
            # rewritten in the checks' order (xdist workers finish in any order): the same bytes as a serial
            # run; atomically, so a run killed meanwhile leaves the lines as they came or the ordered file
            self.results = self.ordered()
            lines = [environment_line(_environment(self.config))] + [r.to_json() for r in self.results]
            write_atomically(self.writer.path, "\n".join(lines) + "\n")
            write_timing(self.writer.path.with_name(f"{self.name(self.results[0])}.timing.json"), self.started)
        if hasattr(self.config, "workerinput") or plan_key not in self.config.stash or self.config.option.collectonly:
            return
        self.results = self.ordered()
        floor = self.config.getoption("conformance_min_tests")
        if len(self.results) < floor:
            self.floor_failure = (
                f"bce-conformance: {len(self.results)} conformance tests ran, fewer than the floor of {floor}"
            )
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.results:
            text = summary_markdown(self.results)
            terminalreporter.write_sep("=", "bce-conformance summary")
            terminalreporter.write(text)
            out = self.config.getoption("conformance_out")
            if out:
                path = write_atomically(Path(out) / f"{self.name(self.results[0])}.summary.md", text)
                terminalreporter.write_line(f"results: {self.writer.path}; summary: {path}")
        if self.floor_failure:
            terminalreporter.write_line(self.floor_failure, red=True, bold=True)


def _exit_status(worker) -> int | None:
    """A dead xdist worker's exit status (negative: the signal that ended it), or None if unknown."""
    popen = getattr(getattr(getattr(worker, "gateway", None), "_io", None), "popen", None)
    if popen is None:
        return None
    try:
        return popen.wait(timeout=10)
    except (subprocess.TimeoutExpired, OSError):  # still running, or no process to wait for
        return None


def _describe_status(status: int | None) -> str:
    if status is None:
        return "the process ended"
    if status < 0:
        try:
            return f"signal {-status} ({signal.Signals(-status).name})"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


def verdict_outcome(result: Result) -> None:
    """Turns a result into the test's outcome: pass (exact, or acceptable under a documented variant,
    which the summary lists apart), fail, xfail (known divergence) or skip (unsupported)."""
    verdict = Verdict(result.verdict)
    if verdict is Verdict.UNSUPPORTED:
        pytest.skip(f"unsupported: {result.message}")
    if verdict is Verdict.KNOWN_DIVERGENCE:
        pytest.xfail(f"known divergence {result.divergence}: {result.source}")
    if verdict not in (Verdict.EXACT, Verdict.ACCEPTABLE):
        pytest.fail(failure_text(result), pytrace=False)
