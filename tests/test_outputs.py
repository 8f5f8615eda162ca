"""Outputs replaced whole or not at all, one writer at a time, and output folders or names that cannot be
used: clear errors (conformance.outputs, the `run` and `report` commands)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import outputs
from conformance.cli import main
from conformance.results import ResultWriter

REPO = Path(__file__).resolve().parents[1]
SEED = str(REPO / "cases" / "seed.yaml")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):  # the checks run in process (tests/conftest.py): these tests are about the files
    for name in ("CONFORMANCE_TIMEOUT", "CONFORMANCE_MIN_TESTS", "CONFORMANCE_OUT", "CONFORMANCE_NAME"):
        monkeypatch.delenv(name, raising=False)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_second_writer_of_the_same_name_is_refused_and_another_name_is_not(tmp_path):
    busy = rf"another run \(pid {os.getpid()}\) is writing numpy\.\* there"
    with outputs.locked(tmp_path, "numpy"):
        with pytest.raises(outputs.OutputBusy, match=busy), outputs.locked(tmp_path, "numpy"):
            pass
        with outputs.locked(tmp_path, "torch"):
            pass
    with outputs.locked(tmp_path, "numpy"):  # released
        pass
    assert list(tmp_path.iterdir()) == []  # no lock file left


@pytest.mark.parametrize("name", ["../x", "../../x", "a/b", ".hidden", "", "x\n", "-n", "a" * 101])
def test_a_name_that_would_leave_the_folder_is_refused(tmp_path, name):
    with pytest.raises(outputs.OutputError, match="use letters, digits"):
        outputs.check_name(name)


def test_replace_together_commits_all_or_nothing(tmp_path, monkeypatch):
    old = {"a.txt": b"old a", "b.txt": b"old b", "c.txt": b"old c"}
    for name, data in old.items():
        (tmp_path / name).write_bytes(data)
    new = {name: data.replace(b"old", b"new") for name, data in old.items()}
    real_replace, renamed = os.replace, []

    def killed_after_one_rename(source, target):  # a kill between the renames of the commit
        if str(target).endswith(".txt"):
            if renamed:
                raise SystemExit("killed")
            renamed.append(target)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_after_one_rename)
    with pytest.raises(SystemExit):
        outputs.replace_together(tmp_path, "set", new)
    monkeypatch.setattr(os, "replace", real_replace)
    mixed = {name: (tmp_path / name).read_bytes() for name in old}
    assert mixed != old and mixed != new  # what the kill left: a mix, with its journal
    with outputs.locked(tmp_path, "set"):  # the next writer rolls the commit forward
        pass
    assert contents(tmp_path) == new


def test_a_commit_killed_before_its_journal_leaves_the_old_files(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_bytes(b"old")
    real_replace = os.replace

    def killed_at_the_journal(source, target):
        if str(target).endswith(".commit"):
            raise SystemExit("killed")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", killed_at_the_journal)
    with pytest.raises(SystemExit):
        outputs.replace_together(tmp_path, "set", {"a.txt": b"new", "b.txt": b"new"})
    monkeypatch.setattr(os, "replace", real_replace)
    with outputs.locked(tmp_path, "set"):
        pass
    assert contents(tmp_path) == {"a.txt": b"old"}  # and nothing staged left


def test_an_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(outputs.OutputError, match=f"cannot write to the output folder {blocker / 'out'}"), outputs.locked(
        blocker / "out", "numpy"
    ):
        pass


def test_run_refuses_a_name_outside_the_folder_and_an_unwritable_folder(tmp_path, capsys):
    assert main(["run", "--framework", "rounded", "--cases", SEED, "--out", str(tmp_path), "--name", "../../x"]) == 2
    assert "results name '../../x': use letters, digits" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [] and not (tmp_path.parent.parent / "x.jsonl").exists()
    (tmp_path / "file").write_text("")
    assert main(["run", "--framework", "rounded", "--cases", SEED, "--out", str(tmp_path / "file" / "out")]) == 2
    assert "error: cannot write to the output folder" in capsys.readouterr().err


def test_a_full_disk_mid_run_is_a_clear_error_and_keeps_the_previous_results(tmp_path, monkeypatch, capsys):
    args = ["run", "--framework", "rounded", "--cases", SEED, "--out", str(tmp_path)]
    assert main(args) == 0
    before = contents(tmp_path)
    capsys.readouterr()
    real_write, written = ResultWriter.write, []

    def full(self, result):
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(result)
        real_write(self, result)

    monkeypatch.setattr(ResultWriter, "write", full)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the previous complete results are untouched" in err
    after = contents(tmp_path)
    for name in ("rounded.jsonl", "rounded.summary.md", "rounded.timing.json"):
        assert after[name] == before[name]


@pytest.mark.parametrize("value", ["soon", "nan", "-1", "inf"])
def test_a_bad_time_limit_is_a_clear_error_of_run_only(tmp_path, monkeypatch, capsys, value):
    monkeypatch.setenv("CONFORMANCE_TIMEOUT", value)
    assert main(["validate", SEED]) == 0  # the other subcommands are not affected
    assert main(["summary", str(tmp_path)]) == 2  # (no results there)
    assert "time limit" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--framework", "rounded", "--cases", SEED, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert f"time limit {value!r}: a finite number of seconds, 0 for no limit" in capsys.readouterr().err


@pytest.mark.processes
def test_a_bad_time_limit_or_name_is_a_usage_error_of_pytest_not_a_traceback(tmp_path, monkeypatch):
    command = [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--framework", "rounded",
               "--conformance-cases", SEED]
    monkeypatch.setenv("CONFORMANCE_TIMEOUT", "soon")
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR and "Traceback" not in done.stderr, done.stderr
    assert "bce-conformance: time limit 'soon'" in done.stderr
    monkeypatch.delenv("CONFORMANCE_TIMEOUT")
    done = subprocess.run([*command, "--conformance-out", str(tmp_path), "--conformance-name", "../x"], capture_output=True,
                          text=True, check=False, cwd=tmp_path)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR and "results name '../x': use letters, digits" in done.stderr
    assert not (tmp_path.parent / "x.jsonl").exists()


def test_the_report_replaces_its_three_files_together(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--framework", "rounded", "--cases", SEED, "--out", str(results)]) == 0
    assert main(["report", str(results), "--out", str(tmp_path / "report")]) == 0
    assert sorted(contents(tmp_path / "report")) == ["junit.xml", "report.html", "summary.md"]
    with outputs.locked(tmp_path / "report", "report"):  # a report being written: a second one is refused
        assert main(["report", str(results), "--out", str(tmp_path / "report")]) == 2
    assert "another run" in capsys.readouterr().err


@pytest.mark.processes
def test_fault_injection_rounds_hold_every_invariant(tmp_path, monkeypatch):
    """A few rounds of tests/fault_injection.py (kills at seeded random moments); CI's tests run it so."""
    monkeypatch.delenv("CONFORMANCE_ISOLATION")  # the real thing: the run and its checks' worker
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fault_injection.py"), "--kills", "2", "--seed", "3", "--work", str(tmp_path)],
        capture_output=True, text=True, check=False, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every invariant held" in done.stdout


def test_the_report_of_an_incomplete_results_file_says_so_and_exits_2(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["run", "--framework", "rounded", "--cases", SEED, "--out", str(results)]) == 0
    path = results / "rounded.jsonl"
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-3]), encoding="utf-8")
    assert main(["report", str(results), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert f"warning: {path}: not a whole, valid run" in err and "3 missing" in err
    assert sorted(contents(tmp_path / "report")) == ["junit.xml", "report.html", "summary.md"]  # written all the same
