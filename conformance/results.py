"""Results files: JSON Lines, an environment record first, then one record per result.

Format ``bce-conformance-results`` version 3, described by ``conformance/schema/results.schema.json``
(shipped with the package; docs/results.md explains each field):

- line 1, the header: ``{"format": "bce-conformance-results", "format_version": 3, "planned": N,
  "environment": {...}}``, ``planned`` the number of checks the run set out to run (a file with fewer
  result records, or with two records of one check, is incomplete or damaged and no reader takes it
  for a whole run) (framework and versions, Python, platform, CPU, device, the subnormal
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
import re
import stat
import time
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import IO, Any

FORMAT = "bce-conformance-results"
FORMAT_VERSION = 3  # 3: the header's `planned` count
FLOAT_FIELDS = ("max_ulp", "median_ulp", "variant_max_ulp", "bound_ratio", "condition")


class ResultsError(Exception):
    """A results file that cannot be read (missing, another format or version) or, read strictly, that is not
    whole and valid; ``problems``: each thing wrong, a line each (``path:line: what``)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


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
    # the known divergences that explain some element of it: id -> {elements, max_ulp, the span of the
    # logit or probability and of the target of the elements explained} (conformance.divergences.explain)
    explained: dict[str, dict[str, Any]] = field(default_factory=dict)
    # the known divergences (that apply) whose region its input reaches, explaining or not: a catalogue's strictness
    in_regions: list[str] = field(default_factory=list)
    # that divergence's environment condition, its `when:` as written (conformance.numerics), where it has one
    when: dict[str, dict[str, Any]] = field(default_factory=dict)
    variant: str = ""  # the documented variant an acceptable result matches
    variant_max_ulp: float | None = None  # its largest error in ULPs against that variant
    # of the elements past the tolerance (conformance.conditioning): the largest error over the condition-aware
    # bound (a `conditioned` result has it at most k) and the largest condition number
    bound_ratio: float | None = None
    condition: float | None = None
    reduced_by: str = ""
    worst: list[dict[str, Any]] = field(default_factory=list)  # inputs (hex), got, want, ulp
    repro: str = ""  # one line of Python reproducing the worst element with the framework alone
    file: str = ""  # the case file
    framework_versions: dict[str, str] = field(default_factory=dict)
    # a sweep case's every element, for the report's plots: {"x": logits or probs, "target", "got", "want", "ulp"}
    elements: dict[str, list] | None = None
    # an elementwise result's errors per input region (conformance.regions): region -> {elements, missed,
    # max_ulp, x, target (the inputs of the worst element, hex)}
    regions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # an exhaustive sweep's figures (conformance.sweep): its bit patterns, elements, correctly rounded and
    # missed counts, the ULP-error histogram and, per binade of x, elements, missed and max_ulp
    sweep: dict[str, Any] | None = None
    # where the framework computed, as it names the device (cuda:0), where that is not the CPU (conformance.devices):
    # a run on the CPU writes no such field, as before there was a choice
    device: str = ""

    @property
    def id(self) -> str:
        suffix = "" if self.quantity == "value" else f"-{self.quantity}"
        return f"{self.case}-{self.api}-{self.dtype}-{self.reduction}{suffix}"

    def to_json(self) -> str:
        # the fields themselves, not asdict's deep copy: _jsonable builds new containers where it changes anything,
        # and a sweep case's elements hold 10^5 floats
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("elements", "sweep"):
            if data[name] is None:
                del data[name]  # only sweep cases, and sweeps, carry them
        for name in ("when", "explained", "in_regions", "regions", "device"):
            if not data[name]:
                del data[name]  # only a result a known divergence concerns has them (a device: a run off the CPU)
        return json.dumps(_jsonable(data), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> Result:
        return cls.from_dict(json.loads(line))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """A record already parsed (``read_run`` parses each line once, for the schema and for this)."""
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise TypeError(f"unknown result fields {sorted(unknown)}")
        for name in FLOAT_FIELDS:
            if isinstance(data.get(name), str):
                data[name] = float(data[name])
        if data.get("elements"):
            if not isinstance(data["elements"], dict):
                raise TypeError(f"elements: a JSON {type(data['elements']).__name__}, not an object")
            data["elements"] = {
                k: [float(v) if isinstance(v, str) else v for v in vs] if isinstance(vs, list) else vs
                for k, vs in data["elements"].items()
            }
        if data.get("explained"):
            if not isinstance(data["explained"], dict):
                raise TypeError(f"explained: a JSON {type(data['explained']).__name__}, not an object")
            data["explained"] = {name: _floats(figures) for name, figures in data["explained"].items()}
        return cls(**data)


def _floats(value: Any) -> Any:
    """``_jsonable`` undone: "inf", "-inf" and "nan" inside lists and mappings read back as floats."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


_PLAIN = (int, str, bool, type(None))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # "inf", "-inf", "nan"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        # finite floats and plain scalars as they are, without a call each (a sweep case's 10^5 elements)
        return [v if (type(v) is float and math.isfinite(v)) or type(v) in _PLAIN else _jsonable(v) for v in value]
    return value


def environment_line(environment: dict[str, Any], planned: int) -> str:
    """The header line: the format, the number of checks planned and the environment record."""
    return json.dumps(
        _jsonable({"format": FORMAT, "format_version": FORMAT_VERSION, "planned": int(planned), "environment": environment}),
        ensure_ascii=False,
    )


class ResultWriter:
    """Writes a results file: the environment record, then one flushed line per result."""

    def __init__(self, path: str | Path, environment: dict[str, Any] | None, planned: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = self.path.open("w", encoding="utf-8")
        self._file.write(environment_line(environment or {}, planned) + "\n")
        self._file.flush()

    def write(self, result: Result) -> None:
        self._file.write(result.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


LISTED_PROBLEMS = 20  # problems a strict reader's error lists per file; the count is always complete
FLOAT_STRINGS = ("inf", "-inf", "nan")
HEADER_EXAMPLE = f'{{"format": "{FORMAT}", "format_version": {FORMAT_VERSION}, "planned": N, "environment": {{...}}}}'


@dataclass
class Run:
    """One results file: the environment it ran in, its results, and what is wrong with it (``problems``).

    A lenient read (``read_run(path)``, the report's and the summary's) keeps every record it can read and
    says what it could not in ``problems``; a strict one (``read_run(path, strict=True)``, the diff's and
    the baseline's) raises ``ResultsError`` instead of returning a run with any problem."""

    path: Path
    environment: dict[str, Any]
    results: list[Result]
    truncated: int = 0  # lines that could not be read (not UTF-8 JSON: a line cut short by a crash, damage)
    planned: int | None = None  # the header's count of checks planned; None where the header gives none
    # a Result.id recorded more than once -> the line numbers of all its records
    duplicates: dict[str, list[int]] = field(default_factory=dict)
    # (line, what is wrong) for every other fault, in line order; line None for the file as a whole
    faults: list[tuple[int | None, str]] = field(default_factory=list)

    @property
    def framework(self) -> str:
        return self.environment.get("framework") or (self.results[0].framework if self.results else self.path.stem)

    @property
    def versions(self) -> dict[str, str]:
        return self.environment.get("framework_versions") or (self.results[0].framework_versions if self.results else {})

    @property
    def label(self) -> str:
        """``jax 0.10.2``: the framework and the version of its main package (all of them if none is named alike);
        for a run off the CPU its device too (``torch 2.11.0 · cuda:0 (NVIDIA H200)``), so that the report shows
        one framework's runs on two devices side by side."""
        versions = self.versions
        main = versions.get(self.framework)
        if main is None:
            main = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
            label = f"{self.framework} ({main})" if main else self.framework
        else:
            label = f"{self.framework} {main}"
        device = self.results[0].device if self.results else ""  # a run's records share it (a run is one device)
        if device:
            name = (self.environment.get("settings") or {}).get("device_name")
            label += f" · {device}" + (f" ({name})" if name else "")
        return label

    @property
    def problems(self) -> list[str]:
        """Everything that keeps this file from being a whole, valid run, one line each naming ``path:line``:
        unreadable or cut-off lines, a missing or misplaced header, records that are not valid results, a
        check recorded twice, and fewer or more records than the header planned. Empty for a whole run."""
        out = [f"{self.path}:{line}: {what}" if line else f"{self.path}: {what}" for line, what in self.faults]
        for result_id, lines in self.duplicates.items():
            again = ", ".join(map(str, lines[1:]))
            out.append(
                f"{self.path}:{lines[1]}: result {result_id} recorded again (line {lines[0]}, then line {again}): "
                "each check has one record"
            )
        count = len(self.results)
        if self.planned is not None and count != self.planned:
            if count < self.planned:
                out.append(
                    f"{self.path}:1: {count} result records, {self.planned} planned in the header: "
                    f"{self.planned - count} missing (the run stopped early, or the file was cut short)"
                )
            else:
                out.append(
                    f"{self.path}:1: {count} result records, more than the {self.planned} planned in the header "
                    "(records added or repeated)"
                )
        return out


def _no_constant(name: str):
    # Python's json reads NaN / Infinity, which JSON has not: the writer spells them "nan" / "inf"
    raise ValueError(f"{name} is not JSON (the format writes it as a string)")


def _excerpt(chunk: bytes) -> str:
    text = chunk.decode("utf-8", "replace")
    return repr(text[:60] + ("…" if len(text) > 60 else ""))


ANNOTATIONS = {"description", "title", "$schema", "$id", "definitions", "default", "examples", "$comment"}
# each JSON type, as the Python types json.loads makes of it (type(), not isinstance: bool is no number here)
JSON_TYPES = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "null": lambda v: v is None,
    "boolean": lambda v: type(v) is bool,
    "number": lambda v: type(v) is int or type(v) is float,
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
}


def _same(a: Any, b: Any) -> bool:
    """JSON Schema's equality for enum / const: true is not 1."""
    return (type(a) is type(b) or not (isinstance(a, bool) or isinstance(b, bool))) and a == b


def _compile(schema: Any, definitions: dict[str, Any]):
    """A checker for the Draft-7 keywords the results schema uses: value -> None, or (path, message) of the
    first fault. jsonschema takes about 0.9 ms a result record (10 s for each side of a diff of the baselines'
    10 716 records), this about 0.05 ms. Any keyword it does not know raises NotImplementedError, and
    ``_validators`` then uses jsonschema itself (tests/test_diff_fails_closed.py checks that the two agree)."""
    if schema is True or schema == {}:
        return lambda value: None
    if schema is False:
        return lambda value: ((), "nothing is allowed here")
    unknown = set(schema) - ANNOTATIONS - {
        "$ref", "type", "enum", "const", "minimum", "pattern", "oneOf", "items",
        "properties", "required", "additionalProperties", "minProperties", "maxProperties",
    }
    if unknown:
        raise NotImplementedError(f"schema keywords {sorted(unknown)}")
    checks = []
    if "$ref" in schema:  # Draft 7: a $ref's siblings are ignored
        name = schema["$ref"].removeprefix("#/definitions/")
        if name not in definitions:
            raise NotImplementedError(f"$ref {schema['$ref']}")
        target: list = []  # compiled on first use: a definition may refer to itself

        def ref(value):
            if not target:
                target.append(_compile(definitions[name], definitions))
            return target[0](value)

        return ref
    # a fault's message is a callable, made into text only for the fault reported: a oneOf's options fail
    # by the thousand in a valid file (a number is not "inf"), and formatting each would triple the time
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        tests = [JSON_TYPES[n] for n in names]
        wanted = " or ".join(names)
        test = tests[0] if len(tests) == 1 else (lambda v: any(t(v) for t in tests))
        checks.append(lambda v: None if test(v) else ((), lambda: f"{v!r:.60} is not of type {wanted}"))
    if "enum" in schema:
        enum = schema["enum"]
        strings = frozenset(enum) if all(type(e) is str for e in enum) else None
        member = (lambda v: type(v) is str and v in strings) if strings else (lambda v: any(_same(v, e) for e in enum))
        checks.append(lambda v: None if member(v) else ((), lambda: f"{v!r:.60} is not one of {enum}"))
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v: None if _same(v, const) else ((), lambda: f"{const!r} was expected, not {v!r:.60}"))
    if "minimum" in schema:
        low = schema["minimum"]
        number = JSON_TYPES["number"]
        checks.append(lambda v: None if not number(v) or v >= low else ((), lambda: f"{v!r} is less than the minimum of {low}"))
    if "pattern" in schema:
        pattern = re.compile(schema["pattern"])
        checks.append(
            lambda v: None
            if type(v) is not str or pattern.search(v)
            else ((), lambda: f"{v!r:.60} does not match {pattern.pattern}")
        )
    if "oneOf" in schema:
        options = [_compile(option, definitions) for option in schema["oneOf"]]

        def one_of(v):
            passed = sum(option(v) is None for option in options)
            if passed == 1:
                return None
            return ((), lambda: f"{v!r:.60} is valid under {'none' if not passed else 'more than one'} of the given schemas")

        checks.append(one_of)
    if "items" in schema:
        if not isinstance(schema["items"], dict):
            raise NotImplementedError("items as a list")
        item = _compile(schema["items"], definitions)

        def items(v):
            if type(v) is list:
                for index, element in enumerate(v):
                    if fault := item(element):
                        return ((index, *fault[0]), fault[1])
            return None

        checks.append(items)
    if {"properties", "required", "additionalProperties", "minProperties", "maxProperties"} & set(schema):
        properties = {k: _compile(sub, definitions) for k, sub in schema.get("properties", {}).items()}
        required = schema.get("required", [])
        extra = schema.get("additionalProperties", True)
        other = _compile(extra, definitions) if isinstance(extra, dict) else None
        low, high = schema.get("minProperties", 0), schema.get("maxProperties")

        def obj(v):
            if type(v) is not dict:
                return None
            for key in required:
                if key not in v:
                    return ((), f"{key!r} is a required property")
            if len(v) < low or (high is not None and len(v) > high):
                return ((), f"{len(v)} properties, not {low} to {high if high is not None else 'any number'}")
            for key, value in v.items():
                check = properties.get(key)
                if check is None:
                    if extra is False:
                        return ((), f"additional property {key!r} is not allowed")
                    check = other
                if check is not None and (fault := check(value)):
                    return ((key, *fault[0]), fault[1])
            return None

        checks.append(obj)

    if len(checks) == 1:
        return checks[0]

    def check(value):
        for one in checks:
            if fault := one(value):
                return fault
        return None

    return check


