"""Runs a plan's checks in a worker process that the run can kill, so that nothing a framework does
in a check can take another check's result, or the run's, with it.

The run (``python -m conformance run``, or the pytest plugin, in each pytest or xdist process) keeps a
``Supervisor``; the supervisor starts one worker process, ``python -m conformance.isolation``, which
builds the same plan (the same cases, framework and known divergences, checked by a digest of the
checks' ids), then runs the checks it is sent one at a time with ``Runner.run`` and sends each result
back. The worker tells the supervisor when a framework call starts and when it returns. So:

- a call that **crashes the process** (a segfault, an abort, ``os._exit``) ends the worker: the
  supervisor records that check's ``error`` with the exit status or signal, starts a new worker
  and goes on, however many times it happens;
- a call that **hangs** is stopped by SIGALRM in the worker (``runner.time_limit``); one that does not
  return to Python (C code, or a C call that holds the GIL, where no thread of the worker can run)
  is ended by the supervisor past the limit (by as much again, at most ``WATCHDOG_GRACE``) by killing the worker, and the
  timeout is charged to the check whose call was running, never to the next;
- ``SystemExit`` and ``KeyboardInterrupt`` raised by an API are that check's error (``Runner``); the
  worker runs in a session of its own, so a Ctrl-C at the terminal reaches only the run, which stops
  the worker and says its results are partial;
- **child processes** an API leaves running (every process of the worker's process group but the
  worker, after the check: Linux's /proc) are killed and make that check an ``error`` naming them; the
  whole group is killed when the worker ends, so no orphan keeps the run's output open.

``CONFORMANCE_ISOLATION=off`` runs the checks in the run's own process (no crash isolation; the
project's own tests use it where they test something else), as on platforms without ``fork``.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Self

from conformance.results import Result

ISOLATION_ENV = "CONFORMANCE_ISOLATION"  # "process" (the default) or "off"
WATCHDOG_GRACE = 5.0  # at most this many seconds past the limit (and at most the limit again) a call SIGALRM could not stop is killed
FAILED_STARTS = 2  # workers in a row that die before they are ready: the framework cannot be run here at all


def enabled() -> bool:
    """Whether checks run in a worker process: on POSIX, unless ``CONFORMANCE_ISOLATION=off``."""
    setting = os.environ.get(ISOLATION_ENV, "process").strip().lower()
    if setting not in ("process", "off"):
        raise ValueError(f"{ISOLATION_ENV}={setting!r}: 'process' (the default) or 'off'")
    return setting == "process" and os.name == "posix"


@dataclass(frozen=True, eq=False)
class WorkerSpec:
    """What a worker needs to build the run's plan: the arguments of ``runner.plan``, and the run's
    numerics record, so that the worker applies the same known divergences without probing again."""

    framework: str | None
    case_paths: tuple[str, ...]
    divergence_files: tuple[str, ...] = ()
    adapter: str | None = None
    timeout: float | None = None
    numerics: dict | None = None
    device: str = "cpu"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        return cls(**{**data, "case_paths": tuple(data["case_paths"]), "divergence_files": tuple(data["divergence_files"])})


def checks_digest(check_ids) -> str:
    """A digest of the checks' ids, in order: the worker's plan must be the run's."""
    return hashlib.sha256("\n".join(check_ids).encode("utf-8")).hexdigest()


def describe_status(status: int | None) -> str:
    if status is None:
        return "the process ended"
    if status < 0:
        try:
            return f"signal {-status} ({signal.Signals(-status).name})"
        except ValueError:
            return f"signal {-status}"
    return f"exit status {status}"


class WorkerLost(Exception):
    """The worker ended (or was ended) while running a check."""


@dataclass
class _Worker:
    process: subprocess.Popen
    connection: Connection  # the worker's messages
    commands: Connection  # the checks sent to it


