"""A cache that cannot lie (conformance/cache.py): an entry whose key is kept and whose values are replaced
(here by the broken output of the API under test, which would then pass) is never believed. Every entry
proves itself with an HMAC made with a key file kept outside the cache folder; a forged, stripped or copied
entry is a miss with a warning, recomputed and rewritten. The key file is created private on first use;
where it cannot be, the cache is off (with one warning) and every reference is still right. A FIFO at an
entry's (or the key's) path is a miss, never a hang."""

from __future__ import annotations

import os
import signal
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from conformance import cache
from conformance import reference as reference_module
from conformance.dtypes import FORMATS
from conformance.verdicts import Tolerance, judge

N = 2048  # above the fast path's 1024 elements; the cache's threshold is lowered to it
FMT = FORMATS["float32"]
TOLERANCE = Tolerance(4, FMT.smallest_normal)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    monkeypatch.setenv(cache.MIN_ELEMENTS_ENV, str(N))
    monkeypatch.setenv(cache.KEY_ENV, str(tmp_path / "config" / "bce-conformance" / "cache.key"))
    monkeypatch.setattr(cache, "_warned", set())  # each test sees its process's first warning
    return root



def inputs_of(seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"logits": rng.normal(0, 5, N).astype(np.float32), "target": rng.choice([0.0, 0.5, 1.0], N).astype(np.float32)}


def fresh(inputs):
    return reference_module.reference("bce_with_logits", inputs, "none", FMT)


def cached(inputs):
    return cache.reference("bce_with_logits", inputs, "none", FMT)


def entry_of(root: Path, inputs) -> Path:
    return cache.path_of(root, cache.key("bce_with_logits", inputs, "none", FMT))


def same_value(a, b) -> bool:
    return all(np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)), equal_nan=True) for f in ("rounded", "approx", "bound"))


def members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: np.array(data[name]) for name in data.files}


def rewrite(path: Path, arrays: dict[str, np.ndarray]) -> None:
    temporary = path.with_name("forged.npz")
    np.savez(temporary, **arrays)
    os.replace(temporary, path)


@contextmanager
def cache_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        given: list[str] = []
        yield given
    given.extend(str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning))


