"""report.html for a results folder: its size, how long it takes to make and to load in headless Chromium.

    python benchmarks/report_page.py [RESULTS] [--loads 3] [--against REV | --against-page FILE]
    python benchmarks/report_page.py --pages BEFORE.html AFTER.html

Budget (issue 16), for the main job's results: report.html <= 5 MiB, loaded in <= 3 s in headless
Chromium, generated in <= 20 s.

For RESULTS (a folder of results files; default results/):

- generation, end to end: ``python -m conformance report RESULTS --out TMP`` in a subprocess, wall
  clock (interpreter start, imports, reading, building, rendering, writing);
- the same in this process, timed apart: reading the results files (``read_runs``), ``build`` (the
  tables) and ``render_all`` (summary.md, report.html with its plots, junit.xml);
- the outputs' sizes: report.html, summary.md, junit.xml;
- report.html in headless Chromium (conformance.browser: /usr/bin/chromium or $CONFORMANCE_CHROMIUM),
  each load in a fresh context: the median of ``--loads`` loads of the time from navigation start to
  the end of the ``load`` event, and to the page's first rendering after it (style and layout done);
  the DOM node count, the JS heap, the style recalculation time, and the console and page errors.

``--against REV`` makes the page a second time with the report code of git revision REV (its
``conformance/`` package exported to a temporary folder) from the same results, and prints both
side by side, REV's first, with the ratios (this checkout / REV); ``--against-page FILE`` compares
with a report.html already made. ``--pages A B`` only loads two existing pages and compares them
(ratios B / A). The budgets are checked on the last column. ``--keep DIR``
keeps the generated outputs (with ``--against``, REV's go to DIR/against).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from _common import REPO, header, table, verdict

BUDGET_BYTES = 5 * 1024 * 1024
BUDGET_LOAD_S = 3.0
BUDGET_GENERATION_S = 20.0
OUTPUTS = ("report.html", "summary.md", "junit.xml")


@dataclass
class Page:
    """What was measured of one report.html (and, when this run made it, of its generation)."""

    name: str
    html: Path
    sizes: dict[str, int] = field(default_factory=dict)
    generation_s: float | None = None  # the CLI end to end
    phases: dict[str, float] = field(default_factory=dict)  # in-process: read, build, render
    load_s: float | None = None  # medians over the loads
    rendered_s: float | None = None
    wall_s: float | None = None
    nodes: int | None = None
    heap_mib: float | None = None
    style_s: float | None = None
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=str(REPO / "results"), help="results folder (default: results/)")
    parser.add_argument("--loads", type=int, default=3, help="loads of each page in Chromium; the median is shown")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one load may take (an old page: 90)")
    parser.add_argument("--keep", help="keep the generated outputs in this folder")
    parser.add_argument("--skip-in-process", action="store_true", help="only the CLI's time, not the phases")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--against", metavar="REV", help="compare with the page REV's report code makes")
    group.add_argument("--against-page", metavar="FILE", help="compare with this report.html (or a folder with one)")
    group.add_argument("--pages", nargs=2, metavar=("A", "B"), help="only load two report.html files and compare")
    args = parser.parse_args()

    from conformance.browser import unavailable

    reason = unavailable()
    header("report page: size, generation and load time in headless Chromium")
    if reason:
        print(f"note: no page loads: {reason}\n")

    with tempfile.TemporaryDirectory(prefix="bce-bench-page-") as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "out"
        if args.pages:
            pages = [_existing(f"{name}: {path}", path) for name, path in zip("AB", args.pages)]
        else:
            results = Path(args.results).resolve()  # the report runs in a subprocess elsewhere
            if not any(results.glob("*.jsonl")):
                print(f"error: no results files (*.jsonl) in {results}", file=sys.stderr)
                return 2
            print(f"results: {results} ({_size(sum(p.stat().st_size for p in results.glob('*.jsonl')))} of *.jsonl)")
            pages = []  # before, after: the page compared with first, this checkout's last
            if args.against:
                code = Path(tmp) / "against"
                _export(args.against, code)
                pages.append(_generate(f"rev {args.against}", results, out / "against", code, in_process=False))
            elif args.against_page:
                pages.append(_existing(f"page {args.against_page}", args.against_page))
            pages.append(_generate("this checkout", results, out, REPO, not args.skip_in_process))
        if not reason:
            for page in pages:
                _load(page, args.loads, args.timeout)
        print()
        _print(pages, compare=len(pages) == 2)
    return 0


def _html(path: Path) -> Path:
    return path / "report.html" if path.is_dir() else path


def _existing(name: str, path: str) -> Page:
    html = _html(Path(path))
    # summary.md and junit.xml beside it when it is a report's output folder's report.html
    sizes = _sizes(html.parent) if html.name == "report.html" else {}
    sizes["report.html"] = html.stat().st_size
    return Page(name, html, sizes)


def _sizes(folder: Path) -> dict[str, int]:
    return {name: (folder / name).stat().st_size for name in OUTPUTS if (folder / name).exists()}


def _export(rev: str, into: Path) -> None:
    """REV's conformance package, unpacked under ``into`` (importable with PYTHONPATH=into)."""
    archive = subprocess.run(["git", "archive", rev, "conformance"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def _generate(name: str, results: Path, out: Path, code: Path, in_process: bool) -> Page:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(code))
    command = [sys.executable, "-m", "conformance", "report", str(results), "--out", str(out)]
    print(f"{name}: python -m conformance report (PYTHONPATH={code}) ...", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=out, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"{name}: the report exited {done.returncode}")
    page = Page(name, out / "report.html", _sizes(out), generation_s=seconds)
    print(f"  {seconds:.1f} s end to end", flush=True)
    if in_process:  # this checkout's code: the same steps again, each timed, outside the interpreter's start
        from conformance.report import build, render_all
        from conformance.results import read_runs

        start = time.perf_counter()
        runs = read_runs([results])
        read = time.perf_counter()
        report = build(runs)
        built = time.perf_counter()
        render_all(report)
        rendered = time.perf_counter()
        page.phases = {"read": read - start, "build": built - read, "render": rendered - built}
        print("  in process: " + ", ".join(f"{k} {v:.1f} s" for k, v in page.phases.items()), flush=True)
    return page


def _load(page: Page, loads: int, timeout: float) -> None:
    from conformance.browser import Chromium

    print(f"{page.name}: {loads} loads of {page.html} ...", flush=True)
    measured = []
    with Chromium(timeout_s=timeout) as browser:
        for _ in range(loads):
            loaded = browser.load(page.html)
            loaded.close()
            measured.append(loaded)
            print(f"  load {loaded.load_seconds:.2f} s, rendered {loaded.rendered_seconds:.2f} s", flush=True)
    page.loads = [m.load_seconds for m in measured]
    page.load_s = statistics.median(page.loads)
    page.rendered_s = statistics.median(m.rendered_seconds for m in measured)
    page.wall_s = statistics.median(m.wall_seconds for m in measured)
    last = measured[-1]
    page.nodes = last.nodes
    page.heap_mib = None if last.js_heap_used is None else last.js_heap_used / 2**20
    style = [m.metrics["RecalcStyleDuration"] for m in measured if "RecalcStyleDuration" in m.metrics]
    page.style_s = statistics.median(style) if style else None
    page.errors = sorted({e for m in measured for e in m.errors})
    page.requests = sorted({r for m in measured for r in m.requests})


def _print(pages: list[Page], compare: bool) -> None:
    rows = [
        (
            "report.html",
            [_size(p.sizes.get("report.html")) for p in pages],
            [p.sizes.get("report.html") for p in pages],
        ),
        ("summary.md", [_size(p.sizes.get("summary.md")) for p in pages], [p.sizes.get("summary.md") for p in pages]),
        ("junit.xml", [_size(p.sizes.get("junit.xml")) for p in pages], [p.sizes.get("junit.xml") for p in pages]),
        ("generation s (CLI)", [_s(p.generation_s) for p in pages], [p.generation_s for p in pages]),
    ]
    for phase in ("read", "build", "render"):
        if any(phase in p.phases for p in pages):
            rows.append(
                (f"  {phase} s", [_s(p.phases.get(phase)) for p in pages], [p.phases.get(phase) for p in pages])
            )
    rows += [
        ("load s (median)", [_s(p.load_s, 2) for p in pages], [p.load_s for p in pages]),
        ("rendered s (median)", [_s(p.rendered_s, 2) for p in pages], [p.rendered_s for p in pages]),
        ("goto wall s (median)", [_s(p.wall_s, 2) for p in pages], [p.wall_s for p in pages]),
        ("style recalc s", [_s(p.style_s, 2) for p in pages], [p.style_s for p in pages]),
        ("DOM nodes", [_int(p.nodes) for p in pages], [p.nodes for p in pages]),
        ("JS heap MiB", [_s(p.heap_mib) for p in pages], [p.heap_mib for p in pages]),
        ("errors", [str(len(p.errors)) for p in pages], [None for p in pages]),
        ("network requests", [str(len(p.requests)) for p in pages], [None for p in pages]),
    ]
    headers = ["", *(p.name for p in pages)] + (["ratio"] if compare else [])
    body = []
    for label, shown, values in rows:
        if all(v == "–" for v in shown):
            continue
        row = [label, *shown]
        if compare:  # after / before: the second column over the first
            before, after = values
            ok = isinstance(before, (int, float)) and before and after is not None
            row.append(f"{after / before:.3f}x" if ok else "")
        body.append(row)
    print(table(headers, body))
    for page in pages:
        for error in page.errors[:10]:
            print(f"{page.name}: error: {error}")
        for request in page.requests[:10]:
            print(f"{page.name}: requested: {request}")
    last = pages[-1]
    print()
    _budget(f"{last.name}: report.html <= 5 MiB", last.sizes.get("report.html"), BUDGET_BYTES, _size)
    _budget(f"{last.name}: loaded in <= 3 s", last.load_s, BUDGET_LOAD_S, lambda v: f"{v:.2f} s")
    _budget(f"{last.name}: generated in <= 20 s", last.generation_s, BUDGET_GENERATION_S, lambda v: f"{v:.1f} s")


def _budget(what: str, value, limit, shown) -> None:
    if value is not None:
        print(f"{what}: {shown(value)}: {verdict(value <= limit)}")


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _s(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


if __name__ == "__main__":
    sys.exit(main())
