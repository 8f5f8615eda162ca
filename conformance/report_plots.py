"""report.html's plots and ULP-distribution table, as HTML fragments.

- ``sweep_sections``: per sweep case and quantity, one PNG of small multiples: a row of the exact value
  per dtype column, then one panel per (framework, API) and dtype with every element's error in ULPs
  (symlog), the tolerance as a shaded band, targets as colours, inf/NaN as one marker layer at a
  labelled ceiling, floor-accepted elements apart, and a framework's runs at two versions in one panel
  (the newest in colour, the older in grey, the elements whose error differs ringed).
- ``ulp_distribution``: a table, one row per (run, API, dtype), of how many results fall in each bin of
  their largest error in ULPs, the results accepted only through the absolute floor counted apart.

PNG, not SVG: the main job's sweeps hold about a quarter of a million elements, each an SVG node the
browser restyles (the page took over a minute to load); a raster keeps the page a few MiB. Matplotlib
draws with its default style plus ``RC`` (never the user's matplotlibrc) through Agg, and the PNG is
quantized to a palette and written by Pillow without a date or a Software field, so the same results
give the same bytes.
"""

from __future__ import annotations

import base64
import gc
import io
import json
import math
import multiprocessing
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape as esc

import numpy as np

from conformance.report import (
    ERROR_QUANTITIES,
    STATE_NAMES,
    Report,
    RunReport,
    floor_only,
    is_problem,
    quantity_order,
    state_of,
)
from conformance.results import Result
from conformance.summary import _ulp

# histogram bins of a result's max ULP error: 0, then upper bounds, then > 1e6, then inf/NaN
BIN_EDGES = (0.5, 1.0, 4.0, 16.0, 100.0, 1e3, 1e4, 1e6)
BIN_LABELS = ("0", "≤0.5", "≤1", "≤4", "≤16", "≤100", "≤1e3", "≤1e4", "≤1e6", ">1e6", "inf/NaN")
STATE_COLORS = {
    "exact": "#2e7d32",
    "acceptable": "#1565c0",
    "conditioned": "#7b1fa2",
    "known_divergence": "#ef6c00",
    "fail": "#c62828",
    "unsupported": "#9e9e9e",
}
VALUE_FLOOR = 1e-40  # the values panel's log part stops here: smaller magnitudes sit with 0
MAX_TICKS = 8
# decades between a symlog axis's ticks: 1e-40, 1e-30, ... not 1e-42, 1e-35
NICE_STEPS = (1, 2, 3, 5, 10, 20, 25, 50, 100)
CEILING_EXPONENT = 300

# ---------------------------------------------------------------- look

RC = {
    # at DPI 80 a point is 1.1 pixels: titles 8.9 px, tick labels 7.8 px, read at the PNG's own size
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.titlepad": 2.5,
    "axes.titley": 1.0,  # a fixed title position: matplotlib's automatic one measures every axis (a third of the time)
    "axes.labelpad": 1.5,
    "lines.antialiased": True,
}
DPI = 80
# targets, when a figure has few of them: no green (the tolerance band), no red (inf/NaN, problems), no grey
TARGET_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22")
MANY_TARGETS_CMAP = "viridis"  # more targets than TARGET_COLORS: a colour map and a colour bar
NAN_TARGET = "#616161"
BAND = "#c8e6c9"  # the tolerance band 0..max_ulp
NONFINITE = "#d62728"  # inf/NaN, one layer at the ceiling
FLOOR = "#80cbc4"  # floor-accepted elements: small hollow diamonds, muted (accepted, yet far past max_ulp)
OLDER = "#9e9e9e"  # an older version's elements: grey rings under the newest's points
DIFFERS = "#000000"  # the elements whose error differs between the versions: black rings
REFERENCE_WIDTH = 1.2
POINT = 2.2  # marker size (points) of an element

# layout, in inches
PANEL_HEIGHT = 0.72
TITLE_HEIGHT = 0.22
LEFT = 0.7
RIGHT = 0.14
BOTTOM = 0.42
HEADER = 0.24  # the figure's title line
LEGEND_ROW = 0.19
COLUMN_WIDTH = {1: 7.6, 2: 7.2}  # per dtype column; 3 or more: 5.4


def _rc():
    """Matplotlib's defaults plus ``RC``: a user's matplotlibrc or style never reaches the bytes."""
    import matplotlib.style

    return matplotlib.style.context(["default", RC])


def _plain(text: str) -> str:
    """A label matplotlib shows as written: a pair of ``$`` would start mathtext."""
    return text.replace("$", r"\$")


# ---------------------------------------------------------------- bins


def ulp_bin(value: float) -> int:
    """The histogram bin of a max ULP error."""
    value = float(value)
    if not math.isfinite(value):
        return len(BIN_LABELS) - 1
    if value <= 0:
        return 0
    for i, edge in enumerate(BIN_EDGES):
        if value <= edge:
            return i + 1
    return len(BIN_EDGES) + 1


# ---------------------------------------------------------------- axes helpers


def _elements(result: Result) -> dict[str, np.ndarray]:
    data = result.elements or {}
    n = min(len(data.get(k) or []) for k in ("x", "got", "ulp"))
    out = {}
    for key in ("x", "target", "got", "want", "ulp"):
        values = list(data.get(key) or [])[:n]
        values += [math.nan] * (n - len(values))
        out[key] = np.asarray([math.nan if v is None else float(v) for v in values], dtype=float)
    return out


def _finite_abs(values: list[np.ndarray]) -> np.ndarray:
    parts = [np.abs(v[np.isfinite(v)]) for v in values]
    return np.concatenate(parts) if parts else np.array([])


def _symlog_threshold(values: list[np.ndarray], floor: float = VALUE_FLOOR) -> float:
    """The smallest nonzero magnitude (no less than ``floor``, no more than 1): the log region's bottom."""
    magnitudes = _finite_abs(values)
    magnitudes = magnitudes[magnitudes > 0]
    if magnitudes.size == 0:
        return 1.0
    return float(min(max(magnitudes.min(), floor), 1.0))


def _ceiling(values: list[np.ndarray], floor: float) -> float:
    """A power of ten a decade above every finite magnitude: where inf and NaN are drawn."""
    magnitudes = _finite_abs(values)
    largest = max(float(magnitudes.max()) if magnitudes.size else 0.0, floor)
    # at most 1e300 (the axes reach 3× the ceiling; a float64 error of 1e308 ULP is real): larger values are clipped to it
    return 10.0 ** min(math.ceil(math.log10(largest)) + 1, CEILING_EXPONENT)


def _tick_label(value: float, _position=None) -> str:
    """Plain-text tick labels (``1e-40``, ``0.5``, ``-100``): no mathtext, which is slow to lay out."""
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)) + 1e-9)
    if abs(abs(value) / 10.0**exponent - 1) < 1e-6 and not -2 <= exponent <= 3:
        return f"{'-' if value < 0 else ''}1e{exponent}"
    return f"{value:g}"