@contextmanager
def no_hang(seconds=30):
    """A FIFO opened for reading without a writer blocks forever: fail instead."""

    def hung(signum, frame):
        raise AssertionError(f"hung for {seconds} s on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def broken_output(value) -> np.ndarray:
    """What a broken API returns: every element 2**-8 relatively off, far past 4 ULPs in float32."""
    return (np.asarray(value.rounded) * (1 + 2.0**-8)).astype(np.float32).astype(np.float64)


# ---- forged entries: the key kept, the values replaced


def forge_arrays(path: Path, got: np.ndarray, root: Path) -> None:
    """The npz's arrays replaced by the broken output, as tight as can be; key, kind, precision, mac kept."""
    arrays = members(path)
    arrays.update(rounded=got, approx=got, bound=np.zeros_like(got))
    rewrite(path, arrays)


def forge_with_own_fields(path: Path, got: np.ndarray, root: Path) -> None:
    """Arrays replaced and every field of the npz made consistent again, the MAC remade with a key the
    forger has (not the cache's)."""
    arrays = members(path)
    arrays.update(rounded=got, approx=got, bound=np.zeros_like(got))
    arrays["mac"] = np.array(cache.mac(b"x" * 32, str(arrays["key"]), str(arrays["kind"]), int(arrays["precision"]), arrays))
    rewrite(path, arrays)


def forge_without_mac(path: Path, got: np.ndarray, root: Path) -> None:
    """Arrays replaced and the MAC left out: an entry as it was before entries carried one."""
    arrays = members(path)
    arrays.update(rounded=got, approx=got, bound=np.zeros_like(got))
    del arrays["mac"]
    rewrite(path, arrays)


def forge_with_odd_mac(path: Path, got: np.ndarray, root: Path) -> None:
    """Arrays replaced, the MAC a string that is not ASCII (hmac.compare_digest refuses to compare one)."""
    arrays = members(path)
    arrays.update(rounded=got, approx=got, bound=np.zeros_like(got), mac=np.array("é" * 64))
    rewrite(path, arrays)


FORGERIES = {
    "arrays-replaced": (forge_arrays, "its MAC does not match its contents"),
    "mac-not-ascii": (forge_with_odd_mac, "its MAC does not match its contents"),
    "own-fields-remade": (forge_with_own_fields, "its MAC does not match its contents"),
    "mac-removed": (forge_without_mac, "it has no MAC"),
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_forged_entry_gives_the_fresh_reference_and_a_warning(folder, computed, forgery):
    forge, message = FORGERIES[forgery]
    inputs = inputs_of()
    want = fresh(inputs)
    got = broken_output(want)
    assert not judge(got, want, FMT, TOLERANCE).passed, "the broken output fails against the true reference"
    cached(inputs)  # stores the honest entry
    path = entry_of(folder, inputs)
    forge(path, got, folder)
    # the forgery is one that matters: believed, it would pass the broken output
    forged = members(path)
    trusted = cache.rebuild("bce_with_logits", inputs, "none", FMT, None, False, False, False,
                            {**forged, "kind": str(forged["kind"]), "precision": int(forged["precision"])})
    assert judge(got, trusted, FMT, TOLERANCE).passed
    calls = len(computed)
    with cache_warnings() as given:
        value = cached(inputs)
    assert len(computed) == calls + 1, "an unproven entry is a miss: the reference is computed"
    assert same_value(value, want)
    assert not judge(got, value, FMT, TOLERANCE).passed
    assert len(given) == 1 and f"reference cache entry {path}: {message}" in given[0] and "not used" in given[0]
    # rewritten, proven: the next call is a hit, silently
    with cache_warnings() as given:
        again = cached(inputs)
    assert len(computed) == calls + 1 and same_value(again, want) and given == []


def test_another_entrys_file_copied_under_this_key(folder, computed):
    one, other = inputs_of(0), inputs_of(1)
    cached(one), cached(other)
    path, source = entry_of(folder, one), entry_of(folder, other)
    path.write_bytes(source.read_bytes())  # a proven entry, of another key
    with cache_warnings() as given:
        value = cached(one)
    assert same_value(value, fresh(one))
    assert len(given) == 1 and f"{path}: it is the proven entry of another key" in given[0]
    # and with its stored key changed to this one: the MAC (over the key) no longer matches
    arrays = members(source)
    arrays["key"] = np.array(path.stem)
    rewrite(path, arrays)
    cache._warned.clear()
    with cache_warnings() as given:
        value = cached(one)
    assert same_value(value, fresh(one))
    assert len(given) == 1 and f"{path}: its MAC does not match its contents" in given[0]


def test_one_warning_per_process(folder, computed):
    entries = []
    for seed in (0, 1):
        inputs = inputs_of(seed)
        cached(inputs)
        forge_arrays(entry_of(folder, inputs), broken_output(fresh(inputs)), folder)
        entries.append(inputs)
    with cache_warnings() as given:
        values = [cached(inputs) for inputs in entries]
    assert all(same_value(v, fresh(i)) for v, i in zip(values, entries))
    assert len(given) == 1 and "further unproven entries in this process are not reported" in given[0]


def test_a_new_key_disowns_every_entry(folder, computed, tmp_path):
    inputs = inputs_of()
    want = fresh(inputs)  # computed: one
    cached(inputs)
    key_file = cache.key_file()
    os.unlink(key_file)
    cache._secrets.clear()  # a new process
    with cache_warnings() as given:
        value = cached(inputs)
    assert same_value(value, want) and len(computed) == 3
    assert len(given) == 1 and "its MAC does not match" in given[0]
    assert key_file.exists()


# ---- entries that are not files


def test_a_fifo_at_an_entrys_path_is_a_miss_not_a_hang(folder, computed):
    inputs = inputs_of()
    want = fresh(inputs)
    path = entry_of(folder, inputs)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with no_hang():
        value = cached(inputs)
    assert same_value(value, want) and len(computed) == 2
    assert stat.S_ISREG(os.stat(path).st_mode), "the FIFO is replaced by the entry"
    with no_hang():
        assert same_value(cached(inputs), want) and len(computed) == 2


def test_a_fifo_at_the_key_files_path_turns_the_cache_off(folder, computed):
    key_file = cache.key_file()
    key_file.parent.mkdir(parents=True)
    os.mkfifo(key_file)
    inputs = inputs_of()
    with no_hang(), cache_warnings() as given:
        value = cached(inputs)
    assert same_value(value, fresh(inputs)) and not folder.exists()
    assert len(given) == 1 and f"the reference cache is off: its key file {key_file} is not a regular file" in given[0]


# ---- the key file


def test_a_missing_key_file_is_created_private(folder, computed):
    key_file = cache.key_file()
    assert not key_file.exists()
    inputs = inputs_of()
    with cache_warnings() as given:
        cached(inputs)
    assert given == []
    mode = os.stat(key_file).st_mode
    assert stat.S_ISREG(mode) and stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file.parent).st_mode) & 0o077 == 0
    key = key_file.read_bytes()
    assert len(key) == cache.KEY_BYTES
    assert [p.name for p in key_file.parent.iterdir()] == ["cache.key"], "no temporary file left"
    cache._secrets.clear()  # a new process reads the same key and trusts the entry
    assert len(computed) == 1
    assert same_value(cached(inputs), fresh(inputs)) and len(computed) == 2  # the second: fresh's own
    assert key_file.read_bytes() == key


