"""The README's claims about the command line, checked against the code that defines it."""

from __future__ import annotations

import re
from pathlib import Path

from conformance import plugin
from conformance.cli import parser

# its lines joined: a claim may wrap
README = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())


class _Recorder:
    """Stands in for pytest's parser: records each option and the environment variable its help names."""

    def __init__(self):
        self.options: dict[str, str | None] = {}

    def getgroup(self, *args, **kwargs):
        return self

    def addoption(self, *names, **kwargs):
        found = re.search(r"\(env (CONFORMANCE_[A-Z_]+)", kwargs.get("help", ""))
        self.options[names[0]] = found.group(1) if found else None

    def addini(self, *args, **kwargs):
        pass


def test_every_plugin_option_is_in_the_readme_with_its_environment_variable():
    recorder = _Recorder()
    plugin.pytest_addoption(recorder)
    assert "--conformance-name" in recorder.options and recorder.options["--conformance-divergences"] is None
    for option, variable in recorder.options.items():
        if variable:
            assert f"`{option}` (`{variable}`" in README, option
        else:
            claim = re.search(rf"`{re.escape(option)}` \(([^)]*)\)", README)
            assert claim and "no environment variable" in claim.group(1), option


def test_the_readme_names_every_command():
    commands = set(parser()._subparsers._group_actions[0].choices)
    assert len(commands) == 8
    listed = re.search(r"`python -m conformance --help` lists the (\w+) commands \(([^)]*)\)", README)
    assert listed and set(re.findall(r"`(\w+)`", listed.group(2))) == commands
