"""The content-addressed reference cache: hits and misses, invalidation by content and version,
concurrent writers, corrupt entries, the switch, and that a cached reference judges exactly like a
fresh one (conformance/cache.py)."""

from __future__ import annotations

import json
import multiprocessing
import os
import warnings
from pathlib import Path

import mpmath
import numpy as np
import pytest

from conformance import cache
from conformance import reference as reference_module
from conformance.adapters import load_framework
from conformance.cases import load_file
from conformance.dtypes import FORMATS
from conformance.runner import Runner, enumerate_checks
from conformance.variants import combine
from conformance.verdicts import Tolerance, judge

N = 2048  # above the fast path's 1024 elements; the tests lower the cache's threshold to it


@pytest.fixture(autouse=True)
def key_file(tmp_path, monkeypatch) -> Path:
    """The cache's key file, in the test's own folder (never the user's ~/.config), and warnings given afresh."""
    path = tmp_path / "config" / "cache.key"
    monkeypatch.setenv(cache.KEY_ENV, str(path))
    monkeypatch.setattr(cache, "_warned", set())
    return path


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(cache.CACHE_ENV, str(root))
    monkeypatch.setenv(cache.MIN_ELEMENTS_ENV, str(N))
    return root



def logits_inputs(dtype="float32", n=N, specials=True, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 20, n)
    if specials:  # elements the fast path leaves to mpmath: their exact values come back on demand
        x[:5] = [np.inf, -np.inf, np.nan, 0.0, -0.0]
    y = rng.choice([0.0, 0.25, 0.5, 1.0], n)
    dt = FORMATS[dtype].numpy_dtype
    return {"logits": x.astype(dt), "target": y.astype(dt)}


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npz")) if root.exists() else []


