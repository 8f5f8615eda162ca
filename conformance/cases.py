"""Case files: safe YAML 1.2 loading, JSON Schema validation, then the checks a schema cannot express.

Every problem is a ``CaseError`` naming the file, the line, the case and the field; all the
problems of a file are reported together.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import CollectionNode, MappingNode, SequenceNode

from conformance import generators
from conformance.dtypes import FORMATS, FloatFormat, parse_hex_or_decimal, round_to_format
from conformance.generators import Generated, GeneratorError, PerDtype

DEFAULT_DTYPES = ("float32", "float64")
DEFAULT_REDUCTIONS = ("none", "mean", "sum")
DEFAULT_OPS = {"logits": ("bce_with_logits", "sigmoid_bce"), "probs": ("bce",)}
OPS_OF_KIND = {"logits": {"bce_with_logits", "sigmoid_bce"}, "probs": {"bce"}}
TENSOR_FIELDS = ("logits", "probs", "target", "weight", "pos_weight")
LABEL_SMOOTHING = "label_smoothing"  # the key of Case.inputs that carries it, as a 0-d float64 array
INVALID_INPUT = "invalid_input"  # a case that feeds probabilities or targets outside [0, 1] (or NaN) on purpose says why here
RANGED_FIELDS = ("probs", "target")  # fields whose values must lie in [0, 1] unless the case sets `invalid_input`
MAX_FILE_BYTES = 2**18  # the largest case file read, 256 KiB (larger inputs belong in generators: big literals load slowly)
MAX_FILE_BYTES_ENV = "CONFORMANCE_MAX_FILE_BYTES"  # overrides MAX_FILE_BYTES
MAX_DEPTH = 32  # the deepest nesting of lists and mappings in a case file
MAX_NODES = 2**17  # the most values a file may hold once YAML aliases are expanded (no "billion laughs")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a case file."""

    file: str
    message: str
    line: int | None = None
    case: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = "".join(
            [f" case {self.case!r}" if self.case else "", f" field {self.field!r}" if self.field else ""]
        )
        return f"{where}:{what}: {self.message}" if what else f"{where}: {self.message}"


