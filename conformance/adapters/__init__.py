"""Adapters: each framework's real BCE APIs, named exactly, behind one small interface.

An adapter module has a ``load() -> Framework`` function that imports the framework, configures
it (JAX's float64, for instance) and returns its APIs. An ``Api`` is the unit that is tested and
reported: one real call path (a function, or a framework's own composition of two), for one op.

A framework this project does not ship comes from a third-party adapter, the same zero-argument
loader found either by name through an entry point in the group ``conformance.adapters``
(``load_framework``, after the built-in names) or by a spec ``module:object`` or
``path/to/file.py:object`` (``load_adapter``). docs/adapters.md documents the interface.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from conformance import variants as variant_contracts
from conformance.dtypes import DTYPES
from conformance.variants import Variant

OPS = ("bce", "bce_with_logits", "sigmoid_bce")
BUILTIN = {
    "numpy": "conformance.adapters.numpy",
    "torch": "conformance.adapters.torch",
    "tensorflow": "conformance.adapters.tensorflow",
    "jax": "conformance.adapters.jax",
    # the project's own tests' subject: NumPy's formulas with every step correctly rounded, the same bits on any host
    "rounded": "conformance.adapters.rounded",
}
ENTRY_POINT_GROUP = "conformance.adapters"  # installed third-party adapters: name = "module:loader"
FRAMEWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # it names the results files, results/<name>.jsonl
UNSUPPORTED_KEYS = ("weight", "pos_weight", "label_smoothing", "grad", "grad_target")  # what an Api's `unsupported` may name, as why_unsupported reads it
INSTALL_HINT = {
    "numpy": "pip install 'bce-conformance[numpy]'",
    "torch": "pip install 'bce-conformance[torch]'  (pins torch==2.13.0 and keras==3.15.1)",
    "tensorflow": "pip install 'bce-conformance[tensorflow]'  (pins tensorflow-cpu==2.21.0)",
    "jax": "pip install 'bce-conformance[jax]'  (pins jax, jaxlib 0.10.2, optax 0.2.8 and keras 3.15.1)",
    "rounded": "pip install bce-conformance",
}

# "logits" or "probs", "target", optionally "weight" / "pos_weight" (all in the dtype under test), and
# "label_smoothing" (a 0-d float64 array) for a case with Keras's label smoothing
Inputs = dict[str, np.ndarray]


class Unsupported(Exception):
    """The API cannot take this combination; the message says why."""


class FrameworkUnavailable(Exception):
    """The framework asked for is unknown or not installed."""


class DeviceUnavailable(FrameworkUnavailable):
    """The ``--device`` asked for is not there, or the framework does not compute on that kind of device
    (``conformance.devices``); the message names the devices that are."""


class AdapterError(FrameworkUnavailable):
    """A third-party adapter cannot be imported or loaded, or returned no valid ``Framework``; the
    message names the adapter (its spec or entry point)."""


@dataclass(frozen=True)
class Api:
    """One real API (or a framework's own two-step composition) for one op.

    ``call(inputs, reduction)`` gets the inputs already cast to the dtype under test and returns
    the framework's result as a NumPy array in the dtype the framework produced.
    """

    name: str  # exactly what is called, e.g. "torch.nn.functional.binary_cross_entropy"
    framework: str
    op: str  # one of OPS
    call: Callable[[Inputs, str], np.ndarray]
    reduced_by: str  # how mean / sum are computed: the API's own argument, or the framework's mean / sum
    # (args, dtype, reduction) -> one line of Python that reproduces the call with the framework alone;
    # args maps "input", "target" and any of "weight" / "pos_weight" / "label_smoothing" to a list literal of hex floats
    repro: Callable[[dict[str, str], str, str], str]
    dtypes: tuple[str, ...] = DTYPES
    unsupported: dict[str, str] = field(default_factory=dict)  # "weight" / "pos_weight" / "label_smoothing" -> why not
    # documented contracts it implements: built-in names from conformance.variants.VARIANTS, or the adapter's
    # own conformance.variants.Variant (variants.log_clamp, variants.prob_clip)
    variants: tuple[str | Variant, ...] = ()
    # grad(inputs, reduction) -> d(reduced loss)/d(input), through the framework's own autodiff; for
    # `none` the gradient of the sum of the losses. None when the framework has no autodiff.
    grad: Callable[[Inputs, str], np.ndarray] | None = None
    # True for an API whose loss is the mean over the input's last axis (Keras's binary_crossentropy,
    # axis=-1): its `none` result is the row means, shape input.shape[:-1], and its mean / sum reduce
    # those; the reference then computes that documented reduction. False: elementwise, mean / sum over all.
    axis_mean: bool = False
    # grad_target(inputs, reduction) -> d(reduced loss)/d(inputs["target"]), shaped like the target, through
    # the framework's own autodiff. None when the framework gives no gradient for the target.
    grad_target: Callable[[Inputs, str], np.ndarray] | None = None

    def why_unsupported(self, dtype: str, inputs: Inputs, quantity: str = "value") -> str | None:
        """The reason this API cannot compute ``quantity`` ("value", "grad" or "grad_target") of ``inputs`` in ``dtype``."""
        if dtype not in self.dtypes:
            return f"{self.name} does not take {dtype}"
        if self.axis_mean and any(name in inputs and np.ndim(inputs[name]) == 0 for name in ("logits", "probs")):
            return f"{self.name} averages over the last axis, which a 0-d input does not have"
        for name in ("weight", "pos_weight", "label_smoothing"):
            if name in inputs and name in self.unsupported:
                return self.unsupported[name]
        if quantity == "grad" and self.grad is None:
            return self.unsupported.get("grad", f"{self.name} has no gradient in this adapter")
        if quantity == "grad_target" and self.grad_target is None:
            return self.unsupported.get("grad_target", f"{self.name} has no gradient with respect to the target in this adapter")
        return None


@dataclass(frozen=True)
class Framework:
    name: str
    versions: dict[str, str]  # package -> version, for every package whose API is called
    apis: list[Api]
    settings: dict[str, str] = field(default_factory=dict)  # configuration the adapter applied, e.g. x64
    device: str = "cpu"  # where the framework computes, as the framework names it
    # values · factor computed by the framework on its device, in the values' dtype: the subnormal probe's
    # operation (conformance.environment); None where the adapter gives none
    multiply: Callable[[np.ndarray, float], np.ndarray] | None = None
    # the adapter's own known-divergence catalogues (docs/known_divergences.md), read with the built-in one for
    # a framework of this name and any given to the run; a path is best made from the adapter's own file
    # (Path(__file__).with_name("my_divergences.yaml")): a relative one starts at the current folder
    known_divergences: tuple[str | Path, ...] = ()


def load_framework(name: str, device: str = "cpu") -> Framework:
    """A framework by name: a built-in adapter first, then an installed adapter's entry point in the
    group ``conformance.adapters``. An unknown or uninstalled framework is an error, never a skip; so is a
    ``device`` (``conformance.devices``) that is not there."""
    if name in BUILTIN:
        module = importlib.import_module(BUILTIN[name])
        try:
            framework = module.load(device)
        except ImportError as exc:
            raise FrameworkUnavailable(
                f"framework {name!r} is not installed ({exc}); install it with: {INSTALL_HINT[name]}"
            ) from None
        validate_framework(framework, f"built-in adapter {BUILTIN[name]}")
        return framework
    found = [entry for entry in adapter_entry_points() if entry.name == name]
    if not found:
        installed = sorted({entry.name for entry in adapter_entry_points()} - set(BUILTIN))
        raise FrameworkUnavailable(
            f"unknown framework {name!r}: built in are {', '.join(BUILTIN)}; installed adapters (entry points "
            f"in the group {ENTRY_POINT_GROUP!r}): {', '.join(installed) or 'none'}; an adapter that is not "
            "installed is given as --adapter module:object or --adapter path/to/file.py:object"
        )
    if len({entry.value for entry in found}) > 1:
        raise AdapterError(
            f"adapter {name!r}: {len(found)} entry points in the group {ENTRY_POINT_GROUP!r} have this name "
            f"({'; '.join(_describe_entry_point(entry) for entry in found)}); uninstall all but one"
        )
    entry = found[0]
    label = f"adapter {name!r} (entry point {_describe_entry_point(entry)})"
    try:
        loader = entry.load()
    except Exception as exc:
        raise AdapterError(f"{label}: cannot load {entry.value!r}: {_describe(exc)}") from exc
    framework = _call_loader(loader, entry.value.rpartition(":")[2].strip() or entry.value, label, device)
    if framework.name != name:
        raise AdapterError(
            f"{label}: returned a framework named {framework.name!r}; an adapter's entry point is named "
            "after its framework"
        )
    return framework


# ---------------------------------------------------------------------------------------------
# third-party adapters


def adapter_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The installed adapters: every entry point in the group ``conformance.adapters``."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_adapter(spec: str, device: str = "cpu") -> Framework:
    """A third-party adapter from ``module:object`` or ``path/to/file.py:object``: ``object`` (a
    dotted attribute path in the module) is a zero-argument callable returning a ``Framework`` (on another
    ``device`` than the CPU, a callable taking ``device=`` as a keyword).

    Raises ``AdapterError``, with the spec in the message, when the module cannot be imported, has
    no such object, or the object is not callable, raises, or returns no valid ``Framework``.
    """
    label = f"adapter {spec!r}"
    where, colon, attribute = spec.rpartition(":")
    where, attribute = where.strip(), attribute.strip()
    if not colon or not where or not attribute:
        raise AdapterError(
            f"{label}: expected module:object or path/to/file.py:object (for example my_adapter.py:load), "
            "the object being a zero-argument callable that returns a conformance.adapters.Framework"
        )
    if not all(part.isidentifier() for part in attribute.split(".")):
        raise AdapterError(f"{label}: {attribute!r} is not an attribute name (module:object, object a dotted name)")
    module = _import_file(where, label) if _is_path(where) else _import_module(where, label)
    target: Any = module
    for depth, part in enumerate(attribute.split(".")):
        if not hasattr(target, part):
            owner = where if depth == 0 else ".".join(attribute.split(".")[:depth])
            defined = sorted(
                n for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
            )
            hint = f" (it defines: {', '.join(defined)})" if depth == 0 and defined else ""
            raise AdapterError(f"{label}: {owner!r} has no attribute {part!r}{hint}")
        target = getattr(target, part)
    return _call_loader(target, attribute, label, device)


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _import_module(name: str, label: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise AdapterError(
                f"{label}: no module named {exc.name!r} (is it installed, or on PYTHONPATH? an adapter in a "
                "plain file is given by its path: path/to/file.py:object)"
            ) from exc
        raise AdapterError(f"{label}: importing {name!r} raised {_describe(exc)}") from exc
    except Exception as exc:
        raise AdapterError(f"{label}: importing {name!r} raised {_describe(exc)}") from exc


def _import_file(where: str, label: str):
    """Imports a .py file outside any package as a module of its own (its folder is not put on sys.path)."""
    path = Path(where).expanduser()
    if not path.is_file():
        raise AdapterError(f"{label}: no such file {str(path)!r} (relative paths start at {os.getcwd()})")
    name = "conformance_adapter_" + re.sub(r"\W", "_", path.stem)
    module_spec = importlib.util.spec_from_file_location(name, path.resolve())
    if module_spec is None or module_spec.loader is None:
        raise AdapterError(f"{label}: {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up here
    try:
        module_spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if not isinstance(exc, Exception):
            raise
        raise AdapterError(f"{label}: importing {str(path)!r} raised {_describe(exc)}") from exc
    return module


def _call_loader(loader, shown: str, label: str, device: str = "cpu") -> Framework:
    if isinstance(loader, Framework) or not callable(loader):
        raise AdapterError(
            f"{label}: {shown} is {_a(loader)}, not a zero-argument callable that returns a "
            "conformance.adapters.Framework"
        )
    arguments = {}
    if device != "cpu":  # a third-party adapter chooses its device where it takes one: never a silent CPU run
        try:
            takes_device = "device" in inspect.signature(loader).parameters
        except (TypeError, ValueError):
            takes_device = False
        if not takes_device:
            raise DeviceUnavailable(
                f"--device {device!r}: {label}: {shown}() takes no device= argument, so it computes where it "
                "computes; run it with --device cpu (the default)"
            )
        arguments["device"] = device
    try:
        framework = loader(**arguments)
    except DeviceUnavailable:
        raise
    except Exception as exc:
        raise AdapterError(f"{label}: {shown}() raised {_describe(exc)}") from exc
    if not isinstance(framework, Framework):
        raise AdapterError(f"{label}: {shown}() returned {_a(framework)}, not a conformance.adapters.Framework")
    validate_framework(framework, label)
    return _guarded(framework)


def validate_framework(framework: Framework, label: str) -> None:
    """Raises ``AdapterError`` listing every problem of a ``Framework``: its name, its versions and
    settings, and each API's name (non-empty, unique), op, callables, dtypes, ``unsupported`` and variants."""
    problems = []
    name = framework.name
    if not isinstance(name, str) or not FRAMEWORK_NAME.fullmatch(name):
        problems.append(
            f"framework name {name!r}: a non-empty name of letters, digits and _.+- (it names the results files)"
        )
    for field_name in ("versions", "settings"):
        value = getattr(framework, field_name)
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            problems.append(f"{field_name} must be a dict of str to str, not {_a(value)}")
    if not isinstance(framework.device, str) or not framework.device.strip():
        problems.append(f"device must be a non-empty str, not {framework.device!r}")
    if framework.multiply is not None and not callable(framework.multiply):
        problems.append(f"multiply is {_a(framework.multiply)}, not a callable or None")
    catalogues = framework.known_divergences
    if isinstance(catalogues, (str, Path)) or not isinstance(catalogues, (list, tuple)):
        problems.append(f"known_divergences must be a tuple of paths, not {catalogues!r}")
    else:
        for path in catalogues:
            if not isinstance(path, (str, Path)) or not Path(path).is_file():
                problems.append(f"known_divergences: no such file {str(path)!r} (relative paths start at {os.getcwd()})")
    apis = framework.apis
    if not isinstance(apis, (list, tuple)):
        problems.append(f"apis must be a list of conformance.adapters.Api, not {_a(apis)}")
        apis = []
    elif not apis:
        problems.append("apis is empty: an adapter returns at least one Api")
    seen: set[str] = set()
    for index, api in enumerate(apis):
        if not isinstance(api, Api):
            problems.append(f"apis[{index}] is {_a(api)}, not a conformance.adapters.Api")
            continue
        if not isinstance(api.name, str) or not api.name.strip():
            problems.append(f"apis[{index}]: empty name {api.name!r}")
            where = f"apis[{index}]"
        else:
            where = f"API {api.name!r}"
            if api.name in seen:
                problems.append(f"{where}: duplicate name (API names are unique within a framework)")
            seen.add(api.name)
        if api.op not in OPS:
            problems.append(f"{where}: unknown op {api.op!r} (one of: {', '.join(OPS)})")
        for attribute in ("call", "repro"):
            if not callable(getattr(api, attribute)):
                problems.append(f"{where}: {attribute} is {_a(getattr(api, attribute))}, not a callable")
        if not isinstance(api.reduced_by, str):
            problems.append(f"{where}: reduced_by must be a str, not {_a(api.reduced_by)}")
        if isinstance(api.dtypes, str) or not isinstance(api.dtypes, (list, tuple)) or not api.dtypes:
            problems.append(f"{where}: dtypes must be a non-empty tuple of dtype names, not {api.dtypes!r}")
        else:
            unknown = [d for d in api.dtypes if d not in DTYPES]
            if unknown:
                known = ", ".join(DTYPES)
                problems.append(f"{where}: unknown dtype(s) {', '.join(map(repr, unknown))} (known: {known})")
        if not isinstance(api.unsupported, dict):
            problems.append(f"{where}: unsupported must be a dict, not {_a(api.unsupported)}")
        else:
            for key, why in api.unsupported.items():
                if key not in UNSUPPORTED_KEYS:
                    problems.append(f"{where}: unsupported has key {key!r} (keys: {', '.join(UNSUPPORTED_KEYS)})")
                elif not isinstance(why, str) or not why.strip():
                    problems.append(f"{where}: unsupported[{key!r}] must say why, as a non-empty str")
        problems += [f"{where}: {problem}" for problem in variant_contracts.problems(getattr(api, "variants", ()))]
        if not isinstance(getattr(api, "axis_mean", False), bool):
            problems.append(f"{where}: axis_mean must be a bool, not {_a(api.axis_mean)}")
        for attribute in ("grad", "grad_target"):
            grad = getattr(api, attribute, None)
            if grad is not None and not callable(grad):
                problems.append(f"{where}: {attribute} is {_a(grad)}, not a callable or None")
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise AdapterError(f"{label}: the Framework it returned is not valid:\n{listed}")


def _guarded(framework: Framework) -> Framework:
    """A third-party framework whose APIs each get their own copy of the inputs (so that one writing into
    them cannot change the checks that follow) and whose reproducer cannot stop the run."""
    apis = []
    for api in framework.apis:
        guarded = {"call": _copying(api.call), "repro": _safe_repro(api)}
        for attribute in ("grad", "grad_target"):
            if getattr(api, attribute, None) is not None:
                guarded[attribute] = _copying(getattr(api, attribute))
        apis.append(replace(api, **guarded))
    return replace(framework, apis=apis)


def _copying(call):
    def guarded_call(inputs: Inputs, reduction: str):
        return call({name: np.array(value, copy=True) for name, value in inputs.items()}, reduction)

    guarded_call.__wrapped__ = call

    return guarded_call


def _safe_repro(api: Api):
    def guarded_repro(args: dict[str, str], dtype: str, reduction: str) -> str:
        try:
            line = api.repro(args, dtype, reduction)
        except Exception as exc:
            return f"# no reproducer: {api.name}'s repro raised {_describe(exc)}"
        return line if isinstance(line, str) else f"# no reproducer: {api.name}'s repro returned {_a(line)}, not a str"

    return guarded_repro


def _describe_entry_point(entry) -> str:
    dist = getattr(entry, "dist", None)
    source = f" from {dist.name} {dist.version}" if dist is not None and getattr(dist, "name", None) else ""
    return f"{entry.name} = {entry.value!r}{source}"


def _a(value) -> str:
    """``a str``, ``an int``, ``None``: what a value is, for a message."""
    if value is None:
        return "None"
    kind = type(value).__qualname__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message (at file:line)``, the line being the last frame outside importlib."""
    text = str(exc).strip().splitlines()
    described = f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(exc, SyntaxError):
        return described
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen") and "importlib" not in Path(frame.filename).parts
    ]
    if frames and Path(frames[-1].filename).resolve() != Path(__file__).resolve():
        return f"{described} (at {frames[-1].filename}:{frames[-1].lineno})"
    return described


def repro_line(prelude: str, tensor: str, call: str, to_list: str = ".tolist()") -> str:
    """One line of Python: ``prelude; t = <a tensor from a list of hex floats>; print(<call>.tolist())``.

    ``call`` refers to the inputs as ``t([...])``; printing through a Python list shows every digit.
    """
    return f"{prelude}; t = {tensor}; print(({call}){to_list})"


def keyword_args(args: dict[str, str], names: dict[str, str]) -> str:
    """``, weight=t([...])``-style keyword arguments for the optional inputs that are present."""
    return "".join(f", {keyword}=t({args[name]})" for name, keyword in names.items() if name in args)


def label_smoothing(inputs: Inputs) -> float:
    """The case's label smoothing as the Python float an API takes (0.0 when the case has none)."""
    return float(inputs["label_smoothing"]) if "label_smoothing" in inputs else 0.0


def label_smoothing_arg(args: dict[str, str]) -> str:
    """``, label_smoothing=0.1`` for a reproducer when the case has label smoothing, else ``""``.

    ``args["label_smoothing"]`` is, like every reproducer argument, the text of a list of hex floats
    (the same value repeated); the float's repr reads back exactly.
    """
    if "label_smoothing" not in args:
        return ""
    values = ast.literal_eval(args["label_smoothing"])
    return f", label_smoothing={float.fromhex(values[0])!r}"