def same_array(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def same_exact(a, b) -> bool:
    """The same exact values: mpf compared as binary numbers (not their 15-digit strings), NaN as NaN."""
    a, b = list(a), list(b)
    return len(a) == len(b) and all((mpmath.isnan(x) and mpmath.isnan(y)) or x == y for x, y in zip(a, b))


def same_value(a, b) -> bool:
    return all(same_array(getattr(a, f), getattr(b, f)) for f in ("rounded", "approx", "bound"))


def test_miss_stores_then_hit_loads_the_same_value(folder, computed):
    fmt, inputs = FORMATS["float32"], logits_inputs()
    first = cache.reference("bce_with_logits", inputs, "none", fmt)
    assert len(computed) == 1 and len(entries(folder)) == 1
    second = cache.reference("bce_with_logits", inputs, "none", fmt)
    assert len(computed) == 1, "a hit must not evaluate the reference"
    assert same_value(first, second)
    assert second.precision == 0 and second._exact is None  # exact values are not stored
    entry = entries(folder)[0]
    assert entry.parent.parent.name == f"v{cache.REFERENCE_VERSION}"
    assert entry.stem == cache.key("bce_with_logits", inputs, "none", fmt) and entry.parent.name == entry.stem[:2]
    with np.load(entry, allow_pickle=False) as data:
        assert sorted(data.files) == ["approx", "bound", "key", "kind", "mac", "precision", "rounded"]
        assert str(data["kind"]) == "fast" and str(data["key"]) == entry.stem


def test_every_argument_is_part_of_the_key(folder, computed):
    fmt, inputs = FORMATS["float32"], logits_inputs(specials=False)  # no NaN: every reduction settles in float64
    calls = [
        dict(reduction="none"),
        dict(reduction="mean"),
        dict(reduction="sum"),
        dict(reduction="none", gradient=True),
        dict(reduction="mean", gradient=True),
        dict(reduction="none", axis_mean=True),
        dict(reduction="none", variant=combine(("prob_clip(1e-7)",)), two_step=True),
        dict(reduction="none", variant=combine(("log_clamp(-100)",)), two_step=True),
    ]
    for kwargs in calls:
        kwargs = dict(kwargs)
        reduction = kwargs.pop("reduction")
        cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    cache.reference("bce_with_logits", {k: v.astype(np.float16) for k, v in logits_inputs("float16").items()}, "none", FORMATS["float16"])
    assert len(computed) == len(calls) + 1
    assert len(entries(folder)) == len(calls) + 1  # one entry each, none shared


def test_a_changed_input_element_invalidates(folder, computed):
    fmt, inputs = FORMATS["float32"], logits_inputs()
    cache.reference("bce_with_logits", inputs, "none", fmt)
    changed = {k: v.copy() for k, v in inputs.items()}
    changed["logits"][1000] = np.nextafter(changed["logits"][1000], np.float32(np.inf))
    value = cache.reference("bce_with_logits", changed, "none", fmt)
    assert len(computed) == 2 and len(entries(folder)) == 2
    assert same_value(value, reference_module.reference("bce_with_logits", changed, "none", fmt))
    # and the sign of a zero, the dtype (same bytes), the shape (same elements) are content too
    signed = {k: v.copy() for k, v in inputs.items()}
    signed["logits"][3] = -signed["logits"][3]  # 0.0 -> -0.0
    keys = {
        cache.key("bce_with_logits", inputs, "none", fmt),
        cache.key("bce_with_logits", signed, "none", fmt),
        cache.key("bce_with_logits", {k: v.view(np.int32) for k, v in inputs.items()}, "none", fmt),
        cache.key("bce_with_logits", {k: v.reshape(2, -1) for k, v in inputs.items()}, "none", fmt),
        cache.key("bce_with_logits", {**inputs, "label_smoothing": np.array(0.1)}, "none", fmt),
    }
    assert len(keys) == 5


def test_a_broadcast_view_is_keyed_by_what_it_stands_for(folder):
    fmt = FORMATS["float32"]
    x = np.linspace(-10, 10, N, dtype=np.float32)
    view = {"logits": np.broadcast_to(x[:, None], (N, 3)), "target": np.broadcast_to(np.float32([0, 0.5, 1]), (N, 3))}
    whole = {k: np.array(v) for k, v in view.items()}
    assert cache.key("bce_with_logits", view, "none", fmt) == cache.key("bce_with_logits", whole, "none", fmt)


def test_a_new_reference_version_or_source_invalidates(folder, computed, monkeypatch):
    fmt, inputs = FORMATS["float32"], logits_inputs()
    cache.reference("bce_with_logits", inputs, "none", fmt)
    version = cache.REFERENCE_VERSION
    monkeypatch.setattr(cache, "REFERENCE_VERSION", version + 1)
    cache.reference("bce_with_logits", inputs, "none", fmt)
    assert len(computed) == 2
    assert sorted(p.name for p in folder.iterdir()) == [f"v{version}", f"v{version + 1}"]
    before = cache.key("bce_with_logits", inputs, "none", fmt)
    monkeypatch.setattr(cache, "_sources_digest", lambda: "an edited reference.py")
    assert cache.key("bce_with_logits", inputs, "none", fmt) != before
    monkeypatch.setattr(cache, "__version__", "9.9.9")
    assert len({before, cache.key("bce_with_logits", inputs, "none", fmt)}) == 2


def _write_repeatedly(root: str, barrier, rounds: int) -> int:
    """A worker process: computes and stores the same entry ``rounds`` times, reading it back between writes."""
    os.environ[cache.CACHE_ENV] = root
    os.environ[cache.MIN_ELEMENTS_ENV] = str(N)
    fmt, inputs = FORMATS["float32"], logits_inputs()
    value = reference_module.reference("bce_with_logits", inputs, "mean", fmt, gradient=True)
    entry_key = cache.key("bce_with_logits", inputs, "mean", fmt, gradient=True)
    path = cache.path_of(Path(root), entry_key)
    barrier.wait()
    torn = 0
    for _ in range(rounds):
        assert cache.store(path, entry_key, value)
        arrays = cache.load(path, entry_key, value.rounded.shape)
        if arrays is None or not same_array(arrays["approx"], value.approx):
            torn += 1
        cache.reference("bce_with_logits", inputs, "mean", fmt, gradient=True)
    return torn


def test_concurrent_writers_of_one_key(tmp_path):
    root = tmp_path / "shared"
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    workers = 4
    with context.Manager() as manager:
        barrier = manager.Barrier(workers)
        with context.Pool(workers) as pool:
            torn = pool.starmap(_write_repeatedly, [(str(root), barrier, 25)] * workers)
    assert torn == [0] * workers, "a reader saw a partial or foreign entry"
    assert len(entries(root)) == 1
    leftovers = [p for p in root.rglob("*") if p.is_file() and p.suffix != ".npz"]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    inputs, fmt = logits_inputs(), FORMATS["float32"]
    entry_key = cache.key("bce_with_logits", inputs, "mean", fmt, gradient=True)
    assert cache.load(entries(root)[0], entry_key, (N,)) is not None


@pytest.mark.parametrize(
    "damage", ["truncated", "garbage", "empty", "flipped", "other-key", "other-shape", "other-kind", "nonfinite-finite", "folder"]
)
def test_a_damaged_entry_is_ignored_and_rewritten(folder, computed, damage):
    fmt, inputs = FORMATS["float32"], logits_inputs()
    fresh = cache.reference("bce_with_logits", inputs, "none", fmt)
    (entry,) = entries(folder)
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        entry.write_bytes(b"not an npz at all" * 100)
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "flipped":  # a bit flipped inside the approx member: its CRC no longer matches
        with np.load(entry) as npz:
            approx = npz["approx"].tobytes()
        start = data.index(approx[: 64]) + 5000
        entry.write_bytes(data[:start] + bytes([data[start] ^ 0x10]) + data[start + 1:])
    elif damage in ("other-key", "other-shape", "other-kind", "nonfinite-finite"):
        with np.load(entry) as npz:
            members = {name: npz[name] for name in npz.files}
        if damage == "other-key":
            members["key"] = np.array("0" * 64)
        elif damage == "other-shape":
            members.update({f: members[f][:10] for f in cache.FIELDS})
        elif damage == "other-kind":
            members["kind"] = np.array("pickle")
        else:  # says its exact values are its rounded ones, which are finite
            members["kind"] = np.array("nonfinite")
        np.savez(entry.with_suffix(".tmp.npz"), **members)
        os.replace(entry.with_suffix(".tmp.npz"), entry)
    elif damage == "folder":
        entry.unlink()
        entry.mkdir()  # cannot be read, nor replaced: still no error
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cache.reference("bce_with_logits", inputs, "none", fmt)
    assert len(computed) == 2, "a damaged entry is a miss"
    given = [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]
    if damage in ("other-key", "other-shape", "other-kind", "nonfinite-finite"):  # members rewritten: the MAC fails
        assert len(given) == 1 and f"{entry}: its MAC does not match its contents" in given[0]
    else:  # damage that cannot be read is a plain miss
        assert given == []
    assert same_value(again, fresh)
    if damage != "folder":
        assert cache.load(entry, entry.stem, (N,)) is not None, "the entry is rewritten"
        cache.reference("bce_with_logits", inputs, "none", fmt)
        assert len(computed) == 2


def test_off_and_a_small_fast_value_write_nothing_and_mpmath_values_are_kept(folder, computed, monkeypatch):
    fmt = FORMATS["float32"]
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.folder() is None
    for _ in range(2):
        cache.reference("bce_with_logits", logits_inputs(), "none", fmt)
    assert len(computed) == 2 and not folder.exists()
    monkeypatch.setenv(cache.CACHE_ENV, str(folder))
    cache.reference("bce_with_logits", logits_inputs(n=N - 1), "none", fmt)  # the fast path, below the threshold
    assert not entries(folder)

    def kinds():
        found = []
        for entry in entries(folder):
            with np.load(entry) as data:
                found.append(str(data["kind"]))
        return sorted(found)

    cache.reference("bce_with_logits", logits_inputs("float64"), "none", FORMATS["float64"])  # the mpmath path
    cache.reference("bce_with_logits", logits_inputs(), "none", fmt, gradient=True, wrt="target")  # mpmath too
    cache.reference("bce_with_logits", logits_inputs(), "mean", fmt)  # a NaN term: the mpmath path, a NaN mean
    cache.reference("bce_with_logits", logits_inputs(specials=False), "mean", fmt, gradient=True, wrt="target")
    assert kinds() == ["exact", "exact", "exact", "nonfinite"]


@pytest.mark.parametrize("dtype,reduction,kwargs", [
    ("float64", "none", {}),
    ("float64", "mean", {"gradient": True}),
    ("float32", "sum", {"gradient": True, "wrt": "target"}),
    ("float64", "mean", {}),
])
def test_an_mpmath_value_is_kept_bit_for_bit_and_judges_alike(folder, monkeypatch, dtype, reduction, kwargs):
    """An `exact` entry: every exact value read back is the same mpf (sign, mantissa, exponent, bit count), the
    rounding the same, a hit evaluates nothing, and results are judged alike; a changed mantissa byte is refused."""
    settled = []  # the mpmath path's evaluations (computed counts the fast path's)
    original = reference_module._settle
    monkeypatch.setattr(reference_module, "_settle", lambda *a, **k: (settled.append(1), original(*a, **k))[1])
    fmt = FORMATS[dtype]
    inputs = logits_inputs(dtype, specials=reduction == "none")
    fresh = reference_module.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    assert fresh.approx is None
    cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    (entry,) = entries(folder)
    calls = len(settled)
    cached = cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    assert len(settled) == calls, "a hit evaluates nothing"
    assert [v._mpf_ for v in cached.exact.ravel()] == [v._mpf_ for v in fresh.exact.ravel()]
    assert same_array(cached.rounded, fresh.rounded) and cached.precision == fresh.precision
    tolerance = Tolerance(4, fmt.smallest_normal)
    for seed in range(2):
        got = _perturbed(fresh, fmt, seed)
        assert_same_judgement(judge(got, cached, fmt, tolerance), judge(got, fresh, fmt, tolerance))
    with np.load(entry) as data:
        stored = {name: np.array(data[name]) for name in data.files}
    stored["exact_man"][0, 0] ^= 1
    np.savez(entry, **stored)
    with pytest.warns(cache.CacheWarning, match="MAC does not match"):
        again = cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    assert len(settled) > calls and [v._mpf_ for v in again.exact.ravel()] == [v._mpf_ for v in fresh.exact.ravel()]


@pytest.mark.parametrize("dtype,reduction", [("float16", "sum"), ("float64", "sum"), ("float64", "none")])
def test_a_nonfinite_mpmath_value_is_cached_whole(folder, computed, dtype, reduction):
    """Keras's clip in float16 keeps p = 1 (1 - 1e-7 rounds to 1), so a saturated two-step loss of a
    target below 1 is +inf, its sum too: the fast path leaves that sum to mpmath, whose exact value is
    its own rounding; float64 always takes the mpmath path. (Elementwise, float16 takes the fast path,
    every element left to mpmath: a fast entry whose exact values are recomputed on demand.)"""
    fmt = FORMATS[dtype]
    x = np.full(N, 30.0) if dtype == "float16" else np.full(N, np.inf)
    x[::7] = np.nan
    inputs = {"logits": x.astype(fmt.numpy_dtype), "target": np.full(N, 0.5).astype(fmt.numpy_dtype)}
    kwargs = dict(variant=combine(("prob_clip(1e-7)",)), two_step=True) if dtype == "float16" else {}
    fresh = reference_module.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    assert fresh.approx is None and not np.isfinite(fresh.rounded).any()
    cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    (entry,) = entries(folder)
    with np.load(entry) as data:
        assert str(data["kind"]) == "nonfinite"
    calls = len(computed)
    cached = cache.reference("bce_with_logits", inputs, reduction, fmt, **kwargs)
    assert len(computed) == calls, "a hit evaluates nothing"
    assert cached.approx is None and cached.precision == fresh.precision
    assert same_array(cached.rounded, fresh.rounded)
    assert same_exact(cached.exact.ravel(), fresh.exact.ravel())
    tolerance = Tolerance(4, fmt.smallest_normal)
    for got in (np.full(fresh.shape, np.inf), np.full(fresh.shape, np.nan), np.zeros(fresh.shape)):
        assert_same_judgement(judge(got, cached, fmt, tolerance), judge(got, fresh, fmt, tolerance))


def test_an_unwritable_folder_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))
    monkeypatch.setenv(cache.MIN_ELEMENTS_ENV, str(N))
    fmt, inputs = FORMATS["float32"], logits_inputs()
    value = cache.reference("bce_with_logits", inputs, "none", fmt)
    assert same_value(value, reference_module.reference("bce_with_logits", inputs, "none", fmt))