def _symlog(
    ax, which: str, linthresh: float, top: float, bottom: float = 0.0, max_ticks: int = MAX_TICKS, linear_share=10
) -> None:
    """A symlog axis with the linear part around 0 a ``1/linear_share`` of the decades shown (so 0 stands
    apart) and fixed ticks: 0, then at most ``max_ticks`` powers of ten per sign, as plain text."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    low = math.ceil(math.log10(linthresh) - 1e-9)
    high = math.floor(math.log10(top) + 1e-9)
    needed = math.ceil((high - low + 1) / max_ticks)
    step = next((n for n in NICE_STEPS if n >= needed), needed)
    exponents = [k for k in range(low, high + 1) if k % step == 0]
    ticks = [0.0] + [10.0**k for k in exponents]
    if bottom < 0:
        ticks += [-(10.0**k) for k in exponents if 10.0**k <= -bottom]
    scale = ax.set_xscale if which == "x" else ax.set_yscale
    scale("symlog", linthresh=linthresh, linscale=max(1.0, (high - low + 1) / linear_share))
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(FixedLocator(sorted(ticks)))
    axis.set_major_formatter(FuncFormatter(_tick_label))
    axis.set_minor_locator(NullLocator())


# ---------------------------------------------------------------- the sweep figures' model

DTYPE_ORDER = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3}


def dtype_key(dtype: str) -> tuple:
    return (DTYPE_ORDER.get(dtype, 9), dtype)


def _tolerance(dtype: str):
    from conformance.verdicts import tolerance_for

    try:
        return tolerance_for(dtype)
    except KeyError:  # a dtype tolerances.yaml does not know: no band, no floor
        return None


@dataclass
class Series:
    """One result's elements, ready to draw: x on the plotted axis, and which are floor-accepted or inf/NaN."""

    run: RunReport
    result: Result
    x: np.ndarray  # the plotted variable (x, or 1 − p for probabilities near 1)
    target: np.ndarray  # the target each element is coloured by (``_target_keys``)
    want: np.ndarray
    ulp: np.ndarray
    floor: np.ndarray  # bool: past the tolerance, within the absolute floor (accepted through it)
    nonfinite: np.ndarray  # bool: the error is inf or NaN (the result inf or NaN where the exact value is not)

    def informative_max(self) -> float:
        """The largest error of its elements, floor-accepted and unmeasured ones aside; inf for inf/NaN."""
        if self.nonfinite.any():
            return math.inf
        kept = self.ulp[~self.floor & np.isfinite(self.ulp)]
        return float(kept.max()) if kept.size else 0.0


@dataclass
class Panel:
    """A (framework, API) row's cell for one dtype: its results at one or more versions, oldest first."""

    framework: str
    api: str
    dtype: str
    series: list[Series]
    differs: np.ndarray | None = None  # bool over the newest's elements: the error differs in an older version
    # per older series, bool over its elements: its error differs from the newest's (only those are drawn)
    older_differs: list[np.ndarray] = field(default_factory=list)

    @property
    def newest(self) -> Series:
        return self.series[-1]


@dataclass
class SweepFigure:
    case: str
    quantity: str
    dtypes: list[str]
    rows: list[tuple[str, str]]  # (framework, API) in the runs' and their APIs' order
    panels: dict[tuple[str, str, str], Panel]  # (framework, API, dtype) -> panel
    axis_label: str
    targets: list[float]  # the finite target values, sorted
    sampled: int = 0  # the elements the largest sampled sweep had before its elements were sampled
    items: list[tuple[RunReport, Result]] = field(default_factory=list)

    @property
    def frameworks(self) -> list[str]:
        return list(dict.fromkeys(fw for fw, _ in self.rows))

    @property
    def states(self) -> list[str]:
        return sorted({state_of(r.verdict) for _, r in self.items})

    @property
    def problems(self) -> int:
        return sum(is_problem(r.verdict) for _, r in self.items)

    def order_key(self) -> tuple:
        """Problems first (the most first), then known divergences (the most results first), then the rest; then
        the largest error (floor-accepted elements aside) first; then the case and quantity."""
        group = 0 if self.problems else 1 if "known_divergence" in self.states else 2
        worst = max((s.informative_max() for p in self.panels.values() for s in p.series), default=0.0)
        diverging = sum(r.verdict == "known_divergence" for _, r in self.items)
        return (group, -self.problems, -diverging, -worst, self.case, quantity_order(self.quantity))

    @property
    def anchor(self) -> str:
        return "sweep-" + re.sub(r"[^A-Za-z0-9]+", "-", f"{self.case}-{self.quantity}").strip("-").lower()


def _axis_variable(xs: list[np.ndarray], probabilities: bool) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """What the x axis shows: the input, or 1 − p where every probability is at least 1/2 (near 1 the
    probabilities themselves all print as 1; 1 − p is exact there)."""
    finite = np.concatenate([x[np.isfinite(x)] for x in xs]) if xs else np.array([])
    if probabilities and finite.size and finite.min() >= 0.5:
        return (lambda x: 1.0 - x), "1 − p (probability p)"
    return (lambda x: x), "probability p" if probabilities else "logit x"