class CaseError(Exception):
    """A case file (or several) that cannot be used; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True, eq=False)
class Case:
    """One validated case: exact input values (Fraction, or float for ±inf / NaN) and what to run.

    ``values`` holds each tensor field's exact values in the case's shape: an object array of
    Fraction / float (literals, and linspaces whose points are not all float64 values), a float64
    array (generated values that are all float64 values: every float64 is exact), or a
    ``generators.PerDtype`` whose values depend on the dtype under test (`special`). ``exact(fmt)``
    resolves them for one dtype; ``inputs(fmt)`` rounds them to it. With ``product``, the input and
    the target are read-only broadcast views of shape (n, m).
    """

    file: Path
    id: str
    why: str
    kind: str  # "logits" or "probs"
    values: dict[str, np.ndarray | PerDtype]  # exact values, by tensor field
    ops: tuple[str, ...]
    dtypes: tuple[str, ...]
    reductions: tuple[str, ...]
    expect: dict[str, Any] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    gradients: bool = True  # also check the gradient of the loss with respect to the input
    target_gradients: bool = False  # also check its gradient with respect to the target (opt-in)
    sweep: bool = False  # keep every element of its `none` results, for the report's plots against the input
    # Keras's label_smoothing: targets become y·(1 - ls) + ls/2. A float64 value (the Python float the
    # APIs take), never rounded to the dtype under test; 0 means none.
    label_smoothing: Fraction = Fraction(0)
    product: bool = False  # every input value against every target: shape (n, m)
    generated: dict[str, Generated] = field(default_factory=dict)  # the generators, by tensor field

    @property
    def full_name(self) -> str:
        return f"{self.file.stem}/{self.id}"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values[self.kind].shape

    def exact(self, fmt: FloatFormat) -> dict[str, np.ndarray]:
        """The exact values of each tensor field for ``fmt``, before rounding (``special`` resolved)."""
        return {name: generators.resolve(values, fmt) for name, values in self.values.items()}

    def inputs(self, fmt: FloatFormat) -> dict[str, np.ndarray]:
        """The case's tensors cast to ``fmt``: the exact values every adapter and the reference see.

        A case with label smoothing adds ``label_smoothing``: a 0-d float64 array (not cast to ``fmt``:
        the APIs take it as a Python float), which the reference applies exactly to the targets.
        """
        inputs = {name: generators.round_exact(values, fmt) for name, values in self.exact(fmt).items()}
        if self.label_smoothing:
            inputs[LABEL_SMOOTHING] = np.array(float(self.label_smoothing), dtype=np.float64)
        return inputs

    def expected(self, dtype: str) -> dict[str, Any]:
        """Literal expected values for ``dtype``, by reduction."""
        common = {k: v for k, v in self.expect.items() if k in DEFAULT_REDUCTIONS}
        return {**common, **self.expect.get(dtype, {})}


@cache
def schema() -> dict:
    text = resources.files("conformance").joinpath("schema/cases.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round-trip mode keeps line numbers; it builds no Python objects from tags
    yaml.version = (1, 2)  # YAML 1.2: 1e-7 is a float
    return yaml


def _line_of(node: Any, key: Any = None) -> int | None:
    """1-based line of ``node`` (or of its ``key``) in the source, where ruamel recorded it."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    own = lc.line + 1 if isinstance(lc.line, int) else None
    try:
        if key is not None:
            return (lc.key(key) if isinstance(key, str) else lc.item(key))[0] + 1
        return own
    except (KeyError, IndexError, TypeError, AttributeError):
        return own


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain JSON-like data, for the schema validator."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None or isinstance(node, str):
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _exact(value: Any) -> Fraction | float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if math.isfinite(value) and value != 0.0:
            return Fraction(value)
        return float(value)  # ±inf, NaN and ±0.0 keep their identity
    if isinstance(value, str):
        try:
            return parse_hex_or_decimal(value)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{value!r} is not a decimal or hexadecimal float") from None
    raise ValueError(f"{value!r} is not a number")


def _tensor(value: Any) -> np.ndarray:
    """An object array of exact values from a number or a rectangular nested list."""
    def shape_of(v):
        if not isinstance(v, list):
            return ()
        if not v:
            return (0,)
        inner = [shape_of(item) for item in v]
        if any(s != inner[0] for s in inner):
            raise ValueError("ragged nested list: every row must have the same length")
        return (len(v), *inner[0])

    shape = shape_of(value)
    flat: list = []

    def walk(v):
        if isinstance(v, list):
            for item in v:
                walk(item)
        else:
            flat.append(_exact(v))

    walk(value)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _locate(location: list, data: Any, raw: Any) -> tuple[int | None, str | None, str | None]:
    """(line, case id, field) of a path into the document, for a problem found there."""
    case_id = field_name = None
    if len(location) >= 2 and location[0] == "cases" and isinstance(location[1], int):
        entry = data["cases"][location[1]] if isinstance(data, dict) and isinstance(data.get("cases"), list) else None
        case_id = entry.get("id") if isinstance(entry, dict) else None
        case_id = case_id if isinstance(case_id, str) else f"#{location[1] + 1}"
        field_name = ".".join(str(p) for p in location[2:]) or None
    elif location:
        field_name = ".".join(str(p) for p in location)
    node, line = raw, _line_of(raw)
    for key in location:  # walk down to the deepest node that knows its line
        try:
            parent, node = node, node[key]
        except (KeyError, IndexError, TypeError):
            break
        line = _line_of(parent, key) or line
    return line, case_id, field_name


