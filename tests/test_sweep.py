"""The float32 sweep (conformance.sweep) and its compiled kernel (conformance.sweep_kernel): the kernel's
roundings against the mpmath path on the hard places of float32, and a sweep's bytes the same however it is
chunked or interrupted. The subject is the `rounded` adapter: its results are fixed by construction."""

from __future__ import annotations

import bisect

import mpmath
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from conformance import arb_reference, fast_reference, sweep, sweep_kernel
from conformance import reference as ref
from conformance.dtypes import FORMATS

FMT = FORMATS["float32"]


def hard_logits() -> np.ndarray:
    """Logits where a float32 BCE is hard: ±0, subnormals, the smallest normals, around 1 and the saturation
    and exp-overflow bounds (16.6, 88.7, 103.97), and the largest finite values; plus a spread over every binade."""
    rng = np.random.default_rng(17)
    points = [0.0, 2.0**-149, 2.0**-126, 1e-30, 1e-8, 0.5, 1.0, 16.63, 17.0, 88.72, 103.97, 104.0, 1e10, 3.4028234e38]
    values = [np.nextafter(np.float32(p), np.float32(0)) for p in points] + [np.float32(p) for p in points]
    spread = rng.integers(0, 0x7F800000, 200, dtype=np.uint32).view(np.float32)
    x = np.concatenate([np.array(values, dtype=np.float32), spread])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("target", [0.0, 1.0])
@pytest.mark.parametrize("gradient", [False, True], ids=["value", "grad"])
def test_kernel_rounds_as_the_mpmath_path(target, gradient):
    x = hard_logits()
    (rounded,) = sweep_kernel.roundings(x, [(target, gradient)])
    unsettled = np.isnan(rounded)
    inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
    exact = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False).rounded
    settled = ~unsettled
    assert settled.sum() > 0.99 * x.size
    assert np.array_equal(
        rounded[settled].view(np.uint32), exact[settled].astype(np.float32).view(np.uint32)
    )  # sign bits too
    # and the sweep's reference, which settles the rest by mpmath, everywhere
    values = sweep.reference_values(x, target, gradient).rounded
    assert np.array_equal(values.view(np.uint32), exact.astype(np.float32).view(np.uint32))


def test_kernel_refuses_other_targets():
    with pytest.raises(ValueError):
        sweep_kernel.terms(np.zeros(2, dtype=np.float32), 0.5, False)
    with pytest.raises(ValueError):
        sweep_kernel.roundings(np.zeros(2, dtype=np.float32), [(0.5, True)])


@pytest.mark.parametrize("target", [0.0, 1.0])
@pytest.mark.parametrize("gradient", [False, True], ids=["value", "grad"])
def test_kernel_terms_hold_the_exact_value(target, gradient):
    """The kernel's float64 terms (what the sweep judges candidates with): the exact value within the bound,
    the bound tight enough to settle, the sign the one declared."""
    x = hard_logits()
    terms = sweep_kernel.terms(x, target, gradient)
    inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
    exact = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False).exact
    for approx, bound, want in zip(terms.approx.tolist(), terms.bound.tolist(), exact, strict=True):
        assert abs(mpmath.mpf(approx) - want) <= bound
        assert bound <= abs(approx) * 2.0**-40 + fast_reference.ABSOLUTE
    assert (np.sign(terms.approx[terms.approx != 0]) == terms.sign[terms.approx != 0]).all()


def test_kernel_under_flush_to_zero_takes_the_exact_rounding(monkeypatch):
    """Where the hardware's cast does not round correctly (a framework set flush-to-zero), the kernel's
    roundings are the general exact ones of its terms: the same values."""
    x = hard_logits()
    keys = list(sweep_kernel.KEYS)
    fast = sweep_kernel.roundings(x, keys)
    monkeypatch.setattr(fast_reference, "_casts_round_correctly", lambda: False)
    exact = sweep_kernel.roundings(x, keys)
    settled = ~np.isnan(fast) & ~np.isnan(exact)
    assert settled.sum() > 0.99 * fast.size
    assert np.array_equal(fast[settled].view(np.uint32), exact[settled].view(np.uint32))


def test_parse_bits():
    assert sweep.parse_bits("0x3f800000:0x3f800100") == (0x3F800000, 0x3F800100, 1)
    assert sweep.parse_bits("0::1024") == (0, 1 << 32, 1024)
    for bad in ("5", "9:3", "0:0x100000001", "a:b", "0:10:0"):
        with pytest.raises(sweep.SweepError):
            sweep.parse_bits(bad)