def _floor_mask(result: Result, e: dict[str, np.ndarray]) -> np.ndarray:
    """The elements accepted only through the absolute floor: past max_ulp, within abs_floor of the exact value
    (the verdict counted them in ``floor_accepted``; only a result that has some is looked at)."""
    tolerance = _tolerance(result.dtype)
    if not result.floor_accepted or tolerance is None:
        return np.zeros(e["ulp"].shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        return (e["ulp"] > tolerance.max_ulp) & (np.abs(e["got"] - e["want"]) <= tolerance.abs_floor)


def _differs(older: Series, newer: Series) -> np.ndarray:
    """Over the newer's elements: the error differs from the older's at the same (x, target) (NaN equals NaN;
    an element the older lacks differs)."""
    same_grid = older.x.shape == newer.x.shape and all(
        np.array_equal(a, b, equal_nan=True) for a, b in ((older.x, newer.x), (older.target, newer.target))
    )
    if same_grid:
        old = older.ulp
    else:
        lookup = {(float(x), float(t)): u for x, t, u in zip(older.x, older.target, older.ulp)}
        old = np.asarray([lookup.get((float(x), float(t)), -1.0) for x, t in zip(newer.x, newer.target)])
    both_nan = np.isnan(old) & np.isnan(newer.ulp)
    return ~both_nan & (old != newer.ulp)


def _target_keys(items: list[tuple[RunReport, Result]], raw: dict[int, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Per dtype, target -> the value it is coloured as: its float32 rounding, so that a float64 case's 1e-7 and
    a float32 case's are one target to a reader, except where that would merge two targets of the dtype
    (float64's 1 − 2^-53 and 1 stay apart)."""
    by_dtype: dict[str, set[float]] = {}
    for _, r in items:
        target = raw[id(r)]["target"]
        by_dtype.setdefault(r.dtype, set()).update(target[np.isfinite(target)].tolist())
    keys = {}
    for dtype, targets in by_dtype.items():
        with np.errstate(over="ignore"):
            rounded = {t: float(np.float32(t)) for t in targets}
        counts: dict[float, int] = {}
        for value in rounded.values():
            counts[value] = counts.get(value, 0) + 1
        keys[dtype] = {t: rounded[t] if counts[rounded[t]] == 1 else t for t in targets}
    return keys


def _keyed(target: np.ndarray, keys: dict[float, float]) -> np.ndarray:
    values, inverse = np.unique(target, return_inverse=True)
    mapped = np.asarray([keys.get(float(v), math.nan) for v in values], dtype=float)
    return mapped[inverse.reshape(target.shape)] if target.size else target


def _target_labels(targets: list[float]) -> dict[float, str]:
    """Each target as the shortest %g that tells it from the figure's other targets (``0.5``, ``1e-07``, ``1``
    next to ``0.9999999999999999``)."""
    labels = {}
    for t in targets:
        others = [u for u in targets if u != t]
        digits = next((d for d in range(3, 18) if all(f"{t:.{d}g}" != f"{u:.{d}g}" for u in others)), 17)
        labels[t] = f"{t:.{digits}g}"
    return labels


def sweep_model(case: str, quantity: str, items: list[tuple[RunReport, Result]]) -> SweepFigure:
    """The figure's panels: rows of (framework, API) in run order, a column per dtype."""
    items = sorted(items, key=lambda rr: (rr[0].index, rr[1].id))
    dtypes = sorted({r.dtype for _, r in items}, key=dtype_key)
    api_order = {run.index: {api: i for i, api in enumerate(run.apis)} for run, _ in items}
    raw = {id(r): _elements(r) for _, r in items}
    keys = _target_keys(items, raw)
    probabilities = all(r.op == "bce" for _, r in items)
    transform, label = _axis_variable([raw[id(r)]["x"] for _, r in items], probabilities)
    rows: dict[tuple[str, str], tuple] = {}
    panels: dict[tuple[str, str, str], Panel] = {}
    sampled = 0
    for run, r in items:  # in run order: for a framework's runs, oldest first
        e = raw[id(r)]
        rows.setdefault((run.framework, r.api), (run.index, api_order[run.index].get(r.api, 0), r.api))
        with np.errstate(invalid="ignore"):
            target = _keyed(e["target"], keys[r.dtype])
            series = Series(
                run, r, transform(e["x"]), target, e["want"], e["ulp"], _floor_mask(r, e), ~np.isfinite(e["ulp"])
            )
        key = (run.framework, r.api, r.dtype)
        panels.setdefault(key, Panel(run.framework, r.api, r.dtype, [])).series.append(series)
        sampled = max(sampled, int((r.elements or {}).get("sampled_from") or 0))
    for panel in panels.values():
        if len(panel.series) > 1:
            differs = np.zeros(panel.newest.ulp.shape, dtype=bool)
            for older in panel.series[:-1]:
                differs |= _differs(older, panel.newest)
                panel.older_differs.append(_differs(panel.newest, older))
            panel.differs = differs
    targets = sorted({float(t) for p in panels.values() for s in p.series for t in s.target if math.isfinite(t)})
    ordered = sorted(rows, key=lambda k: rows[k])
    return SweepFigure(case, quantity, dtypes, ordered, panels, label, targets, sampled, items)


# ---------------------------------------------------------------- drawing


def _target_colors(targets: list[float]):
    """target -> colour when there are few; else (colour map, norm) for a colour bar."""
    if len(targets) <= len(TARGET_COLORS):
        return {t: TARGET_COLORS[i] for i, t in enumerate(targets)}, None
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    return None, (colormaps[MANY_TARGETS_CMAP], Normalize(min(targets), max(targets)))


def _x_scale(ax, xs: list[np.ndarray]) -> list[float] | None:
    """Symlog where the plotted values span three decades or more (the linear part holds up to the
    smallest nonzero magnitude); linear otherwise. The fixed ticks of a symlog axis (None: linear)."""
    from matplotlib.ticker import MaxNLocator

    magnitudes = _finite_abs(xs)
    nonzero = magnitudes[magnitudes > 0]
    # the smallest float64 subnormals would overflow the scale's arithmetic: the linear part starts by 1e-300
    low = float(max(nonzero.min(), 1e-300)) if nonzero.size else 1.0
    if (
        nonzero.size
        and math.log10(nonzero.max()) - math.log10(low) >= 3
        and magnitudes.size == nonzero.size
        and all((x[np.isfinite(x)] > 0).all() for x in xs)
    ):  # all positive: a log axis, the ticks powers of ten
        _log_x(ax, low, float(nonzero.max()))
        return list(ax.xaxis.get_major_locator().tick_values(low, float(nonzero.max())))
    if nonzero.size and math.log10(nonzero.max()) - math.log10(low) >= 3:
        negatives = _finite_abs([np.minimum(x, 0) for x in xs])
        bottom = -float(negatives.max()) if negatives.size and negatives.max() > 0 else 0.0
        top = float(max(nonzero.max(), -bottom))
        _symlog(ax, "x", low, top, bottom, max_ticks=4 if bottom < 0 else 7, linear_share=30)
        return list(ax.xaxis.get_major_locator().tick_values(bottom, top))
    ax.xaxis.set_major_locator(MaxNLocator(6))
    return None


def _log_x(ax, low: float, high: float, max_ticks: int = 7) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    first, last = math.floor(math.log10(low) + 1e-9), math.ceil(math.log10(high) - 1e-9)
    needed = math.ceil((last - first + 1) / max_ticks)
    step = next((n for n in NICE_STEPS if n >= needed), needed)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator([10.0**k for k in range(first, last + 1) if k % step == 0]))
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_label))
    ax.xaxis.set_minor_locator(NullLocator())


def _share_x(column: list, xs: list[np.ndarray]) -> None:
    """One x axis for a dtype's column: the same scale and limits in every panel, the ticks and their labels on
    the bottom one only, faint vertical lines at the ticks above it. (Sharing the axis would give every panel
    its own ticks: tick artists are a third of the drawing time.)"""
    from matplotlib.collections import LineCollection
    from matplotlib.ticker import NullLocator

    for ax in column:
        _x_scale(ax, xs)
    limits = [ax.get_xlim() for ax in column]
    low, high = min(lim[0] for lim in limits), max(lim[1] for lim in limits)
    bottom = column[-1]
    ticks = [t for t in bottom.xaxis.get_major_locator().tick_values(low, high) if low <= t <= high]
    for ax in column:
        ax.set_xlim(low, high)
        if ax is not bottom:
            ax.xaxis.set_major_locator(NullLocator())
            ax.xaxis.set_minor_locator(NullLocator())
        segments = [((t, 0.0), (t, 1.0)) for t in ticks]
        ax.add_collection(
            LineCollection(segments, transform=ax.get_xaxis_transform(), colors="#e6e6e6", linewidths=0.5, zorder=0),
            autolim=False,
        )


def _guides(ax, ceiling: float, band: float | None) -> None:
    """The tolerance band (0..max_ulp) and a dotted line at the inf/NaN ceiling, spanning the panel. (Added as
    plain artists: axhspan and axhline cost a few milliseconds each in autoscaling bookkeeping.)"""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    across = ax.get_yaxis_transform()  # x in axes coordinates, y in data
    if band is not None:
        ax.add_patch(Rectangle((0.0, 0.0), 1.0, band, transform=across, facecolor=BAND, edgecolor="none", zorder=0))
    ax.add_line(Line2D([0.0, 1.0], [ceiling, ceiling], transform=across, color="#bdbdbd", linewidth=0.5,
                       linestyle=(0, (2, 2)), zorder=1))  # fmt: skip


ULP_CLIP = 1e18  # finite errors past it are drawn at it, labelled "≥1e18": past 2^53 ULPs a result is all wrong


def _ulp_levels(ulps: list[np.ndarray]) -> tuple[float, float]:
    """(top, ceiling): finite errors are drawn up to ``top`` (clipped there past ``ULP_CLIP``), inf and NaN at the
    ceiling, a decade above (so that a figure with one astronomical error keeps a readable scale)."""
    finite = _finite_abs(ulps)
    top = ULP_CLIP if finite.size and finite.max() > ULP_CLIP else _ceiling(ulps, 100.0) / 10
    # the ceiling a quarter of the decades above, at least one: its label clear of the top's
    return top, top * 10.0 ** max(1, round(math.log10(top) / 4))


def _ulp_ticks(top: float, ceiling: float) -> tuple[list[float], list[str]]:
    """The error axis's ticks: 0, at most three powers of ten, the clip's ``≥1e18`` where errors were clipped, and
    the ceiling labelled inf/NaN."""
    high = round(math.log10(top))
    decades = list(range(high + (top != ULP_CLIP)))
    step = max(1, math.ceil(len(decades) / 3))
    shown = [k for k in decades if k % step == 0]
    ticks = [0.0] + [10.0**k for k in shown]
    labels = ["0"] + [_tick_label(10.0**k) for k in shown]
    if top == ULP_CLIP:
        ticks.append(top)
        labels.append(f"≥{_tick_label(top)}")
    return ticks + [ceiling], labels + ["inf/NaN"]


def _ulp_axis(ax, ticks: list[float], labels: list[str], ceiling: float) -> None:
    """The error axis (shared by every error panel): symlog from 0 (linear up to 1 ULP) to past the ceiling."""
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator

    ax.set_yscale("symlog", linthresh=1.0, linscale=max(1.0, math.log10(ceiling) / 5))
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FixedFormatter(labels))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylim(-0.25, ceiling * 2.5)