def _schema_problems(path: str, data: Any, raw: Any) -> list[Problem]:
    validator = jsonschema.Draft7Validator(schema())
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        location = list(error.absolute_path)
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            unknown = [key for key in error.instance if key not in known]
            message = f"unknown field {unknown[0]!r}" + (f" (and {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else "")
            location = location + [unknown[0]]
        elif (
            error.validator == "oneOf" and isinstance(error.instance, dict) and len(location) == 3
            and location[0] == "cases" and location[-1] in TENSOR_FIELDS
        ):  # a generator mapping: say what is wrong inside it
            for inside, message in generators.schema_problems(error.instance, schema()):
                line, case_id, field_name = _locate(location + inside, data, raw)
                problems.append(Problem(path, message, line, case_id, field_name))
            continue
        elif error.validator == "oneOf" and location and location[-1] in TENSOR_FIELDS:
            message = f"{error.instance!r} is not a number, a numeric string, a nested list of numbers or a generator mapping"
        elif error.validator == "oneOf" and location and location[-1] in ("mean", "sum"):
            message = f"{error.instance!r} is not a number, a numeric string or a nested list of numbers"
        elif location and location[-1] == LABEL_SMOOTHING:
            message = _label_smoothing_message(error.instance)
        line, case_id, field_name = _locate(location, data, raw)
        problems.append(Problem(path, _short(message), line, case_id, field_name))
    return problems


def _short(message: str, limit: int = 400) -> str:
    """A message cut to ``limit`` characters: one that quotes a value (a long list) stays readable."""
    return message if len(message) <= limit else f"{message[:limit]}... ({len(message) - limit} more characters)"


def _yaml_value_error(exc: Exception, text: str) -> tuple[str, int | None]:
    """What a constructor's exception means, and its line where it can be found in the text."""
    message = str(exc)
    if "integer string conversion" in message:
        found = re.search(r"\d{4301,}", text)
        return "an integer with more than 4300 digits", text.count("\n", 0, found.start()) + 1 if found else None
    if "unhashable" in message:
        return "a list or mapping used as a mapping key", None
    return message, None


def _tag_problems(path: str, data: Any, raw: Any) -> list[Problem]:
    """Explicit YAML tags (``!!python/object``, ``!foo``, ``!!str``) anywhere, keys included, and strings
    that are not Unicode text (a lone surrogate from an escape): case files hold plain data only.

    Round-trip loading never builds objects from tags, but it would otherwise keep the contents
    of a tagged list or mapping as if the tag were not there.
    """
    problems = []

    def report(location, message):
        line, case_id, field_name = _locate(location, data, raw)
        problems.append(Problem(path, message, line, case_id, field_name))

    def check(node, location):
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag is not None and isinstance(node, (dict, list, TaggedScalar)):
            report(location, f"YAML tag {tag!r} is not allowed: case files hold plain data")
        if isinstance(node, (str, TaggedScalar)):
            text = node.value if isinstance(node, TaggedScalar) else node
            try:
                str(text).encode("utf-8")
            except UnicodeEncodeError:
                report(location, f"{text!r} is not Unicode text (a lone surrogate)")

    def walk(node, location):
        check(node, location)
        if isinstance(node, dict):
            for key, child in node.items():
                check(key, location + [key if isinstance(key, str) else str(key)])
                walk(child, location + [key])
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, location + [index])

    walk(raw, [])
    return problems


def _expected_problems(expect: dict) -> list[tuple[str, str]]:
    out = []
    for key, value in expect.items():
        entries = value.items() if isinstance(value, dict) else [(key, value)]
        for reduction, literal in entries:
            try:
                _tensor(literal)
            except ValueError as exc:
                out.append((f"expect.{key}" + (f".{reduction}" if reduction != key else ""), str(exc)))
    return out