@cache
def _validators():
    """Checkers of the header and of a result record, from the shipped schema: value -> None, or the first
    fault as (path, message)."""
    text = resources.files("conformance").joinpath("schema/results.schema.json").read_text(encoding="utf-8")
    definitions = json.loads(text)["definitions"]

    def of(name: str):
        try:
            return _compile({"$ref": f"#/definitions/{name}"}, definitions)
        except NotImplementedError:  # the schema grew a keyword the compiler lacks: jsonschema, slower but whole
            import jsonschema

            validator = jsonschema.Draft7Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})

            def checked(value):
                error = min(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path], default=None)
                return None if error is None else (tuple(error.absolute_path), error.message)

            return checked

    return of("environment_record"), of("result")


def _schema_faults(check, record: dict[str, Any], what: str) -> list[str]:
    fault = check(record)
    if fault is None:
        return []
    where, message = fault
    message = message() if callable(message) else message
    message = message if len(message) <= 160 else message[:160] + "…"
    return [f"{what}{' field ' + '/'.join(map(str, where)) if where else ''}: {message}"]


def _is_float(value: Any) -> bool:  # the schema's "float": a number, or "inf", "-inf", "nan"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number or (isinstance(value, str) and value in FLOAT_STRINGS)


def _is_ulps(value: Any) -> bool:  # the schema's "ulps": a number at least 0, "inf", "nan", or null
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (number and value >= 0) or value is None or (isinstance(value, str) and value in ("inf", "nan"))