def run(tmp_path, name: str, chunk: int, spec: sweep.Spec) -> bytes:
    path = sweep.sweep(spec, tmp_path, name, chunk=chunk, workers=0, progress="none")
    return path.read_bytes()


def test_same_bytes_however_chunked_or_resumed(tmp_path):
    # 0x7f7fff00..0x7f800100 crosses the largest finite values into the infinities and NaNs, which are left out
    spec = sweep.Spec("rounded", 0x7F7FFF00, 0x7F800100, targets=(0.0, 1.0))
    whole = run(tmp_path / "a", "s", 1 << 12, spec)
    chunked = run(tmp_path / "b", "s", 96, spec)
    assert whole == chunked
    # a sweep killed after some chunks: its files are what is on disk; the rest run on the resume
    folder = tmp_path / "b" / "s.chunks"
    files = sorted(folder.iterdir())
    assert len(files) == 6  # 512 patterns in chunks of 96
    files[1].unlink()
    files[2].write_text("{half a file", encoding="utf-8")  # written atomically, this cannot happen; still not trusted
    (tmp_path / "b" / "s.jsonl").unlink()
    assert run(tmp_path / "b", "s", 96, spec) == whole
    lines = whole.decode().splitlines()
    assert len(lines) == 1 + 2 * 2 * len(sweep.selected_apis(sweep.loaded("rounded")[0], ()))


@pytest.mark.parametrize("bits", [(0x3F7FF000, 0x3F801000), (0x7F7FFF00, 0x7F800100), (0xC19FFF00, 0xC1A00100)])
def test_same_bytes_however_blocked(tmp_path, monkeypatch, bits):
    """A chunk's reference and judging run in blocks (sweep.BLOCK, JUDGE_BLOCK): blocks of
    a few elements, cutting through every run of regions and candidates, give the bytes of the default ones.
    The ranges: around 1, the largest finite values into the non-finite ones, around -20 (past saturation,
    where the hand formula's log(1 - σ(x)) is log 1)."""
    spec = sweep.Spec("rounded", *bits, targets=(0.0, 1.0))
    whole = run(tmp_path / "a", "s", 1 << 12, spec)
    monkeypatch.setattr(sweep, "BLOCK", 5)
    monkeypatch.setattr(sweep, "JUDGE_BLOCK", 3)
    assert run(tmp_path / "b", "s", 1 << 12, spec) == whole
    from conformance.results import read_run

    results = read_run(tmp_path / "a" / "s.jsonl", strict=True).results
    # the blocks were judged: elements not correctly rounded, and more of them than one judging block
    assert max(r.sweep["elements"] - r.sweep["correctly_rounded"] for r in results if r.sweep) > 3


def test_the_blocked_reference_is_the_whole_one():
    x = hard_logits()
    keys = [(t, q) for t in (0.0, 1.0, 0.5) for q in ("value", "grad")]
    whole = sweep.chunk_references(x, (0.0, 1.0, 0.5), ("value", "grad"))
    for target, quantity in keys:
        alone = sweep.reference_values(x, target, quantity == "grad")
        assert np.array_equal(whole[target, quantity].rounded.view(np.uint32), alone.rounded.view(np.uint32))
        inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
        exact = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=quantity == "grad", fast=False).rounded
        assert np.array_equal(alone.rounded.view(np.uint32), exact.astype(np.float32).view(np.uint32)), (target, quantity)


def test_records_count_every_finite_pattern(tmp_path):
    from conformance.results import read_run

    spec = sweep.Spec("rounded", 0x7F7FFF00, 0x7F800100, targets=(1.0,), quantities=("value",))
    run(tmp_path, "s", 1 << 12, spec)
    results = read_run(tmp_path / "s.jsonl", strict=True).results
    assert results
    for result in results:
        assert result.sweep["elements"] == 0x100  # 256 finite patterns, the 256 non-finite ones left out
        assert sum(row["elements"] for row in result.sweep["histogram"]) == 0x100
        assert result.case == "sweep-float32/target-1"


