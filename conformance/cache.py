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
on load), ``kind``, ``precision``, ``rounded``, ``approx`` and ``bound`` (float64; no pickle), and ``mac``.
Exact values are never stored: a cached value recomputes them with mpmath for the elements that ask
(``exact_where`` / ``exact_at``), or all of them (``exact``), exactly as the fast path's own value does.

**What the cache trusts: its key file, nothing else.** The key is a content address, not a proof: an
entry whose key was kept and whose values were replaced (by a bug, by hand, by a cache restored from an
untrusted CI run, by the very API under test) would otherwise judge results against those values, and
could turn a wrong result into a pass. So each entry carries ``mac``, an HMAC-SHA256 over the key, the
kind, the precision and every stored array's dtype, shape and bytes, made with a secret kept outside the
cache folder: the key file ``$CONFORMANCE_CACHE_KEY``, by default
``$XDG_CONFIG_HOME/bce-conformance/cache.key`` (``~/.config/...``), created on first use with 32
random bytes, mode 0600, atomically (a key file inside the cache folder is refused). An entry with no
MAC or a wrong one, or a proven entry stored under another key (a file copied there), is a miss with a
``CacheWarning`` (one per process, naming the entry): the value is recomputed and the entry rewritten;
no verdict ever comes from an unproven entry. Whoever can read the key file, or replace it, can forge
entries that pass: keep it private (the cache refuses a key file that group or others may read or
write, or that another user owns). Where the key file cannot be read or created, the cache is off,
with one warning, and every reference is computed. A non-regular file at an entry's path (a FIFO, a
device) is a miss: it is never opened in a way that could block.

What is cached:
- ``kind = fast``: a fast-path value (dtypes of up to 24 bits), ``rounded``, ``approx``, ``bound``, for
  inputs of at least ``min_elements()`` elements;
- ``kind = nonfinite``: a value from the mpmath path whose exact values are all ±inf or NaN (a sum
  with an infinite term): each exact value is its own rounding, so ``rounded`` gives it back whole;
- ``kind = exact``: any other mpmath-path value (float64, target gradients, a reduction the fast path
  could not settle, a small input), of any size: ``rounded`` and every exact value itself, each mpf's
  sign, mantissa, exponent and bit count (``exact_sign``, ``exact_man`` as little-endian bytes,
  ``exact_exp``, ``exact_bc``), so that the value read back is the same mpf, bit for bit, and judges alike.
  mpmath's version is part of every key: another version may compute the last bits otherwise.

Folder: ``$CONFORMANCE_CACHE``, by default ``$XDG_CACHE_HOME/bce-conformance/reference``
(``~/.cache/...``); ``CONFORMANCE_CACHE=off`` disables the cache. ``CONFORMANCE_CACHE_MIN_ELEMENTS``
changes the size threshold (``MIN_ELEMENTS``). Writes go to a temporary file in
the entry's folder, then ``os.replace``: parallel tox envs and pytest-xdist workers can share the
folder. An entry that cannot be read (truncated, corrupt) is ignored, silently, and rewritten; a
folder that cannot be written is ignored: the cache never turns into an error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import platform
import stat
import tempfile
import warnings
from functools import cache
from pathlib import Path

import mpmath
import numpy as np
from mpmath import libmp

from conformance import __version__
from conformance import reference as reference_module
from conformance.dtypes import FloatFormat
from conformance.reference import ReferenceValue
from conformance.variants import Variant

# Bump whenever the reference's code changes what it returns (conformance/reference.py,
# conformance/fast_reference.py, the rounding in conformance/dtypes.py, conformance/variants.py).
REFERENCE_VERSION = 2  # 2: the logits gradient at target 1/2 next to a rounding tie (reference._half_target_grad)

