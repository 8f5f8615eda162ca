"""A content-addressed cache of reference values, shared across processes and runs.

``reference(...)`` takes the arguments of ``conformance.reference.reference`` and returns the same
``ReferenceValue``: from the cache when an entry for exactly these arguments exists, else computed
and, when it is of a kind the cache keeps (below) and large enough, stored.

The key is a SHA-256 of everything that determines the value: ``REFERENCE_VERSION``, the package
version, a digest of the reference's own source files (so an edit invalidates entries even if
nobody bumps the version), numpy's version and the machine (the float64 approximations come from
numpy's ``exp`` / ``log``), the formula, the dtype, the reduction, gradient / wrt / axis_mean,
two_step, the variant's parameters, and every cast input array's name, dtype, shape and bytes. A
changed case or generator changes the bytes, hence the key: stale entries are never read, only
left behind (delete the folder at will).

An entry is ``<folder>/v<REFERENCE_VERSION>/<key[:2]>/<key>.npz``: ``key`` (the hex key again, checked
on load), ``kind``, ``precision``, and ``rounded``, ``approx`` and ``bound`` (float64; no pickle).
Exact values are never stored: a cached value recomputes them with mpmath for the elements that ask
(``exact_where`` / ``exact_at``), or all of them (``exact``), exactly as the fast path's own value does.

What is cached, for inputs of at least ``min_elements()`` elements:
- ``kind = fast``: a fast-path value (dtypes of up to 24 bits), ``rounded``, ``approx``, ``bound``;
- ``kind = nonfinite``: a value from the mpmath path whose exact values are all ±inf or NaN (a sum
  with an infinite term): each exact value is its own rounding, so ``rounded`` gives it back whole.
Any other mpmath-path value (float64, target gradients, a finite reduction the fast path could not
settle) is judged from its exact values, which are not stored: caching its rounding would save nothing.

Folder: ``$CONFORMANCE_CACHE``, by default ``$XDG_CACHE_HOME/bce-conformance/reference``
(``~/.cache/...``); ``CONFORMANCE_CACHE=off`` disables the cache. ``CONFORMANCE_CACHE_MIN_ELEMENTS``
changes the size threshold (``MIN_ELEMENTS``). Writes go to a temporary file in
the entry's folder, then ``os.replace``: parallel tox envs and pytest-xdist workers can share the
folder. An entry that cannot be read (truncated, corrupt, another key) is ignored and rewritten; a
folder that cannot be written is ignored: the cache never turns into an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from functools import cache
from pathlib import Path

import mpmath
import numpy as np

from conformance import __version__
from conformance import reference as reference_module
from conformance.dtypes import FloatFormat
from conformance.reference import ReferenceValue
from conformance.variants import Variant

# Bump whenever the reference's code changes what it returns (conformance/reference.py,
# conformance/fast_reference.py, the rounding in conformance/dtypes.py, conformance/variants.py).
REFERENCE_VERSION = 2  # 2: the logits gradient at target 1/2 next to a rounding tie (reference._half_target_grad)

CACHE_ENV = "CONFORMANCE_CACHE"  # a folder, or "off"
MIN_ELEMENTS_ENV = "CONFORMANCE_CACHE_MIN_ELEMENTS"
MIN_ELEMENTS = 1 << 14  # below ~16k elements the fast path takes about as long as reading an entry
OFF = ("off", "0", "false", "no", "none", "disabled")
SOURCES = ("reference.py", "fast_reference.py", "dtypes.py", "variants.py")  # what the values depend on
FIELDS = ("rounded", "approx", "bound")
KINDS = ("fast", "nonfinite")
TENSORS = ("logits", "probs", "target", "weight", "pos_weight")


def folder() -> Path | None:
    """The cache's folder, or None when ``CONFORMANCE_CACHE=off``."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: a relative path is invalid
    return base / "bce-conformance" / "reference"


def min_elements() -> int:
    """The smallest input (elements of the broadcast shape) whose reference is cached."""
    text = os.environ.get(MIN_ELEMENTS_ENV, "").strip()
    try:
        return max(int(text), 0) if text else MIN_ELEMENTS
    except ValueError:
        return MIN_ELEMENTS


@cache
def _sources_digest() -> str:
    """SHA-256 of the reference's source files (empty where a file cannot be read, e.g. a zipped install)."""
    digest = hashlib.sha256()
    here = Path(reference_module.__file__).parent
    for name in SOURCES:
        try:
            digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
        except OSError:
            digest.update(name.encode() + b"\0?\0")
    return digest.hexdigest()


def _variant_key(variant: Variant | None):
    if variant is None:
        return None
    return [None if v is None else float(v).hex() for v in (variant.log_floor, variant.prob_clip, variant.grad_denominator_floor)]


def key(
    formula: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    fmt: FloatFormat,
    variant: Variant | None = None,
    two_step: bool = False,
    gradient: bool = False,
    axis_mean: bool = False,
    wrt: str = "input",
    count: int | None = None,
) -> str:
    """The entry's key: a hex SHA-256 of everything that determines the reference value."""
    digest = hashlib.sha256()
    header = {
        "reference_version": REFERENCE_VERSION,
        "package": __version__,
        "sources": _sources_digest(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "formula": formula,
        "format": [fmt.name, fmt.precision, fmt.emin, fmt.emax],
        "reduction": reduction,
        "gradient": bool(gradient),
        "axis_mean": bool(axis_mean),
        "wrt": wrt,
        "two_step": bool(two_step),
        "variant": _variant_key(variant),
        "count": count,
        "inputs": sorted(inputs),
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])  # a broadcast view hashes as the array it stands for
        digest.update(f"\0{name}\0{array.dtype.name}\0{array.shape}\0".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)  # raw bytes: bfloat16 has no buffer format
    return digest.hexdigest()


