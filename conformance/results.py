"""Result records and their JSON Lines file: one record per (case, API, dtype, reduction).

Records are written as they are produced, a line each and flushed, so a later crash loses
nothing already done. Floats that JSON cannot hold (inf, NaN) are written as strings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

RESULTS_FORMAT = 1


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
    floor_accepted: int = 0  # elements accepted only through the dtype's absolute floor (flushed subnormals)
    message: str = ""  # why: the failure, the unsupported combination, the error, the divergence's reason
    source: str = ""  # a known divergence's source (issue or documentation)
    divergence: str = ""  # a known divergence's id
    variant: str = ""  # the documented variant an acceptable result matches
    variant_max_ulp: float | None = None  # its largest error in ULPs against that variant
    reduced_by: str = ""
    worst: list[dict[str, Any]] = field(default_factory=list)  # inputs (hex), got, want, ulp
    repro: str = ""  # one line of Python reproducing the worst element with the framework alone
    file: str = ""  # the case file
    framework_versions: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        suffix = "" if self.quantity == "value" else f"-{self.quantity}"
        return f"{self.case}-{self.api}-{self.dtype}-{self.reduction}{suffix}"

    def to_json(self) -> str:
        return json.dumps(_jsonable(asdict(self)), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> "Result":
        data = json.loads(line)
        if isinstance(data.get("max_ulp"), str):
            data["max_ulp"] = float(data["max_ulp"])
        return cls(**data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "inf", "-inf", "nan"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class ResultWriter:
    """Appends records to a JSON Lines file, one flushed line per result."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")

    def write(self, result: Result) -> None:
        self._file.write(result.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read(path: str | Path) -> list[Result]:
    """Every complete record of a results file (a line cut short by a crash is left out)."""
    results = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            results.append(Result.from_json(line))
        except (json.JSONDecodeError, TypeError):
            continue
    return results