def _all_items_fit(values: list, ulps: bool) -> bool:
    """Whether every item is a float (or, ``ulps``, an error in ULPs): by the set of the items' types first,
    a C loop, since a sweep has thousands (bool is a type of its own here, so true is no number)."""
    kinds = set(map(type, values))
    if not kinds <= ({int, float, str, type(None)} if ulps else {int, float, str}):
        return False
    strings = {"inf", "nan"} if ulps else set(FLOAT_STRINGS)
    if str in kinds and not {v for v in values if type(v) is str} <= strings:
        return False
    return not ulps or min((v for v in values if type(v) in (int, float)), default=0) >= 0


def _record_faults(record: dict[str, Any]) -> list[str]:
    """What the schema finds wrong with a result record. A sweep's ``elements`` (up to 4096 numbers a list)
    go to the schema's checker with their first two items, and every item to a type test: the checker's
    walk of each would cost tens of milliseconds a sweep record."""
    elements = record.get("elements")
    if not isinstance(elements, dict):
        return _schema_faults(_validators()[1], record, "not a valid result record:")
    sample = {k: v[:2] if isinstance(v, list) else v for k, v in elements.items()}
    faults = _schema_faults(_validators()[1], {**record, "elements": sample}, "not a valid result record:")
    for name, values in elements.items():
        ulps = name == "ulp"
        if name in ("x", "target", "got", "want", "ulp") and isinstance(values, list) and not _all_items_fit(values, ulps):
            index = next(i for i, v in enumerate(values) if not (_is_ulps(v) if ulps else _is_float(v)))
            wanted = "an error in ULPs" if ulps else "a float"
            faults.append(f"not a valid result record: field elements/{name}/{index}: {values[index]!r:.60} is not {wanted}")
    return faults