def _drawn_axes(ax, ticks: list[float], labels: list[str] | None, width_in: float) -> None:
    """A panel's frame, y ticks and their labels drawn as three plain artists, its axes turned off: matplotlib's
    own axes cost half of a panel's drawing time (tick objects, label layout), and every error panel but the
    bottom one has the same y axis and no x labels. It looks like the bottom panel's real one."""
    from matplotlib.collections import LineCollection
    from matplotlib.transforms import offset_copy

    ax.set_axis_off()
    across = ax.get_yaxis_transform()  # x in axes coordinates, y in data
    length = RC["ytick.major.size"] / 72 / width_in
    frame = [((0.0, 0.0), (0.0, 1.0)), ((0.0, 0.0), (1.0, 0.0))]
    ax.add_collection(LineCollection(frame, transform=ax.transAxes, colors="black", linewidths=RC["axes.linewidth"],
                                     clip_on=False, zorder=2.5), autolim=False)  # fmt: skip
    marks = [((-length, t), (0.0, t)) for t in ticks]
    ax.add_collection(LineCollection(marks, transform=across, colors="black", linewidths=RC["ytick.major.width"],
                                     clip_on=False), autolim=False)  # fmt: skip
    if labels is None:
        return
    shifted = offset_copy(across, fig=ax.get_figure(), x=-(RC["ytick.major.size"] + 3.5), units="points")
    for t, label in zip(ticks, labels):
        ax.text(
            0.0, t, label, transform=shifted, ha="right", va="center", fontsize=RC["ytick.labelsize"], clip_on=False
        )


def _points(ax, x, y, color, gid, **kwargs):
    """One marker layer, its gid naming it; not clipped: every point lies within the limits, and a marker on the
    edge (the smallest subnormal on a log axis) is drawn whole."""
    if x.size:
        (line,) = ax.plot(
            x, y, linestyle="none", marker=kwargs.pop("marker", "o"), markersize=kwargs.pop("markersize", POINT),
            markeredgewidth=kwargs.pop("markeredgewidth", 0), color=color, rasterized=True, clip_on=False, **kwargs,
        )  # fmt: skip
        line.set_gid(gid)


def _draw_older(ax, s: Series, differs: np.ndarray, top: float, ceiling: float) -> None:
    """An older version's elements whose error differs from the newest's: grey rings (inf/NaN at the ceiling)."""
    shown = differs & np.isfinite(s.x)
    y = np.where(s.nonfinite, ceiling, np.clip(s.ulp, 0.0, top))
    _points(ax, s.x[shown], y[shown], OLDER, "older-version", marker="o", markersize=POINT + 2.0,
            markerfacecolor="none", markeredgewidth=0.7, zorder=2)  # fmt: skip


def _draw_series(ax, s: Series, colors, cmap, top: float, ceiling: float) -> None:
    """One result's elements: targets as colours, floor-accepted elements as hollow diamonds, inf/NaN as one
    layer at the ceiling."""
    plain = ~s.floor & ~s.nonfinite & np.isfinite(s.x)
    y = np.clip(s.ulp, 0.0, top)
    if colors is not None:
        for t, color in colors.items():
            mask = plain & (s.target == t)
            _points(ax, s.x[mask], y[mask], color, f"target {t:g}", zorder=3)
        mask = plain & ~np.isfinite(s.target)
        _points(ax, s.x[mask], y[mask], NAN_TARGET, "target NaN", zorder=3)
    elif plain.any():
        cm, norm = cmap
        layer = ax.scatter(
            s.x[plain], y[plain], c=s.target[plain], cmap=cm, norm=norm, s=POINT**2, linewidths=0, rasterized=True,
            zorder=3, plotnonfinite=True,
        )  # fmt: skip
        layer.set_gid("targets")
    _points(
        ax, s.x[s.floor], y[s.floor], FLOOR, "floor-accepted", marker="D", markersize=POINT + 0.6,
        markerfacecolor="none", markeredgewidth=0.5, zorder=3,
    )  # fmt: skip
    _points(
        ax, s.x[s.nonfinite & np.isfinite(s.x)], np.full(int((s.nonfinite & np.isfinite(s.x)).sum()), ceiling),
        NONFINITE, "inf-nan", marker="x", markersize=POINT + 1.0, markeredgewidth=0.8, zorder=4,
    )  # fmt: skip


CHAR_WIDTH = 4.3  # points: DejaVu Sans's mean advance at the titles' 8 points, to fit the two titles in a panel


def _verdict_text(r: Result) -> str:
    name = STATE_NAMES.get(state_of(r.verdict), r.verdict)
    if r.verdict in ("unexpected_pass", "error"):
        name = r.verdict.replace("_", " ")
    return f"{name} · max {_ulp(r.max_ulp)}" if r.max_ulp is not None else name


