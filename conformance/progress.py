"""A ``run``'s progress, on stderr: a line per case file as its checks finish (``<file>: <N> checks,
<T> s``), under a tqdm bar on a terminal, and the elapsed time at the end (``<N> checks in <T> s``).
Never on stdout and never in a results file: those stay the same, byte for byte, however long a run
takes."""

from __future__ import annotations

import sys
import time
from collections import Counter

MODES = ("auto", "bar", "lines", "none")  # auto: a bar on a terminal (where tqdm is installed), lines otherwise


class ProgressError(Exception):
    """The progress display asked for cannot be shown."""


class Progress:
    """Tells ``stream`` how far the run of ``checks`` (a run's checks, each case file's contiguous) has got.

    ``start()`` as the checks start, ``done(check)`` after each; ``print(text)`` for what the run writes
    to stdout meanwhile (so that it does not tear the bar); ``close()`` when the checks end, interrupted
    or not; ``finish()`` last."""

    def __init__(self, checks, mode: str = "auto", stream=None):
        if mode not in MODES:
            raise ProgressError(f"progress {mode!r}: one of {', '.join(MODES)}")
        self.stream = sys.stderr if stream is None else stream
        self.total = len(checks)
        self.sizes = Counter(str(check.case.file) for check in checks)  # each case file's checks
        self.left = Counter(self.sizes)  # those still to run
        self.finished = 0
        self.started = self.file_started = time.monotonic()
        self.bar = None
        if mode == "auto":
            mode = "bar" if _is_terminal(self.stream) and _tqdm() is not None else "lines"
        if mode == "bar" and _tqdm() is None:
            raise ProgressError("--progress bar needs the tqdm package (pip install tqdm); --progress lines shows a line per file")
        self.mode = mode

    def start(self) -> None:
        """The checks start: the clock, and the bar."""
        self.started = self.file_started = time.monotonic()
        if self.mode == "bar":
            self.bar = _tqdm()(total=self.total, file=self.stream, unit="check", dynamic_ncols=True, leave=False)

    def done(self, check) -> None:
        self.finished += 1
        file = str(check.case.file)
        self.left[file] -= 1
        if self.bar is not None:
            self.bar.set_description_str(check.case.file.name, refresh=False)  # the lines name the whole path
            self.bar.update(1)
        if self.left[file] == 0:
            now = time.monotonic()
            self._line(f"{file}: {self.sizes[file]} checks, {now - self.file_started:.1f} s")
            self.file_started = now

    def print(self, text: str) -> None:
        """Writes ``text`` and a newline to stdout, above the bar."""
        if self.bar is not None:
            self.bar.write(text, file=sys.stdout)
            sys.stdout.flush()
        else:
            print(text, flush=True)

    def close(self) -> None:
        """Takes the bar off the terminal (the run ended, or stopped); the per-file lines stay."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def finish(self) -> None:
        """The last line: how many checks ran, in how long."""
        self.close()
        ran = f"{self.finished}" if self.finished == self.total else f"{self.finished} of {self.total}"
        self._line(f"{ran} checks in {time.monotonic() - self.started:.1f} s")

    def _line(self, text: str) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _tqdm():
    """tqdm's class, or None where it is not installed (a bar is then no option; the lines are)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm
