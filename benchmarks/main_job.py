"""The main job, ``tox p -m conformance``, cold and warm, at two revisions side by side in one run.

    python benchmarks/main_job.py [--before REV] [--after REV] [--tox PATH] [--keep DIR]

Without ``--before``, the ``--after`` revision alone, cold then warm.

Each revision is cloned from this repository into a folder of its own and run there twice with
``tox run-parallel -m conformance`` (every framework env, the report and the baseline diff):

- **cold**: a fresh clone, so tox creates and installs every env (pip's own cache of wheels is the machine's),
  with an empty reference cache and an empty JAX compilation cache (``CONFORMANCE_CACHE`` and the cache key point
  beside the clone);
- **warm**: the same command again at once: envs installed, caches filled by the cold run.

The runs alternate (before cold, after cold, before warm, after warm) so that a drift of the machine's load
falls on both revisions alike. Printed: the wall time of each run, and each env's time as tox reports it
(install and commands), side by side; targets: cold <= 8 min and warm <= 3 min for ``--after``, and its JAX env
<= 2x its torch env. Nothing of the repository's own checkout is touched; pass ``--keep DIR`` to keep the clones
(results, reports) for inspection.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, header, table, verdict

COLD_TARGET_S = 8 * 60
WARM_TARGET_S = 3 * 60
JAX_TO_TORCH_TARGET = 2.0
ENVS = ("numpy", "torch", "tensorflow", "jax", "jax-0.6", "report", "diff")
# tox's summary line of an env: "  torch: OK (135.25=setup[1.95]+cmd[127.34,5.96] seconds)"
ENV_LINE = re.compile(r"^\s*(?P<env>[\w.-]+): (?P<status>OK|FAIL|SKIP)\S* \((?P<total>[\d.]+)=setup\[(?P<setup>[\d.]+)\]")


def default_tox() -> list[str]:
    found = shutil.which("tox")
    return [found] if found else [sys.executable, "-m", "tox"]


def clone(rev: str, folder: Path) -> str:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "checkout", "-q", rev], check=True)
    return subprocess.run(
        ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_main_job(tox: list[str], folder: Path, log: Path) -> tuple[float, int, dict[str, tuple[float, float, str]]]:
    """(wall seconds, tox's exit code, {env: (total s, setup s, status)}) of one ``tox p -m conformance``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONFORMANCE_")}
    private = folder.parent / f"{folder.name}.state"
    private.mkdir(exist_ok=True, mode=0o700)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        # the reference cache and (where a revision has it) JAX's compilation cache: tox passes CONFORMANCE_* on
        CONFORMANCE_CACHE=str(private / "cache"),
        CONFORMANCE_CACHE_KEY=str(private / "cache.key"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    start = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run(
            [*tox, "run-parallel", "-m", "conformance", "--parallel-no-spinner"],
            cwd=folder, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False,
        )
    wall = time.perf_counter() - start
    envs = {}
    for line in log.read_text(errors="replace").splitlines():
        match = ENV_LINE.match(line)
        if match and match["env"] in ENVS:
            envs[match["env"]] = (float(match["total"]), float(match["setup"]), match["status"])
    return wall, done.returncode, envs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="the revision to compare against (e.g. the last landed one); none: --after alone")
    parser.add_argument("--after", default="HEAD", help="the revision measured (default HEAD)")
    parser.add_argument("--tox", help="the tox to run (default: tox on PATH, else python -m tox)")
    parser.add_argument("--keep", type=Path, help="keep the clones in this folder")
    args = parser.parse_args()
    tox = [args.tox] if args.tox else default_tox()
    header("The main job (tox p -m conformance), cold and warm, before and after")
    root = args.keep or Path(tempfile.mkdtemp(prefix="main-job-"))
    root.mkdir(parents=True, exist_ok=True)
    revs = {"before": args.before, "after": args.after} if args.before else {"after": args.after}
    sides = tuple(revs)
    folders = {side: root / side for side in revs}
    shas = {side: clone(rev, folders[side]) for side, rev in revs.items()}
    print(", ".join(f"{side}: {rev} ({shas[side]})" for side, rev in revs.items()) + f"; clones in {root}\n")
    runs = {}
    for kind in ("cold", "warm"):
        for side in sides:
            wall, code, envs = run_main_job(tox, folders[side], root / f"{side}-{kind}.log")
            runs[side, kind] = (wall, code, envs)
            print(f"{side} {kind}: {wall:.0f} s, tox exit {code} (log: {root / f'{side}-{kind}.log'})", flush=True)
    print()
    columns = [(side, kind) for kind in ("cold", "warm") for side in sides]

    def cell(side, kind, env):
        found = runs[side, kind][2].get(env)
        if found is None:
            return "-"
        total, setup, status = found
        return f"{total:.0f} s" + (f" (setup {setup:.0f})" if setup >= 5 else "") + ("" if status == "OK" else f" {status}")

    rows = [[env] + [cell(side, kind, env) for side, kind in columns] for env in ENVS]
    rows.append(["wall (whole job)"] + [f"{runs[c][0]:.0f} s" for c in columns])
    print(table(["env"] + [f"{side} {kind}" for side, kind in columns], rows))
    print()
    for kind, target in (("cold", COLD_TARGET_S), ("warm", WARM_TARGET_S)):
        after = runs["after", kind][0]
        before = f"{runs['before', kind][0]:.0f} s -> " if "before" in revs else ""
        print(f"{kind}: {before}{after:.0f} s (target <= {target} s: {verdict(after <= target)})")
    for kind in ("cold", "warm"):
        envs = runs["after", kind][2]
        if "jax" in envs and "torch" in envs:
            # the commands' time, without the install: what the adapters and the judging cost
            jax_cmd, torch_cmd = envs["jax"][0] - envs["jax"][1], envs["torch"][0] - envs["torch"][1]
            ratio = jax_cmd / torch_cmd
            print(f"after {kind}: jax env {jax_cmd:.0f} s / torch env {torch_cmd:.0f} s (commands) = {ratio:.2f}x "
                  f"(target <= {JAX_TO_TORCH_TARGET:g}x: {verdict(ratio <= JAX_TO_TORCH_TARGET)})")
    failed = [f"{side} {kind}" for (side, kind), (_, code, _) in runs.items() if code != 0]
    if failed:
        print(f"tox failed in: {', '.join(failed)} (see the logs)")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