def _panel_title(ax, panel: Panel, named: bool, width_in: float) -> None:
    """Left (on a row's first panel only: the dtype columns to its right are the same API): framework · API,
    the newest version named where there are several; right, in the verdict's colour: the newest's verdict and
    largest error, and whether the older versions' errors differ. A name too long for the width the verdict
    leaves is cut with an ellipsis."""
    newest = panel.newest
    text = _verdict_text(newest.result)
    if len(panel.series) > 1:
        n = int(panel.differs.sum()) if panel.differs is not None else 0
        old = ", ".join(s.run.label.removeprefix(panel.framework + " ") for s in panel.series[:-1])
        text += f" · {old}: " + (f"{n} differ" if n else "same")
    ax.set_title(_plain(text), loc="right", color=STATE_COLORS[state_of(newest.result.verdict)])
    if not named:
        return
    name = f"{newest.run.label if len(panel.series) > 1 else panel.framework} · {panel.api}"
    room = max(24, int(width_in * 72 / CHAR_WIDTH) - len(text) - 3)
    if len(name) > room:
        name = name[: room - 1] + "…"
    ax.set_title(_plain(name), loc="left")


def sweep_figure(model: SweepFigure):
    """The matplotlib Figure of one sweep case and quantity (see the module's docstring)."""
    from matplotlib.figure import Figure  # no pyplot: no global figure list to leak into
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ncols = len(model.dtypes)
    nrows = len(model.rows) + 1
    column = COLUMN_WIDTH.get(ncols, 5.4)
    colors, cmap = _target_colors(model.targets)
    tolerances = {d: _tolerance(d) for d in model.dtypes}
    every = [s for p in model.panels.values() for s in p.series]
    top_ulp, ceiling = _ulp_levels([s.ulp for s in every])
    has = {
        "floor": any(s.floor.any() for s in every),
        "nonfinite": any(s.nonfinite.any() for s in every),
        "older": any(m.any() for p in model.panels.values() for m in p.older_differs),
        "differs": any(p.differs is not None and p.differs.any() for p in model.panels.values()),
    }
    handles = []
    if colors is not None:
        names = _target_labels(list(colors))
        handles += [
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=4,
                markeredgewidth=0,
                color=c,
                label=f"target {names[t]}",
            )
            for t, c in colors.items()
        ]
    bands = sorted({t.max_ulp for t in tolerances.values() if t is not None})
    if bands:
        handles.append(Patch(facecolor=BAND, label=f"tolerance: ≤ {' / '.join(f'{b:g}' for b in bands)} ULP"))
    if has["floor"]:
        handles.append(Line2D([], [], linestyle="none", marker="D", markersize=4, markerfacecolor="none", markeredgewidth=0.8,
                              color=FLOOR, label="floor-accepted (|error| ≤ abs floor)"))  # fmt: skip
    if has["nonfinite"]:
        handles.append(Line2D([], [], linestyle="none", marker="x", markersize=4, markeredgewidth=0.9, color=NONFINITE,
                              label="inf / NaN (at the ceiling)"))  # fmt: skip
    if has["older"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=5, markerfacecolor="none", markeredgewidth=0.7,
                              color=OLDER, label="older version, where it differs"))  # fmt: skip
    if has["differs"]:
        handles.append(Line2D([], [], linestyle="none", marker="o", markersize=6, markerfacecolor="none", markeredgewidth=0.9,
                              color=DIFFERS, label="newest version, where it differs"))  # fmt: skip
    width = LEFT + RIGHT + column * ncols
    legend_cols = max(1, int((width - LEFT) / 1.75))
    legend_rows = math.ceil(len(handles) / legend_cols) if handles else 0
    top = HEADER + LEGEND_ROW * legend_rows + (0.3 if cmap is not None else 0.0) + TITLE_HEIGHT
    height = top + nrows * PANEL_HEIGHT + (nrows - 1) * TITLE_HEIGHT + BOTTOM
    with _rc():
        fig = Figure(figsize=(width, height), dpi=DPI)
        grid = fig.add_gridspec(
            nrows, ncols, left=LEFT / width, right=1 - RIGHT / width, bottom=BOTTOM / height, top=1 - top / height,
            hspace=TITLE_HEIGHT / PANEL_HEIGHT, wspace=0.12 * (ncols > 1),
        )  # fmt: skip
        first_ulp = None
        named: set[tuple[str, str]] = set()  # the rows whose API a panel's title already names
        ulp_ticks, ulp_labels = _ulp_ticks(top_ulp, ceiling)
        for c, dtype in enumerate(model.dtypes):
            column_series = [s for (fw, api, d), p in model.panels.items() if d == dtype for s in p.series]
            xs = [s.x for s in column_series]
            ref = fig.add_subplot(grid[0, c])
            ref.set_label(f"reference:{dtype}")
            _reference(ref, column_series, colors, cmap, dtype, model.quantity)
            column = [ref]
            tolerance = tolerances[dtype]
            for r, (framework, api) in enumerate(model.rows, start=1):
                ax = fig.add_subplot(grid[r, c], sharey=first_ulp)
                ax.set_label(f"error:{framework}:{api}:{dtype}")
                column.append(ax)
                if first_ulp is None:
                    first_ulp = ax
                    _ulp_axis(ax, ulp_ticks, ulp_labels, ceiling)
                _guides(ax, ceiling, tolerance.max_ulp if tolerance is not None else None)
                panel = model.panels.get((framework, api, dtype))
                if panel is None:
                    ax.text(0.5, 0.5, "no result", transform=ax.transAxes, ha="center", va="center", color="#9e9e9e")
                else:
                    for older, mask in zip(panel.series[:-1], panel.older_differs):
                        _draw_older(ax, older, mask, top_ulp, ceiling)
                    _draw_series(ax, panel.newest, colors, cmap, top_ulp, ceiling)
                    if panel.differs is not None and panel.differs.any():
                        s, d = panel.newest, panel.differs & np.isfinite(panel.newest.x)
                        _points(
                            ax, s.x[d], np.where(np.isfinite(s.ulp[d]), np.clip(s.ulp[d], 0, top_ulp), ceiling), DIFFERS, "differs",
                            marker="o", markersize=POINT + 2.4, markerfacecolor="none", markeredgewidth=0.5, zorder=5,
                        )  # fmt: skip
                    _panel_title(ax, panel, (framework, api) not in named, ax.get_position().width * width)
                    named.add((framework, api))
                if r < nrows - 1:
                    _drawn_axes(ax, ulp_ticks, ulp_labels if c == 0 else None, ax.get_position().width * width)
                elif c > 0:
                    ax.tick_params(labelleft=False)
            _share_x(column, xs)
            column[-1].set_xlabel(_plain(model.axis_label))
        fig.text(0.006, 1 - (HEADER * 0.55) / height, _plain(f"{model.case} · {model.quantity}"), fontsize=10,
                 fontweight="bold", va="center")  # fmt: skip
        fig.text(0.006, (BOTTOM + (nrows - 1) * (PANEL_HEIGHT + TITLE_HEIGHT) / 2) / height, "error (ULP)",
                 rotation=90, va="center", fontsize=8)  # fmt: skip
        if handles:
            fig.legend(
                handles=handles, loc="upper left", bbox_to_anchor=(LEFT / width, 1 - HEADER / height), ncols=legend_cols,
                frameon=False, handletextpad=0.3, columnspacing=1.2, borderaxespad=0, borderpad=0, labelspacing=0.3,
            )  # fmt: skip
        if cmap is not None:
            from matplotlib.cm import ScalarMappable

            below = HEADER + LEGEND_ROW * legend_rows + 0.02  # inches from the top: the bar's top edge
            cax = fig.add_axes(((LEFT + 0.45) / width, 1 - (below + 0.07) / height, 2.4 / width, 0.07 / height))
            cax.set_label("colorbar")
            bar = fig.colorbar(ScalarMappable(norm=cmap[1], cmap=cmap[0]), cax=cax, orientation="horizontal")
            bar.ax.tick_params(labelsize=7, length=2, pad=1)
            fig.text(LEFT / width, 1 - (below + 0.035) / height, "target", va="center", fontsize=7.5)
    return fig