@dataclass
class Supervisor:
    """Runs the plan's checks (``check_ids``, in order) in a worker process; ``run(index)`` returns the
    result record of check ``index``, or ``error(index, message)``'s for a check that ended its worker.
    A context manager: leaving it stops the worker and everything it started."""

    spec: WorkerSpec
    check_ids: list[str]
    error: object  # (index, message) -> Result: the check's error record
    timeout: float | None = None
    output: int | None = None  # the file descriptor for the worker's stdout and stderr (None: this process's)
    _worker: _Worker | None = None
    _failed_starts: int = 0
    _broken: str = ""  # why no worker can run the checks (the framework cannot even be loaded in one)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def grace(self) -> float:
        """How long past the limit the run waits for SIGALRM to stop a call before it kills the worker."""
        return min(WATCHDOG_GRACE, self.timeout or WATCHDOG_GRACE)

    def close(self) -> None:
        if self._worker is not None:
            self._stop(self._worker)
            self._worker = None

    def run(self, index: int) -> Result:
        if self._broken:
            return self.error(index, self._broken)
        try:
            worker = self._send(index)
        except WorkerLost as exc:
            return self.error(index, str(exc))
        try:
            return self._await_result(worker, index)
        except WorkerLost as exc:  # that check's crash: the next check gets a new worker, however many crash
            self._worker = None
            return self.error(index, str(exc))
        except BaseException:  # a Ctrl-C of the run: no worker outlives it
            self.close()
            raise

    def _send(self, index: int) -> _Worker:
        """Sends check ``index`` to the worker, starting one where there is none, or a new one where the
        last died between checks (then the check never reached it)."""
        for _ in range(2):
            worker = self._worker or self._start()
            try:
                worker.commands.send_bytes(json.dumps({"run": index}).encode())
                return worker
            except OSError:  # it died after its last result
                self._stop(worker)
                self._worker = None
        raise WorkerLost("worker crashed: two workers in a row died before taking this check")

    def _await_result(self, worker: _Worker, index: int) -> Result:
        call_started = None
        while True:
            wait = None
            if call_started is not None and self.timeout:
                wait = max(call_started + self.timeout + self.grace - time.monotonic(), 0.0)
            if not worker.connection.poll(wait):  # the call outlived the limit and SIGALRM: end the worker
                self._stop(worker, kill=True)
                self._worker = None
                from conformance.runner import timeout_message

                return self.error(
                    index,
                    f"{timeout_message(self.timeout)}: it did not return to Python, so the run killed its "
                    f"worker process (pid {worker.process.pid}) {self.grace:g} s past the limit",
                )
            try:
                message = json.loads(worker.connection.recv_bytes())
            except (EOFError, OSError):
                status = self._stop(worker)
                raise WorkerLost(
                    f"worker crashed: {describe_status(status)}: the worker process ended while running this "
                    "check (the framework's call ended the process); the other checks ran in a new worker"
                ) from None
            if "call" in message:
                call_started = time.monotonic()
            elif "returned" in message:
                call_started = None
            elif "result" in message:
                return Result.from_json(message["result"])

    def _start(self) -> _Worker:
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "conformance.isolation", str(to_worker_r), str(from_worker_w), str(os.getpid())],
            pass_fds=(to_worker_r, from_worker_w),
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=self.output,
            start_new_session=True,  # its own process group: a Ctrl-C reaches the run, and the group is killed whole
        )
        os.close(to_worker_r)
        os.close(from_worker_w)
        worker = _Worker(process, Connection(from_worker_r, writable=False), Connection(to_worker_w, readable=False))
        try:
            worker.commands.send_bytes(self.spec.to_json().encode())
            ready = json.loads(worker.connection.recv_bytes())
        except (EOFError, OSError):  # (a broken pipe too)
            status = self._stop(worker)
            self._failed_starts += 1
            if self._failed_starts >= FAILED_STARTS:
                self._broken = f"not run: {self._failed_starts} worker processes in a row could not start ({describe_status(status)})"
            raise WorkerLost(f"worker crashed while starting: {describe_status(status)}") from None
        if "error" in ready or ready.get("digest") != checks_digest(self.check_ids):
            self._stop(worker)
            why = ready.get("error") or "its plan's checks differ from the run's"
            self._broken = f"not run: the worker process could not build the run's plan: {why}"
            raise WorkerLost(self._broken)
        self._worker, self._failed_starts = worker, 0
        return worker

    @staticmethod
    def _stop(worker: _Worker, kill: bool = False) -> int | None:
        """Ends the worker and its process group (``kill``: at once, else once it has seen its commands
        closed); its exit status (negative: the signal), None where it was killed here."""
        for connection in (worker.commands, worker.connection):
            try:
                connection.close()
            except OSError:
                pass
        status = None
        if not kill:
            try:
                status = worker.process.wait(timeout=2)  # it ends by itself once its commands are closed
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(worker.process.pid, signal.SIGKILL)  # and whatever it started
        except (ProcessLookupError, PermissionError):
            pass
        if status is None:
            status = worker.process.wait()
            status = None if status == -signal.SIGKILL else status  # killed here, not by the framework
        return status


