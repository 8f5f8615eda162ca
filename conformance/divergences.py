"""Known divergences: results a framework is known to get wrong, each with its reason and source.

One YAML file per framework (``conformance/known_divergences/<framework>.yaml``), a list of entries:
``id``, ``case`` (a glob on the case's full name, or a list of them), ``api`` (a glob on the API
name, or a list of them; a pattern equal to the name always matches it, so that names with brackets,
``keras.losses.binary_crossentropy[torch]``, can be given as they are), optional
``dtypes``, ``reductions`` and ``quantities`` (``value``, the default, and / or ``grad``),
``reason`` and ``source`` (an issue link or a documentation page), and an optional ``when``: the
numerics environment the entry holds in (``conformance.numerics.parse_condition``, e.g.
``{numpy.simd_found: {has: X86_V4}}``); on a host where it does not hold the entry does not apply,
neither to a result nor to the staleness check, and the run's header counts it apart. An optional
``versions`` (a PEP 508 requirement on a package the framework records, or a list of them, e.g.
``jax <0.7``) does the same for the framework's versions: the entry holds only where every named
package is recorded at a version its specifier contains (the version matrix runs one framework at two
versions, and a mechanism can come and go between them).
The list is strict: an entry whose results now match the reference is reported as an
unexpected pass, and an entry that matches nothing in the case files it names fails the run.
The files are read as case files are (``conformance.cases.read_document``: YAML 1.2 plain data,
no tags, no ambiguous scalars); an ``id`` follows the case id rule (no spaces, no line breaks).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from conformance import numerics
from conformance.cases import ID, ID_RULE, CaseError, Problem, line_of, read_document, read_text

REQUIRED = ("id", "reason", "source")
PATTERNS = ("case", "api")
OPTIONAL = ("dtypes", "reductions", "quantities", "when", "versions")


def _patterns(value) -> tuple[str, ...] | None:
    """A glob or a non-empty list of globs, as a tuple; None when malformed."""
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    return None


@dataclass(frozen=True)
class KnownDivergence:
    id: str
    case: tuple[str, ...]  # globs on the case's full name
    api: tuple[str, ...]  # globs on the API name
    reason: str
    source: str
    dtypes: tuple[str, ...] | None = None
    reductions: tuple[str, ...] | None = None
    quantities: tuple[str, ...] = ("value",)  # "value" (the loss) and / or "grad" / "grad_target" (its gradient w.r.t. input / target)
    file: str = ""
    when: numerics.Condition = ()  # the numerics environment it holds in; () everywhere
    versions: tuple[Requirement, ...] = ()  # the framework versions it holds for; () all

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

    def matches(self, case: str, api: str, dtype: str, reduction: str, quantity: str = "value") -> bool:
        return (
            any(fnmatch.fnmatchcase(case, pattern) for pattern in self.case)
            and any(api == pattern or fnmatch.fnmatchcase(api, pattern) for pattern in self.api)
            and (self.dtypes is None or dtype in self.dtypes)
            and (self.reductions is None or reduction in self.reductions)
            and quantity in self.quantities
        )

    def names_file(self, stems: set[str]) -> bool:
        """Whether the entry's case pattern can name a case of one of these case files."""
        file_parts = [pattern.split("/", 1)[0] for pattern in self.case]
        return any(fnmatch.fnmatchcase(stem, part) for stem in stems for part in file_parts)