def path_of(root: Path, entry_key: str) -> Path:
    return root / f"v{REFERENCE_VERSION}" / entry_key[:2] / f"{entry_key}.npz"


def _shapes(formula: str, inputs: dict[str, np.ndarray], reduction: str, gradient: bool, axis_mean: bool):
    """The input's broadcast shape and the reference's shape."""
    first = "probs" if formula == "bce" else "logits"
    shape = np.broadcast_shapes(*(np.shape(inputs[n]) for n in (first, "target", "weight", "pos_weight") if n in inputs))
    if gradient:
        return shape, shape
    if reduction != "none":
        return shape, ()
    return shape, (shape[:-1] if axis_mean else shape)


def load(path: Path, entry_key: str, shape: tuple[int, ...]) -> dict | None:
    """The entry (its arrays, ``kind`` and ``precision``), or None when it is missing or not a sound
    entry for this key and shape."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"][()]) != entry_key:
                return None
            entry = {name: np.array(data[name]) for name in FIELDS}  # reads (and CRC-checks) each member
            entry["kind"], entry["precision"] = str(data["kind"][()]), int(data["precision"][()])
    except Exception:  # missing, truncated, corrupt, not an npz: a miss, rewritten after computing
        return None
    if entry["kind"] not in KINDS or any(entry[f].dtype != np.float64 or entry[f].shape != tuple(shape) for f in FIELDS):
        return None
    if entry["kind"] == "nonfinite" and np.isfinite(entry["rounded"]).any():
        return None
    return entry


def kind_of(value: ReferenceValue) -> str | None:
    """How ``value`` can be cached (``KINDS``), or None."""
    if value.approx is not None and value.bound is not None:
        return "fast"
    exact = value._exact  # the mpmath path's: every exact value at hand
    if exact is not None and all(not mpmath.isfinite(v) for v in np.asarray(exact).ravel()):
        return "nonfinite"
    return None


def store(path: Path, entry_key: str, value: ReferenceValue) -> bool:
    """Writes the entry atomically (a temporary file in the same folder, then os.replace); False if it
    could not, or if ``value`` is not of a kind the cache keeps."""
    kind = kind_of(value)
    if kind is None:
        return False
    rounded = np.asarray(value.rounded, dtype=np.float64)
    if kind == "fast":
        approx, bound = np.asarray(value.approx, dtype=np.float64), np.asarray(value.bound, dtype=np.float64)
    else:  # the exact values are the rounded ones
        approx, bound = rounded, np.zeros(rounded.shape)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem[:16]}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            np.savez(
                out, key=np.array(entry_key), kind=np.array(kind), precision=np.array(value.precision, dtype=np.int64),
                rounded=rounded, approx=approx, bound=bound,
            )
        os.replace(temporary, path)
        return True
    except Exception:  # a read-only or full disk: the value is still returned, just not kept
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        return False


def rebuild(
    formula: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    fmt: FloatFormat,
    variant: Variant | None,
    two_step: bool,
    gradient: bool,
    axis_mean: bool,
    entry: dict,
) -> ReferenceValue:
    """The ``ReferenceValue`` of a stored entry. A fast-path one recomputes its exact values by mpmath on
    demand, built by the fast path's own constructor (conformance.reference.fast_value); a non-finite
    one has them."""
    rounded, approx, bound = entry["rounded"], entry["approx"], entry["bound"]
    if entry["kind"] == "nonfinite":
        exact = np.empty(rounded.shape, dtype=object)
        for index, v in np.ndenumerate(rounded):
            exact[index] = mpmath.nan if np.isnan(v) else mpmath.mpf(float(v))
        return ReferenceValue(exact=exact, rounded=rounded, precision=entry["precision"])
    # the fast path's own constructor: exact values on demand exactly as for a fresh value
    return reference_module.fast_value(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, rounded, approx, bound)


def reference(
    formula: str,
    inputs: dict[str, np.ndarray],
    reduction: str,
    fmt: FloatFormat,
    variant: Variant | None = None,
    two_step: bool = False,
    gradient: bool = False,
    axis_mean: bool = False,
    wrt: str = "input",
) -> ReferenceValue:
    """``conformance.reference.reference`` (fast path on), through the cache."""
    def compute() -> ReferenceValue:
        return reference_module.reference(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, wrt)

    try:
        root = folder()
    except (RuntimeError, KeyError, OSError):  # no home directory to put a default folder in: no cache
        root = None
    if root is None or formula not in reference_module.TERMS:
        return compute()
    try:
        shape, result_shape = _shapes(formula, inputs, reduction, gradient, axis_mean)
    except ValueError:
        return compute()  # shapes that do not broadcast: the reference says what is wrong
    if int(np.prod(shape)) < max(min_elements(), reference_module.FAST_MIN_ELEMENTS):
        return compute()
    entry_key = key(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, wrt)
    path = path_of(root, entry_key)
    entry = load(path, entry_key, result_shape)
    if entry is not None:
        return rebuild(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, entry)
    value = compute()
    store(path, entry_key, value)
    return value