def _check_format(path: Path, number: int, header: dict[str, Any]) -> None:
    """Raises ``ResultsError`` for a header of another format or version: nothing after it can be read as results."""
    name, version = header.get("format"), header.get("format_version")
    if name != FORMAT:
        raise ResultsError(
            f"{path}:{number}: results format {name!r} version {version!r}: not a {FORMAT!r} file "
            f"(this bce-conformance reads {FORMAT!r} version {FORMAT_VERSION})"
        )
    if version == FORMAT_VERSION and not isinstance(version, bool):
        return
    if isinstance(version, int) and not isinstance(version, bool) and 1 <= version < FORMAT_VERSION:
        raise ResultsError(
            f"{path}:{number}: results format version {version}, written by an older bce-conformance; this one "
            f"reads version {FORMAT_VERSION} only (version {FORMAT_VERSION}'s header says how many checks the run "
            f"planned, so that a file cut short cannot pass for a whole run): regenerate it with this version "
            "(python -m conformance run, or its tox env; a baseline then with python -m conformance baseline)"
        )
    raise ResultsError(
        f"{path}:{number}: results format {FORMAT!r} version {version!r}; this is bce-conformance reading "
        f"version {FORMAT_VERSION} (a newer bce-conformance wrote it, or the header is damaged)"
    )