def test_no_home_directory_is_no_cache(monkeypatch):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(cache.MIN_ELEMENTS_ENV, str(N))

    def homeless():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", homeless)
    fmt, inputs = FORMATS["float32"], logits_inputs()
    assert same_value(cache.reference("bce_with_logits", inputs, "none", fmt), reference_module.reference("bce_with_logits", inputs, "none", fmt))


def test_the_default_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.folder() == tmp_path / "xdg" / "bce-conformance" / "reference"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.folder() == tmp_path / "home" / ".cache" / "bce-conformance" / "reference"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.folder() == tmp_path / "home" / ".cache" / "bce-conformance" / "reference"
    monkeypatch.setenv(cache.CACHE_ENV, "~/elsewhere")
    assert cache.folder() == tmp_path / "home" / "elsewhere"
    for off in ("off", "OFF", " off "):
        monkeypatch.setenv(cache.CACHE_ENV, off)
        assert cache.folder() is None
    monkeypatch.delenv(cache.MIN_ELEMENTS_ENV, raising=False)
    assert cache.min_elements() == cache.MIN_ELEMENTS


JUDGED = [
    ("bce_with_logits", "none", {}),
    ("bce_with_logits", "mean", {}),
    ("bce_with_logits", "sum", {}),
    ("bce_with_logits", "none", {"gradient": True}),
    ("bce_with_logits", "mean", {"gradient": True}),
    ("bce_with_logits", "none", {"axis_mean": True}),
    ("bce_with_logits", "mean", {"axis_mean": True, "gradient": True}),
    ("bce_with_logits", "none", {"variant": "prob_clip(1e-7)", "two_step": True}),
    ("bce_with_logits", "mean", {"variant": "log_clamp(-100)", "two_step": True, "gradient": True}),
    ("bce", "none", {}),
    ("bce", "none", {"gradient": True, "variant": "log_clamp(-100)"}),
]