def _reference(ax, series: list[Series], colors, cmap, dtype: str, quantity: str) -> None:
    """The exact value (correctly rounded) against x, a line per target, on a symlog axis."""
    source = series[0] if series else None
    wants = [source.want] if source is not None else []
    top = _ceiling(wants, 1.0) / 10  # a decade above the largest magnitude
    negatives = _finite_abs([np.minimum(w, 0) for w in wants])
    bottom = (
        -(10.0 ** min(math.ceil(math.log10(negatives.max())), CEILING_EXPONENT))
        if negatives.size and negatives.max() > 0
        else 0.0
    )
    _symlog(ax, "y", _symlog_threshold(wants), top, bottom, max_ticks=2 if bottom < 0 else 4)
    ax.set_ylim(bottom * 1.2 if bottom < 0 else -_symlog_threshold(wants) * 0.5, top * 1.5)
    name = "loss" if quantity == "value" else f"∂loss ({quantity})"
    ax.set_title(_plain(f"exact value, correctly rounded to {dtype}: {name}"), loc="left")
    if source is None:
        return
    s = source
    finite = np.isfinite(s.x) & np.isfinite(s.want)
    if colors is not None:
        for t, color in colors.items():
            idx = np.nonzero(finite & (s.target == t))[0]
            idx = idx[np.argsort(s.x[idx], kind="stable")]
            if idx.size:
                (line,) = ax.plot(s.x[idx], s.want[idx], color=color, linewidth=REFERENCE_WIDTH, zorder=2)
                line.set_gid(f"exact target {t:g}")
    else:
        cm, norm = cmap
        layer = ax.scatter(s.x[finite], s.want[finite], c=s.target[finite], cmap=cm, norm=norm, s=2, linewidths=0,
                           rasterized=True, zorder=2)  # fmt: skip
        layer.set_gid("exact")


def _palette() -> list[int]:
    """The PNG's fixed palette: every colour the figures use, each also mixed with white at three levels (the
    anti-aliased edges on the white ground), the colour map's samples, and greys. Fixed, not fitted to the image:
    a fitted palette (median cut) merges a colour that covers few pixels, such as one target's few points, into
    its neighbour."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    bases = [*TARGET_COLORS, NAN_TARGET, BAND, NONFINITE, FLOOR, OLDER, DIFFERS, *STATE_COLORS.values()]
    rgb = [np.asarray(to_rgb(c)) for c in bases]
    colours = [c * (1 - a) + a for c in rgb for a in (0.0, 0.25, 0.5, 0.75)]
    colours += [np.asarray(colormaps[MANY_TARGETS_CMAP](i / 15)[:3]) for i in range(16)]
    colours += [np.full(3, level / 31) for level in range(32)]
    flat = [round(float(v) * 255) for c in colours for v in c]
    return flat + flat[:3] * (256 - len(colours))  # padded with repeats of the first entry


PALETTE = None  # the palette image, built on first use


def png(fig) -> bytes:
    """The figure's PNG bytes: Agg at ``DPI``, mapped to the fixed palette (``_palette``; a third of the RGBA
    file's size), no metadata: the same figure gives the same bytes."""
    global PALETTE
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    if PALETTE is None:
        PALETTE = Image.new("P", (1, 1))
        PALETTE.putpalette(_palette())
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])
    image = rgb.quantize(palette=PALETTE, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # optimize=True: 3 % smaller, five times slower
    return buffer.getvalue()


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR."""
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def figure_html(model: SweepFigure) -> str:
    """``<figure class="plot" ...>`` with the PNG inline, its id the case and quantity's anchor."""
    # symlog's inverse overflows to inf on the limits of an axis spanning 600 decades (float64 subnormals):
    # harmless there (the limits are clipped), and no warning for the report's reader
    with np.errstate(over="ignore", invalid="ignore"):
        data = png(sweep_figure(model))
    width, height = _png_size(data)
    results = len(model.items)
    caption = f"<b>{esc(model.case)}</b> · {esc(model.quantity)} · {esc(', '.join(model.dtypes))} · {results} results"
    if model.problems:
        caption += f' · <span class="n fail">{model.problems} problems</span>'
    if model.sampled:
        caption += f" · elements sampled from {model.sampled} (each bin's first and worst)"
    alt = (
        f"{model.case}, {model.quantity}: the exact value, then each API's error in ULPs against "
        f"{model.axis_label}, per dtype ({', '.join(model.dtypes)})"
    )
    return (
        f'<figure class="plot" id="{model.anchor}" data-framework="{esc(" ".join(model.frameworks))}" '
        f'data-dtype="{esc(" ".join(model.dtypes))}" data-quantity="{esc(model.quantity)}" '
        f'data-outcome="{esc(" ".join(model.states))}"><figcaption>{caption}</figcaption>'
        f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{esc(alt)}" '
        f'width="{width}" height="{height}"></figure>'
    )


SWEEPS_NOTE = (
    "One figure per sweep case and quantity, most informative first: those with a problem (fail, unexpected "
    "pass, error; the most first), then those with known divergences (the most diverging results first), then the "
    "rest; ties by the largest error (floor-accepted elements aside). Top row: the exact value correctly rounded, a line per target. Below, a panel per "
    "framework · API and dtype: each element's error in ULPs (symlog; linear up to 1 ULP) against the input; "
    "the green band is the tolerance, so a point above it is an element past the tolerance. inf and NaN results "
    "are the red crosses at the ceiling; hollow diamonds are floor-accepted elements (past the tolerance in ULPs, "
    "within the absolute floor, e.g. a flushed subnormal). A framework run at two versions shares one panel: "
    "the newest in colour; where an element's error differs, the older's as a grey ring and the newest's ringed "
    "in black."
)


def sweep_models(report: Report) -> list[SweepFigure]:
    """Every (sweep case, quantity)'s figure model, most informative first (``SweepFigure.order_key``)."""
    models = []
    for case, rows in report.sweeps.items():
        by_quantity: dict[str, list[tuple[RunReport, Result]]] = {}
        for run, result in rows:
            by_quantity.setdefault(result.quantity, []).append((run, result))
        models += [sweep_model(case, q, items) for q, items in by_quantity.items()]
    return sorted(models, key=SweepFigure.order_key)


def sweep_sections(report: Report) -> list[str]:
    """The sweeps' section: a heading, the note saying the order, then a ``<figure class="plot">`` per sweep
    case and quantity."""
    out = ['<h2 id="sweeps">Sweeps</h2>']
    if not report.sweeps:
        out.append('<p class="note">No sweep case in these results (a case whose results carry every element\'s '
                   "input, value and error, such as cases/logit_sweep.yaml).</p>")  # fmt: skip
        return out
    models = sweep_models(report)
    out.append(f'<p class="note">{esc(SWEEPS_NOTE)}</p>')
    links = " · ".join(f'<a href="#{m.anchor}">{esc(m.case)} · {esc(m.quantity)}</a>' for m in models)
    out.append(f'<p class="note">{links}</p>')
    out += cached_figures(report, models)
    return out


FIGURES_KIND = "sweep-figures"


def _libraries() -> dict[str, str]:
    """What the figures' bytes depend on beyond the results and this package: the drawing and encoding libraries."""
    import matplotlib
    import PIL
    from matplotlib import ft2font

    return {
        "python": sys.version,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "freetype": ft2font.__freetype_version__,
        "pillow": PIL.__version__,
    }


def cached_figures(report: Report, models: list[SweepFigure]) -> list[str]:
    """``render_figures(models)``, or the figures rendered before from the same results files by the same code and
    libraries (``cache.outputs_key``: their bytes, the package's sources, the libraries' versions; MAC-proven in
    the reference cache's folder): a rerun of the main job on unchanged results redraws nothing. A report not read
    from files (``report.inputs`` empty) is drawn every time."""
    from conformance import cache

    key = cache.outputs_key(FIGURES_KIND, report.inputs, _libraries()) if report.inputs else None
    stored = cache.load_output(FIGURES_KIND, key) if key else None
    if stored is not None:
        figures = json.loads(stored)
        if isinstance(figures, list) and len(figures) == len(models) and all(isinstance(f, str) for f in figures):
            return figures
    figures = render_figures(models)
    if key:
        cache.store_output(FIGURES_KIND, key, json.dumps(figures).encode())
    return figures


MAX_PROCESSES = 8  # workers drawing the figures: past a few, forking and collecting cost more than they save
_PENDING: list[SweepFigure] = []  # the models a forked worker renders, by index (inherited, never pickled)


def _render_pending(index: int) -> str:
    html_text = figure_html(_PENDING[index])
    gc.collect()  # this figure's cycles (matplotlib's artists refer to each other); the report is frozen
    return html_text


def _processes(count: int) -> int:
    """Worker processes for ``count`` figures: one per CPU this process may use, at most ``MAX_PROCESSES``; 1
    (render here) where fork is not the way (not Linux, or threads running, which a fork would not copy)."""
    if count < 2 or not sys.platform.startswith("linux") or threading.active_count() > 1:
        return 1
    if multiprocessing.current_process().daemon:  # a daemonic process may not have children
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_PROCESSES, count))


