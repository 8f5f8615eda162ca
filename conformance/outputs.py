"""A run's output files: one writer per name at a time, and a set of files replaced whole and together.

Every writer of ``<folder>/<name>.*`` (a framework run's ``<name>.jsonl``, ``.summary.md``,
``.timing.json``; the report's ``summary.md``, ``report.html``, ``junit.xml`` under the name ``report``)
first takes ``locked(folder, name)``: an exclusive lock on ``<folder>/.<name>.lock``, refused at once
(``OutputBusy``, naming the holder's pid) while another process holds it, so two runs never
interleave their lines in one file. Runs of different names (the tox envs, side by side) share a folder.

``replace_together(folder, name, files)`` writes the new files beside the old ones (``.<name>~<token>~
<file>.new``, each synced), then a journal ``.<name>~<token>.commit`` naming them (the commit point,
written atomically), then renames each over its old file and removes the journal. A process killed
before the journal leaves the old set whole; one killed after it leaves a journal, which the next
``locked`` of that name (every writer's first step) rolls forward: a reader never sees a mix that
outlives the next run. ``recover`` also removes what a killed commit left staged.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path

from conformance.results import ResultWriter, environment_line, timing_text, write_atomically
from conformance.summary import partial_markdown

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run into one folder is not refused there
    fcntl = None

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # a results name: one path component, no '..' games


class OutputError(Exception):
    """The output folder cannot be written (missing permission, a full disk, not a folder)."""


class OutputBusy(OutputError):
    """Another process is writing the same outputs."""


def check_name(name: str) -> str:
    """A results name (``--name``, ``--conformance-name``, the framework's name): letters, digits,
    ``.``, ``_``, ``-``, starting with a letter or digit, so that its files stay in the output folder."""
    if not NAME.match(name) or name in (".", ".."):
        raise OutputError(
            f"results name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or digit, at "
            "most 100 characters), so that its files stay inside the output folder"
        )
    return name


def _describe(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


@contextmanager
def locked(folder: str | Path, name: str):
    """Holds the lock of ``<folder>/<name>.*`` (creating the folder); rolls forward a commit that a
    killed writer of that name left half done. ``OutputBusy`` while another process holds it,
    ``OutputError`` when the folder cannot be written."""
    folder = Path(folder)
    check_name(name)
    lock = folder / f".{name}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            if fcntl is None:
                break
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.read(descriptor, 64).decode(errors="replace").strip() or "?"
                os.close(descriptor)
                raise OutputBusy(
                    f"{folder}: another run (pid {holder}) is writing {name}.* there; wait for it to end, or "
                    f"give this one another output folder or name"
                ) from None
            try:  # the file is still the one at the path (a releasing holder removes it): then the lock is ours
                if os.fstat(descriptor).st_ino == os.stat(lock).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        recover(folder, name)
    except OutputBusy:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {folder}: {_describe(exc)}") from None
    try:
        yield folder
    finally:
        try:
            lock.unlink()  # before the lock is released: a waiter then finds no file or a new one
        except OSError:
            pass
        os.close(descriptor)


def _sync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def replace_together(folder: str | Path, name: str, files: dict[str, str | bytes], remove: tuple[str, ...] = ()) -> list[Path]:
    """Replaces ``files`` (file name → text or bytes) in ``folder`` all together and removes the files
    named in ``remove``: after a kill at any moment, and the next ``locked(folder, name)``, either every
    one is new or every one is as it was. Call it holding ``locked(folder, name)``. ``OutputError``
    when they cannot be written (the old files then stay)."""
    folder = Path(folder)
    token = secrets.token_hex(6)
    staged = []
    try:
        for final, data in files.items():
            temporary = folder / f".{name}~{token}~{final}.new"
            with temporary.open("wb") as handle:
                handle.write(data.encode("utf-8") if isinstance(data, str) else data)
                handle.flush()
                os.fsync(handle.fileno())
            staged.append([temporary.name, final])
        journal = folder / f".{name}~{token}.commit"
        temporary = folder / f".{name}~{token}.commit.new"
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump({"replace": staged, "remove": list(remove)}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, journal)  # the commit point
        _sync_folder(folder)
    except OSError as exc:
        for temporary, _ in staged:
            (folder / temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write to the output folder {folder}: {_describe(exc)}; its previous files are kept") from None
    _apply(folder, journal)
    return [folder / final for final in files]


def _apply(folder: Path, journal: Path) -> None:
    plan = json.loads(journal.read_text(encoding="utf-8"))
    for temporary, final in plan["replace"]:
        if (folder / temporary).exists():  # else: renamed by the run that was killed after it
            os.replace(folder / temporary, folder / final)
    for stale in plan["remove"]:
        (folder / stale).unlink(missing_ok=True)
    _sync_folder(folder)
    journal.unlink()


def recover(folder: str | Path, name: str) -> None:
    """Rolls forward the commits of ``name`` that a killed writer left half done, and removes the files
    it staged for a commit it never made (call it holding the lock, as ``locked`` does)."""
    folder = Path(folder)
    for journal in sorted(folder.glob(f".{name}~*.commit")):
        try:
            _apply(folder, journal)
        except (OSError, ValueError, KeyError, TypeError):  # a journal that cannot be read was never committed
            journal.unlink(missing_ok=True)
    for leftover in folder.glob(f".{name}~*.new"):
        leftover.unlink(missing_ok=True)


class RunFiles:
    """One framework run's files in ``folder`` (call it holding ``locked(folder, name)``): results stream,
    a flushed line each, to ``<name>.jsonl.partial`` under a header with the ``planned`` count, and
    ``<name>.summary.partial.md`` says the run has not finished; ``commit`` replaces ``<name>.jsonl``,
    ``.summary.md`` and ``.timing.json`` together and removes both partial files; ``stopped`` leaves
    the previous complete files as they are and says, in the partial summary, why this run is partial."""

    def __init__(self, folder: Path, name: str, environment: dict, planned: int, started: float | None = None):
        self.folder, self.name, self.environment, self.planned = Path(folder), name, environment, planned
        self.partial = self.folder / f"{name}.jsonl.partial"
        self.partial_summary = self.folder / f"{name}.summary.partial.md"
        self.started = time.time() if started is None else started  # for the timing file
        # per result id, the seconds its check took, as its caller measured them: junit.xml's times
        self.seconds: dict[str, float] = {}
        write_atomically(self.partial_summary, partial_markdown([], planned, "it is running, or it was killed", self.kept))
        self.writer = ResultWriter(self.partial, environment, planned)

    @property
    def kept(self) -> str:
        return f"`{self.name}.jsonl` and `{self.name}.summary.md`, if there are any, are the last complete run's, untouched."

    def write(self, result, seconds: float | None = None) -> None:
        """Streams ``result``; ``seconds``, how long its check took, goes to the timing file only (the
        results stay the same bytes run after run). None (an ``error`` record for a check that never
        ran, a crashed xdist worker's): no entry, which junit.xml shows as 0."""
        self.writer.write(result)
        if seconds is not None:
            self.seconds[result.id] = seconds

    def stopped(self, results: list, why: str) -> str:
        """The run ends here without replacing the complete files; the line that says so."""
        self.writer.close()
        write_atomically(self.partial_summary, partial_markdown(results, self.planned, why, self.kept))
        return (
            f"{len(results)} of {self.planned} planned checks ran ({why}); partial results in {self.partial}, "
            f"{self.partial_summary}; the previous complete results are untouched"
        )

    def commit(self, results: list, summary: str) -> Path:
        """Replaces the complete files with this run's ``results`` (in the checks' order) and ``summary``."""
        self.writer.close()
        lines = [environment_line(self.environment, self.planned)] + [r.to_json() for r in results]
        replace_together(
            self.folder,
            self.name,
            {
                f"{self.name}.jsonl": "\n".join(lines) + "\n",
                f"{self.name}.summary.md": summary,
                f"{self.name}.timing.json": timing_text(self.started, self.seconds),
            },
            remove=(self.partial.name, self.partial_summary.name),
        )
        return self.folder / f"{self.name}.jsonl"
