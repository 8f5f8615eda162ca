"""The pytest plugin: every (case, API, dtype, reduction) becomes one parametrized test.

Registered through the ``pytest11`` entry point. It does nothing until a test asks for the
``conformance_check`` argument (``conformance/suite/test_conformance.py`` does):

    pytest --pyargs conformance.suite --framework torch [--conformance-cases cases] [-k blog]

or, for a framework this project does not ship (docs/adapters.md):

    pytest --pyargs conformance.suite --adapter path/to/my_adapter.py:load

Options (and the environment variables that set their defaults): ``--framework``
(CONFORMANCE_FRAMEWORK), ``--adapter`` (CONFORMANCE_ADAPTER), ``--conformance-cases``
(CONFORMANCE_CASES), ``--conformance-out`` (CONFORMANCE_OUT), ``--conformance-min-tests``
(CONFORMANCE_MIN_TESTS), ``--conformance-divergences``.
Results travel in each report's ``user_properties``, so pytest-xdist workers' results reach the
process that writes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conformance.adapters import FrameworkUnavailable
from conformance.cases import CaseError
from conformance.environment import describe as describe_environment
from conformance.environment import header as environment_header
from conformance.results import Result, ResultWriter, write_atomically, write_timing
from conformance.runner import Plan, plan
from conformance.summary import failure_text, summary_markdown
from conformance.verdicts import Verdict

RESULT_PROPERTY = "conformance_result"
plan_key = pytest.StashKey[Plan]()
environment_key = pytest.StashKey[dict]()


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
        config.stash[plan_key] = plan(framework, paths, config.getoption("conformance_divergences"), adapter=adapter)
    except (CaseError, FrameworkUnavailable) as exc:
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
        config.stash[environment_key] = describe_environment(config.stash[plan_key].framework)
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

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.writer is not None:
            self.writer.close()
            write_timing(self.writer.path.with_name(f"{self.name(self.results[0])}.timing.json"), self.started)
        if hasattr(self.config, "workerinput") or plan_key not in self.config.stash or self.config.option.collectonly:
            return
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