def test_the_default_key_file_is_in_the_config_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.KEY_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cache.key_file() == tmp_path / "xdg" / "bce-conformance" / "cache.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.key_file() == tmp_path / "home" / ".config" / "bce-conformance" / "cache.key"


def _unwritable(tmp_path) -> Path:
    """A key file path whose folder cannot be made (its parent is a file: root too is refused)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    return blocker / "bce-conformance" / "cache.key"


def _short(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(b"short")
    key_file.chmod(0o600)


def _shared(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True)
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o644)


@pytest.mark.parametrize(
    "setup, message",
    [
        ("unwritable", "cannot be read or created"),
        ("short", "holds 5 bytes, fewer than 32"),
        ("shared", "has mode 0644: group or others may read or write it"),
        ("inside-the-cache", "is inside the cache folder"),
    ],
)
def test_an_unusable_key_file_turns_the_cache_off_with_one_warning(folder, computed, monkeypatch, tmp_path, setup, message):
    if setup == "unwritable":
        key_file = _unwritable(tmp_path)
    elif setup == "inside-the-cache":
        key_file = folder / "cache.key"
    else:
        key_file = tmp_path / "config" / "cache.key"
        (_short if setup == "short" else _shared)(key_file)
    monkeypatch.setenv(cache.KEY_ENV, str(key_file))
    inputs = inputs_of()
    want = fresh(inputs)
    with cache_warnings() as given:
        values = [cached(inputs), cached(inputs)]
    assert all(same_value(v, want) for v in values), "results are still right"
    assert len(computed) == 1 + 2, "the cache is off: every reference computed"
    assert not list(folder.rglob("*.npz")), "nothing stored without a key"
    assert len(given) == 1 and f"the reference cache is off: its key file {key_file} {message}" in given[0]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes through permissions")
def test_a_read_only_key_folder_turns_the_cache_off(folder, computed, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    monkeypatch.setenv(cache.KEY_ENV, str(locked / "cache.key"))
    inputs = inputs_of()
    with cache_warnings() as given:
        assert same_value(cached(inputs), fresh(inputs))
    assert len(given) == 1 and "cannot be read or created" in given[0]