def _build_case(path: Path, entry: dict, raw_entry: Any, defaults: dict, problems: list[Problem]) -> Case | None:
    case_id = entry["id"]
    shown = str(path)

    def problem(message: str, field_name: str | None = None, within: tuple = ()) -> None:
        line = _line_of(raw_entry, field_name) if field_name in entry else _line_of(raw_entry)
        if within:  # a place inside the field's value: the line of the deepest node that knows it
            line = _locate([field_name, *within], entry, raw_entry)[0] or line
            field_name = ".".join(str(p) for p in (field_name, *within))
        problems.append(Problem(shown, message, line, case_id, field_name))

    kinds = [k for k in ("logits", "probs") if k in entry]
    if len(kinds) != 1:
        problem("a case needs exactly one of `logits` and `probs`" + (", not both" if kinds else ""), None)
        return None
    kind = kinds[0]
    product = entry.get("product", False)
    limit = None
    if product or any(isinstance(entry.get(name), dict) for name in TENSOR_FIELDS):
        try:
            limit = generators.max_elements()
        except GeneratorError as exc:
            problem(exc.message)
            return None
    values, generated = {}, {}
    for name in TENSOR_FIELDS:
        if name in entry and isinstance(entry[name], dict):
            try:
                generated[name] = generators.expand(entry[name], limit)
            except GeneratorError as exc:
                problem(exc.message, name, exc.where)
                continue
            values[name] = generated[name].values
        elif name in entry:
            try:
                values[name] = _tensor(entry[name])
            except ValueError as exc:
                problem(str(exc), name)
    if len(values) != sum(name in entry for name in TENSOR_FIELDS):
        return None
    dtypes = tuple(entry.get("dtypes", defaults.get("dtypes", DEFAULT_DTYPES)))
    outside = {name: _out_of_range(values[name], dtypes) for name in RANGED_FIELDS if name in values}
    if INVALID_INPUT not in entry:
        for name, found in outside.items():
            if found:
                problem(
                    f"{found}: probabilities and targets lie in [0, 1]; a case that means to test invalid input "
                    f"says why in `{INVALID_INPUT}`", name,
                )
    elif not any(outside.values()):
        problem(f"`{INVALID_INPUT}` is set, but every probability and target lies in [0, 1]: remove it", INVALID_INPUT)
    for where, value in _numbers_in(entry.get("tolerance", {})):
        if isinstance(value, float) and math.isnan(value):
            problem("a tolerance must be a number, not NaN", "tolerance", where)
    if product and not _make_product(values, kind, limit, problem):
        return None
    shape = values[kind].shape
    if values["target"].shape != shape:
        hint = " (or set `product: true`: every input value against every target)" if len(shape) == values["target"].ndim == 1 else ""
        problem(f"shape {values['target'].shape} does not match `{kind}` shape {shape}{hint}", "target")
    for name in ("weight", "pos_weight"):
        if name in values:
            try:
                if np.broadcast_shapes(values[name].shape, shape) != shape:
                    raise ValueError
            except ValueError:
                problem(f"shape {values[name].shape} does not broadcast to `{kind}` shape {shape}", name)
    if kind == "probs" and "pos_weight" in values:
        problem("`pos_weight` applies to logits only; this case has `probs`", "pos_weight")
    ops = tuple(entry.get("ops", DEFAULT_OPS[kind]))
    wrong = [op for op in ops if op not in OPS_OF_KIND[kind]]
    if wrong:
        problem(f"op(s) {', '.join(wrong)} do not take `{kind}` (use {', '.join(sorted(OPS_OF_KIND[kind]))})", "ops")
    for field_name, message in _expected_problems(entry.get("expect", {})):
        problem(message, field_name)
    label_smoothing = Fraction(0)
    if LABEL_SMOOTHING in entry:
        try:
            label_smoothing = _label_smoothing(entry[LABEL_SMOOTHING])
        except ValueError as exc:
            problem(str(exc), LABEL_SMOOTHING)
    target_gradients = entry.get("target_gradients", defaults.get("target_gradients", False))
    if any(p.case == case_id and p.file == shown for p in problems):
        return None
    return Case(
        file=path,
        id=case_id,
        why=entry["why"],
        kind=kind,
        values=values,
        ops=ops,
        dtypes=dtypes,
        reductions=tuple(entry.get("reductions", defaults.get("reductions", DEFAULT_REDUCTIONS))),
        expect=entry.get("expect", {}),
        tolerance={**defaults.get("tolerance", {}), **entry.get("tolerance", {})},
        line=_line_of(raw_entry),
        gradients=entry.get("gradients", defaults.get("gradients", True)),
        target_gradients=target_gradients,
        sweep=entry.get("sweep", defaults.get("sweep", False)),
        label_smoothing=label_smoothing,
        product=product,
        generated=generated,
    )