@pytest.mark.processes
def test_a_killed_sweep_resumes_to_the_same_bytes(tmp_path):
    """``python -m conformance sweep`` killed by SIGKILL after some chunks are on disk, then run again: the
    same bytes as one uninterrupted run (and the resume says it resumed)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "conformance", "sweep", "--framework", "rounded", "--bits", "0x3f7ff000:0x3f801000"]
    command += ["--chunk", "64", "--workers", "0", "--progress", "lines", "--targets", "0,1"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = tmp_path / "whole"
    subprocess.run([*command, "--out", str(whole)], check=True, env=environment, capture_output=True)
    killed = tmp_path / "killed"
    chunks = killed / "sweep-float32-rounded.chunks"
    process = subprocess.Popen([*command, "--out", str(killed)], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(chunks.glob("*.json"))) < 3:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    on_disk = len(list(chunks.glob("*.json")))
    assert 3 <= on_disk < 128, on_disk  # killed mid-way: some of the 128 chunks finished, not all
    assert not (killed / "sweep-float32-rounded.jsonl").exists()
    resumed = subprocess.run([*command, "--out", str(killed)], check=True, env=environment, capture_output=True, text=True)
    assert f"resuming: {on_disk} of 128 chunks already on disk" in resumed.stderr
    name = "sweep-float32-rounded.jsonl"
    assert (killed / name).read_bytes() == (whole / name).read_bytes()


def test_the_report_draws_each_sweep_per_binade(tmp_path):
    from conformance import report_html
    from conformance.report import build
    from conformance.results import read_runs

    spec = sweep.Spec("rounded", 0x3F7FF000, 0x3F801000, targets=(0.0, 1.0), quantities=("value",))
    path = sweep.sweep(spec, tmp_path, "s", chunk=1 << 12, workers=0, progress="none")
    page = report_html.render(build(read_runs([path])))
    assert page.count('id="binades-') == 1  # one run, one quantity
    assert 'href="#binades"' in page
    apis = len(sweep.selected_apis(sweep.loaded("rounded")[0], ()))
    assert f"{2 * apis * spec.count:,} elements" in page  # every finite pattern, per target and API
    assert report_html.render(build(read_runs([path]))) == page  # the same bytes


@pytest.mark.parametrize(
    "options, named",
    [
        (["--bits", "5"], "--bits '5'"),
        (["--bits", "9:3"], "--bits '9:3'"),
        (["--targets", "2"], "--targets '2'"),
        (["--api", "no.such.api"], "--api no.such.api: not a float32 API of rounded"),
        (["--chunk", "0"], "--chunk 0"),
        (["--name", "../x"], "results name '../x'"),
    ],
)
def test_the_command_names_the_bad_option(tmp_path, capsys, options, named):
    from conformance.cli import EXIT_USAGE, main

    code = main(["sweep", "--framework", "rounded", "--workers", "0", "--out", str(tmp_path), *options])
    assert code == EXIT_USAGE
    assert named in capsys.readouterr().err
    assert not list(tmp_path.glob("*.jsonl"))


def test_the_command_writes_the_records_and_lists_them(tmp_path, capsys):
    from conformance.cli import main
    from conformance.results import read_run

    code = main(["sweep", "--framework", "rounded", "--bits", "0x3f800000:0x3f800400", "--workers", "0",
                 "--progress", "none", "--out", str(tmp_path)])  # fmt: skip
    out = capsys.readouterr().out
    results = read_run(tmp_path / "sweep-float32-rounded.jsonl", strict=True).results
    assert code == (1 if any(r.verdict in ("fail", "error") for r in results) else 0)
    assert f"{len(results)} results" in out
    assert all(f"{r.case} {r.api} {r.quantity}: {r.verdict}" in out for r in results)


def test_differing_is_the_elementwise_comparison():
    rng = np.random.default_rng(5)
    want = rng.standard_normal(1000).astype(np.float32)
    got = want.copy()
    changed = rng.choice(1000, 40, replace=False)
    got[changed] = np.nextafter(got[changed], np.float32(np.inf))
    got[:3], want[:3] = np.nan, np.nan  # NaN matches NaN
    got[3], want[3] = np.nan, 1.0
    got[4], want[4] = -0.0, 0.0  # equal values
    expected = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))))
    assert 3 in expected and 4 not in expected
    assert np.array_equal(sweep_kernel.differing(got, want), expected)


@pytest.mark.parametrize("measure", ["arb", "mpmath"])
def test_errors_on_a_histogram_edge_are_measured_exactly(measure, monkeypatch):
    """An error the float64 evaluation puts within a hair of a histogram edge is measured exactly, so that its
    bin is the same on every host (libm's or numpy's exp decide the last bits of the float64 error): σ(0) = 1/2
    exactly, so 1/2 + 2^-24 is 1 ULP off, in (0.5, 1], and 1/2 + 2^-23 two, in (1, 2]. By python-flint's balls,
    or by mpmath where they do not settle it (here: python-flint taken away)."""
    if measure == "mpmath":
        monkeypatch.setattr(arb_reference, "arb", None)
    values = np.array([0.5 + 2.0**-24, 0.5 + 2.0**-23, 0.5 + 2.0**-24])
    part = {"logits": np.zeros(3, dtype=np.float32), "target": np.zeros(3, dtype=np.float32)}
    errors = np.array([1.0 + 2.0**-30, 2.0 - 2.0**-30, 0.7])  # the third is far from an edge: left as it is
    near = sweep._near_edges(errors)
    assert near.tolist() == [True, True, False]
    sweep._exact_on_edges(errors, values, part, 0.0, True, np.flatnonzero(near))
    assert errors.tolist() == [1.0, 2.0, 0.7]
    slots = np.searchsorted(sweep.ULP_EDGES, errors, side="left")
    assert slots.tolist() == [1, 2, 1]


def offsets_from(rounded: np.ndarray, steps) -> np.ndarray:
    """Each float32 of ``rounded`` moved by each of ``steps`` representable values (positive: away from zero;
    clipped at 0 and at the largest finite value), concatenated in that order."""
    bits = rounded.view(np.uint32).astype(np.int64)
    sign, magnitude = bits & 0x80000000, bits & 0x7FFFFFFF
    moved = [np.clip(magnitude + step, 0, 0x7F7FFFFF) | sign for step in steps]
    return np.concatenate(moved).astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("target", [0.0, 1.0])
@pytest.mark.parametrize("gradient", [False, True], ids=["value", "grad"])
def test_the_compiled_judge_is_the_judge(target, gradient):
    """``sweep_kernel.judged`` (the sweep's judge at targets 0 and 1) leaves open exactly the elements that
    ``verdicts.judge``'s interval does not decide (``exact_ulps``, ``interval_judgement``) and those it is told
    to, and gives ``verdicts.judge``'s error, miss and absolute-floor acceptance on every other: on the hard
    logits, with results 0 to 2^20 ULPs off on either side (the tolerance's edge, 4 ULPs, among them), zero and
    non-finite results."""
    from conformance.verdicts import exact_ulps, interval_judgement, judge, judged_slack, tolerance_for

    x0 = hard_logits()
    reference0 = sweep.reference_values(x0, target, gradient)
    steps = [0, 1, -1, 2, -2, 3, 4, -4, 5, -5, 8, -8, 1 << 10, -(1 << 20)]
    got = offsets_from(reference0.rounded, steps)
    got = np.concatenate([got, np.zeros(x0.size, np.float32), np.full(x0.size, np.inf, np.float32)])
    got[-3:] = np.nan
    x = np.tile(x0, got.size // x0.size)
    reference = sweep.reference_values(x, target, gradient)
    at = np.arange(x.size)
    open_given = np.isin(at, reference.settled_at)  # their exact values known (mpmath's): judged exactly
    open_given[::97] = True
    tolerance = tolerance_for("float32")
    errors, flags = sweep_kernel.judged(
        x, got, reference.rounded, open_given, target, gradient, tolerance, np.asarray(sweep.ULP_EDGES), sweep.EDGE_SLACK
    )
    inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
    value = reference.part("bce_with_logits", inputs, at)
    slack = judged_slack(value.bound)
    with np.errstate(invalid="ignore", over="ignore"):
        interval = interval_judgement(got.astype(np.float64), value.approx, slack,
                                      *exact_ulps(value.rounded, value.approx, slack, FMT, value.under),
                                      tolerance.max_ulp, tolerance.abs_floor)  # fmt: skip
    left_open = (flags & sweep_kernel.OPEN) != 0
    decided = ~left_open
    assert np.array_equal(decided, interval[2] & ~open_given)
    assert left_open.any() and decided.sum() > x.size // 2
    want = judge(got.astype(np.float64), value, FMT, tolerance, keep=0, listed=False)
    assert np.array_equal(errors[decided], want.errors[decided])
    missed = (flags & sweep_kernel.MISSED) != 0
    assert np.array_equal(missed[decided], want.missing[decided])
    assert missed.any() and (~missed & decided).any()
    part = {name: array[left_open] for name, array in inputs.items()}
    judged_open = judge(got[left_open].astype(np.float64), reference.part("bce_with_logits", part, at[left_open]), FMT,
                        tolerance, keep=0, listed=False)  # fmt: skip
    floors = int(np.count_nonzero(flags & sweep_kernel.FLOOR))
    assert floors + judged_open.floor_accepted == want.floor_accepted
    assert np.array_equal(sweep._near_edges(errors)[decided], ((flags & sweep_kernel.NEAR_EDGE) != 0)[decided])


def test_the_compiled_tally_is_numpy_s():
    """``sweep_kernel.tally`` (a chunk's figures in one pass) against the same figures in numpy: the histogram's
    bins (``np.searchsorted``), each binade's largest error and misses, each region's misses and first worst
    element, and the worst elements in ``verdicts.worst_first``'s order; with NaN errors and ties."""
    from conformance.verdicts import worst_first

    rng = np.random.default_rng(11)
    size = 5000
    bits = np.arange(0, 1 << 32, 4099, dtype=np.int64).astype(np.uint32)
    bits = np.sort(rng.choice(bits[(bits & 0x7F800000) != 0x7F800000], size, replace=False))  # finite patterns
    errors = rng.choice([0.5, 0.75, 1.0, 1.5, 3.0, 4.0, 7.0, 1e3, 1e7, np.inf, np.nan], size)  # ties aplenty
    missing = errors > 4
    where = rng.integers(0, 5, size).astype(np.int8)
    histogram = np.zeros(len(sweep.ULP_EDGES) + 1, dtype=np.int64)
    binade_max = np.full(sweep.BINADES, 0.5)
    binade_missed = np.zeros(sweep.BINADES, dtype=np.int64)
    region_missed = np.zeros(5, dtype=np.int64)
    region_worst, region_bits = np.full(5, 0.5), np.arange(5, dtype=np.int64)
    worst = sweep_kernel.tally(errors, missing, bits, where, np.asarray(sweep.ULP_EDGES), histogram, binade_max,
                               binade_missed, region_missed, region_worst, region_bits, 8)  # fmt: skip
    key = np.where(np.isnan(errors), np.inf, errors)
    slots = np.where(np.isnan(errors), len(sweep.ULP_EDGES), np.searchsorted(sweep.ULP_EDGES, errors, side="left"))
    assert histogram.tolist() == np.bincount(slots, minlength=len(sweep.ULP_EDGES) + 1).tolist()
    binades = ((bits >> 23) - (bits >> 31)).astype(np.int64)
    expected_max = np.full(sweep.BINADES, 0.5)
    np.maximum.at(expected_max, binades, key)
    assert np.array_equal(binade_max, expected_max)
    assert binade_missed.tolist() == np.bincount(binades[missing], minlength=sweep.BINADES).tolist()
    assert region_missed.tolist() == np.bincount(where[missing], minlength=5).tolist()
    for region in range(5):
        members = np.flatnonzero(where == region)
        first_worst = members[worst_first(key[members], bits[members], 1)[0]]
        assert (region_worst[region], region_bits[region]) == (key[first_worst], bits[first_worst])
    assert worst.tolist() == worst_first(key, bits, 8).tolist()


@pytest.mark.parametrize("target", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("gradient", [False, True], ids=["value", "grad"])
def test_ball_errors_are_ulp_error(target, gradient):
    """``arb_reference.ulp_errors`` (the exact errors of the elements near a histogram edge) gives
    ``dtypes.ulp_error``'s error wherever its ball settles one, which is most elements; NaN for a result that
    is not finite."""
    from conformance.dtypes import ulp_error

    x0 = hard_logits()
    inputs = {"logits": x0, "target": np.full(x0.shape, target, dtype=np.float32)}
    exact = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False)
    got = offsets_from(exact.rounded.astype(np.float32), [1, -1, 5])
    got[:2] = np.inf, np.nan
    x = np.tile(x0, 3)
    errors = arb_reference.ulp_errors(x, target, gradient, got.astype(np.float64), FMT)
    proven = np.isfinite(errors)
    assert not proven[:2].any() and proven.sum() > x.size // 2
    wants = np.tile(exact.exact, 3)
    assert [ulp_error(float(g), w, FMT) for g, w in zip(got[proven], wants[proven], strict=True)] == errors[proven].tolist()


@pytest.mark.parametrize("target", [0.0, 1.0, 0.5])
def test_regions_by_search_are_every_element_s(target):
    """A chunk's regions, found by binary search at ``regions.breakpoints`` on its two ascending runs of
    magnitudes, are ``regions.classify``'s on every element: on patterns across zero and the subnormals, the
    saturation and exp-overflow bounds and the largest finite values, positive and negative."""
    from conformance import regions

    pieces = []
    for value in (0.0, 2.0**-126, regions.saturation_bound(FMT), regions.exp_overflow_bound(FMT), 3.4e38):
        centre = int(np.array([value], dtype=np.float32).view(np.uint32)[0])
        pieces.append(np.arange(max(centre - 300, 0), min(centre + 300, 0x7F800000), dtype=np.uint32))
    positive = np.unique(np.concatenate(pieces))
    bits = np.concatenate([positive, positive | np.uint32(0x80000000)])
    x = bits.view(np.float32)
    where, counts, present, first = sweep._regions_of(x, np.float64(target), bits)
    want = regions.classify("logits", x, np.float64(target), FMT)
    assert np.array_equal(where, want)
    assert counts.tolist() == np.bincount(want, minlength=len(regions.REGIONS)).tolist()
    assert present.tolist() == np.unique(want).tolist() and len(present) >= 4
    assert first == {int(i): int(bits[np.argmax(want == i)]) for i in present}


def near_breakpoints() -> st.SearchStrategy[int]:
    """float32 magnitudes' bit patterns: anywhere, or within 2^12 patterns of one of the regions' bounds."""
    from conformance import regions

    centres = [int(np.array([p], dtype=np.float32).view(np.uint32)[0]) for p in regions.breakpoints("logits", FMT)[:-1]]
    near = [st.integers(max(c - 4096, 0), min(c + 4096, 0x7F7FFFFF)) for c in centres]
    return st.one_of(st.integers(0, 0x7F7FFFFF), *near)


@given(near_breakpoints(), near_breakpoints(), st.booleans(), st.booleans(), st.sampled_from([0.0, 1.0, 0.5, 2.0**-130]))
def test_a_region_changes_only_at_a_breakpoint(a, b, negative_a, negative_b, target):
    """Two logits whose magnitudes lie in the same piece of ``regions.breakpoints`` (strictly between two of them,
    or both on one) have the same region at any target."""
    from conformance import regions

    points = regions.breakpoints("logits", FMT)

    def piece(bits: int) -> tuple[int, int]:
        magnitude = float(np.array([bits], dtype=np.uint32).view(np.float32)[0])
        return bisect.bisect_left(points, magnitude), bisect.bisect_right(points, magnitude)

    assume(piece(a) == piece(b))
    x = np.array([a | (negative_a << 31), b | (negative_b << 31)], dtype=np.uint32).view(np.float32)
    where = regions.classify("logits", x, np.float64(target), FMT)
    assert where[0] == where[1]


@pytest.mark.parametrize("target", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("gradient", [False, True], ids=["value", "grad"])
def test_ball_roundings_are_the_mpmath_path_s(target, gradient):
    """``arb_reference.roundings`` (the sweep's roundings that the float64 interval leaves) gives the mpmath
    path's correct rounding, sign included, wherever its ball settles one, which is nearly everywhere: on the
    hard logits and on those whose float64 interval straddles a rounding boundary."""
    x = hard_logits()
    if target in sweep_kernel.BINARY_TARGETS:  # and the kernel's unsettled ones, from a spread of patterns
        spread = np.arange(0, 1 << 32, 1 << 8, dtype=np.uint64).astype(np.uint32)
        spread = spread[(spread & 0x7F800000) != 0x7F800000].view(np.float32)
        (kernel,) = sweep_kernel.roundings(spread, [(target, gradient)])
        assert np.isnan(kernel).any() or not gradient  # (σ(x) near a midpoint: the gradient's, hundreds)
        x = np.concatenate([x, spread[np.isnan(kernel)]])
    inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
    want = ref.reference("bce_with_logits", inputs, "none", FMT, gradient=gradient, fast=False).rounded
    balls = arb_reference.roundings(x, target, gradient, FMT)
    settled = ~np.isnan(balls)
    assert settled.sum() > 0.95 * x.size
    assert np.array_equal(balls[settled].view(np.uint64), np.asarray(want, dtype=np.float64)[settled].view(np.uint64))