CACHE_ENV = "CONFORMANCE_CACHE"  # a folder, or "off"
KEY_ENV = "CONFORMANCE_CACHE_KEY"  # the key file that entries' MACs are made with
KEY_BYTES = 32  # a new key's length; a key file must hold at least this many bytes
MAC_DOMAIN = b"bce-conformance reference cache entry, mac 1"  # what the MAC is of: no other HMAC of this key collides
MIN_ELEMENTS_ENV = "CONFORMANCE_CACHE_MIN_ELEMENTS"
MIN_ELEMENTS = 1 << 14  # below ~16k elements the fast path takes about as long as reading an entry
OFF = ("off", "0", "false", "no", "none", "disabled")
SOURCES = ("reference.py", "fast_reference.py", "dtypes.py", "variants.py")  # what the values depend on
FIELDS = ("rounded", "approx", "bound")
DEVIATION_FIELDS = ("below", "above", "done")  # a deviations entry's arrays (conformance.conditioning)
DEVIATION_SOURCES = ("conditioning.py",)  # what deviations depend on, beyond the reference's SOURCES
DEVIATIONS_MIN_ELEMENTS = 16  # mpmath takes about a millisecond an element: worth an entry from a few on
# an entry spans all its inputs' elements (24 bytes each), however few mpmath evaluated: none past this many
DEVIATIONS_MAX_ELEMENTS = 1 << 16
KINDS = ("fast", "nonfinite", "exact")
EXACT_FIELDS = ("exact_sign", "exact_man", "exact_exp", "exact_bc")  # an `exact` entry's mpf, encoded
TENSORS = ("logits", "probs", "target", "weight", "pos_weight")


def folder() -> Path | None:
    """The cache's folder, or None when ``CONFORMANCE_CACHE=off``."""
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return Path(setting).expanduser()
    return _xdg_folder("XDG_CACHE_HOME", ".cache") / "bce-conformance" / "reference"


def compilation_folder(framework: str) -> Path | None:
    """Where ``framework`` keeps its own compilation cache (JAX's persistent cache of XLA executables), inside
    the cache's folder so that ``CONFORMANCE_CACHE`` moves it and ``CONFORMANCE_CACHE=off`` turns it off; None
    when off, or where no folder can be named. What it holds is the framework's, keyed and checked by the
    framework (its version, backend, compile options and the program), not proven by this cache's key: it
    changes how long a compile takes, never what the compiled kernel computes."""
    try:
        root = folder()
    except (RuntimeError, KeyError, OSError):  # no home directory to put a default folder in
        return None
    return None if root is None else root / "compiled" / framework


def _xdg_folder(variable: str, default: str) -> Path:
    """An XDG base folder: ``$variable`` if it is an absolute path (XDG: a relative one is invalid), else ``~/default``."""
    xdg = os.environ.get(variable, "").strip()
    return Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / default


class CacheWarning(UserWarning):
    """The cache is off (its key file cannot be used), or an entry did not prove itself and was not used."""


_warned: set[str] = set()  # the kinds of warning given in this process: one each is enough
_secrets: dict[tuple[Path, Path | None], bytes | None] = {}  # (key file, folder) -> the key, or None: the cache off


def _warn_once(kind: str, message: str) -> None:
    if kind not in _warned:
        _warned.add(kind)
        warnings.warn(message, CacheWarning, stacklevel=3)


def key_file() -> Path:
    """The key file: ``$CONFORMANCE_CACHE_KEY``, by default ``$XDG_CONFIG_HOME/bce-conformance/cache.key``
    (``~/.config/...``): a configuration folder, apart from the cache folder it vouches for."""
    setting = os.environ.get(KEY_ENV, "").strip()
    if setting:
        return Path(setting).expanduser()
    return _xdg_folder("XDG_CONFIG_HOME", ".config") / "bce-conformance" / "cache.key"


class _KeyUnusable(Exception):
    """Why the key file cannot vouch for entries."""