def _out_of_range(values: np.ndarray | PerDtype, dtypes: tuple[str, ...]) -> str:
    """How the values stray outside [0, 1] (NaN included), or "" where none does.

    Exact values in [0, 1] round into [0, 1] in every format (0 and 1 are values of each, and
    rounding is monotone), so the exact values decide; a ``special`` generator's, for each dtype.
    """
    if isinstance(values, PerDtype):
        for dtype in dtypes:
            found = _out_of_range(values.resolve(FORMATS[dtype]), ())
            if found:
                return f"{found} (in {dtype})"
        return ""
    array = np.asarray(values)
    if array.dtype == np.float64:
        bad = ~((array >= 0) & (array <= 1))  # NaN included
    else:
        bad = np.array([not (0 <= v <= 1) for v in array.ravel()], dtype=bool).reshape(array.shape)
    count = int(np.count_nonzero(bad))
    if not count:
        return ""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    first = array[index]
    try:
        shown = repr(float(first))
    except OverflowError:  # a Fraction beyond float64
        shown = "a value beyond float64"
    where = f" at {list(index)}" if index else ""
    return f"value {shown}{where} is outside [0, 1]" + (f" ({count} values are)" if count > 1 else "")


def _numbers_in(node: Any, where: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, value) of every leaf of a nested mapping (a tolerance)."""
    if isinstance(node, dict):
        return [found for key, child in node.items() for found in _numbers_in(child, (*where, key))]
    return [(where, node)]


def _grid(values: np.ndarray | PerDtype, axis: int, shape: tuple[int, int]) -> np.ndarray | PerDtype:
    """1-D values spread over a product's grid: along the rows (axis 0, the input) or the columns."""
    def spread(array: np.ndarray) -> np.ndarray:
        return np.broadcast_to(array[:, None] if axis == 0 else array[None, :], shape)

    return values.map(spread, shape) if isinstance(values, PerDtype) else spread(values)


def _make_product(values: dict, kind: str, limit: int, problem) -> bool:
    """`product: true`: the 1-D input (n) and target (m) become grids of shape (n, m), in place."""
    ok = True
    for name in (kind, "target"):
        if values[name].ndim != 1:
            problem(f"`product: true` takes a 1-D `{name}`; this one has shape {values[name].shape}", name)
            ok = False
    if not ok:
        return False
    shape = (values[kind].shape[0], values["target"].shape[0])
    if shape[0] * shape[1] > limit:
        problem(generators.over_limit(f"the product {shape[0]} × {shape[1]}", shape[0] * shape[1], limit), "product")
        return False
    values[kind] = _grid(values[kind], 0, shape)
    values["target"] = _grid(values["target"], 1, shape)
    return True


def _label_smoothing_message(value: Any) -> str:
    return f"label_smoothing must be a number in [0, 1], not {value!r}"


def _label_smoothing(value: Any) -> Fraction:
    """The case's label smoothing, rounded once to float64 (the APIs take a Python float); in [0, 1]."""
    try:
        exact = _exact(value)
    except ValueError:
        raise ValueError(_label_smoothing_message(value)) from None
    if not 0 <= exact <= 1:  # NaN fails too
        raise ValueError(_label_smoothing_message(value))
    return Fraction(round_to_format(exact, FORMATS["float64"]))