def _read_bytes(path: Path) -> bytes:
    """The file's bytes. Opened without blocking and checked to be a regular file first: a FIFO or a device
    named like a results file would otherwise hang the reader, or never end."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ResultsError(f"{path}: not a regular file (a results file is one)")
        return handle.read()


def read_run(path: str | Path, strict: bool = False) -> Run:
    """A results file, every line checked (see ``Run.problems``). A file of another format or version is a
    ``ResultsError`` either way (nothing in it can be read as results), and so, read leniently, is a line that
    is JSON but not a result record (as it always was). Read leniently, a line that cannot be read (cut short
    by a crash) is counted in ``truncated`` and left out, and every other fault is in ``problems``; read
    ``strict``, any problem at all is a ``ResultsError`` listing them (``.problems``: all of them)."""
    path = Path(path)
    try:
        data = _read_bytes(path)
    except OSError as exc:
        raise ResultsError(f"{path}: cannot read the results file ({exc})") from None
    run = Run(path, {}, [])
    if not data:
        run.faults.append((None, f"empty (0 bytes): no header, no results; a results file starts {HEADER_EXAMPLE}"))
    # split on b"\n" only: str.splitlines would also split inside a record at U+2028, U+0085 or \x1c, which
    # JSON leaves unescaped in strings (a message may hold them)
    chunks = data.split(b"\n")
    ended = chunks[-1] == b""  # every record the writer writes ends with a newline
    if ended:
        chunks.pop()
    header_line: int | None = None
    first_of: dict[str, int] = {}
    for number, chunk in enumerate(chunks, 1):
        cut = number == len(chunks) and not ended
        try:
            record = json.loads(chunk.decode("utf-8"), parse_constant=_no_constant)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            run.truncated += 1
            if cut:
                what = f"cut short: the last line ends mid-record, without its newline ({_excerpt(chunk)})"
            elif not chunk.strip():
                what = "an empty line (every line is one JSON record)"
            else:
                what = f"not a JSON record ({exc.__class__.__name__}: {str(exc)[:80]}): {_excerpt(chunk)}"
            run.faults.append((number, what))
            continue
        if cut:
            run.faults.append((number, "cut short: the last line has no newline (every record ends with one)"))
        if isinstance(record, dict) and "format" in record:  # a header: only line 1 is one
            if header_line is not None:
                run.faults.append((number, f"a second header (the first is line {header_line})"))
                continue
            if number != 1:
                run.faults.append((number, "the header, misplaced: it is line 1 of a results file"))
            header_line = number
            _check_format(path, number, record)
            run.faults.extend((number, f) for f in _schema_faults(_validators()[0], record, "the header:"))
            environment, planned = record.get("environment"), record.get("planned")
            run.environment = environment if isinstance(environment, dict) else {}
            if isinstance(planned, int) and not isinstance(planned, bool) and planned >= 0:
                run.planned = planned
            continue
        if isinstance(record, dict):
            run.faults.extend((number, f) for f in _record_faults(record))
        try:
            result = Result.from_dict(record)
        except (TypeError, ValueError) as exc:
            if not strict:
                raise ResultsError(f"{path}:{number}: not a result record ({exc})") from None
            run.faults.append((number, f"not a result record ({exc})"))
            continue
        if result.id in first_of:
            run.duplicates.setdefault(result.id, [first_of[result.id]]).append(number)
        else:
            first_of[result.id] = number
        run.results.append(result)  # a duplicate too: a lenient reader shows what the file holds
    if data and header_line is None:
        run.faults.insert(0, (1, f"no header: line 1 is not one, and a results file starts {HEADER_EXAMPLE}"))
    if strict and run.problems:
        raise _incomplete(run)
    return run


def _incomplete(run: Run) -> ResultsError:
    problems = run.problems
    listed = "\n  ".join(problems[:LISTED_PROBLEMS])
    more = f"\n  ... and {len(problems) - LISTED_PROBLEMS} more" if len(problems) > LISTED_PROBLEMS else ""
    return ResultsError(
        f"{run.path}: not a whole, valid results file ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
        f"\n  {listed}{more}",
        problems,
    )


def read(path: str | Path, strict: bool = False) -> list[Result]:
    """Every result record of a results file (read leniently, a line cut short by a crash is left out)."""
    return read_run(path, strict).results


def results_files(paths) -> list[Path]:
    """The results files named, a folder standing for every ``*.jsonl`` in it, sorted."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return files