@contextmanager
def executor(run_plan, output: int | None = None):
    """A function running one of ``run_plan``'s checks and returning its result: in a supervised
    worker process where ``enabled()``, else ``run_plan.runner.run`` in this process. ``output``: a
    file descriptor for what the worker prints (pytest's plugin gives the stderr it found, which its
    capturing of each test's output does not swallow)."""
    if not enabled() or run_plan.spec is None:
        yield run_plan.runner.run
        return
    checks = run_plan.checks
    position = {id(check): index for index, check in enumerate(checks)}
    supervisor = Supervisor(
        run_plan.spec,
        [check.id for check in checks],
        lambda index, message: run_plan.runner.error(checks[index], message),
        run_plan.runner.timeout,
        output,
    )
    with supervisor:
        yield lambda check: supervisor.run(position[id(check)])


# ---------------------------------------------------------------------------------------------
# the worker process


def _group_members() -> list[int]:
    """The processes of this worker's process group other than itself (Linux's /proc; elsewhere none)."""
    me, group = os.getpid(), os.getpgrp()
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid, state, pgrp = int(entry.name), fields[0], int(fields[2])
        if pgrp == group and pid != me and state != "Z":
            members.append(pid)
    return sorted(members)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _forks() -> int | None:
    """Processes (and threads) created on the machine since boot (Linux /proc/stat), or None: when it has
    not changed during a check, the check started no process and the scan of /proc is skipped."""
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"processes "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _kill_leftovers(forks_before: int | None) -> str:
    """Kills the processes a check left running in the worker's group; says which, or ''."""
    if forks_before is not None and _forks() == forks_before:
        return ""
    members = _group_members()
    if not members:
        return ""
    named = "; ".join(f"pid {pid}: {_command_line(pid)[:120]}" for pid in members)
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in members:  # reap those that were its children
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    return named


def _die_with_parent(parent: int) -> None:
    """Linux: the worker is killed when the run that started it dies (a SIGKILL of the run would
    otherwise leave a worker hung in C code running)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the run died before the prctl took effect
        os._exit(1)


def worker_main(commands_fd: int, messages_fd: int, parent: int) -> int:
    from conformance import memory
    from conformance.runner import plan

    _die_with_parent(parent)
    memory.keep_freed_memory()  # the checks' arrays (up to 2^20 elements a case) are reused, not faulted in again
    commands = Connection(commands_fd, writable=False)
    messages = Connection(messages_fd, readable=False)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)

    def send(**message) -> None:
        messages.send_bytes(json.dumps(message).encode())

    spec = WorkerSpec.from_json(commands.recv_bytes().decode())
    try:
        run_plan = plan(
            spec.framework,
            list(spec.case_paths),
            list(spec.divergence_files),
            adapter=spec.adapter,
            timeout=spec.timeout,
            numerics_record=spec.numerics,
            device=spec.device,
        )
    except Exception as exc:  # noqa: BLE001 -- the run built this plan itself, so this is unexpected: say why, not a traceback
        send(error=f"{type(exc).__name__}: {exc}")
        return 1
    send(digest=checks_digest(check.id for check in run_plan.checks))

    @contextmanager
    def calling():  # the supervisor's watchdog times the framework's calls, and only those
        send(call=True)
        try:
            yield
        finally:  # returned, raised, or stopped by SIGALRM
            send(returned=True)

    run_plan.runner.calling = calling
    while True:
        try:
            command = json.loads(commands.recv_bytes())
        except (EOFError, OSError):
            return 0  # the run closed its end: done
        check = run_plan.checks[command["run"]]
        forks = _forks()
        result = run_plan.runner.run(check)
        leftovers = _kill_leftovers(forks)
        if leftovers:
            result = run_plan.runner.error(
                check, f"the call left child processes running, which the run killed: {leftovers}"
            )
        send(result=result.to_json())


if __name__ == "__main__":
    sys.exit(worker_main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