def render_figures(models: list[SweepFigure]) -> list[str]:
    """``figure_html`` of each model, in order: in forked worker processes where there are several CPUs (each
    figure is independent and its bytes the same wherever drawn; matplotlib spends tens of milliseconds per
    panel, half a minute for the main job's 560 panels on one CPU), else here.

    The report's millions of objects (every element of every result) are frozen out of the garbage collector
    meanwhile (``gc.freeze``): each figure leaves cycles to collect, and a collection that walked the report
    too would cost more than the drawing; frozen, a fork also leaves their pages shared."""
    global _PENDING
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    _PENDING = models
    try:
        processes = _processes(len(models))
        if processes > 1:
            try:
                with multiprocessing.get_context("fork").Pool(processes) as pool:
                    return pool.map(_render_pending, range(len(models)), chunksize=1)
            except OSError:  # no semaphores or no fork in this sandbox: draw here
                pass
        return [_render_pending(i) for i in range(len(models))]
    finally:
        _PENDING = []
        gc.unfreeze()
        if enabled:
            gc.enable()


# ---------------------------------------------------------------- the ULP-distribution table

FLOOR_COLUMN = "floor-accepted"


@dataclass
class DistributionRow:
    run: RunReport
    api: str
    dtype: str
    bins: list[int]  # per BIN_LABELS
    bin_problems: list[int]  # of those, fail / unexpected pass / error
    floor: int = 0  # exact or acceptable only through the absolute floor (max ULP past the tolerance)
    unmeasured: int = 0  # no max ULP (an error)
    problems: int = 0
    states: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return sum(self.bins) + self.floor + self.unmeasured


def distribution_rows(report: Report) -> list[DistributionRow]:
    """One row per (run, API, dtype) of its value and gradient results (unsupported ones left out), in the
    runs' order, then the API's, then the dtypes'."""
    out = []
    for run in report.runs:
        rows: dict[tuple[str, str], DistributionRow] = {}
        for r in run.results:
            if r.quantity not in ERROR_QUANTITIES or r.verdict == "unsupported":
                continue
            row = rows.setdefault(
                (r.api, r.dtype), DistributionRow(run, r.api, r.dtype, [0] * len(BIN_LABELS), [0] * len(BIN_LABELS))
            )
            problem = is_problem(r.verdict)
            row.problems += problem
            row.states.add(state_of(r.verdict))
            if floor_only(r):
                row.floor += 1
            elif r.max_ulp is None:
                row.unmeasured += 1
            else:
                b = ulp_bin(r.max_ulp)
                row.bins[b] += 1
                row.bin_problems[b] += problem
        order = {api: i for i, api in enumerate(run.apis)}
        out += sorted(rows.values(), key=lambda row: (order.get(row.api, len(order)), row.api, dtype_key(row.dtype)))
    return out


# a cell's shade: its share of the row, in blue up to the bin of the dtype's max_ulp, orange past it, red for
# inf/NaN, teal for the floor-accepted: where an API leaves the tolerance shows as colour along its row
HEAT = {"within": "21,101,192", "past": "239,108,0", "nonfinite": "198,40,40", "floor": "0,131,143"}


def _heat(count: int, total: int, kind: str) -> str:
    if not count or not total:
        return ""
    return f' style="background:rgba({HEAT[kind]},{0.08 + 0.5 * count / total:.2f})"'


def _bin_kind(index: int, dtype: str) -> str:
    tolerance = _tolerance(dtype)
    if index == len(BIN_LABELS) - 1:
        return "nonfinite"
    return "within" if tolerance is not None and index <= ulp_bin(tolerance.max_ulp) else "past"


DISTRIBUTION_NOTE = (
    "Each result's largest error in ULPs against the exact value (the loss and its gradients; relations and "
    "unsupported results left out), counted per run, API and dtype; the shade is the share of the row: blue up to "
    "the dtype's tolerance (max_ulp), orange past it, red for inf/NaN. "
    "floor-accepted: exact or acceptable results whose largest error is past the tolerance, accepted only through "
    "the dtype's absolute floor (e.g. a flushed subnormal), counted there and not in their bin. A red outline: "
    "the cell holds problems (fail, unexpected pass, error), counted again under problems."
)


