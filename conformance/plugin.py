"""The pytest plugin: every (case, API, dtype, reduction) becomes one parametrized test.

Registered through the ``pytest11`` entry point. It does nothing until a test asks for the
``conformance_check`` argument (``conformance/suite/test_conformance.py`` does):

    pytest --pyargs conformance.suite --framework torch [--conformance-cases cases] [-k blog]

or, for a framework this project does not ship (docs/adapters.md):

    pytest --pyargs conformance.suite --adapter path/to/my_adapter.py:load

Options (and the environment variables that set their defaults): ``--framework``
(CONFORMANCE_FRAMEWORK), ``--adapter`` (CONFORMANCE_ADAPTER), ``--conformance-cases``
(CONFORMANCE_CASES), ``--conformance-out`` (CONFORMANCE_OUT), ``--conformance-name`` (CONFORMANCE_NAME),
``--conformance-min-tests`` (CONFORMANCE_MIN_TESTS), ``--conformance-timeout`` (CONFORMANCE_TIMEOUT), ``--device``
(CONFORMANCE_DEVICE: where the framework computes, ``conformance.devices``),
``--conformance-divergences`` (none).
Results travel in each report's ``user_properties``, so pytest-xdist workers' results reach the
process that writes them.

Robustness: the run holds the lock of ``<out>/<name>.*`` (conformance.outputs; a second run into
the same files is refused). Each result is a line of ``<name>.jsonl.partial`` as soon as it arrives
(flushed), under a header with the number of checks selected; at the end of a run that was not
interrupted, every selected check without a result (its test errored, or never ran) gets an
``error`` record saying so, and ``<name>.jsonl`` (in the checks' order: a serial run and an xdist run
give the same bytes), ``<name>.summary.md`` and ``<name>.timing.json`` replace the previous ones
together. A run interrupted (Ctrl-C, ``-x``) or killed leaves the previous complete files as they
were, and its ``<name>.summary.partial.md`` says it is partial. Each check runs in a worker process
that the run supervises (conformance.isolation): a call that crashes it, exits it or hangs past the
time limit (``--conformance-timeout``), even in C code holding the GIL, is that check's ``error``, and
a new worker runs the rest, with or without pytest-xdist.
"""

from __future__ import annotations

import os
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from conformance import devices, outputs
from conformance.adapters import FrameworkUnavailable
from conformance.cases import CaseError
from conformance.environment import describe as describe_environment
from conformance.environment import header as environment_header
from conformance.isolation import describe_status, executor
from conformance.results import Result
from conformance.runner import DEFAULT_TIMEOUT, Plan, parse_timeout, plan
from conformance.summary import failure_text, summary_markdown
from conformance.verdicts import Verdict