def _parse(text: str, shown: str) -> list[KnownDivergence]:
    # read as case files are (YAML 1.2 plain data: no tags, no %YAML 1.1, no ambiguous scalars such as 1_000)
    data, raw, problems = read_document(text, shown, entries=())
    if data is None:
        data = []
    if not isinstance(data, list):
        raise CaseError(problems + [Problem(shown, "a known-divergence file is a list of entries")])
    entries, seen = [], set()
    refused = {p.case for p in problems}  # entries with a value plain data cannot hold: reported, not read
    for number, entry in enumerate(data, 1):
        label = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{number}"
        line = line_of(raw[number - 1]) if raw else None
        if not isinstance(entry, dict):
            problems.append(Problem(shown, "an entry must be a mapping", line, case=label))
            continue
        missing = [k for k in REQUIRED if not isinstance(entry.get(k), str) or not entry.get(k)]
        missing += [k for k in PATTERNS if _patterns(entry.get(k)) is None]
        unknown = sorted(set(entry) - set(REQUIRED) - set(PATTERNS) - set(OPTIONAL))
        if missing:
            problems.append(Problem(shown, f"missing or empty: {', '.join(missing)}", line, case=label))
        if unknown:
            problems.append(Problem(shown, f"unknown field(s): {', '.join(unknown)}", line, case=label))
        if "id" not in missing and not ID.fullmatch(entry["id"]):  # fullmatch: "x\n" is not an id
            problems.append(Problem(shown, f"{entry['id']!r} is not an id: {ID_RULE}", line_of(raw[number - 1], "id"), case=label, field="id"))
            missing.append("id")
        if label in seen:
            problems.append(Problem(shown, "duplicate id", line, case=label, field="id"))
        seen.add(label)
        requirements: tuple[Requirement, ...] = ()
        if "versions" in entry:
            try:
                requirements = _requirements(entry["versions"])
            except ValueError as exc:
                problems.append(Problem(shown, str(exc), line_of(raw[number - 1], "versions"), case=label, field="versions"))
                continue
        condition: numerics.Condition = ()
        if "when" in entry:
            try:
                condition = numerics.parse_condition(entry["when"])
            except numerics.ConditionError as exc:
                problems.append(Problem(shown, str(exc), case=label, field=exc.field))
                continue
        if missing or unknown or label in refused:
            continue
        entries.append(
            KnownDivergence(
                **{k: entry[k] for k in REQUIRED},
                **{k: _patterns(entry[k]) for k in PATTERNS},
                **{k: tuple(entry[k]) for k in OPTIONAL if k in entry and k not in ("when", "versions")},
                file=shown,
                when=condition,
                versions=requirements,
            )
        )
    if problems:
        raise CaseError(problems)
    return entries


def _requirements(value) -> tuple[Requirement, ...]:
    """``versions``: one PEP 508 requirement (a package name and a version specifier, nothing else) or a list."""
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("versions is a requirement such as 'jax <0.7', or a list of them")
    out = []
    for text in texts:
        try:
            requirement = Requirement(text)
        except InvalidRequirement as exc:
            raise ValueError(f"versions: {text!r} is not a requirement such as 'jax <0.7' ({exc})") from None
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


def load(framework: str, extra: list[str | Path] = ()) -> list[KnownDivergence]:
    """The built-in entries for ``framework`` plus those of any extra files."""
    entries = builtin(framework)
    for path in extra:  # read as a case file is: a FIFO, a symlink loop, a huge or non-UTF-8 file is a CaseError
        entries.extend(_parse(read_text(Path(path), str(path)), str(path)))
    return entries


def applying(
    entries: list[KnownDivergence], environment: dict | None, versions: dict[str, str] | None = None
) -> tuple[list[KnownDivergence], list[KnownDivergence]]:
    """The entries that hold on a host with this numerics record and for these framework versions, and the others."""
    holds = [e.applies(environment, versions) for e in entries]
    return [e for e, h in zip(entries, holds) if h], [e for e, h in zip(entries, holds) if not h]


def find(
    entries: list[KnownDivergence], case: str, api: str, dtype: str, reduction: str, quantity: str = "value"
) -> KnownDivergence | None:
    return next((e for e in entries if e.matches(case, api, dtype, reduction, quantity)), None)


def stale(entries: list[KnownDivergence], checks, case_stems: set[str]) -> list[KnownDivergence]:
    """Entries that name a loaded case file but match none of its checks."""
    return [
        e
        for e in entries
        if e.names_file(case_stems)
        and not any(e.matches(c.case.full_name, c.api.name, c.dtype, c.reduction, c.quantity) for c in checks)
    ]