def max_file_bytes() -> int:
    """The largest case file read: ``MAX_FILE_BYTES``, or the whole number in $CONFORMANCE_MAX_FILE_BYTES."""
    text = os.environ.get(MAX_FILE_BYTES_ENV, "").strip()
    if not text:
        return MAX_FILE_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise CaseError([Problem(MAX_FILE_BYTES_ENV, f"{MAX_FILE_BYTES_ENV}={text!r} is not a positive whole number")])
    return value


def _read_text(path: Path, shown: str) -> str:
    """The file's text, refused (before it is all read) when over the size limit or not UTF-8."""
    limit = max_file_bytes()
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)  # never more: a device or a growing file cannot exhaust memory
    except OSError as exc:
        raise CaseError([Problem(shown, f"cannot read: {exc.strerror or exc}")]) from None
    if len(data) > limit:
        raise CaseError([Problem(
            shown,
            f"the file is over the size limit of {limit} bytes (MAX_FILE_BYTES; set {MAX_FILE_BYTES_ENV} to change it): "
            "write large inputs as generators",
        )])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError([Problem(shown, f"not UTF-8 text: {exc.reason} at byte {exc.start}")]) from None


_QUOTED_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|(?:^|(?<=\s))#[^\n]*', re.MULTILINE)