def ulp_distribution(report: Report) -> list[str]:
    """The ULP-distribution section: a heading, a note and ``<table id="distribution">``."""
    rows = distribution_rows(report)
    out = ['<h2 id="distribution-head">ULP error distribution</h2>']
    if not rows:
        out.append('<p class="note">No result with an error in ULPs.</p>')
        return out
    out.append(f'<p class="note">{esc(DISTRIBUTION_NOTE)}</p>')
    head = "".join(f'<th class="num">{esc(label)}</th>' for label in (*BIN_LABELS, FLOOR_COLUMN, "problems", "results"))
    out.append(
        f'<div class="scroll"><table id="distribution" class="dist"><tr><th>run</th><th>API</th><th>dtype</th>{head}</tr>'
    )
    previous = None
    for row in rows:
        cells = []
        for i, (count, problems) in enumerate(zip(row.bins, row.bin_problems)):
            title = f' title="{problems} of them fail, unexpected pass or error"' if problems else ""
            klass = "num prob" if problems else "num" if count else "num z"
            cells.append(f'<td class="{klass}"{_heat(count, row.total, _bin_kind(i, row.dtype))}{title}>{count}</td>')
        heat = _heat(row.floor, row.total, "floor")
        cells.append(f'<td class="num{"" if row.floor else " z"}"{heat}>{row.floor}</td>')
        cells.append(f'<td class="num{" n fail" if row.problems else " z"}">{row.problems}</td>')
        cells.append(f'<td class="num">{row.total}</td>')
        group = (row.run.index, row.api)
        klass = ' class="group"' if previous is not None and group[0] != previous[0] else ""
        previous = group
        out.append(
            f'<tr{klass} data-framework="{esc(row.run.framework)}" data-dtype="{esc(row.dtype)}" '
            f'data-outcome="{esc(" ".join(sorted(row.states)))}"><td>{esc(row.run.label)}</td>'
            f'<td class="api"><code>{esc(row.api)}</code></td><td>{esc(row.dtype)}</td>{"".join(cells)}</tr>'
        )
    out.append("</table></div>")
    return out


# the CSS these fragments need, for report.html's <style>
CSS = """
figure.plot{margin:0 0 14px;background:#fff;border:1px solid #e0e0e0;padding:6px;max-width:max-content}
figure.plot img{display:block;max-width:100%;height:auto}
table.dist td.num{min-width:2.6em}table.dist td.z{color:#c4c4c4}
table.dist td.prob{box-shadow:inset 0 0 0 2px #c62828;font-weight:700}
"""


# ---------------------------------------------------------------- the float32 sweeps, per binade

BINADES_NOTE = (
    "One figure per float32 sweep (python -m conformance sweep) and quantity: the largest error in ULPs (log "
    "scale) in each binade of the logit, x in [2^e, 2^(e+1)), against e, negative logits on the left, positive "
    "on the right (subnormals and zero at e = -127); a line per API and target. The dashed line is the float32 "
    "tolerance; a filled marker is a binade with elements past it (the count in the record's sweep.binades)."
)


def binade_items(report: Report) -> dict[tuple[str, str], list[tuple[RunReport, Result]]]:
    """The sweep records (``Result.sweep``), by (run label, quantity), in run and record order."""
    out: dict[tuple[str, str], list[tuple[RunReport, Result]]] = {}
    for run in report.runs:
        for result in run.run.results:
            if result.sweep and result.sweep.get("binades"):
                out.setdefault((run.label, result.quantity), []).append((run, result))
    return out


def _binade_axis(row: dict) -> float:
    return -127.0 if row["exponent"] == "subnormal" else float(row["exponent"])


def binade_figure(items: list[tuple[RunReport, Result]]):
    """Two panels (logit < 0, logit > 0): each record's max ULP error per binade against the binade's exponent."""
    from matplotlib.figure import Figure

    tolerance = _tolerance("float32").max_ulp
    with _rc():
        fig = Figure(figsize=(COLUMN_WIDTH[1] * 2, 3.6), dpi=DPI, layout="constrained")
        axes = fig.subplots(1, 2, sharey=True)
        for ax, sign in zip(axes, ("-", "+")):
            for n, (_, result) in enumerate(items):
                rows = [row for row in result.sweep["binades"] if row["sign"] == sign]
                if not rows:
                    continue
                x = np.array([_binade_axis(row) for row in rows])
                y = np.array([float(row["max_ulp"]) for row in rows])
                y = np.where(np.isfinite(y), np.maximum(y, 0.25), 2.0**64)  # inf / NaN at the ceiling
                missed = np.array([row["missed"] > 0 for row in rows])
                label = f"{_plain(result.api)} · target {result.case.rsplit('-', 1)[-1]}"
                color = f"C{n % 10}"
                ax.plot(x, y, color=color, lw=1, label=label if sign == "+" else None, gid=f"binade-line-{n}")
                ax.plot(x[missed], y[missed], "o", ms=3, color=color)
            ax.axhline(tolerance, color="0.4", lw=0.8, ls="--")
            ax.set_yscale("log", base=2)
            ax.set_xlim(-130, 130)
            ax.set_xlabel(f"e, the binade of the logit ({'x < 0' if sign == '-' else 'x > 0'}: |x| in [2^e, 2^(e+1)))")
            ax.grid(True, lw=0.3, color="0.85")
        axes[0].invert_xaxis()  # |x| grows outwards from the middle
        axes[0].set_ylabel("max error per binade (ULP)")
        handles, labels = axes[1].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=3, fontsize=6, frameon=False)
    return fig


def binade_sections(report: Report) -> list[str]:
    """The float32 sweeps' section: a figure per (run, quantity) of the max ULP error per binade of the logit."""
    groups = binade_items(report)
    if not groups:
        return []
    out = ['<h2 id="binades">Float32 sweeps per binade</h2>', f'<p class="note">{esc(BINADES_NOTE)}</p>']
    for (label, quantity), items in groups.items():
        with np.errstate(over="ignore", invalid="ignore"):
            data = png(binade_figure(items))
        width, height = _png_size(data)
        bits = items[0][1].sweep["bits"]
        elements = sum(r.sweep["elements"] for _, r in items)
        missed = sum(r.sweep["missed"] for _, r in items)
        worst = max((r.max_ulp for _, r in items if r.max_ulp is not None), default=None)
        caption = (
            f"<b>{esc(label)}</b> · {esc(quantity)} · bit patterns {esc(bits)} · {len(items)} results, "
            f"{elements:,} elements, {missed:,} past the tolerance"
            + (f", max {worst:.4g} ULP" if worst is not None else "")
        )
        anchor = re.sub(r"[^A-Za-z0-9_-]+", "-", f"binades-{label}-{quantity}")
        alt = f"{label}, {quantity}: the largest ULP error per binade of the float32 logit, per API and target"
        out.append(
            f'<figure class="plot" id="{esc(anchor)}" data-quantity="{esc(quantity)}"><figcaption>{caption}'
            f'</figcaption><img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" '
            f'alt="{esc(alt)}" width="{width}" height="{height}"></figure>'
        )
    return out
