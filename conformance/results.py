"""Results files: JSON Lines, an environment record first, then one record per result.

Format ``bce-conformance-results`` version 2, described by ``conformance/schema/results.schema.json``
(shipped with the package; docs/results.md explains each field):

- line 1, the environment: ``{"format": "bce-conformance-results", "format_version": 2,
  "environment": {...}}`` (framework and versions, Python, platform, CPU, device, the subnormal
  probe, mpmath, the suite's version);
- every further line, one ``Result``: (case, API, dtype, reduction, quantity) and its verdict.

Records are written as they are produced, a line each and flushed, so a later crash loses
nothing already done. Nothing in the file depends on the time or the order of parallel workers:
the same run on the same versions gives the same bytes (a run's timing goes to a separate
``<name>.timing.json``). Floats that JSON cannot hold (inf, NaN) are written as strings.
"""

from __future__ import annotations

import json
import math
import os
import time
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

FORMAT = "bce-conformance-results"
FORMAT_VERSION = 2
FLOAT_FIELDS = ("max_ulp", "median_ulp", "variant_max_ulp")


class ResultsError(Exception):
    """A results file that cannot be read: missing, not JSON Lines, or another format or version."""


@dataclass
class Result:
    case: str  # "<file stem>/<id>"
    framework: str
    api: str
    op: str
    dtype: str
    reduction: str
    verdict: str  # a conformance.verdicts.Verdict value
    quantity: str = "value"  # "value": the loss; "grad" / "grad_target": its gradient with respect to the input / the target
    max_ulp: float | None = None  # the largest error in ULPs over the result's elements
    median_ulp: float | None = None  # the median error in ULPs over the result's elements
    floor_accepted: int = 0  # elements accepted only through the dtype's absolute floor (flushed subnormals)
    message: str = ""  # why: the failure, the unsupported combination, the error, the divergence's reason
    source: str = ""  # a known divergence's source (issue or documentation)
    divergence: str = ""  # a known divergence's id
    # that divergence's environment condition, its `when:` as written (conformance.numerics), where it has one
    when: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant: str = ""  # the documented variant an acceptable result matches
    variant_max_ulp: float | None = None  # its largest error in ULPs against that variant
    reduced_by: str = ""
    worst: list[dict[str, Any]] = field(default_factory=list)  # inputs (hex), got, want, ulp
    repro: str = ""  # one line of Python reproducing the worst element with the framework alone
    file: str = ""  # the case file
    framework_versions: dict[str, str] = field(default_factory=dict)
    # a sweep case's every element, for the report's plots: {"x": logits or probs, "target", "got", "want", "ulp"}
    elements: dict[str, list] | None = None

    @property
    def id(self) -> str:
        suffix = "" if self.quantity == "value" else f"-{self.quantity}"
        return f"{self.case}-{self.api}-{self.dtype}-{self.reduction}{suffix}"

    def to_json(self) -> str:
        data = asdict(self)
        if data["elements"] is None:
            del data["elements"]  # only sweep cases carry them
        if not data["when"]:
            del data["when"]  # only a divergence with an environment condition has one
        return json.dumps(_jsonable(data), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> "Result":
        data = json.loads(line)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TypeError(f"unknown result fields {sorted(unknown)}")
        for name in FLOAT_FIELDS:
            if isinstance(data.get(name), str):
                data[name] = float(data[name])
        if data.get("elements"):
            data["elements"] = {
                k: [float(v) if isinstance(v, str) else v for v in vs] if isinstance(vs, list) else vs
                for k, vs in data["elements"].items()
            }
        return cls(**data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "inf", "-inf", "nan"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def environment_line(environment: dict[str, Any]) -> str:
    return json.dumps(
        _jsonable({"format": FORMAT, "format_version": FORMAT_VERSION, "environment": environment}), ensure_ascii=False
    )


class ResultWriter:
    """Writes a results file: the environment record, then one flushed line per result."""

    def __init__(self, path: str | Path, environment: dict[str, Any] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._file.write(environment_line(environment or {}) + "\n")
        self._file.flush()

    def write(self, result: Result) -> None:
        self._file.write(result.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Run:
    """One results file: the environment it ran in and its results."""

    path: Path
    environment: dict[str, Any]
    results: list[Result]
    truncated: int = 0  # lines that could not be read (a line cut short by a crash)

    @property
    def framework(self) -> str:
        return self.environment.get("framework") or (self.results[0].framework if self.results else self.path.stem)

    @property
    def versions(self) -> dict[str, str]:
        return self.environment.get("framework_versions") or (self.results[0].framework_versions if self.results else {})

    @property
    def label(self) -> str:
        """``jax 0.10.2``: the framework and the version of its main package (all of them if none is named alike)."""
        versions = self.versions
        main = versions.get(self.framework)
        if main is None:
            main = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            return f"{self.framework} ({main})" if main else self.framework
        return f"{self.framework} {main}"


def read_run(path: str | Path) -> Run:
    """A results file. A line cut short by a crash (the last one) is counted in ``truncated`` and left
    out; a file of another format or version is a ``ResultsError``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read the results file ({exc})") from None
    environment: dict[str, Any] = {}
    results: list[Result] = []
    truncated = 0
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            truncated += 1
            continue
        if isinstance(data, dict) and "format" in data:
            if data.get("format") != FORMAT or data.get("format_version") != FORMAT_VERSION:
                raise ResultsError(
                    f"{path}:{number}: results format {data.get('format')!r} version {data.get('format_version')!r}; "
                    f"this is bce-conformance reading {FORMAT!r} version {FORMAT_VERSION}"
                )
            environment = data.get("environment") or {}
            continue
        try:
            results.append(Result.from_json(line))
        except (TypeError, ValueError) as exc:
            raise ResultsError(f"{path}:{number}: not a result record ({exc})") from None
    return Run(path, environment, results, truncated)


def read(path: str | Path) -> list[Result]:
    """Every complete result record of a results file (a line cut short by a crash is left out)."""
    return read_run(path).results


def results_files(paths) -> list[Path]:
    """The results files named, a folder standing for every ``*.jsonl`` in it, sorted."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return files


def read_runs(paths) -> list[Run]:
    """Every results file under ``paths`` (files, or folders of ``*.jsonl``), in the order given."""
    return [read_run(path) for path in results_files(paths)]


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Writes ``data`` (text as UTF-8) to a temporary file beside ``path``, then renames it over
    ``path``: a reader (or a run killed meanwhile) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_timing(path: str | Path, started: float) -> Path:
    """A run's start time and duration: kept apart from the results file so that the results are the
    same bytes run after run."""
    timing = {
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
    }
    return write_atomically(path, json.dumps(timing) + "\n")