def _flow_depth(text: str) -> tuple[int, int]:
    """(deepest nesting of flow brackets, its offset): a cheap scan before parsing, which is slow on deep
    nesting. Quoted strings and comments are skipped; brackets in plain scalars may count (never many)."""
    stripped = _QUOTED_OR_COMMENT.sub(lambda m: " " * len(m.group()), text)
    codes = np.frombuffer(stripped.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    if not steps.size:
        return 0, 0
    depth = np.cumsum(steps)
    deepest = int(np.argmax(depth))
    return int(depth[deepest]), deepest


def _structure_problem(root: Any) -> tuple[str, int | None] | None:
    """What makes a composed YAML document unsafe to build, if anything: an alias inside the node it
    names, nesting deeper than MAX_DEPTH, or more than MAX_NODES values once aliases are expanded
    ("billion laughs"). Measured on ruamel's node graph, where an alias is the node it names, before
    any Python object is built (building, and even an error message's repr, would expand them):
    one pass over the distinct nodes, without recursion."""
    measured: dict[int, tuple[int, int]] = {}  # id -> (values once expanded, depth)
    open_nodes: set[int] = set()  # entered, not finished: the current node's ancestors
    stack: list[tuple[Any, bool]] = [(root, False)]

    def children(node) -> list:
        if isinstance(node, MappingNode):
            return [item for pair in node.value for item in pair]
        return list(node.value) if isinstance(node, SequenceNode) else []

    while stack:
        node, finished = stack.pop()
        if not isinstance(node, CollectionNode):
            continue
        key = id(node)
        if finished:
            inner = [measured[id(c)] for c in children(node) if isinstance(c, CollectionNode)]
            count = 1 + len(children(node)) - len(inner) + sum(n for n, _ in inner)
            depth = 1 + max((d for _, d in inner), default=0)
            if count > MAX_NODES:
                return f"YAML aliases expand this document to more than {MAX_NODES} values (MAX_NODES)", _node_line(node)
            if depth > MAX_DEPTH:
                return f"lists and mappings are nested more than {MAX_DEPTH} deep (MAX_DEPTH)", _node_line(node)
            measured[key] = (count, depth)
            open_nodes.discard(key)
            continue
        if key in measured:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in children(node):
            if isinstance(child, CollectionNode):
                if id(child) in open_nodes:
                    return "a YAML alias refers to a list or mapping that contains it (a recursive structure)", _node_line(node)
                if id(child) not in measured:
                    stack.append((child, False))
    return None


def _node_line(node: Any) -> int | None:
    mark = getattr(node, "start_mark", None)
    return mark.line + 1 if mark is not None else None


def load_file(path: str | Path) -> list[Case]:
    """All the cases of one file; raises ``CaseError`` listing every problem in it."""
    path = Path(path)
    shown = str(path)
    text = _read_text(path, shown)
    depth, offset = _flow_depth(text)
    if depth > MAX_DEPTH:
        line = text.count("\n", 0, offset) + 1
        raise CaseError([Problem(shown, f"lists and mappings are nested more than {MAX_DEPTH} deep (MAX_DEPTH)", line)])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ruamel's warnings (a reused anchor) are not the user's concern
            yaml = _yaml()
            node = yaml.compose(text)  # parsed once, into nodes: an alias is the node it names
            found = _structure_problem(node)  # before anything is built from it
            if found:
                raise CaseError([Problem(shown, *found)])
            raw = None if node is None else yaml.constructor.construct_document(node)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(filter(None, [exc.context, exc.problem])) or str(exc)
        raise CaseError([Problem(shown, f"YAML error: {_short(message)}", mark.line + 1 if mark else None)]) from None
    except YAMLError as exc:
        raise CaseError([Problem(shown, f"YAML error: {_short(str(exc))}")]) from None
    except RecursionError:
        raise CaseError([Problem(shown, f"lists and mappings are nested more than {MAX_DEPTH} deep (MAX_DEPTH)")]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # what ruamel's constructors let through
        message, line = _yaml_value_error(exc, text)
        raise CaseError([Problem(shown, f"YAML error: cannot read this as plain data: {message}", line)]) from None
    data = _plain(raw)
    problems = _tag_problems(shown, data, raw) + _schema_problems(shown, data, raw)
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or any(
        p.case is None for p in problems
    ):  # the file's own structure is wrong: its cases cannot be read one by one
        raise CaseError(problems or [Problem(shown, "not a case file")])
    flawed = {p.case for p in problems}
    cases, seen = [], {}
    for index, entry in enumerate(data["cases"]):
        raw_entry = raw["cases"][index]
        case_id = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{index + 1}"
        if case_id in seen:
            problems.append(Problem(shown, f"duplicate id (first used on line {seen[case_id]})", _line_of(raw_entry), case_id, "id"))
            continue
        seen[case_id] = _line_of(raw_entry)
        if case_id in flawed:
            continue  # already reported; its other fields may not even be readable
        case = _build_case(path, entry, raw_entry, data.get("defaults", {}), problems)
        if case is not None:
            cases.append(case)
    if problems:
        raise CaseError(problems)
    return cases


def case_files(paths: list[str | Path]) -> list[Path]:
    """The YAML files named, and those under the folders named, in a stable order."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if not found:
                raise CaseError([Problem(str(path), "no case files (*.yaml) in this folder")])
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise CaseError([Problem(str(path), "no such file or folder")])
    return files


def load(paths: list[str | Path]) -> list[Case]:
    """Every case under ``paths``; all the problems of all the files are raised together."""
    cases: list[Case] = []
    problems: list[Problem] = []
    names: dict[str, Path] = {}
    for path in case_files(paths):
        try:
            loaded = load_file(path)
        except CaseError as exc:
            problems.extend(exc.problems)
            continue
        if path.stem in names and names[path.stem] != path:
            problems.append(Problem(str(path), f"file name {path.stem!r} is also used by {names[path.stem]}: case names would clash"))
            continue
        names[path.stem] = path
        cases.extend(loaded)
    if problems:
        raise CaseError(problems)
    return cases


def find_case(spec: str) -> Case:
    """The case named ``FILE::ID``."""
    file_part, sep, case_id = spec.rpartition("::")
    if not sep:
        raise CaseError([Problem(spec, "name a case as FILE::ID")])
    for case in load_file(file_part):
        if case.id == case_id:
            return case
    raise CaseError([Problem(file_part, "no such case", case=case_id)])