RESULT_PROPERTY = "conformance_result"
# how long the check took, measured where it ran (an xdist worker's arrivals interleave): the timing file's only
SECONDS_PROPERTY = "conformance_seconds"
plan_key = pytest.StashKey[Plan]()
environment_key = pytest.StashKey[dict]()
stderr_key = pytest.StashKey[int]()  # the process's stderr before pytest captures a test's output: the checks' worker's
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
        "--device",
        default=None,
        help="where the framework computes (env CONFORMANCE_DEVICE; default cpu): torch cuda[:N], JAX gpu[:N], "
        "TensorFlow GPU:N; a device that is not there is an error naming those that are",
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
    # the defaults from the environment are strings, checked as given ones are (a bad one is an error of
    # a run that asks for the suite, never of every pytest session of the environment)
    group.addoption(
        "--conformance-min-tests",
        default=os.environ.get("CONFORMANCE_MIN_TESTS", "1"),
        help="fail the run when fewer conformance checks ran (env CONFORMANCE_MIN_TESTS; default 1)",
    )
    group.addoption(
        "--conformance-timeout",
        default=os.environ.get("CONFORMANCE_TIMEOUT", str(DEFAULT_TIMEOUT)),
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
    try:
        timeout = parse_timeout(config.getoption("conformance_timeout"))
    except ValueError as exc:
        raise pytest.UsageError(f"bce-conformance: {exc}") from None
    floor = config.getoption("conformance_min_tests")
    if not str(floor).strip().isdigit():
        raise pytest.UsageError(
            f"bce-conformance: --conformance-min-tests {floor!r}: a whole number ≥ 0 (CONFORMANCE_MIN_TESTS)"
        )
    config.option.conformance_min_tests = int(floor)
    try:
        config.stash[plan_key] = plan(
            framework, paths, config.getoption("conformance_divergences"), adapter=adapter, timeout=timeout,
            device=config.getoption("device") or devices.from_environment(),
        )  # fmt: skip
    except (CaseError, FrameworkUnavailable) as exc:
        raise pytest.UsageError(f"bce-conformance: {exc}") from None
    config.stash[stderr_key] = os.dup(2)
    run_plan = config.stash[plan_key]
    name = config.getoption("conformance_name") or run_plan.framework.name
    out = config.getoption("conformance_out")
    try:
        outputs.check_name(name)
        if out and not hasattr(config, "workerinput"):  # the controller writes the files: it holds their lock
            config.pluginmanager.get_plugin("conformance-reporter").hold(out, name)
    except outputs.OutputError as exc:
        raise pytest.UsageError(f"bce-conformance: {exc}") from None


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
        config.stash[environment_key] = describe_environment(
            run_plan.framework, run_plan.numerics, off_cpu=bool(run_plan.runner.device)
        )
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


@pytest.fixture(scope="session")
def conformance_executor(request: pytest.FixtureRequest, conformance_plan: Plan):
    """Runs a check in this process's supervised worker (conformance.isolation), stopped at the end."""
    with executor(conformance_plan, request.config.stash[stderr_key]) as execute:
        yield execute


@pytest.fixture
def conformance_result(request: pytest.FixtureRequest, conformance_executor, conformance_check) -> Result:
    """Runs the check and attaches its result to the test's report."""
    began = time.monotonic()
    result = conformance_executor(conformance_check)
    request.node.user_properties.append((SECONDS_PROPERTY, time.monotonic() - began))
    request.node.user_properties.append((RESULT_PROPERTY, result.to_json()))
    return result


class ConformanceReporter:
    """Collects the results from the reports (local or from xdist workers), writes them, accounts for
    every selected check, and fails a run with a check unaccounted for or fewer results than the floor."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.results: list[Result] = []
        self.files: outputs.RunFiles | None = None  # this run's files, once its first result arrives
        self.failures: list[str] = []  # what makes the run fail besides its tests: the floor, missing results, the outputs
        self.notes: list[str] = []
        self.selected: list[str] | None = None  # the ids of the checks selected to run, in the plan's order
        self.ended: dict[str, str] = {}  # check id -> how its test ended without a result (an error in setup, say)
        self.started = time.time()
        self.lock = ExitStack()
        self.out: Path | None = None
        self.name = ""
        self.unwritable = False  # a write to the output folder failed: the run fails, its files are not replaced

    def hold(self, out: str, name: str) -> None:
        """Takes the lock of ``out/name.*`` for the session (conformance.outputs)."""
        self.out, self.name = self.lock.enter_context(outputs.locked(out, name)), name

    def pytest_unconfigure(self) -> None:
        self.lock.close()

    # which checks the run set out to run
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not hasattr(self.config, "workerinput"):
            self._select([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        if self.selected is None:  # every worker collects the same tests
            self._select(ids)

    def _select(self, node_ids) -> None:
        if plan_key not in self.config.stash:
            return
        chosen = {node_id.split(TEST_PREFIX, 1)[1].removesuffix("]") for node_id in node_ids if TEST_PREFIX in node_id}
        self.selected = [check.id for check in self.config.stash[plan_key].checks if check.id in chosen]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(self.config, "workerinput"):
            return  # an xdist worker's reports are recorded by its controller
        if report.when == "call":
            properties = dict(report.user_properties)
            if RESULT_PROPERTY in properties:
                self.record(Result.from_json(properties[RESULT_PROPERTY]), properties.get(SECONDS_PROPERTY))
        if report.failed and TEST_PREFIX in report.nodeid:  # kept in case this check ends without a result
            check_id = report.nodeid.split(TEST_PREFIX, 1)[1].removesuffix("]")
            text = str(report.longrepr).strip().splitlines()
            self.ended.setdefault(check_id, f"its test failed in {report.when}: {text[-1] if text else '?'}")

    def record(self, result: Result, seconds: float | None = None) -> None:
        self.results.append(result)
        if self.out is None or self.unwritable:
            return
        try:
            if self.files is None:
                self.files = outputs.RunFiles(self.out, self.name, _environment(self.config), self.planned, self.started)
            self.files.write(result, seconds)
        except OSError as exc:  # a full disk, say: the run goes on, and fails, with the previous results kept
            self.failures.append(f"bce-conformance: cannot write the results to {self.out}: {exc}; the previous complete results are untouched")
            self.unwritable = True

    @property
    def planned(self) -> int:
        """The checks this run set out to run: those selected, or (before collection) every check of the plan."""
        return len(self.selected) if self.selected is not None else len(self.config.stash[plan_key].checks)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report, sched) -> None:
        """pytest-xdist (on the controller): a worker died while running ``crashitem`` (outside the
        check's own worker process, which the supervisor replaces itself): the check's ``error``."""
        if plan_key not in self.config.stash or TEST_PREFIX not in crashitem:
            return
        check_id = crashitem.split(TEST_PREFIX, 1)[1].removesuffix("]")
        run_plan = self.config.stash[plan_key]
        check = next((c for c in run_plan.checks if c.id == check_id), None)
        if check is None:
            return
        worker = getattr(report, "node", None)
        name = getattr(getattr(worker, "gateway", None), "id", "?")
        self.record(
            run_plan.runner.error(
                check,
                f"worker crashed: {describe_status(_exit_status(worker))}: pytest-xdist worker {name} died while running "
                "this check; the other checks ran on a new worker",
            )
        )

    def ordered(self) -> list[Result]:
        """The results in the checks' order (their collection order), whatever order they arrived in."""
        if plan_key not in self.config.stash:
            return self.results
        index = {check.id: i for i, check in enumerate(self.config.stash[plan_key].checks)}
        return sorted(self.results, key=lambda r: (index.get(r.id, len(index)), r.id))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput") or plan_key not in self.config.stash or self.config.option.collectonly:
            return
        run_plan = self.config.stash[plan_key]
        ran = len(self.results)
        stopped = session.exitstatus == pytest.ExitCode.INTERRUPTED or session.shouldstop or session.shouldfail
        if stopped:  # interrupted, or -x / --maxfail: not a whole run; the previous complete files stay
            if self.files is not None and not self.unwritable:
                why = f"it was stopped ({session.shouldstop or session.shouldfail or 'interrupted'})"
                try:
                    self.notes.append(f"PARTIAL: {self.files.stopped(self.ordered(), why)}")
                except OSError:
                    pass
            return
        have = {r.id for r in self.results}
        missing = [check for check in run_plan.checks if check.id in set(self.selected or ()) - have]
        for check in missing:  # accounted for: a check selected to run has a record, whatever ended it
            why = self.ended.get(check.id, "it never ran (its pytest-xdist worker was given up, or a plugin skipped it)")
            self.record(run_plan.runner.error(check, f"no result: {why}"))
        if missing:
            self.failures.append(
                f"bce-conformance: {len(missing)} of {len(self.selected)} selected checks ended without a result "
                "(recorded as errors)"
            )
        floor = self.config.getoption("conformance_min_tests")
        if ran < floor:  # the checks that ran, not the tests collected
            self.failures.append(f"bce-conformance: {ran} checks ran, fewer than the floor of {floor}")
        self.results = self.ordered()
        if self.selected is not None and len(self.selected) == len(run_plan.checks):  # a whole run judges the catalogue
            self.failures += [f"bce-conformance: {problem}" for problem in run_plan.catalogue_problems(self.results)]
        if self.files is not None and not self.unwritable:
            try:
                path = self.files.commit(self.results, summary_markdown(self.results))
                self.notes.append(f"results: {path}; summary: {path.with_suffix('.summary.md')}")
            except outputs.OutputError as exc:
                self.failures.append(f"bce-conformance: {exc}")
        if self.failures or missing:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.results:
            terminalreporter.write_sep("=", "bce-conformance summary")
            terminalreporter.write(summary_markdown(self.ordered()))
        for note in self.notes:
            terminalreporter.write_line(note, bold=note.startswith("PARTIAL"))
        for failure in self.failures:
            terminalreporter.write_line(failure, red=True, bold=True)


def _exit_status(worker) -> int | None:
    """A dead xdist worker's exit status (negative: the signal that ended it), or None if unknown."""
    popen = getattr(getattr(getattr(worker, "gateway", None), "_io", None), "popen", None)
    if popen is None:
        return None
    try:
        return popen.wait(timeout=10)
    except (subprocess.TimeoutExpired, OSError):  # still running, or no process to wait for
        return None


def verdict_outcome(result: Result) -> None:
    """Turns a result into the test's outcome: pass (exact; acceptable under a documented variant; or
    conditioned, within the condition-aware bound: the summary lists both apart), fail, xfail (known
    divergence) or skip (unsupported)."""
    verdict = Verdict(result.verdict)
    if verdict is Verdict.UNSUPPORTED:
        pytest.skip(f"unsupported: {result.message}")
    if verdict is Verdict.KNOWN_DIVERGENCE:
        # pytest.xfail's exception without its traceback (pytrace=False, as pytest.fail below): pytest would format
        # every frame's source for a report that only the reason reaches (a tenth of a framework env's time)
        raise pytest.xfail.Exception(f"known divergence {result.divergence}: {result.source}", pytrace=False)
    if verdict not in (Verdict.EXACT, Verdict.ACCEPTABLE, Verdict.CONDITIONED):
        pytest.fail(failure_text(result), pytrace=False)
