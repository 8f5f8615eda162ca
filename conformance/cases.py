"""Case files: safe YAML 1.2 loading, JSON Schema validation, then the checks a schema cannot express.

Every problem is a ``CaseError`` naming the file, the line, the case and the field; all the
problems of a file are reported together. Hostile input fails closed: a path that is not a regular
file is never opened, and YAML that plain YAML 1.2 data cannot hold (a tag, a directive but
``%YAML 1.2``, a scalar ruamel reads unlike the 1.2 core schema) is an error, not a silent meaning.
``read_document`` serves the known-divergence and tolerance files too.
"""

from __future__ import annotations

import decimal
import errno
import json
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, ScalarEvent
from ruamel.yaml.nodes import CollectionNode, MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.scanner import RoundTripScanner, ScannerError

from conformance import generators
from conformance.dtypes import FORMATS, FloatFormat, parse_hex_or_decimal, round_to_format
from conformance.generators import Generated, GeneratorError, PerDtype

DEFAULT_DTYPES = ("float32", "float64")
DEFAULT_REDUCTIONS = ("none", "mean", "sum")
DEFAULT_OPS = {"logits": ("bce_with_logits", "sigmoid_bce"), "probs": ("bce",)}
OPS_OF_KIND = {"logits": {"bce_with_logits", "sigmoid_bce"}, "probs": {"bce"}}
TENSOR_FIELDS = ("logits", "probs", "target", "weight", "pos_weight")
LABEL_SMOOTHING = "label_smoothing"  # the key of Case.inputs that carries it, as a 0-d float64 array
INVALID_INPUT = "invalid_input"  # a case that feeds invalid values on purpose (probabilities or targets outside [0, 1], NaN, negative weights) says why here
RANGED_FIELDS = ("probs", "target")  # fields whose values must lie in [0, 1] unless the case sets `invalid_input`
WEIGHT_FIELDS = ("weight", "pos_weight")  # fields whose values must be finite and >= 0 unless the case sets `invalid_input`
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # the schema's id pattern, matched whole (no final newline)
ID_RULE = "a letter or digit, then letters, digits and _ . + - (no spaces, no line breaks)"
MAX_EXPECT_DIGITS = 40  # the most significant digits an `expect` literal may have (the reference is exact well beyond them)
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
    kind: str = "case"  # what ``case`` names: a case, or a known-divergence entry

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        what = "".join(
            [f" {self.kind} {self.case!r}" if self.case else "", f" field {self.field!r}" if self.field else ""]
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
    """The case-file schema, as editors and ``check-jsonschema`` read it: every rule JSON Schema can express."""
    text = resources.files("conformance").joinpath("schema/cases.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


LOADER_CHECKS = "x-loader-checks"  # marks a subschema whose rule the loader checks itself, in its own words


@cache
def structural_schema() -> dict:
    """The schema the loader validates against: ``schema()`` without the subschemas marked ``x-loader-checks``,
    whose rules the loader checks itself after it (``_build_case``, ``_expected_problems``, the generators),
    naming each problem in its own words rather than as a failed ``oneOf``. tests/test_cases.py runs both over
    the same files: the loader rejects all that the full schema rejects."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {} if LOADER_CHECKS in node else {key: strip(value) for key, value in node.items()}
        return [strip(item) for item in node] if isinstance(node, list) else node

    return strip(schema())


# YAML 1.2.2's core schema (section 10.3.2): which plain scalars are null, booleans, integers, floats;
# every other plain scalar is a string
_CORE_SCHEMA = (
    ("null", re.compile(r"~|null|Null|NULL|")),
    ("bool", re.compile(r"true|True|TRUE|false|False|FALSE")),
    ("int", re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")),
    ("float", re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")),
)
_KINDS = {
    "null": "null", "bool": "a boolean", "int": "an integer", "float": "a float", "str": "a string",
    "timestamp": "a date", "merge": "a merge key", "value": "a value key",
}


def _ambiguous(value: str, resolved: str) -> str | None:
    """Why a plain scalar is refused, or None: ruamel.yaml's YAML 1.2 resolver reads a few plain
    scalars unlike the 1.2 core schema (``1_000`` and ``0b11`` as integers, ``2001-12-14`` as a date,
    ``<<`` as a merge key, ``.5e3`` as a string). Other YAML readers, and editors, would then see
    other values than the loader does: such a scalar is an error, never a silent choice."""
    core = next((kind for kind, pattern in _CORE_SCHEMA if pattern.fullmatch(value)), "str")
    kind = resolved.rsplit(":", 1)[-1]
    if kind == core:
        return None
    if kind == "merge":
        return "the merge key << is not YAML 1.2 data (a YAML 1.1 type): write the fields out"
    return (
        f"{value!r} is ambiguous: ruamel.yaml reads it as {_KINDS.get(kind, kind)}, YAML 1.2's core schema as "
        f"{_KINDS.get(core, core)}; write it so that both agree: a number in plain digits (1000, not 1_000 or "
        "0b1111101000), a string in quotes"
    )


def _is_text(value: str) -> bool:
    """Whether a string is Unicode text: an escape (``"\\ud800"``) can make a lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _written_tag(tag: Any) -> str:
    """A tag as the file wrote it: ``!!float``, ``!foo``, ``!<tag:yaml.org,2002:str>``."""
    handle, suffix = getattr(tag, "handle", None), getattr(tag, "suffix", None)
    if handle is None and suffix == "!":  # the non-specific tag
        return "!"
    if handle is None:
        return f"!<{suffix}>" if suffix else str(tag)
    return f"{handle}{suffix or ''}"


class _Scanner(RoundTripScanner):
    """ruamel's scanner, refusing every directive but ``%YAML 1.2``: ``%YAML 1.1`` would switch to
    YAML 1.1's meanings (``no`` is false, ``010`` is 8), ``%TAG`` only serves tags, which case files
    do not take, and other directives are reserved."""

    def scan_directive(self) -> Any:
        token = super().scan_directive()
        if token.name == "YAML" and tuple(token.value) == (1, 2):
            return token
        if token.name == "YAML":
            version = ".".join(map(str, token.value))
            why = ", and YAML 1.1 would change what values mean (`no` is false, 010 is 8)" if tuple(token.value) == (1, 1) else ""
            message = f"the directive %YAML {version} is refused: the file is read as YAML 1.2{why}; remove it (or write %YAML 1.2)"
        elif token.name == "TAG":
            message = "the directive %TAG is refused: the file holds plain data only, without YAML tags"
        else:
            message = f"the directive %{token.name} is refused: the file takes no directive but %YAML 1.2"
        raise ScannerError(None, None, message, token.start_mark)


class _Composer(Composer):
    """ruamel's composer, noting each node that plain data cannot hold: one written with an explicit tag
    (``!!float 1``, ``!!omap``: resolution would apply the tag and forget it was there), and a plain
    scalar that ruamel reads unlike the YAML 1.2 core schema (``1_000``). Noted, not raised, so that
    every such node of a file is reported, with its case and field."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.refused: dict[int, tuple[Any, str]] = {}  # id(node) -> (the node, kept alive; why it is refused)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        node = super().compose_node(parent, index)
        if isinstance(event, AliasEvent):
            return node  # the node it names was checked where it was written
        if event.ctag is not None:  # the parser sets it only for a tag written in the file (even a lone !)
            self.refused[id(node)] = (node, f"YAML tag {_written_tag(event.ctag)!r} is not allowed: the file holds plain data only")
        elif isinstance(event, ScalarEvent) and not _is_text(event.value):
            self.refused[id(node)] = (node, _short(f"{event.value!r} is not Unicode text (a lone surrogate)"))
        elif isinstance(event, ScalarEvent) and event.style is None and event.implicit[0]:
            why = _ambiguous(event.value, node.tag)
            if why:
                self.refused[id(node)] = (node, why)
        return node


def _yaml() -> YAML:
    yaml = YAML(typ="rt")  # round-trip mode keeps line numbers; it builds no Python objects from tags
    yaml.version = (1, 2)  # YAML 1.2: 1e-7 is a float
    yaml.Scanner = _Scanner
    yaml.Composer = _Composer
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


line_of = _line_of  # for the other files read with read_document (known divergences, tolerances)


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
    validator = generators.SchemaValidator(structural_schema())
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
            for inside, message in generators.schema_problems(error.instance, structural_schema()):
                line, case_id, field_name = _locate(location + inside, data, raw)
                problems.append(Problem(path, message, line, case_id, field_name))
            continue
        elif error.validator == "oneOf" and location and location[-1] in TENSOR_FIELDS:
            message = f"{error.instance!r} is not a number, a numeric string, a nested list of numbers or a generator mapping"
        elif error.validator == "oneOf" and "expect" in location and isinstance(error.instance, dict):
            message = _own_tolerance_message(error)
        elif error.validator == "oneOf" and location and location[-1] in ("mean", "sum"):
            message = f"{error.instance!r} is not a number, a numeric string or {OWN_TOLERANCE_FORM}"
        elif error.validator == "oneOf" and location and location[-1] == "none":
            message = f"{error.instance!r} is not a number, a numeric string, a nested list of numbers or {OWN_TOLERANCE_FORM}"
        elif "tolerance" in location and error.validator == "not":
            message = CORRECTLY_ROUNDED_ALONE
        elif "tolerance" in location and location[-1] == "correctly_rounded":
            message = f"correctly_rounded takes true only (it stands for {{max_ulp: 0.5, abs_floor: 0}}), not {error.instance!r}"
        elif location and location[-1] == LABEL_SMOOTHING:
            message = _label_smoothing_message(error.instance)
        elif "tolerance" in location and error.validator in ("maximum", "minimum", "type"):
            message = _tolerance_message(error.instance, location[-1]) or message
        elif location and location[-1] == "id" and error.validator == "pattern":
            message = f"{error.instance!r} is not an id: {ID_RULE}"
        elif error.validator == "type" and error.validator_value == "boolean" and isinstance(error.instance, str):
            message += " (YAML 1.2's booleans are true and false)"
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


def _child(node: Any, key: Any) -> Any:
    """The node under ``key`` (a mapping key as written, or a list index), or None."""
    if isinstance(node, MappingNode):
        return next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), None)
    if isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def _node_place(root: Any, location: tuple, entries: tuple) -> tuple[str | None, str | None]:
    """(case id, field) of a place in the node graph; ``entries``: where the list of cases is."""
    n = len(entries)
    if len(location) > n and tuple(location[:n]) == entries and isinstance(location[n], int):
        entry = root
        for key in location[: n + 1]:
            entry = _child(entry, key)
        found = _child(entry, "id")
        plain = isinstance(found, ScalarNode) and found.tag == "tag:yaml.org,2002:str"
        return (found.value if plain else f"#{location[n] + 1}"), ".".join(map(str, location[n + 1:])) or None
    return None, ".".join(map(str, location)) or None


def _refused_problems(path: str, root: Any, refused: dict[int, tuple[Any, str]], entries: tuple) -> list[Problem]:
    """A problem for each node the composer refused, at its line, case and field, in file order.

    One pass over the distinct nodes (an alias is the node it names, reported once, where written)."""
    if not refused:
        return []
    found, seen = {}, set()
    stack: list[tuple[Any, tuple]] = [(root, ())]
    while stack:
        node, location = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if id(node) in refused:
            found[id(node)] = location
        children: list[tuple[Any, tuple]] = []
        if isinstance(node, MappingNode):
            for key, value in node.value:
                label = key.value if isinstance(key, ScalarNode) else "<key>"
                children += [(key, (*location, label)), (value, (*location, label))]
        elif isinstance(node, SequenceNode):
            children = [(child, (*location, index)) for index, child in enumerate(node.value)]
        stack += reversed(children)  # visited in file order: a node is first reached where it is written, not at an alias
    problems = []
    for key, (node, message) in refused.items():
        case_id, field_name = _node_place(root, found[key], entries) if key in found else (None, None)
        problems.append(Problem(path, message, _node_line(node), case_id, field_name))
    return sorted(problems, key=lambda p: p.line or 0)


OWN_TOLERANCE_KEYS = ("value", "rtol", "atol")  # an `expect` literal with a tolerance of its own
OWN_TOLERANCE_FORM = "{value: V, rtol: R, atol: A} (a literal with its own tolerance: at least one of rtol and atol)"


def _expected_problems(expect: dict) -> list[tuple[str, str]]:
    """(field, message) for each `expect` literal that cannot be read: not a number or a rectangular list,
    too many digits, or an own-tolerance mapping that is not ``{value, rtol, atol}``."""
    out = []
    for key, value in expect.items():
        entries = value.items() if key in FORMATS and isinstance(value, dict) else [(key, value)]
        for reduction, literal in entries:
            where = f"expect.{key}" + (f".{reduction}" if reduction != key else "")
            if isinstance(literal, dict):
                out += [(f"{where}.{inside}" if inside else where, message) for inside, message in _own_tolerance_problems(literal)]
                if "value" not in literal:
                    continue
                literal, where = literal["value"], f"{where}.value"
            try:
                _tensor(literal)
            except ValueError as exc:
                out.append((where, str(exc)))
                continue
            out += [(where, message) for message in _digit_problems(literal)]
    return out


def _own_tolerance_problems(literal: dict) -> list[tuple[str, str]]:
    """(key, message) for what is wrong with a ``{value, rtol, atol}`` literal's keys and tolerance; the value
    itself is read as any literal is."""
    out = [(str(key), f"unknown key {key!r}: a literal with its own tolerance is {OWN_TOLERANCE_FORM}") for key in literal if key not in OWN_TOLERANCE_KEYS]
    if "value" not in literal:
        out.append(("", f"no `value`: a literal with its own tolerance is {OWN_TOLERANCE_FORM}"))
    if not any(key in literal for key in ("rtol", "atol")):
        out.append(("", f"neither rtol nor atol: a literal with its own tolerance is {OWN_TOLERANCE_FORM}; without one, write the number alone"))
    out += [(key, message) for key in ("rtol", "atol") if key in literal and (message := _tolerance_message(literal[key], key))]
    return out


def _own_tolerance_message(error: Any) -> str:
    """A schema error on an own-tolerance `expect` mapping, in the loader's words."""
    problems = _own_tolerance_problems(error.instance)
    if problems:
        return "; ".join(message for _, message in problems)
    return f"value {error.instance.get('value')!r} is not a number or a numeric string (or, for `none`, a nested list of them)"


def _digit_problems(literal: Any, index: tuple = ()) -> list[str]:
    """Decimal `expect` literals with more than MAX_EXPECT_DIGITS significant digits: a literal is checked
    to the digits written, and more digits than the reference carries would be judged wrong (and an
    integer of thousands of digits is beyond float64). A hex literal names one value: any length."""
    if isinstance(literal, list):
        return [found for i, item in enumerate(literal) for found in _digit_problems(item, (*index, i))]
    if isinstance(literal, bool) or not isinstance(literal, (int, str)) or "x" in str(literal).lower():
        return []
    try:
        digits = len(decimal.Decimal(str(literal).strip()).as_tuple().digits)
    except (decimal.InvalidOperation, ValueError):
        return []  # inf, nan: not digits
    if digits <= MAX_EXPECT_DIGITS:
        return []
    text = str(literal).strip()
    shown = text if len(text) <= 30 else f"{text[:24]}...{text[-4:]}"
    where = f" at {list(index)}" if index else ""
    return [(
        f"{shown}{where} has {digits} significant digits; an expect literal has at most {MAX_EXPECT_DIGITS} "
        "(MAX_EXPECT_DIGITS): it is checked to the digits written"
    )]


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
    outside.update({name: _out_of_range(values[name], dtypes, weight=True) for name in WEIGHT_FIELDS if name in values})
    if INVALID_INPUT not in entry:
        for name, found in outside.items():
            if found:
                rule = "probabilities and targets lie in [0, 1]" if name in RANGED_FIELDS else "weights are finite and >= 0"
                problem(f"{found}: {rule}; a case that means to test invalid input says why in `{INVALID_INPUT}`", name)
    elif not any(outside.values()):
        problem(
            f"`{INVALID_INPUT}` is set, but every probability and target lies in [0, 1] and every weight is finite "
            "and >= 0: remove it", INVALID_INPUT,
        )
    for where, message in tolerance_problems(entry.get("tolerance", {})):
        problem(message, "tolerance", where)
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
        problem(message, "expect", tuple(field_name.split(".")[1:]))  # at the line of the literal itself
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
        tolerance={**expand_tolerance(defaults.get("tolerance", {})), **expand_tolerance(entry.get("tolerance", {}))},
        line=_line_of(raw_entry),
        gradients=entry.get("gradients", defaults.get("gradients", True)),
        target_gradients=target_gradients,
        sweep=entry.get("sweep", defaults.get("sweep", False)),
        label_smoothing=label_smoothing,
        product=product,
        generated=generated,
    )


def _out_of_range(values: np.ndarray | PerDtype, dtypes: tuple[str, ...], weight: bool = False) -> str:
    """How the values stray outside [0, 1] (NaN included), or "" where none does; with ``weight``,
    outside [0, inf) (a weight is finite and non-negative: NaN, infinite and negative weights are not).

    Exact values in [0, 1] round into [0, 1] in every format (0 and 1 are values of each, and
    rounding is monotone), so the exact values decide; a ``special`` generator's, for each dtype.
    """
    if isinstance(values, PerDtype):
        for dtype in dtypes:
            found = _out_of_range(values.resolve(FORMATS[dtype]), (), weight)
            if found:
                return f"{found} (in {dtype})"
        return ""
    array = np.asarray(values)
    if array.dtype == np.float64:
        bad = ~((array >= 0) & (np.isfinite(array) if weight else (array <= 1)))  # NaN included
    else:
        bad = np.array([not (0 <= v < math.inf if weight else 0 <= v <= 1) for v in array.ravel()], dtype=bool)
        bad = bad.reshape(array.shape)
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
    span = "[0, inf)" if weight else "[0, 1]"
    return f"value {shown}{where} is outside {span}" + (f" ({count} values are)" if count > 1 else "")


CORRECTLY_ROUNDED = {"max_ulp": 0.5, "abs_floor": 0.0}  # what `correctly_rounded: true` stands for
CORRECTLY_ROUNDED_ALONE = (
    "correctly_rounded: true stands for {max_ulp: 0.5, abs_floor: 0}: give it alone, or max_ulp and abs_floor "
    "without it, in one mapping"
)


def tolerance_problems(tolerance: dict) -> list[tuple[tuple, str]]:
    """(place, message) for each value of a tolerance mapping (``{max_ulp, abs_floor}`` or ``correctly_rounded:
    true``, or per dtype) that is not a finite number a float64 holds, >= 0 (max_ulp >= 0.5): the checks
    compare in float64, and an infinite or NaN tolerance would accept anything, or nothing, without a word."""
    return [
        (where, message) for where, value in _numbers_in(tolerance)
        if where[-1:] != ("correctly_rounded",) and (message := _tolerance_message(value, where[-1] if where else None))
    ]


def expand_tolerance(tolerance: dict) -> dict:
    """A tolerance mapping with each ``correctly_rounded: true`` replaced by what it stands for (CORRECTLY_ROUNDED),
    so that the layers (defaults, the case, per dtype) merge key by key."""
    out = {}
    for key, value in tolerance.items():
        if key == "correctly_rounded":
            out.update(CORRECTLY_ROUNDED if value is True else {})
        else:
            out[key] = expand_tolerance(value) if isinstance(value, dict) else value
    return out


def _tolerance_message(value: Any, key: Any = None) -> str | None:
    """Why a tolerance value (``key``: max_ulp, abs_floor, condition_factor, an expect literal's rtol / atol)
    cannot be used, or None. max_ulp is at least 0.5: an error is measured from the unrounded exact value,
    so even the correctly rounded result may be half an ULP from it; a smaller limit fails it."""
    name = key if key in ("rtol", "atol") else "a tolerance"
    rule = f"{name} must be a finite number >= 0 that a float64 holds (at most 1.7976931348623157e+308)"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{rule}, not {_short(repr(value), 80)}"
    try:
        as_float = float(value)
    except OverflowError:  # an integer beyond float64
        as_float = math.inf
    if key == "max_ulp" and 0 <= as_float < 0.5:
        return (
            f"max_ulp {value} is below 0.5: errors are measured from the unrounded exact value, so even a correctly "
            "rounded result is up to 0.5 ULP from it and would fail; write max_ulp: 0.5 for correctly rounded results "
            "(in a case file, correctly_rounded: true says the same)"
        )
    if math.isfinite(as_float) and as_float >= 0:
        return None
    if math.isnan(as_float):
        return f"{rule}, not NaN"
    return f"{rule}, not {f'a {len(str(abs(value)))}-digit integer' if isinstance(value, int) else repr(value)}"


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


_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


def read_text(path: Path, shown: str) -> str:
    """A YAML file's text, checked as a case file's is (known-divergence files use it too)."""
    return _read_text(path, shown)


def _not_a_file(mode: int) -> str:
    """Why a file of this mode is refused as a case file (never opened): a FIFO would block the read forever."""
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: refused, never opened"


def _os_reason(exc: OSError, path: Path | None = None) -> str:
    """An OSError as a reason, without a traceback: ``File name too long``, ``... (a symlink loop)``."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ELOOP:
        return f"{reason} (a symlink loop, or too long a chain of symlinks)"
    if exc.errno == errno.ENOENT and path is not None and os.path.islink(path):
        return f"{reason} (a broken symlink, to {os.readlink(path)})"
    return reason


def _read_text(path: Path, shown: str) -> str:
    """The file's text, refused (before it is all read) when not a regular file, over the size limit or not UTF-8."""
    limit = max_file_bytes()
    try:
        mode = os.stat(path).st_mode  # follows symlinks: what would be opened
        if not stat.S_ISREG(mode):
            raise CaseError([Problem(shown, _not_a_file(mode))])
        # O_NONBLOCK: should the path turn into a FIFO after the check, opening it still returns at once,
        # and the fstat below refuses it
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(descriptor, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise CaseError([Problem(shown, _not_a_file(mode))])
            data = stream.read(limit + 1)  # never more: a growing file cannot exhaust memory
    except OSError as exc:
        raise CaseError([Problem(shown, f"cannot read: {_os_reason(exc, path)}")]) from None
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


def read_document(text: str, shown: str, entries: tuple = ("cases",)) -> tuple[Any, Any, list[Problem]]:
    """A YAML 1.2 document: its plain JSON-like data, ruamel's round-trip objects (which know lines), and
    a problem for each value plain data cannot hold (an explicit tag, an ambiguous scalar, a lone
    surrogate). Raises ``CaseError`` where the document cannot be read at all. ``entries``: where its
    list of entries lies (``cases``; ``()``: the document is the list), for the id a problem names."""
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
            refused = _refused_problems(shown, node, yaml.composer.refused, entries)
            try:
                raw = None if node is None else yaml.constructor.construct_document(node)
            except (YAMLError, ValueError, TypeError, OverflowError):
                if refused:  # a tag the constructor choked on (`!!int abc`): the tag is the problem to name
                    raise CaseError(refused) from None
                raise
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
    return _plain(raw), raw, refused


def load_file(path: str | Path) -> list[Case]:
    """All the cases of one file; raises ``CaseError`` listing every problem in it."""
    path = Path(path)
    shown = str(path)
    data, raw, problems = read_document(_read_text(path, shown), shown)
    problems += _schema_problems(shown, data, raw)
    defaults = data.get("defaults") if isinstance(data, dict) else None
    if isinstance(defaults, dict) and isinstance(defaults.get("tolerance"), dict):  # NaN passes the schema
        reported = {p.field for p in problems}
        for where, message in tolerance_problems(defaults["tolerance"]):
            line, _, field_name = _locate(["defaults", "tolerance", *where], data, raw)
            if field_name not in reported:
                problems.append(Problem(shown, message, line, None, field_name))
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
    """The YAML files named, and those under the folders named, in a stable order; every path that
    cannot be used (missing, a symlink loop, a name too long, a FIFO or device) is a ``CaseError``."""
    files: list[Path] = []
    problems: list[Problem] = []
    for given in paths:
        path = Path(given)
        try:
            mode = os.stat(path).st_mode  # follows symlinks
        except FileNotFoundError:
            broken = f" (a broken symlink, to {os.readlink(path)})" if os.path.islink(path) else ""
            problems.append(Problem(str(path), f"no such file or folder{broken}"))
            continue
        except OSError as exc:
            problems.append(Problem(str(path), f"cannot read: {_os_reason(exc)}"))
            continue
        if stat.S_ISDIR(mode):
            before = len(problems)
            found = _files_under(path, problems)
            if not found and len(problems) == before:
                problems.append(Problem(str(path), "no case files (*.yaml) in this folder"))
            files.extend(found)
        elif stat.S_ISREG(mode):
            files.append(path)
        else:
            problems.append(Problem(str(path), _not_a_file(mode)))
    if problems:
        raise CaseError(problems)
    return files


def _files_under(folder: Path, problems: list[Problem]) -> list[Path]:
    """The *.yaml / *.yml regular files under ``folder``, sorted, following symlinks to files and folders.

    A symlink that cannot be followed (broken, or a loop such as a -> b -> a), a link to a folder
    that contains it (a loop without end), a folder reached twice, and a *.yaml entry that is not a
    regular file (a FIFO would block the read forever) are problems, each naming its path: none is
    skipped without a word, none is opened."""
    found: list[Path] = []
    top = os.stat(folder)
    reached = {(top.st_dev, top.st_ino): folder}
    stack: list[tuple[Path, frozenset]] = [(folder, frozenset(reached))]
    while stack:
        directory, ancestors = stack.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            problems.append(Problem(str(directory), f"cannot read this folder: {_os_reason(exc)}"))
            continue
        for entry in entries:
            path = directory / entry.name
            wanted = path.suffix in (".yaml", ".yml")
            try:
                info = os.stat(path)  # follows symlinks
            except OSError as exc:
                if wanted or entry.is_symlink():
                    problems.append(Problem(str(path), f"cannot read: {_os_reason(exc, path)}"))
                continue
            if stat.S_ISDIR(info.st_mode):
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    problems.append(Problem(str(path), f"a symlink loop: this folder is {reached[key]}, which contains it"))
                elif key in reached:
                    problems.append(Problem(str(path), f"this folder is also reached as {reached[key]}: each is read once"))
                else:
                    reached[key] = path
                    stack.append((path, ancestors | {key}))
            elif wanted and stat.S_ISREG(info.st_mode):
                found.append(path)
            elif wanted:
                problems.append(Problem(str(path), _not_a_file(info.st_mode)))
    return sorted(found)


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
