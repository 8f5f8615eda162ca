"""The whole conformance run against the bare framework calls it makes, per framework.

    python benchmarks/framework_overhead.py [--frameworks numpy torch tensorflow jax] [--cases FILE]

Case set: the float16 cases of cases/exhaustive_16bit.yaml (every finite float16 logit x targets 0,
0.5, 1), or the same inputs generated when the file is missing (benchmarks/_common.py). For each
framework that imports (the others are skipped with a note), each in a fresh subprocess:

- import: ``conformance.adapters.load_framework(name)`` alone (the framework, and Keras where the
  adapter uses it), timed in a subprocess of its own;
- bare calls: every framework call the run makes (each API's loss, gradient, the relations' calls),
  on the same cast inputs, turned into NumPy arrays as the runner does; nothing else timed;
- run: ``python -m conformance run --framework NAME --cases FILE`` end to end (interpreter start,
  imports, case generation, the calls, the reference, judging, results files), wall clock, with an
  empty reference cache (cold); with ``--cached``, again with the cache that run filled.

ratio = run / (import + bare calls). Target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, float16_case_file, header, table, verdict

TARGET = 1.5
FRAMEWORKS = ("numpy", "torch", "tensorflow", "jax")
MODULES = {"numpy": ("numpy",), "torch": ("torch",), "tensorflow": ("tensorflow",), "jax": ("jax", "optax")}
IMPORT = (
    "import sys, time\n"
    "from conformance.adapters import load_framework\n"
    "start = time.perf_counter(); load_framework(sys.argv[1]); print(time.perf_counter() - start)\n"
)


def bare(name: str, case_file: str) -> dict:
    """In a fresh process: the framework calls of a run, timed alone."""
    import numpy as np

    from conformance import metamorphic
    from conformance.adapters import load_framework
    from conformance.cases import load_file
    from conformance.dtypes import get_format
    from conformance.runner import _fused, enumerate_checks

    start = time.perf_counter()
    framework = load_framework(name)
    imported = time.perf_counter() - start
    checks = enumerate_checks(load_file(case_file), framework.apis)
    inputs = {}
    calls = []
    for check in checks:
        key = (check.case.id, check.dtype)
        if key not in inputs:
            inputs[key] = check.case.inputs(get_format(check.dtype))
        given, api, quantity = inputs[key], check.api, check.quantity
        if quantity in ("value", "grad", "grad_target"):
            if not api.why_unsupported(check.dtype, given, quantity):
                function = {"value": api.call, "grad": api.grad, "grad_target": api.grad_target}[quantity]
                calls.append((function, given, check.reduction))
        elif not api.why_unsupported(check.dtype, given):
            if quantity == "symmetry":
                calls += [(api.call, given, "none"), (api.call, metamorphic.mirrored(given), "none")]
            elif quantity == "mean-vs-sum":
                calls += [(api.call, given, "mean"), (api.call, given, "sum")]
            elif quantity == "vs-fused":
                calls += [(api.call, given, "none"), (_fused(api, framework.apis).call, given, "none")]
    errors = 0
    start = time.perf_counter()
    for function, given, reduction in calls:
        try:
            np.asarray(function(dict(given), reduction))
        except Exception:  # the run records these as errors or unsupported: the call still counts
            errors += 1
    return {"import_s": imported, "calls_s": time.perf_counter() - start, "calls": len(calls), "raised": errors}


def subprocess_seconds(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    parser.add_argument("--cases", help="a case file instead of the exhaustive float16 cases")
    parser.add_argument("--cached", action="store_true", help="also time a second run, from the reference cache the first filled")
    parser.add_argument("--bare", nargs=2, metavar=("FRAMEWORK", "CASE_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        print(json.dumps(bare(*args.bare)))
        return 0
    header("framework overhead: the whole conformance run vs the bare framework calls")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bce-bench-") as tmp:
        if args.cases:
            case_file, origin = Path(args.cases).resolve(), args.cases
        else:
            case_file, origin = float16_case_file(Path(tmp))
        print(f"cases: {origin}\n", flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
        for name in args.frameworks:
            missing = [m for m in MODULES.get(name, (name,)) if importlib.util.find_spec(m) is None]
            if missing:
                print(f"note: {name} skipped: {', '.join(missing)} not importable", flush=True)
                continue
            _, done = subprocess_seconds([sys.executable, "-c", IMPORT, name], env)
            if done.returncode:
                print(f"note: {name} skipped: it does not load ({done.stderr.strip().splitlines()[-1:]})", flush=True)
                continue
            imported = float(done.stdout.strip().splitlines()[-1])
            _, done = subprocess_seconds([sys.executable, __file__, "--bare", name, str(case_file)], env)
            if done.returncode:
                print(f"note: {name}: the bare calls failed: {done.stderr.strip()[-500:]}", flush=True)
                continue
            calls = json.loads(done.stdout.strip().splitlines()[-1])
            cache_dir, out = Path(tmp) / f"cache-{name}", Path(tmp) / f"out-{name}"
            run_env = dict(env, CONFORMANCE_CACHE=str(cache_dir))
            command = [sys.executable, "-m", "conformance", "run", "--framework", name, "--cases", str(case_file), "--out", str(out)]
            cold, done = subprocess_seconds(command, run_env)
            cached = subprocess_seconds(command, run_env)[0] if args.cached else None
            results = [line for line in done.stdout.splitlines() if " results written to " in line]
            if done.returncode not in (0, 1) or not results:  # 1: some checks failed, which is the suite's finding
                print(f"note: {name}: the run failed (exit {done.returncode}): {done.stderr.strip()[-500:]}", flush=True)
                continue
            bare_total = imported + calls["calls_s"]
            row = [
                name, results[0].split()[0], calls["calls"], f"{imported:.2f}", f"{calls['calls_s']:.2f}", f"{bare_total:.2f}",
                f"{cold:.2f}", f"{cold / bare_total:.2f}x",
            ]
            if cached is not None:
                row += [f"{cached:.2f}", f"{cached / bare_total:.2f}x"]
            rows.append(row)
            print(f"{name}: import {imported:.2f} s, {calls['calls']} bare calls {calls['calls_s']:.2f} s; run {cold:.2f} s"
                  + (f", cached {cached:.2f} s" if cached is not None else ""), flush=True)
    if not rows:
        print("no framework could be measured")
        return 1
    print()
    headers = ["framework", "results", "calls", "import s", "calls s", "bare s", "run s", "ratio"]
    print(table(headers + (["run cached s", "cached ratio"] if args.cached else []), rows))
    print()
    for row in rows:
        ratio = float(row[7].rstrip("x"))
        line = f"ratio run/bare {row[0]}: {ratio:.2f}x (target <= {TARGET}x: {verdict(ratio <= TARGET)})"
        if args.cached:
            cached = float(row[9].rstrip("x"))
            line += f"; cached {cached:.2f}x ({verdict(cached <= TARGET)})"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
