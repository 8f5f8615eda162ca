"""The float32 sweep (``python -m conformance sweep``): its reference, a whole sweep against the bare framework
calls, Dask scaling, and the full sweep's time extrapolated, side by side in one run.

    python benchmarks/sweep_float32.py [--patterns-log2 28] [--sample 200000] [--frameworks numpy torch ...]

1. Reference, float32 loss and gradient at targets 0 and 1: the sweep's kernel
   (``sweep.reference_values``: ``sweep_kernel.roundings``, compiled by numba, the unsettled few by mpmath), the
   general fast path (``reference.reference``) and a naive per-element mpmath loop, in correctly rounded elements
   per second on one core (numba's threads set to one), on the same logits (a uniform sample of the bit
   patterns), and whether they agree. Target: the kernel >= 10^7 elements/s.
2. A sweep of 2^N float32 logits (every 2^(32-N)-th bit pattern: every binade) x targets {0, 1}, value and
   gradient, through torch's fused loss, in this process; against the same torch calls alone (no reference, no
   judging) on the same chunks, in the same process (freed memory kept for both: ``memory.keep_freed_memory``).
   Both use the machine's cores: torch's own threads, and the sweep's reference kernel numba's. Target: the sweep
   <= 3x the bare calls.
3. The same sweep (a smaller slice) on a Dask LocalCluster of 2 workers vs 1: the scaling ratio.
4. Each framework's whole sweep (all its fused and two-step APIs) on samples of 2^k and 2^(k+2) patterns, in one
   process each, k raised from 16 until they differ by 10 s; their difference (the start-up cancels out)
   extrapolated to all 2^32 patterns on this machine's cores at the measured scaling. A framework is run with
   the python of its sweep env (.tox/sweep-float32-<name>, made by ``tox -e sweep-float32-<name> --notest``),
   else of its conformance env (.tox/<name>), else with this one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpmath
import numba
import numpy as np
from _common import REPO, header, table, verdict

from conformance import reference as ref
from conformance import sweep
from conformance.dtypes import FORMATS, round_to_format

FMT = FORMATS["float32"]
KERNEL_TARGET = 1e7
RATIO_TARGET = 3.0


def sample_logits(count: int, rng) -> np.ndarray:
    bits = rng.integers(0, 1 << 32, count, dtype=np.uint64).astype(np.uint32)
    bits = bits[(bits & 0x7F800000) != 0x7F800000]
    return bits.view(np.float32)


def naive(x: np.ndarray, target: float, gradient: bool) -> np.ndarray:
    term = ref.bce_with_logits_grad if gradient else ref.bce_with_logits_term
    one, y = mpmath.mpf(1), mpmath.mpf(target)
    out = np.empty(x.size)
    with mpmath.workprec(2 * FMT.precision + 64):
        for i, value in enumerate(x.tolist()):
            out[i] = round_to_format(term(mpmath.mpf(value), y, one, one), FMT)
    return out


def best_of(repeat: int, function) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = function()
        best = min(best, time.perf_counter() - start)
    return best, value


def reference_rows(count: int, naive_count: int, rng) -> list[list[str]]:
    x = sample_logits(count, rng)
    rows = []
    for target in (0.0, 1.0):
        inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
        for gradient in (False, True):
            kernel_s, kernel = best_of(3, lambda t=target, g=gradient: sweep.reference_values(x, t, g).rounded)
            fast_s, fast = best_of(
                1, lambda i=inputs, g=gradient: ref.reference("bce_with_logits", i, "none", FMT, gradient=g)
            )
            few = x[:naive_count]
            start = time.perf_counter()
            slow = naive(few, target, gradient)
            naive_s = time.perf_counter() - start
            agree_fast = int(np.sum(kernel.astype(np.float64) == fast.rounded))
            agree_naive = int(np.sum(kernel[:naive_count].astype(np.float64) == slow))
            rate = x.size / kernel_s
            rows.append([
                f"{target:g}", "grad" if gradient else "value", f"{x.size:,}", f"{rate:,.0f}",
                f"{x.size / fast_s:,.0f}", f"{few.size / naive_s:,.0f}", f"{rate / (x.size / fast_s):,.1f}x",
                f"{agree_fast:,}/{x.size:,}", f"{agree_naive:,}/{few.size:,}", verdict(rate >= KERNEL_TARGET),
            ])
    return rows


def bare_torch_seconds(spec: sweep.Spec, chunk: int) -> float:
    """The torch calls of the sweep alone: value and gradient at each target, chunk by chunk."""
    framework, _ = sweep.loaded("torch")
    (api,) = sweep.selected_apis(framework, spec.apis)
    seconds = 0.0
    for low, high in sweep.chunk_ranges(spec, chunk):
        _, x = sweep.patterns(spec, low, high)
        for target in spec.targets:
            inputs = {"logits": x, "target": np.full(x.shape, target, dtype=np.float32)}
            start = time.perf_counter()
            api.call(inputs, "none")
            api.grad(inputs, "none")
            seconds += time.perf_counter() - start
    return seconds


def timed_sweep(spec: sweep.Spec, chunk: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        sweep.sweep(spec, Path(folder), "bench", chunk=chunk, workers=workers, progress="none")
        return time.perf_counter() - start


def framework_python(name: str) -> str:
    """The python of the framework's sweep env (``tox -e sweep-float32-NAME``: the framework and the sweep's extras,
    numba among them), else of its conformance env, else this one."""
    for env in (f"sweep-float32-{name}", name):
        candidate = REPO / ".tox" / env / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    return sys.executable


def sample_sweep_seconds(name: str, bits: str) -> float | str:
    with tempfile.TemporaryDirectory() as folder:
        command = [framework_python(name), "-m", "conformance", "sweep", "--framework", name]
        command += ["--bits", bits, "--workers", "0", "--progress", "none", "--out", folder]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a fail among the results, still a timed sweep
        return f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1][:80]}"
    return seconds


ESTIMATE_SECONDS = 10.0  # the two samples' difference in time that an estimate rests on, at least
ESTIMATE_MAX_LOG2 = 24


def estimate_row(name: str, log2: int, speedup: float) -> list[str]:
    """A framework's full-sweep time from the difference between samples of 2^k and 2^(k+2) patterns (every
    2^(32-k)-th: every binade), k raised until that difference is ``ESTIMATE_SECONDS`` or more: the start-up
    (imports, the probe, the compile caches' loading) cancels out."""
    timed: list[tuple[int, float]] = []
    for k in range(log2, ESTIMATE_MAX_LOG2 + 1, 2):
        seconds = sample_sweep_seconds(name, f"::{1 << (32 - k)}")
        if isinstance(seconds, str):
            return [seconds, "-", "-"]
        timed.append((k, seconds))
        if len(timed) >= 2 and timed[-1][1] - timed[-2][1] >= ESTIMATE_SECONDS:
            break
    (k_small, small), (k_big, big) = timed[-2], timed[-1]
    per_pattern = max(big - small, 0.0) / ((1 << k_big) - (1 << k_small))
    full = per_pattern * (1 << 32) / speedup
    samples = ", ".join(f"2^{k}: {t:.1f}" for k, t in timed)
    return [samples, f"{per_pattern * 1e6:.2f}", f"{full / 3600:.1f} h"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns-log2", type=int, default=28, help="the torch sweep's 2^N patterns (default 28)")
    parser.add_argument("--scaling-log2", type=int, default=25, help="the LocalCluster slice's 2^N patterns (default 25)")
    parser.add_argument("--sample", type=int, default=1 << 21, help="logits for the reference rows (default 2^21)")
    parser.add_argument("--naive", type=int, default=20000, help="logits for the naive mpmath loop (default 20000)")
    parser.add_argument("--estimate-log2", type=int, default=16, help="the estimates' first sample: 2^N patterns (default 16)")
    parser.add_argument("--frameworks", nargs="*", default=["numpy", "torch", "tensorflow", "jax"])
    args = parser.parse_args()
    header("float32 sweep: reference, a whole torch sweep vs its bare calls, Dask scaling, full-sweep estimates")
    rng = np.random.default_rng(20261203)

    print("\n1. reference, correctly rounded float32 elements/s on one core (same logits)\n")
    headers = ["target", "quantity", "logits", "kernel elem/s", "fast path elem/s", "naive mpmath elem/s",
               "kernel/fast", "kernel = fast", "kernel = naive", f">= {KERNEL_TARGET:.0e}"]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # per core
    try:
        print(table(headers, reference_rows(args.sample, args.naive, rng)))
    finally:
        numba.set_num_threads(threads)

    fused = ("torch.nn.functional.binary_cross_entropy_with_logits",)
    step = 1 << (32 - args.patterns_log2)
    spec = sweep.Spec("torch", step=step, apis=fused)
    chunk = min(sweep.CHUNK, spec.count)
    print(f"\n2. torch's fused loss, 2^{args.patterns_log2} logits (every {step}th pattern) x targets 0, 1, value and grad\n")
    bare = bare_torch_seconds(spec, chunk)
    whole = timed_sweep(spec, chunk, workers=0)
    ratio = whole / bare
    print(table(
        ["logits", "bare torch calls s", "sweep s (one process)", "ratio", f"<= {RATIO_TARGET:g}x"],
        [[f"{spec.count:,}", f"{bare:.2f}", f"{whole:.2f}", f"{ratio:.1f}x", verdict(ratio <= RATIO_TARGET)]],
    ))

    scale_spec = sweep.Spec("torch", step=1 << (32 - args.scaling_log2), apis=fused)
    scale_chunk = max(1, scale_spec.count // 16)
    print(f"\n3. Dask LocalCluster, 2^{args.scaling_log2} logits in 16 chunks: 2 workers vs 1\n")
    one = timed_sweep(scale_spec, scale_chunk, workers=1)
    two = timed_sweep(scale_spec, scale_chunk, workers=2)
    scaling = one / two
    print(table(["workers 1 s", "workers 2 s", "scaling (ideal 2)"], [[f"{one:.2f}", f"{two:.2f}", f"{scaling:.2f}x"]]))

    cores = os.cpu_count() or 1
    speedup = scaling if cores >= 2 else 1.0
    print(f"\n4. each framework's whole sweep (every API, targets 0, 1, value and grad) on samples of n and 4n patterns "
          f"(n from 2^{args.estimate_log2}, raised until the two differ by {ESTIMATE_SECONDS:g} s), extrapolated to "
          f"2^32 from the difference (no start-up in it) on {cores} cores (x {speedup:.2f} measured scaling)\n")
    rows = []
    for name in args.frameworks:
        rows.append([name, *estimate_row(name, args.estimate_log2, speedup), framework_python(name)])
    headers = ["framework", "samples (patterns: s)", "s per 10^6 patterns", "full sweep, estimated", "python"]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