def _perturbed(value, fmt, seed) -> np.ndarray:
    """Results near the correctly rounded values, some a few ULPs off, some far, some NaN."""
    rng = np.random.default_rng(seed)
    rounded = np.nan_to_num(np.asarray(value.rounded, dtype=np.float64), nan=0.0, posinf=1e4, neginf=-1e4)
    with np.errstate(all="ignore"):
        got = rounded + rng.integers(-6, 7, rounded.shape) * np.abs(rounded) * 2.0 ** (1 - fmt.precision)
        got = got.astype(fmt.numpy_dtype).astype(np.float64)
    if got.ndim and got.size > 20:
        got.reshape(-1)[7] = np.nan
        got.reshape(-1)[11] = 5.0
    return got


def assert_same_judgement(a, b):
    assert (a.passed, a.floor_accepted) == (b.passed, b.floor_accepted)
    assert same_array(a.max_ulp, b.max_ulp) and same_array(a.median_ulp, b.median_ulp)
    assert same_array(np.array(a.ulps), np.array(b.ulps))
    assert [(e.index, e.ulp) for e in a.worst] == [(e.index, e.ulp) for e in b.worst]
    assert all(same_array(e.got, f.got) for e, f in zip(a.worst, b.worst))
    assert same_exact([e.want for e in a.worst], [f.want for f in b.worst])


