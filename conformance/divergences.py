"""Known divergences: a catalogue of mechanisms by which a framework departs from the exact value.

One YAML file per framework (``conformance/known_divergences/<framework>.yaml``), described by
``conformance/schema/known_divergences.schema.json`` (docs/known_divergences.md). An entry names a
mechanism, not a list of results:

- ``id``, ``api`` (globs on the API name; a pattern equal to the name always matches it, so that names
  with brackets, ``keras.losses.binary_crossentropy[torch]``, can be given as they are), ``reason`` (the
  mechanism, in words; the figures it produces are computed from the results, never typed) and ``source``;
- ``versions``: PEP 508 requirements on packages the framework records (``torch >=2.13,<2.14``): outside
  them the entry does not apply (every built-in entry has them; an entry without holds for every version);
- ``when`` (optional): the numerics environment it holds in (``conformance.numerics.parse_condition``);
- ``where``: the region of inputs it explains, one region or a list (their union). A region is scoped by
  ``op``, ``dtype``, ``reduction``, ``quantity`` (and, only where a mechanism is about one reported input,
  ``case``) and holds element predicates on ``logit``, ``probability``, ``target``, ``weight``,
  ``pos_weight``, ``label_smoothing`` (a number, a list of them, or bounds ``{gt, ge, lt, le}``) and
  ``empty`` (an input without elements).

How a region explains a result (``explain``): an elementwise result (a ``none`` loss, any gradient, the
``symmetry`` and ``vs-fused`` relations) is explained element by element: an element that misses is
explained when its inputs lie in the region (for ``symmetry``, its inputs or their mirror (-x, 1 - y));
a row mean (an API averaging over the last axis) when some element of its row does; a reduced result
(``mean``, ``sum``, ``mean-vs-sum``) and a result with no element to blame (an error, a silent change of
dtype) when some element of its input does. A result is ``known_divergence`` only when every element
that misses is explained; any other makes it ``fail``, with those elements shown.

Strictness (``account``): on a whole run of the cases it is judged on, an entry that applies but explains
nothing fails the run: ``stale`` when no result lies in its region, ``unexpected_pass`` when results do
and all of them now match. The files are read as case files are (``conformance.cases.read_document``:
YAML 1.2 plain data, no tags, no ambiguous scalars).
"""

from __future__ import annotations

import bisect
import fnmatch
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from packaging.requirements import InvalidRequirement, Requirement

from conformance import generators, metamorphic, numerics
from conformance.cases import LABEL_SMOOTHING, CaseError, Problem, line_of, read_document, read_text

# a region's element predicates -> the case input they test, and its value where the case has none
ELEMENT_FIELDS: dict[str, tuple[str, float | None]] = {
    "logit": ("logits", None),
    "probability": ("probs", None),
    "target": ("target", None),
    "weight": ("weight", 1.0),
    "pos_weight": ("pos_weight", 1.0),
    "label_smoothing": (LABEL_SMOOTHING, 0.0),
}
SCOPE_FIELDS = ("op", "dtype", "reduction", "quantity", "case")
BOUNDS = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal}