def read_runs(paths, strict: bool = False) -> list[Run]:
    """Every results file under ``paths`` (files, or folders of ``*.jsonl``), in the order given. Read
    ``strict``, every file is read before a ``ResultsError`` names the problems of each file that has any."""
    if not strict:
        return [read_run(path) for path in results_files(paths)]
    runs, errors = [], []
    for path in results_files(paths):
        try:
            runs.append(read_run(path, strict=True))
        except ResultsError as exc:
            errors.append(exc)
    if errors:
        raise ResultsError("\n".join(map(str, errors)), [p for e in errors for p in e.problems])
    return runs


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


def timing_text(started: float, checks: dict[str, float] | None = None) -> str:
    """A run's start time and duration (``<name>.timing.json``), and per result id the seconds its check
    took (``checks``: what junit.xml gives each test case): kept apart from the results file so that the
    results are the same bytes run after run."""
    timing = {
        "started": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 3),
    }
    if checks:
        timing["checks"] = {name: round(seconds, 6) for name, seconds in checks.items()}
    return json.dumps(timing) + "\n"


def read_timing(results_path: str | Path) -> dict[str, float]:
    """The per-result seconds of the ``<name>.timing.json`` beside a results file; {} where there is none
    (results copied without it, or written before it held them) or it cannot be read."""
    path = Path(results_path)
    try:
        data = json.loads(path.with_name(path.name.removesuffix(".jsonl") + ".timing.json").read_text(encoding="utf-8"))
        checks = data.get("checks", {}) if isinstance(data, dict) else {}
        return {
            str(k): float(v)
            for k, v in checks.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        }  # JSON's Infinity and NaN, and true, are no time (and "inf" would break the xsd's time pattern)
    except (OSError, ValueError, AttributeError):
        return {}