@pytest.mark.parametrize("formula,reduction,kwargs", JUDGED, ids=[f"{f}-{r}-{'-'.join(k)}" for f, r, k in JUDGED])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_cached_reference_judges_exactly_like_a_fresh_one(folder, computed, formula, reduction, kwargs, dtype):
    fmt = FORMATS[dtype]
    kwargs = dict(kwargs)
    if "variant" in kwargs:
        kwargs["variant"] = combine((kwargs["variant"],))
    elementwise = kwargs.get("gradient") or reduction == "none"  # Keras's row means settle row by row too
    if formula == "bce":
        rng = np.random.default_rng(3)
        ends = [0.0, 1.0, np.nan, 0.5]
        p = np.concatenate([ends, rng.uniform(0.01, 0.99, N - 4)])
        inputs = {"probs": p.astype(fmt.numpy_dtype), "target": rng.choice([0.0, 0.5, 1.0], N).astype(fmt.numpy_dtype)}
    else:
        # specials (NaN, ±inf) send a reduction to the mpmath path, which is not cached
        raw = logits_inputs(dtype, specials=elementwise)
        inputs = {k: v.reshape(64, -1) if kwargs.get("axis_mean") else v for k, v in raw.items()}
    fresh = reference_module.reference(formula, inputs, reduction, fmt, **kwargs)
    assert fresh.approx is not None
    cache.reference(formula, inputs, reduction, fmt, **kwargs)  # stores
    cached = cache.reference(formula, inputs, reduction, fmt, **kwargs)  # loads
    assert len(computed) == 2 and len(entries(folder)) == 1
    assert same_value(cached, fresh) and cached.shape == fresh.shape
    tolerance = Tolerance(4, fmt.smallest_normal)
    for seed in range(3):
        got = _perturbed(fresh, fmt, seed)
        assert_same_judgement(judge(got, cached, fmt, tolerance), judge(got, fresh, fmt, tolerance))
    # the exact values, recomputed by mpmath on demand, are the fresh value's
    if fresh.shape:
        mask = np.zeros(fresh.shape, dtype=bool)
        mask.reshape(-1)[[0, 1, 2, 3, 4, mask.size // 2, -1]] = True
        assert same_exact(cached.exact_where(mask), fresh.exact_where(mask))
        last = tuple(s - 1 for s in fresh.shape)
        assert same_exact([cached.exact_at(last)], [fresh.exact_at(last)])
    else:
        assert same_exact([cached.exact_at(())], [fresh.exact_at(())])


CASES = """\
schema_version: 1
description: "cache tests (no mean and sum together: mean-vs-sum takes every exact value, by mpmath)"
cases:
  - id: grid
    why: a generated grid large enough to be cached
    dtypes: [float16, bfloat16, float32]
    reductions: [none, mean]
    logits: {linspace: [-40, 40, 700]}
    target: [0, 0.5, 1]
    product: true
  - id: probabilities
    why: probabilities, inside (0, 1) so that their sum settles in float64
    dtypes: [float16, float32]
    reductions: [none, sum]
    probs: {linspace: ["0.001", "0.999", 2100]}
    target: {linspace: [1, 0, 2100]}
"""


def test_a_run_from_the_cache_gives_the_same_results(folder, computed, tmp_path):
    path = tmp_path / "cases.yaml"
    path.write_text(CASES)
    cases = load_file(path)
    numpy = load_framework("rounded")
    checks = enumerate_checks(cases, numpy.apis)
    runner = Runner(numpy)
    cold = [runner.run(c).to_json() for c in checks]
    stored, evaluated = entries(folder), len(computed)
    assert stored, "the run cached nothing"
    runner = Runner(numpy)  # a new runner: a new process, as far as it knows
    warm = [runner.run(c).to_json() for c in checks]
    assert len(computed) == evaluated, "the second run evaluated references the first one stored"
    assert warm == cold
    assert entries(folder) == stored
    verdicts = {json.loads(r)["verdict"] for r in cold}
    assert "exact" in verdicts and verdicts - {"exact"}, f"the run should judge failures too: {verdicts}"


def test_a_frameworks_compilation_cache_lives_in_the_cache_folder_and_is_off_with_it(tmp_path, monkeypatch):
    """JAX's persistent compilation cache (conformance/adapters/jax.py) goes where CONFORMANCE_CACHE says, and
    nowhere with CONFORMANCE_CACHE=off."""
    from conformance import cache

    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "c"))
    assert cache.compilation_folder("jax") == tmp_path / "c" / "compiled" / "jax"
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.compilation_folder("jax") is None