@cache
def schema() -> dict:
    text = resources.files("conformance").joinpath("schema/known_divergences.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class Values:
    """An element predicate: one of ``members`` (NaN matching NaN), or every bound of ``bounds`` holding."""

    members: tuple[float, ...] = ()
    bounds: tuple[tuple[str, float], ...] = ()

    @classmethod
    def parse(cls, raw) -> Values:
        if isinstance(raw, dict):
            return cls(bounds=tuple((k, float(v)) for k, v in raw.items()))
        return cls(members=tuple(float(v) for v in (raw if isinstance(raw, list) else [raw])))

    def holds(self, values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            if self.bounds:
                out = np.ones(values.shape, dtype=bool)
                for name, bound in self.bounds:
                    out &= BOUNDS[name](values, bound)
                return out
            out = np.zeros(values.shape, dtype=bool)
            for member in self.members:
                out |= np.isnan(values) if math.isnan(member) else values == member
            return out

    def holds_somewhere_in(self, ascending) -> bool:
        """Whether ``holds`` is true of some element of ``ascending``, a NaN-free sequence sorted ascending, by
        binary search: the bounds select an interval of it, each member a point. The elements are compared as
        Python floats (exact for every dtype, as ``holds`` compares in float64)."""
        if self.bounds:
            if any(math.isnan(bound) for _, bound in self.bounds):
                return False  # every comparison with NaN is false
            low, high = 0, len(ascending)
            for name, bound in self.bounds:
                if name in ("gt", "ge"):
                    low = max(low, (bisect.bisect_right if name == "gt" else bisect.bisect_left)(ascending, bound, key=float))
                else:
                    high = min(high, (bisect.bisect_left if name == "lt" else bisect.bisect_right)(ascending, bound, key=float))
            return low < high
        for member in self.members:
            at = bisect.bisect_left(ascending, member, key=float)
            if not math.isnan(member) and at < len(ascending) and float(ascending[at]) == member:
                return True
        return False


@dataclass(frozen=True)
class Region:
    """One region of ``where``: its scope (``op``, ``dtype``, ... None: any) and its element predicates."""

    scope: tuple[tuple[str, tuple[str, ...]], ...] = ()
    elements: tuple[tuple[str, Values], ...] = ()
    empty: bool | None = None

    def in_scope(self, **facts: str) -> bool:
        return all(
            any(facts[name] == p or fnmatch.fnmatchcase(facts[name], p) for p in patterns) for name, patterns in self.scope
        )

    def mask(self, inputs: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
        """The elements of an input (broadcast to ``shape``) that lie in the region."""
        size = int(np.prod(shape))
        if self.empty is not None and self.empty != (size == 0):
            return np.zeros(shape, dtype=bool)
        out = np.ones(shape, dtype=bool)
        for name, predicate in self.elements:
            key, default = ELEMENT_FIELDS[name]
            if key in inputs:
                values = np.broadcast_to(np.asarray(inputs[key], dtype=np.float64), shape)
            elif default is not None:
                values = np.full(shape, default)
            else:  # `logit` of a probability case, `probability` of a logit case: no element lies there
                return np.zeros(shape, dtype=bool)
            out &= predicate.holds(values)
        return out

    def reaches(self, inputs: dict, varying: str) -> bool:
        """``mask(inputs, shape).any()`` where ``inputs[varying]`` is a NaN-free 1-d array sorted ascending and every
        other input one value (a float32 sweep's logits, a run of them of one sign, at one target): by binary search
        on the varying input (``Values.holds_somewhere_in``), the others' predicates on their one value."""
        size = len(inputs[varying])
        if size == 0 or (self.empty is not None and self.empty != (size == 0)):
            return False
        for name, predicate in self.elements:
            key, default = ELEMENT_FIELDS[name]
            if key == varying:
                holds = predicate.holds_somewhere_in(inputs[key])
            elif key in inputs or default is not None:
                holds = bool(predicate.holds(np.asarray(inputs.get(key, default), dtype=np.float64)))
            else:  # as ``mask``: no element lies there
                holds = False
            if not holds:
                return False
        return True


@dataclass(frozen=True)
class KnownDivergence:
    id: str
    api: tuple[str, ...]  # globs on the API name
    reason: str
    source: str
    where: tuple[Region, ...] = (Region(),)
    file: str = ""
    when: numerics.Condition = ()  # the numerics environment it holds in; () everywhere
    versions: tuple[Requirement, ...] = ()  # the framework versions it holds for; () all
    line: int | None = None

    def applies(self, environment: dict | None, versions: dict[str, str] | None = None) -> bool:
        """Whether the entry holds on a host with this numerics record and for a framework with these package
        versions (an entry without ``when`` or ``versions`` always does)."""
        if self.when and not numerics.holds(self.when, environment):
            return False
        return all(
            r.name in (versions or {}) and r.specifier.contains(versions[r.name], prereleases=True) for r in self.versions
        )

    def describe_scope(self) -> str:
        """Where the entry holds, for the run's header: its ``when`` and its ``versions``."""
        parts = [f"when {numerics.describe_condition(self.when)}"] if self.when else []
        parts += [f"for {r}" for r in self.versions]
        return " and ".join(parts)

    @property
    def when_record(self) -> dict[str, dict[str, object]]:
        """``when:`` as written, for the result record."""
        return {term.field: {term.operator: term.operand} for term in self.when}

    def names_api(self, api: str) -> bool:
        return any(api == pattern or fnmatch.fnmatchcase(api, pattern) for pattern in self.api)

    def regions(self, case: str, api: str, op: str, dtype: str, reduction: str, quantity: str) -> tuple[Region, ...]:
        """The regions of ``where`` whose scope a check lies in (none: the entry does not concern it)."""
        if not self.names_api(api):
            return ()
        facts = {"case": case, "op": op, "dtype": dtype, "reduction": reduction, "quantity": quantity}
        return tuple(region for region in self.where if region.in_scope(**facts))


def _globs(value) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _region(raw: dict) -> Region:
    scope = tuple((name, _globs(raw[name])) for name in SCOPE_FIELDS if name in raw)
    elements = tuple((name, Values.parse(raw[name])) for name in ELEMENT_FIELDS if name in raw)
    return Region(scope, elements, raw.get("empty"))


def _schema_problems(shown: str, data, raw) -> list[Problem]:
    problems = []
    validator = generators.SchemaValidator(schema())
    for error in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        while error.validator == "oneOf" and error.context:
            # a region or a list of them, bounds or a list of numbers, a name or a list of names: say what is wrong
            # inside the branch the value's type takes (not that it is not of another branch's type)
            inside = [e for e in error.context if e.validator != "type"]
            if not inside and not isinstance(error.instance, (dict, list)):
                break
            error = max(inside or error.context, key=lambda e: len(e.absolute_path))
        location = list(error.absolute_path)
        number = location[0] if location and isinstance(location[0], int) else None
        entry = data[number] if number is not None else None
        label = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else (f"#{number + 1}" if number is not None else None)
        message = error.message
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = set(error.schema.get("properties", {}))
            unknown = sorted(key for key in error.instance if key not in known)
            message = f"unknown field(s): {', '.join(unknown)}"
            location = location + unknown[:1]
        elif error.validator == "required":
            message = f"missing: {', '.join(k for k in error.validator_value if k not in error.instance)}"
        elif error.validator == "oneOf" and location and location[-1] in ELEMENT_FIELDS:
            message = f"{error.instance!r} is not a number, a list of numbers or bounds {{gt, ge, lt, le}}"
        elif location[1:2] == ["versions"]:
            message = "versions is a requirement such as 'torch >=2.13,<2.14', or a list of them"
        elif error.validator == "pattern" and location[-1:] == ["id"]:
            message = f"{error.instance!r} is not an id: letters, digits and _.+- , starting with a letter or digit"
        fields = [str(p) for p in location[1:]]
        line = None
        if number is not None and raw is not None:
            line = line_of(raw[number], location[1]) if len(location) > 1 and isinstance(location[1], str) else line_of(raw[number])
        problems.append(Problem(shown, message, line, case=label, field=".".join(fields) or None))
    return problems


def _parse(text: str, shown: str) -> list[KnownDivergence]:
    # read as case files are (YAML 1.2 plain data: no tags, no %YAML 1.1, no ambiguous scalars such as 1_000)
    data, raw, problems = read_document(text, shown, entries=())
    if data is None:
        data = []
    if not isinstance(data, list):
        raise CaseError([replace(p, kind="entry") for p in problems] + [Problem(shown, "a known-divergence file is a list of entries")])
    problems += _schema_problems(shown, data, raw)
    bad = {p.case for p in problems}
    entries, seen = [], set()
    for number, entry in enumerate(data, 1):
        if not isinstance(entry, dict):
            continue
        label = entry.get("id") if isinstance(entry.get("id"), str) else f"#{number}"
        line = line_of(raw[number - 1]) if raw else None
        if label in seen:
            problems.append(Problem(shown, "duplicate id", line, case=label, field="id"))
        seen.add(label)
        if label in bad:
            continue
        try:
            requirements = _requirements(entry["versions"]) if "versions" in entry else ()
        except ValueError as exc:
            problems.append(Problem(shown, str(exc), line_of(raw[number - 1], "versions"), case=label, field="versions"))
            continue
        condition: numerics.Condition = ()
        if "when" in entry:
            try:
                condition = numerics.parse_condition(entry["when"])
            except numerics.ConditionError as exc:
                problems.append(Problem(shown, str(exc), line_of(raw[number - 1], "when"), case=label, field=exc.field))
                continue
        regions = entry["where"] if isinstance(entry["where"], list) else [entry["where"]]
        entries.append(
            KnownDivergence(
                id=entry["id"], api=_globs(entry["api"]), reason=entry["reason"], source=entry["source"],
                where=tuple(_region(r) for r in regions), file=shown, when=condition, versions=requirements, line=line,
            )
        )  # fmt: skip
    if problems:
        raise CaseError([replace(p, kind="entry") for p in problems])
    return entries


def _requirements(value) -> tuple[Requirement, ...]:
    """``versions``: one PEP 508 requirement (a package name and a version specifier, nothing else) or a list."""
    texts = [value] if isinstance(value, str) else value
    out = []
    for text in texts:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ValueError(f"versions: {text!r} is not a requirement such as 'torch >=2.13,<2.14' ({exc})") from None
        if requirement.extras or requirement.marker or requirement.url or not str(requirement.specifier):
            raise ValueError(f"versions: {text!r}: a package name and a version specifier, nothing else")
        out.append(requirement)
    return tuple(out)


def builtin(framework: str) -> list[KnownDivergence]:
    """The known divergences shipped for a built-in framework (none for a framework without a file)."""
    resource = resources.files("conformance").joinpath(f"known_divergences/{framework}.yaml")
    if not resource.is_file():
        return []
    return _parse(resource.read_text(encoding="utf-8"), f"conformance/known_divergences/{framework}.yaml")


def builtin_files() -> list[str]:
    """The frameworks with a shipped catalogue."""
    folder = resources.files("conformance").joinpath("known_divergences")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def read_file(path: str | Path) -> list[KnownDivergence]:
    """An extra catalogue file, read as a case file is (a FIFO, a symlink loop, a huge or non-UTF-8 file is a CaseError)."""
    return _parse(read_text(Path(path), str(path)), str(path))


def load(framework: str, extra: Iterable[str | Path] = ()) -> list[KnownDivergence]:
    """The built-in entries for ``framework`` plus those of any extra files."""
    entries = builtin(framework)
    for path in extra:
        entries.extend(read_file(path))
    return entries


def applying(
    entries: list[KnownDivergence], environment: dict | None, versions: dict[str, str] | None = None
) -> tuple[list[KnownDivergence], list[KnownDivergence]]:
    """The entries that hold on a host with this numerics record and for these framework versions, and the others."""
    holds = [e.applies(environment, versions) for e in entries]
    return [e for e, h in zip(entries, holds) if h], [e for e, h in zip(entries, holds) if not h]


def concerning(entries: list[KnownDivergence], case: str, api: str, op: str, dtype: str, reduction: str, quantity: str):
    """(entry, its regions in scope) for each entry that concerns a check."""
    out = []
    for entry in entries:
        regions = entry.regions(case, api, op, dtype, reduction, quantity)
        if regions:
            out.append((entry, regions))
    return out


@dataclass
class Explanation:
    """Which entries explain which elements of one result."""

    figures: dict[str, dict] = field(default_factory=dict)  # entry id -> what it explained (see ``_figures``)
    unexplained: np.ndarray | None = None  # bool over the result's shape: the elements that miss, in no region
    touched: list[str] = field(default_factory=list)  # the entries whose region the input reaches
    entries: list[KnownDivergence] = field(default_factory=list)  # those that explain something, in order

    @property
    def complete(self) -> bool:
        return bool(self.entries) and (self.unexplained is None or not self.unexplained.any())


def explain(
    concerned, inputs: dict[str, np.ndarray], quantity: str, misses: np.ndarray | None, errors: np.ndarray | None = None
) -> Explanation:
    """The explanation of a result by the entries that concern it (``concerning``). ``misses``: bool over the
    result's shape, the elements that need explaining; None when the result has no element to blame (an
    error, a silent change of dtype): then any element of the input in a region explains it. ``errors``: the
    elements' errors in ULPs, for the figures."""
    shape = np.broadcast_shapes(*(np.shape(a) for k, a in inputs.items() if k != LABEL_SMOOTHING))
    kind = "logits" if "logits" in inputs else "probs"
    x = np.broadcast_to(np.asarray(inputs[kind], dtype=np.float64), shape)
    y = np.broadcast_to(np.asarray(inputs["target"], dtype=np.float64), shape)
    out = Explanation()
    remaining = None if misses is None else np.asarray(misses, dtype=bool).copy()
    whole = misses is None or remaining.shape not in (shape, shape[:-1])  # a reduced result: any element
    sides = [inputs, metamorphic.mirrored(inputs)] if quantity == "symmetry" else [inputs]  # the relation's two inputs
    for entry, regions in concerned:
        region_mask = np.zeros(shape, dtype=bool)
        for region in regions:
            for side in sides:
                region_mask |= region.mask(side, shape)
        reaches = bool(region_mask.any()) or (region_mask.size == 0 and any(r.empty for r in regions))
        if not reaches:
            continue
        out.touched.append(entry.id)
        if whole:
            if remaining is None or remaining.any():
                out.figures[entry.id] = _figures(kind, x[region_mask], y[region_mask], 1, _largest(errors, remaining))
                out.entries.append(entry)
                remaining = np.zeros(() if remaining is None else remaining.shape, dtype=bool)
            continue
        per_output = region_mask if remaining.shape == shape else region_mask.any(axis=-1)
        hit = remaining & per_output
        if hit.any():
            inside = hit if remaining.shape == shape else (hit[..., None] & region_mask)
            out.figures[entry.id] = _figures(kind, x[inside], y[inside], int(hit.sum()), _largest(errors, hit))
            out.entries.append(entry)
            remaining &= ~hit
    out.unexplained = np.ones((), dtype=bool) if remaining is None else remaining  # None: nothing reached it
    return out


def _largest(errors: np.ndarray | None, mask: np.ndarray | None) -> float | None:
    if errors is None or mask is None:
        return None
    chosen = np.asarray(errors, dtype=np.float64)[mask] if np.shape(errors) == np.shape(mask) else np.asarray(errors, dtype=np.float64).ravel()
    if chosen.size == 0:
        return None
    chosen = np.where(np.isnan(chosen), np.inf, chosen)
    return float(chosen.max())


def _figures(kind: str, x: np.ndarray, y: np.ndarray, elements: int, max_ulp: float | None) -> dict:
    """What an entry explained in one result: how many elements, the largest error, and the spans of the
    inputs it explained them on: of the logits, [least, greatest] below 0 and from 0 (a mechanism acting at
    both ends shows both, and where each starts), of the probabilities and targets, [least, greatest]."""
    name = "logit" if kind == "logits" else "probability"
    out: dict = {"elements": elements}
    if max_ulp is not None:
        out["max_ulp"] = max_ulp
    for label, values in ((name, x), ("target", y)):
        finite = values[~np.isnan(values)]
        parts = [finite[finite < 0], finite[finite >= 0]] if label == "logit" else [finite]
        spans = [[float(part.min()), float(part.max())] for part in parts if part.size]
        if spans:
            out[label] = spans
        if np.isnan(values).any():
            out[f"{label}_nan"] = True
    return out


@dataclass
class Account:
    """One entry over a whole run: the results its region reaches and what it explained."""

    entry: KnownDivergence
    reached: int = 0  # results whose input reaches its region
    explained: int = 0  # results it explains (some element of)
    elements: int = 0

    @property
    def status(self) -> str:
        """``explains``; ``stale`` (no result reaches its region) or ``unexpected_pass`` (results do, and all match)."""
        if self.explained:
            return "explains"
        return "unexpected_pass" if self.reached else "stale"

    def problem(self) -> str:
        where = f"{self.entry.file}:{self.entry.line}" if self.entry.line else self.entry.file
        if self.status == "stale":
            return f"known divergence {self.entry.id!r} ({where}) explains nothing: no result of this run lies in its region; remove it or correct its `where`"
        return (
            f"known divergence {self.entry.id!r} ({where}) explains nothing: the {self.reached} result(s) in its region "
            "all match (unexpected pass); remove it, narrow its `where` or end its `versions`"
        )


def account(entries: list[KnownDivergence], results) -> list[Account]:
    """Each entry's account over a run's results (their ``in_regions`` and ``explained`` fields)."""
    accounts = {entry.id: Account(entry) for entry in entries}
    for result in results:
        for name in result.in_regions:
            if name in accounts:
                accounts[name].reached += 1
        for name, figures in result.explained.items():
            if name in accounts:
                accounts[name].explained += 1
                accounts[name].elements += int(figures.get("elements", 0))
    return list(accounts.values())


def unused_scope(entries: list[KnownDivergence], checks) -> list[KnownDivergence]:
    """Entries whose scope (API, op, dtype, reduction, quantity) no planned check lies in."""
    return [
        e for e in entries
        if not any(e.regions(c.case.full_name, c.api.name, c.api.op, c.dtype, c.reduction, c.quantity) for c in checks)
    ]  # fmt: skip