def _read_key(path: Path) -> bytes:
    """The key file's bytes, if it is a private regular file of this user holding at least ``KEY_BYTES``."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO there must not hang us
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise _KeyUnusable("is not a regular file")
        if hasattr(os, "geteuid"):  # POSIX: a key others can read or replace proves nothing
            if status.st_mode & 0o077:
                raise _KeyUnusable(f"has mode {stat.S_IMODE(status.st_mode):04o}: group or others may read or write it")
            if status.st_uid != os.geteuid():
                raise _KeyUnusable(f"is owned by uid {status.st_uid}, not by this user")
        secret = handle.read(1 << 16)
    if len(secret) < KEY_BYTES:
        raise _KeyUnusable(f"holds {len(secret)} bytes, fewer than {KEY_BYTES}")
    return secret


def _create_key(path: Path) -> None:
    """A new key file of ``KEY_BYTES`` random bytes, mode 0600, made whole beside it and then linked into place:
    a reader never sees half a key, and where two processes race, both end up with the one linked first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(prefix=".cache.key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(os.urandom(KEY_BYTES))
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails where a key is already there: never replaces one in use
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: a rename, atomic, but it may replace a racing key
            if not path.exists():
                os.replace(temporary, path)
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass


def secret() -> bytes | None:
    """The key that entries' MACs are made with (read, or created on first use), or None: the cache is off,
    with one ``CacheWarning`` saying why. Read once per process and key file."""
    try:
        path, root = key_file(), folder()
    except (RuntimeError, KeyError, OSError) as exc:  # no home directory for the default key file
        _warn_once("key", f"the reference cache is off: no key file ({exc}); set {KEY_ENV}")
        return None
    if (path, root) in _secrets:
        return _secrets[(path, root)]
    value = None
    try:
        if root is not None and path.resolve().is_relative_to(root.resolve()):
            raise _KeyUnusable(f"is inside the cache folder {root}: whoever can write entries could write it")
        try:
            value = _read_key(path)
        except FileNotFoundError:
            _create_key(path)
            value = _read_key(path)
    except (_KeyUnusable, OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python 3.11's resolve)
        reason = str(exc) if isinstance(exc, _KeyUnusable) else f"cannot be read or created ({exc})"
        _warn_once(
            "key",
            f"the reference cache is off: its key file {path} {reason}; every reference is computed "
            f"(set {KEY_ENV} to a private file this user can create, or {CACHE_ENV}=off)",
        )
    _secrets[(path, root)] = value
    return value


def mac(
    key_bytes: bytes, entry_key: str, kind: str, precision: int, arrays: dict[str, np.ndarray], fields: tuple[str, ...] = FIELDS
) -> str:
    """HMAC-SHA256 of an entry: its key, kind, precision and each array's name, dtype, shape and bytes (the
    arrays ``fields``), each part length-prefixed (so that no two entries' parts run together into the same bytes)."""
    digest = hmac.new(key_bytes, digestmod=hashlib.sha256)

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big") + data)

    for data in (MAC_DOMAIN, entry_key.encode(), kind.encode(), str(int(precision)).encode()):
        part(data)
    for name in fields:
        array = np.ascontiguousarray(arrays[name])
        for data in (name.encode(), array.dtype.str.encode(), repr(tuple(array.shape)).encode()):
            part(data)
        part(array.reshape(-1).view(np.uint8).tobytes())
    return digest.hexdigest()


def min_elements() -> int:
    """The smallest input (elements of the broadcast shape) whose reference is cached."""
    text = os.environ.get(MIN_ELEMENTS_ENV, "").strip()
    try:
        return max(int(text), 0) if text else MIN_ELEMENTS
    except ValueError:
        return MIN_ELEMENTS


def _files_digest(names: tuple[str, ...], start: bytes = b"") -> str:
    """SHA-256 of ``start`` and the package's source files ``names`` (each empty where it cannot be read, e.g.
    a zipped install)."""
    digest = hashlib.sha256(start)
    here = Path(reference_module.__file__).parent
    for name in names:
        try:
            digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
        except OSError:
            digest.update(name.encode() + b"\0?\0")
    return digest.hexdigest()


@cache
def _sources_digest() -> str:
    """SHA-256 of the reference's source files."""
    return _files_digest(SOURCES)


def _variant_key(variant: Variant | None):
    if variant is None:
        return None
    parameters = (variant.log_floor, variant.prob_clip, variant.grad_denominator_floor)
    return [None if v is None else float(v).hex() for v in parameters] + [variant.constants_dtype]


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
        "mpmath": mpmath.__version__,
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


def _unproven(path: Path, why: str) -> None:
    _warn_once(
        "entry",
        f"reference cache entry {path}: {why}: not used; the reference is computed afresh and the entry rewritten "
        "(further unproven entries in this process are not reported)",
    )


def load(path: Path, entry_key: str, shape: tuple[int, ...], key_bytes: bytes | None = None) -> dict | None:
    """The entry (its arrays, ``kind`` and ``precision``), or None when it is missing or not a sound and proven
    entry for this key and shape: its MAC (made with ``key_bytes``, by default ``secret()``) must match
    before anything in it is believed."""
    key_bytes = secret() if key_bytes is None else key_bytes
    if key_bytes is None:
        return None
    read = _read_entry(path, entry_key, key_bytes, lambda kind: FIELDS + (EXACT_FIELDS if kind == "exact" else ()))
    if read is None:
        return None
    kind, precision, entry = read
    entry["kind"], entry["precision"] = kind, precision
    if kind not in KINDS or any(entry[f].dtype != np.float64 or entry[f].shape != tuple(shape) for f in FIELDS):
        return None
    if kind == "nonfinite" and np.isfinite(entry["rounded"]).any():
        return None
    if kind == "exact" and not _exact_shapes_fit(entry, shape):
        return None
    return entry


def _exact_shapes_fit(entry: dict, shape: tuple[int, ...]) -> bool:
    size = int(np.prod(shape))
    man = entry["exact_man"]
    return (
        man.dtype == np.uint8 and man.ndim == 2 and man.shape[0] == size
        and all(entry[f].dtype == np.int64 and entry[f].shape == (size,) for f in ("exact_sign", "exact_exp", "exact_bc"))
    )


def encode_exact(exact: np.ndarray) -> dict[str, np.ndarray] | None:
    """Every mpf of ``exact`` as arrays (``EXACT_FIELDS``), or None where one is not an mpf or its exponent does
    not fit 64 bits."""
    flat = np.asarray(exact, dtype=object).ravel()
    parts = []
    for value in flat:
        if not isinstance(value, mpmath.mpf):
            return None
        sign, man, exp, bc = value._mpf_
        if not -(2**62) < exp < 2**62:
            return None
        parts.append((sign, int(man), exp, bc))
    width = max([max((int(man).bit_length() + 7) // 8, 1) for _, man, _, _ in parts], default=1)
    mans = np.zeros((len(parts), width), dtype=np.uint8)
    for row, (_, man, _, _) in enumerate(parts):
        mans[row] = np.frombuffer(man.to_bytes(width, "little"), dtype=np.uint8)
    return {
        "exact_sign": np.array([p[0] for p in parts], dtype=np.int64),
        "exact_man": mans,
        "exact_exp": np.array([p[2] for p in parts], dtype=np.int64),
        "exact_bc": np.array([p[3] for p in parts], dtype=np.int64),
    }


def decode_exact(entry: dict, shape: tuple[int, ...]) -> np.ndarray:
    """``encode_exact`` undone: the same mpf values, bit for bit, in an object array of ``shape``."""
    out = np.empty(int(np.prod(shape)), dtype=object)
    signs, exps, bcs = entry["exact_sign"].tolist(), entry["exact_exp"].tolist(), entry["exact_bc"].tolist()
    for i, row in enumerate(entry["exact_man"]):
        man = libmp.MPZ(int.from_bytes(row.tobytes(), "little"))
        out[i] = mpmath.mp.make_mpf((signs[i], man, exps[i], bcs[i]))
    return out.reshape(shape)


def kind_of(value: ReferenceValue) -> str | None:
    """How ``value`` can be cached (``KINDS``), or None."""
    if value.approx is not None and value.bound is not None:
        return "fast"
    exact = value._exact  # the mpmath path's: every exact value at hand
    if exact is None:
        return None
    if all(not mpmath.isfinite(v) for v in np.asarray(exact).ravel()):
        return "nonfinite"
    return "exact"


def store(path: Path, entry_key: str, value: ReferenceValue, key_bytes: bytes | None = None) -> bool:
    """Writes the entry, with its MAC (made with ``key_bytes``, by default ``secret()``), atomically (a
    temporary file in the same folder, then os.replace); False if it could not, if there is no key, or if
    ``value`` is not of a kind the cache keeps."""
    kind = kind_of(value)
    key_bytes = secret() if kind is not None and key_bytes is None else key_bytes
    if kind is None or key_bytes is None:
        return False
    rounded = np.asarray(value.rounded, dtype=np.float64)
    extra = {}
    if kind == "fast":
        approx, bound = np.asarray(value.approx, dtype=np.float64), np.asarray(value.bound, dtype=np.float64)
    else:  # nonfinite: the exact values are the rounded ones; exact: they are stored beside
        approx, bound = rounded, np.zeros(rounded.shape)
        if kind == "exact":
            extra = encode_exact(value._exact)
            if extra is None:
                return False
    arrays = {"rounded": rounded, "approx": approx, "bound": bound, **extra}
    return _write_entry(path, entry_key, kind, value.precision, arrays, key_bytes)


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
    if entry["kind"] == "exact":
        return ReferenceValue(exact=decode_exact(entry, rounded.shape), rounded=rounded, precision=entry["precision"])
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
    # a small input takes the mpmath path (an `exact` entry at most), a large one the fast path too
    small = int(np.prod(shape)) < max(min_elements(), reference_module.FAST_MIN_ELEMENTS)
    key_bytes = secret()  # only now: a run that caches nothing never makes a key file
    if key_bytes is None:
        return compute()
    entry_key = key(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, wrt)
    path = path_of(root, entry_key)
    entry = load(path, entry_key, result_shape, key_bytes)
    if entry is not None:
        return rebuild(formula, inputs, reduction, fmt, variant, two_step, gradient, axis_mean, entry)
    value = compute()
    if not small or kind_of(value) != "fast":
        store(path, entry_key, value, key_bytes)
    return value



# ------------------------------------------------------------------------------------------------
# condition-aware deviations (conformance.conditioning): the exact, mpmath-evaluated part, per element


def _write_entry(path: Path, entry_key: str, kind: str, precision: int, arrays: dict[str, np.ndarray], key_bytes: bytes) -> bool:
    """An npz entry with its MAC, written atomically (a temporary file in the same folder, then os.replace)."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem[:16]}-", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as out:
            proof = mac(key_bytes, entry_key, kind, precision, arrays, tuple(arrays))
            np.savez(
                out, key=np.array(entry_key), kind=np.array(kind), precision=np.array(precision, dtype=np.int64),
                mac=np.array(proof), **arrays,
            )
        os.replace(temporary, path)
        return True
    except Exception:  # a read-only or full disk: the value is still returned, just not kept  # noqa: BLE001
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        return False


def _read_entry(path: Path, entry_key: str, key_bytes: bytes, fields_of):
    """``(kind, precision, arrays)`` of the entry at ``path``, its arrays the members ``fields_of(kind)``, once its
    MAC (made with ``key_bytes``) proves them and it is this key's entry; None when missing, unreadable or unproven
    (with a warning). What the arrays must be (dtype, shape) is the caller's to check."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None  # a FIFO, a device, a folder: reading it could block, or never end
        # O_NONBLOCK, and the type checked again on the open file: it may have been swapped since the stat
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return None
            with np.load(handle, allow_pickle=False) as data:
                stored_key, kind, precision = str(data["key"][()]), str(data["kind"][()]), int(data["precision"][()])
                fields = tuple(fields_of(kind))
                arrays = {name: np.array(data[name]) for name in fields}  # reads (and CRC-checks) each member
                stored_mac = str(data["mac"][()]) if "mac" in data.files else None
    except Exception:  # missing, truncated, corrupt, not an npz: a miss, rewritten after computing  # noqa: BLE001
        return None
    if stored_mac is None:
        _unproven(path, "it has no MAC (written before entries carried one, or not by bce-conformance)")
        return None
    try:
        expected = mac(key_bytes, stored_key, kind, precision, arrays, fields)
    except (TypeError, ValueError):  # members no entry has (an unhashable dtype, a bad view): not ours
        expected = ""
    # bytes: compare_digest raises TypeError on a str that is not ASCII, which a forged entry may hold
    if not hmac.compare_digest(stored_mac.encode("utf-8", "surrogatepass"), expected.encode()):
        _unproven(path, "its MAC does not match its contents (changed since it was written, or made with another key)")
        return None
    if stored_key != entry_key:
        _unproven(path, f"it is the proven entry of another key ({stored_key[:16]}…), copied or moved here")
        return None
    return kind, precision, arrays


@cache
def _deviation_sources_digest() -> str:
    """SHA-256 of the reference's sources' digest and of conformance/conditioning.py."""
    return _files_digest(DEVIATION_SOURCES, _sources_digest().encode())


class DeviationsEntry:
    """The deviations of a term over the elements of its inputs that mpmath evaluated, kept across runs and
    processes: ``below``, ``above`` (as ``conditioning.Deviations``, flat over the broadcast shape) and ``done``
    (1 where evaluated). Keyed like a reference (the versions, the sources of the reference and of
    conformance/conditioning.py, the formula, quantity, two-step, dtype, label smoothing and every input's
    bytes), with the mask left out, so that a result asking for other elements of the same inputs finds those
    evaluated before and adds its own; MAC-proven like every entry (an entry that excused more than the inputs
    do could turn a fail into `conditioned`)."""

    def __init__(self, path: Path, entry_key: str, size: int, key_bytes: bytes):
        self.path, self.key, self.key_bytes = path, entry_key, key_bytes
        stored = self._stored(size)
        if stored is None:
            stored = {"below": np.full(size, np.nan), "above": np.full(size, np.nan), "done": np.zeros(size)}
        self.below, self.above, self.done = stored["below"], stored["above"], stored["done"] == 1.0

    def _stored(self, size: int) -> dict[str, np.ndarray] | None:
        read = _read_entry(self.path, self.key, self.key_bytes, lambda kind: DEVIATION_FIELDS)
        if read is None or read[0] != "deviations":
            return None
        arrays = read[2]
        return arrays if all(a.dtype == np.float64 and a.shape == (size,) for a in arrays.values()) else None

    @classmethod
    def open(cls, formula, quantity, two_step, inputs: dict[str, np.ndarray], ls, fmt: FloatFormat, pending: int):
        """The entry for these inputs (each broadcast to the elements' shape), or None where the cache is off, has
        no key, or ``pending`` (the elements mpmath would evaluate) is too few to be worth one."""
        size = int(np.prod(np.broadcast_shapes(*(np.shape(a) for a in inputs.values()))))
        if pending < DEVIATIONS_MIN_ELEMENTS or size > DEVIATIONS_MAX_ELEMENTS:
            return None
        proven = _proven_folder()
        if proven is None:
            return None
        root, key_bytes = proven
        digest = hashlib.sha256()
        header = {
            "kind": "deviations",
            "reference_version": REFERENCE_VERSION,
            "package": __version__,
            "sources": _deviation_sources_digest(),
            "formula": formula,
            "quantity": quantity,
            "two_step": bool(two_step),
            "format": [fmt.name, fmt.precision, fmt.emin, fmt.emax],
            "label_smoothing": None if ls is None else float(ls).hex(),
            "inputs": sorted(inputs),
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        for name in sorted(inputs):
            array = np.ascontiguousarray(inputs[name], dtype=np.float64)
            digest.update(f"\0{name}\0{array.shape}\0".encode())
            digest.update(array.reshape(-1).view(np.uint8).data)
        entry_key = digest.hexdigest()
        return cls(path_of(root, entry_key), entry_key, size, key_bytes)

    def save(self) -> bool:
        """Writes the entry, with the elements another process stored since this one read it: parallel envs
        evaluate other elements of the same inputs, and the last writer would otherwise drop the others'."""
        stored = self._stored(self.below.size)
        if stored is not None:
            theirs = (stored["done"] == 1.0) & ~self.done
            self.below[theirs], self.above[theirs] = stored["below"][theirs], stored["above"][theirs]
            self.done |= theirs
        arrays = {"below": self.below, "above": self.above, "done": self.done.astype(np.float64)}
        return _write_entry(self.path, self.key, "deviations", 0, arrays, self.key_bytes)


# ---------------------------------------------------------------------------------------------
# rendered outputs: bytes that are a function of input files and this package's code (the report's figures)


def _proven_folder() -> tuple[Path, bytes] | None:
    """The cache's folder and the key its entries are proven with; None where the cache is off or has no key."""
    try:
        root = folder()
    except (RuntimeError, KeyError, OSError):  # no home directory for the default folder
        return None
    key_bytes = None if root is None else secret()
    return None if key_bytes is None else (root, key_bytes)


def outputs_key(kind: str, inputs: list[Path], libraries: dict[str, str]) -> str | None:
    """A key for an output made from the bytes of ``inputs`` (in order) by this package's code with these
    ``libraries`` (name -> version): a SHA-256 of all of them and of every source file of the package (any
    edit to the code, not only the reference's, is a new key). None where an input cannot be read."""
    digest = hashlib.sha256(json.dumps({"kind": kind, "package": __version__, "libraries": libraries}, sort_keys=True).encode())
    here = Path(reference_module.__file__).parent
    sources = sorted(p.relative_to(here).as_posix() for p in here.rglob("*.py"))
    digest.update(_files_digest(tuple(sources)).encode())
    try:
        for path in inputs:  # its name too: a run's label may come from it
            digest.update(f"\0{path}\0".encode())
            with open(path, "rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    except OSError:
        return None
    return digest.hexdigest()


def load_output(kind: str, entry_key: str) -> bytes | None:
    """The bytes stored for ``entry_key`` (``outputs_key``), MAC-proven as every entry is; None: a miss (the cache
    off, no entry, or one that does not prove itself)."""
    proven = _proven_folder()
    if proven is None:
        return None
    root, key_bytes = proven
    read = _read_entry(path_of(root, entry_key), entry_key, key_bytes, lambda stored_kind: ("data",))
    if read is None or read[0] != kind or read[2]["data"].dtype != np.uint8:
        return None
    return read[2]["data"].tobytes()


def store_output(kind: str, entry_key: str, data: bytes) -> bool:
    """Keeps ``data`` for ``entry_key``, with its MAC; False where the cache is off or cannot be written."""
    proven = _proven_folder()
    if proven is None:
        return False
    root, key_bytes = proven
    arrays = {"data": np.frombuffer(data, dtype=np.uint8)}
    return _write_entry(path_of(root, entry_key), entry_key, kind, 0, arrays, key_bytes)
