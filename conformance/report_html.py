"""report.html: one self-contained page (inline CSS, inline SVG plots, no script, nothing loaded
from the network) with the runs' environments, the verdict matrix, the APIs ranked by forward error,
the versions side by side, the worst cases (the conditioned results apart), per-API histograms of the
ULP error and the sweep cases' plots.

The plots are matplotlib figures written as SVG with a fixed hash salt per figure and no date, so
the same results give the same bytes; each figure's ids are prefixed so that several inline SVGs
never share one.
"""

from __future__ import annotations

import html
import io
import math
import re

import numpy as np

from conformance.diff import sections, summary_line
from conformance.report import (
    CONDITIONED_NOTE,
    ERROR_QUANTITIES,
    HTML_CONDITIONED,
    HTML_PROBLEMS,
    HTML_WORST,
    MECHANISMS_NOTE,
    RANKING_HEADER,
    RANKING_NOTE,
    STATE_NAMES,
    STATES,
    VERSION_CHANGES_LISTED,
    Counts,
    Report,
    RunReport,
    _short,
    cells_differ,
    environment_rows,
    quantity_order,
    ranking_cells,
    shown_files,
    state_of,
    version_changes,
    version_rows,
    where,
)
from conformance.report_plots import (
    BIN_LABELS,
    CEILING_EXPONENT,
    STATE_COLORS,
    _ceiling,
    _elements,
    _finite_abs,
    _plain,
    _symlog,
    _symlog_threshold,
    ulp_bin,
)
from conformance.results import Result
from conformance.summary import _ulp, failure_text

HIST_STATES = ("exact", "acceptable", "conditioned", "known_divergence", "fail")  # unsupported results have no error
SWEEP_POINTS = 2500  # a sweep line of more elements keeps, per chunk, the element of the largest error
OPEN_PROBLEMS = 10  # the first problems are shown unfolded
LINESTYLES = ("-", "--", ":", "-.")
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#393b79", "#ad494a", "#637939", "#7b4173", "#e7969c", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#843c39",
)  # fmt: skip
RC = {
    "svg.fonttype": "none",  # text stays text: smaller, and the browser's own font
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
SVG_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
URL = re.compile(r"https?://[^\s<>\"'()\[\]]+")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:0;background:#fafafa}
main{max-width:1500px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:14px}
.lead{font-size:15px;margin:4px 0 10px}
table{border-collapse:collapse;margin:6px 0 10px;background:#fff}
th,td{border:1px solid #d7d7d7;padding:3px 7px;vertical-align:top;text-align:left}
td a{overflow-wrap:anywhere}
th{background:#f0f0f0;font-weight:600}
td.num,th.num{text-align:right;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow-wrap:anywhere}
pre{font:12px/1.35 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#fff;border:1px solid #ddd;
padding:8px;overflow-x:auto;white-space:pre-wrap;overflow-wrap:anywhere}
td.cell{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:nowrap;text-align:right}
td.bad{background:#fdecea}td.none{color:#aaa;text-align:center}
tr.group td{border-top:2px solid #999}
.n.exact{color:#2e7d32}.n.acceptable{color:#1565c0}.n.conditioned{color:#7b1fa2}.n.fail{color:#c62828;font-weight:700}
.n.known_divergence{color:#ef6c00}.n.unsupported{color:#757575}.n.z{color:#c4c4c4;font-weight:400}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin:0 4px 0 10px;vertical-align:-1px}
.legend{font-size:13px;margin:4px 0}
.grid{display:flex;flex-wrap:wrap;gap:10px}
figure{margin:0;background:#fff;border:1px solid #e0e0e0;padding:6px}
figure.hist{width:380px}figure.sweep{max-width:1200px;margin-bottom:12px}
figcaption{font-size:12px;margin-bottom:2px}
svg.plot{max-width:100%;height:auto;display:block}
details{margin:4px 0}summary{cursor:pointer}
.env th{white-space:nowrap}.env td{max-width:420px}.env td.cell{text-align:left}
.delta{color:#c62828;font-weight:700;text-align:center}
.note{color:#555;font-size:13px}
td.api{min-width:230px;max-width:420px}td.wr{min-width:210px}td.src{max-width:420px}
.filters{position:sticky;top:0;z-index:5;background:#fafafa;padding:6px 0;border-bottom:1px solid #ddd;margin:8px 0}
.filters label{margin-right:12px;font-size:13px}
.wrap{overflow:auto;max-height:85vh;max-width:100%;border:1px solid #ddd}
table.accuracy{margin:0}
table.accuracy thead th{position:sticky;top:0;z-index:2}
table.accuracy th.stick{position:sticky;left:0;z-index:1;background:#f7f7f7;min-width:260px;max-width:360px}
table.accuracy thead th.stick{z-index:3}
td.acc{font-size:12px;min-width:110px;max-width:200px}td.acc small{color:#444}
td.acc.fail{color:#8e0000}td.acc.unsupported,td.acc.none{color:#999;text-align:center}
td.acc small.ex{color:#1b5e20}span.run{font-weight:400;color:#555;font-size:12px}.err{color:#c62828;font-weight:700}
.gate{padding:6px 10px;background:#e8f5e9;border:1px solid #2e7d32}.gate.bad{background:#ffebee;border-color:#c62828}
[hidden]{display:none!important}
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def code(text: str) -> str:
    """An API name or result id as code, with break opportunities after ``+``, ``.`` and ``/``."""
    escaped = esc(text)
    for mark in ("+", ".", "/", ","):
        escaped = escaped.replace(mark, mark + "<wbr>")
    return f"<code>{escaped}</code>"


def linkify(text: str) -> str:
    """Escaped text whose http(s) addresses are links (a link is no resource load)."""
    out, pos = [], 0
    for match in URL.finditer(text):
        url = match.group(0).rstrip(".,;:")
        out.append(esc(text[pos : match.start()]))
        out.append(f'<a href="{esc(url)}" rel="noreferrer">{esc(url)}</a>')
        pos = match.start() + len(url)
    out.append(esc(text[pos:]))
    return "".join(out)


# ---------------------------------------------------------------- figures


def _svg(fig, prefix: str, label: str) -> str:
    """The figure as an inline ``<svg>``: no XML prolog, ids prefixed, a fixed hash salt."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**RC, "svg.hashsalt": f"bce-conformance-{prefix}"}):
        fig.savefig(buffer, format="svg", metadata=SVG_METADATA)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(
        r'((?:xlink:)?href)="#([^"]+)"',
        lambda m: f'{m.group(1)}="#{prefix}-{m.group(2)}"' if m.group(2) in ids else m.group(0),
        text,
    )
    text = re.sub(
        r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})" if m.group(1) in ids else m.group(0), text
    )
    return text.replace("<svg ", f'<svg class="plot" role="img" aria-label="{esc(label)}" ', 1).rstrip() + "\n"


def _figure(**kwargs):
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global figure list to leak into

    with matplotlib.rc_context(RC):
        return Figure(**kwargs)


def histogram_counts(results: list[Result]) -> dict[str, list[int]]:
    """Per verdict state, the count of results in each bin (value and gradient results with an error)."""
    counts = {state: [0] * len(BIN_LABELS) for state in HIST_STATES}
    for r in results:
        if r.quantity in ERROR_QUANTITIES and r.max_ulp is not None and state_of(r.verdict) in counts:
            counts[state_of(r.verdict)][ulp_bin(r.max_ulp)] += 1
    return counts


def histogram_svg(counts: dict[str, list[int]], prefix: str, label: str) -> str:
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(4.0, 2.25), layout="constrained")
        ax = fig.add_subplot()
        positions = np.arange(len(BIN_LABELS))
        bottom = np.zeros(len(BIN_LABELS))
        for state in HIST_STATES:
            values = np.asarray(counts[state], dtype=float)
            if values.any():
                ax.bar(positions, values, bottom=bottom, width=0.8, color=STATE_COLORS[state], linewidth=0)
            bottom += values
        top = max(bottom.max(), 1.0)
        for x, total in zip(positions, bottom):
            if total:
                ax.text(x, total + top * 0.02, f"{int(total)}", ha="center", va="bottom", fontsize=6.5)
        ax.set_ylim(0, top * 1.2)
        ax.set_xticks(positions, BIN_LABELS, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_xlabel("largest error of a result (ULP)")
        ax.set_ylabel("results")
        ax.yaxis.get_major_locator().set_params(integer=True)
    return _svg(fig, prefix, label)


def _downsample(order: np.ndarray, ulp: np.ndarray, limit: int = SWEEP_POINTS) -> np.ndarray:
    """Indices (in ``order``'s order) of at most ``limit`` points: each chunk's largest error."""
    if len(order) <= limit:
        return order
    chunk = math.ceil(len(order) / limit)
    key = np.where(np.isnan(ulp), np.inf, ulp)
    kept = [part[np.argmax(key[part])] for part in np.array_split(order, math.ceil(len(order) / chunk))]
    return np.asarray(kept)


def sweep_svg(
    entries: list[tuple[str, str, Result]],
    colors: list[str],
    dtype: str,
    quantity: str,
    logits: bool,
    prefix: str,
    label: str,
) -> str:
    """Two panels for one sweep case, quantity and dtype: the values (got, over the exact value
    correctly rounded) and the error in ULPs against x, one line per (run, API), a line style per
    target value; inf and NaN drawn at a dashed ceiling; symlog axes."""
    import matplotlib
    from matplotlib.lines import Line2D

    from conformance.verdicts import tolerance_for

    data = [(run_label, api, _elements(result)) for run_label, api, result in entries]
    targets = sorted({float(t) for _, _, d in data for t in d["target"] if math.isfinite(t)})
    styled = len(targets) <= len(LINESTYLES)
    style_of = {t: LINESTYLES[i] for i, t in enumerate(targets)} if styled else {}
    values_name = "loss" if quantity == "value" else f"gradient ({quantity})"
    against = "logit" if logits else "probability"
    values = [d[k] for _, _, d in data for k in ("got", "want")]
    value_ceiling = _ceiling(values, 1.0)
    ulp_ceiling = _ceiling([d["ulp"] for _, _, d in data], 10.0)
    negatives = _finite_abs([np.minimum(v, 0) for v in values])
    value_bottom = (
        -(10.0 ** min(math.ceil(math.log10(negatives.max())), CEILING_EXPONENT)) * 1.5 if negatives.size and negatives.max() > 0 else 0.0
    )
    xs = _finite_abs([d["x"] for _, _, d in data])
    xmax = float(xs.max()) if xs.size else 0.0
    try:
        tolerance = tolerance_for(dtype).max_ulp
    except KeyError:
        tolerance = None
    apis, styles = [], []
    with matplotlib.rc_context(RC):
        fig = _figure(figsize=(11.0, 4.0), layout="constrained")
        ax_value, ax_ulp = fig.subplots(1, 2)
        if data:  # the exact value, under the lines
            d = data[0][2]
            for group in _target_groups(d, styled):
                order = group[np.argsort(d["x"][group], kind="stable")]
                ax_value.plot(
                    d["x"][order], d["want"][order], color="#bdbdbd", linewidth=3.5, solid_capstyle="round", zorder=1
                )
            apis.append(Line2D([], [], color="#bdbdbd", linewidth=3.5, label="exact value (correctly rounded)"))
        markers = set()
        for (run_label, api, d), color in zip(data, colors):
            for group in _target_groups(d, styled):
                order = group[np.argsort(d["x"][group], kind="stable")]
                order = order[np.isfinite(d["x"][order])]
                order = _downsample(order, d["ulp"][order])
                if order.size == 0:
                    continue
                linestyle = style_of.get(float(d["target"][order[0]]), "-") if styled else "none"
                for ax, key, ceiling in ((ax_value, "got", value_ceiling), (ax_ulp, "ulp", ulp_ceiling)):
                    x, y = d["x"][order], d[key][order]
                    finite = np.isfinite(y)
                    ax.plot(
                        x, np.where(finite, np.clip(y, -1.5 * ceiling, ceiling), np.nan), color=color, linestyle=linestyle, linewidth=1.1,
                        marker=None if styled else ".", markersize=2, zorder=2,
                    )  # fmt: skip
                    for name, mask, symbol in (
                        ("+inf", np.isposinf(y), "^"),
                        ("-inf", np.isneginf(y), "v"),
                        ("NaN", np.isnan(y), "x"),
                    ):
                        if mask.any():
                            markers.add((name, symbol))
                            ax.plot(
                                x[mask],
                                np.full(mask.sum(), ceiling),
                                linestyle="none",
                                marker=symbol,
                                markersize=4,
                                color=color,
                                zorder=3,
                            )
            apis.append(Line2D([], [], color=color, linewidth=1.5, label=_plain(f"{run_label} · {api}")))
        if styled and len(targets) > 1:
            styles += [Line2D([], [], color="#333", linestyle=style_of[t], label=f"target {t:g}") for t in targets]
        elif not styled:
            styles.append(
                Line2D([], [], color="#333", linestyle="none", marker=".", label=f"{len(targets)} target values: dots")
            )
        if tolerance is not None:
            ax_ulp.axhline(tolerance, color="#555", linestyle=(0, (1, 2)), linewidth=1, zorder=1)
            styles.append(
                Line2D([], [], color="#555", linestyle=(0, (1, 2)), label=f"tolerance: {tolerance:g} ULP ({dtype})")
            )
        for name, symbol in sorted(markers):
            styles.append(
                Line2D(
                    [], [], color="#666", linestyle="none", marker=symbol, label=f"{name}, drawn at the dashed ceiling"
                )
            )
        for ax, ceiling in ((ax_value, value_ceiling), (ax_ulp, ulp_ceiling)):
            ax.axhline(ceiling, color="#999", linestyle="--", linewidth=0.8, zorder=1)
            ax.text(
                0.5,
                ceiling,
                "inf / NaN",
                transform=ax.get_yaxis_transform(),
                va="bottom",
                ha="center",
                fontsize=7,
                color="#666",
            )
            if logits and xmax > 10:
                _symlog(ax, "x", 1.0, xmax, -xmax)
            ax.set_xlabel("logit x" if logits else "probability p")
            ax.grid(True, which="major", color="#eee", linewidth=0.6)
        _symlog(ax_value, "y", _symlog_threshold(values), value_ceiling, value_bottom)
        ax_value.set_ylim(value_bottom, value_ceiling * 3)
        ax_value.set_ylabel(values_name)
        ax_value.set_title(f"{values_name} vs {against} ({dtype})")
        _symlog(ax_ulp, "y", 1.0, ulp_ceiling)
        ax_ulp.set_ylim(0, ulp_ceiling * 3)
        ax_ulp.set_ylabel("error (ULP)")
        ax_ulp.set_title(f"error in ULPs vs {against} ({dtype})")
        # two legend columns, filled column by column: the lines, then the line styles and markers
        rows = max(len(apis), len(styles))
        blank = [Line2D([], [], linestyle="none", label=" ")]
        handles = apis + blank * (rows - len(apis)) + styles + blank * (rows - len(styles))
        fig.set_size_inches(11.0, 3.4 + 0.15 * rows)
        fig.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    return _svg(fig, prefix, label)


def _target_groups(d: dict[str, np.ndarray], styled: bool) -> list[np.ndarray]:
    """Element indices per target value (one group of all when there are too many targets)."""
    n = len(d["x"])
    if not styled:
        return [np.arange(n)]
    groups = {}
    for i, t in enumerate(d["target"]):
        groups.setdefault(float(t) if math.isfinite(t) else math.nan, []).append(i)
    return [np.asarray(v) for _, v in sorted(groups.items(), key=lambda kv: (math.isnan(kv[0]), kv[0]))]


# ---------------------------------------------------------------- HTML pieces


def _counts_cell(counts: Counts | None) -> str:
    if counts is None or counts.total == 0:
        return '<td class="cell none">–</td>'
    spans = "·".join(
        f'<span class="n {state}{"" if counts[state] else " z"}">{counts[state]}</span>' for state in STATES
    )
    title = ", ".join(f"{counts[state]} {STATE_NAMES[state]}" for state in STATES)
    return f'<td class="cell{" bad" if counts.problems else ""}" title="{esc(title)}">{spans}</td>'


def _legend() -> str:
    swatches = "".join(
        f'<span class="sw" style="background:{STATE_COLORS[s]}"></span>{esc(STATE_NAMES[s])}' for s in STATES
    )
    return (
        f'<p class="legend">Each cell: exact · acceptable · conditioned · fail · known divergence · unsupported. '
        f"{swatches}</p>"
        '<p class="note">fail counts every problem (fail, unexpected pass, error); a cell with one is red; '
        "conditioned is none (past the tolerance, within the condition-aware bound); "
        "–: no results; hover a cell for its counts in words.</p>"
    )


STATE_TINTS = {  # a cell's background by its verdict class (STATE_COLORS are the strong forms)
    "exact": "#e8f5e9",
    "acceptable": "#e3f2fd",
    "conditioned": "#f3e5f5",
    "known_divergence": "#fff3e0",
    "fail": "#ffcdd2",
    "unsupported": "#f5f5f5",
}
CSS += "".join(f"td.acc.{state}{{background:{tint}}}" for state, tint in STATE_TINTS.items()) + "td.acc.none{background:#fafafa}\n"
OUTCOMES = ("fail", "known_divergence", "conditioned", "acceptable", "exact", "unsupported")  # the outcome filter
FILTER_SCRIPT = """
(function(){
  var form = document.getElementById('filters');
  function apply(){
    var chosen = {};
    form.querySelectorAll('select').forEach(function(s){ if (s.value) chosen[s.name] = s.value; });
    document.querySelectorAll('[data-framework],[data-dtype],[data-quantity],[data-outcome]').forEach(function(el){
      var show = true;
      for (var name in chosen) {
        var values = el.dataset[name];
        if (values !== undefined && values.split(' ').indexOf(chosen[name]) < 0) { show = false; break; }
      }
      el.hidden = !show;
    });
    var count = form.querySelector('output');
    if (count) count.textContent = Object.keys(chosen).length ? 'filtered' : '';
  }
  form.addEventListener('change', apply);
  form.addEventListener('reset', function(){ setTimeout(apply, 0); });
})();
"""


def _data(**lists) -> str:
    """``data-framework="jax" data-dtype="float16 float32"``: the attributes the filters read (values without spaces)."""
    out = []
    for name, values in lists.items():
        values = [values] if isinstance(values, str) else sorted(set(values))
        out.append(f' data-{name}="{esc(" ".join(v.replace(" ", "_") for v in values))}"')
    return "".join(out)


def _filters(report: Report) -> list[str]:
    frameworks = sorted({run.framework for run in report.runs})
    dtypes = report.dtypes or sorted({r.dtype for run in report.runs for r in run.results})
    quantities = report.quantities
    outcomes = [o for o in OUTCOMES if report.totals[o]]

    def select(name: str, label: str, values: list[str], names=None) -> str:
        options = "".join(f'<option value="{esc(v)}">{esc((names or {}).get(v, v))}</option>' for v in values)
        return f'<label>{esc(label)} <select name="{name}"><option value="">all</option>{options}</select></label>'

    return [
        '<form id="filters" class="filters" onsubmit="return false">',
        select("outcome", "outcome", outcomes, {**STATE_NAMES, "fail": "problem (fail, error, unexpected pass)"}),
        select("framework", "framework", frameworks),
        select("dtype", "dtype", dtypes),
        select("quantity", "quantity", quantities),
        '<button type="reset">show all</button> <output></output></form>',
    ]


def _ulp_text(value: float | None) -> str:
    return "–" if value is None else _ulp(value)


def _accuracy(report: Report) -> list[str]:
    if not report.accuracy:
        return ['<h2 id="accuracy-head">Accuracy</h2>', '<p class="note">No value or gradient results.</p>']
    columns = [(q, d) for q in report.accuracy_quantities for d in report.dtypes]
    out = [
        '<h2 id="accuracy-head">Accuracy: the worst error in ULPs per API, dtype and quantity</h2>',
        (
            '<p class="note">Each cell: the largest error in ULPs against the correctly rounded exact value among the '
            "results that are not unsupported (the loss and its gradients, every case and reduction), coloured by the "
            "most severe verdict among them, with where it occurs: the input region and the element "
            "(<a href=\"#regions-head\">regions</a>) or the reduction and case; below it, where the cell holds other "
            "verdicts too, the largest error of its exact results (those the floor decided left out). ᶠ: that error lies on elements accepted "
            "only through the dtype's absolute floor (flushed subnormals). Hover a cell for its verdict counts.</p>"
        ),
        _state_legend(),
        '<div class="wrap"><table id="accuracy" class="accuracy"><thead><tr><th class="stick">run · API</th>',
    ]
    out += [f'<th{_data(dtype=d, quantity=q)}>{esc(q)}<br>{esc(d)}</th>' for q, d in columns]
    out.append("</tr></thead><tbody>")
    for row in report.accuracy:
        states = {c.state for c in row.cells.values()}
        anchor = _api_anchor(row.run, row.api)
        out.append(
            f'<tr id="{anchor}"{_data(framework=row.run.framework, outcome=states)}>'
            f'<th class="stick api"><span class="run">{esc(row.run.label)}</span><br>{code(row.api)}</th>'
        )
        for q, d in columns:
            cell = row.cells.get((d, q))
            attrs = _data(dtype=d, quantity=q)
            if cell is None:
                out.append(f'<td class="acc none"{attrs}>–</td>')
                continue
            title = cell.counts.sentence() + (f"; worst: {cell.result.id}" if cell.result else "")
            if cell.state == "unsupported":
                out.append(f'<td class="acc unsupported"{attrs} title="{esc(title)}">n/a</td>')
                continue
            value = _ulp_text(cell.worst) + ("ᶠ" if cell.floor else "")
            errors = f' <span class="err">+{cell.errors} error</span>' if cell.errors else ""
            within = (
                f'<br><small class="ex">exact results ≤ {esc(_ulp_text(cell.exact_worst))}</small>'
                if cell.exact_worst is not None and cell.state != "exact"
                else ""
            )
            out.append(
                f'<td class="acc {cell.state}"{attrs} title="{esc(title)}"><b>{esc(value)}</b>{errors}'
                f"<br><small>{esc(cell.where)}</small>{within}</td>"
            )
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def _state_legend() -> str:
    return '<p class="legend">' + "".join(
        f'<span class="sw" style="background:{STATE_TINTS[s]};border:1px solid {STATE_COLORS[s]}"></span>'
        f"{esc(STATE_NAMES[s])}"
        for s in OUTCOMES
    ) + "</p>"


def _api_anchor(run: RunReport, api: str) -> str:
    return "api-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run.label}-{api}")


def _regions(report: Report) -> list[str]:
    from conformance import regions

    used = [r for r in regions.REGIONS if any(r == key[1] for row in report.accuracy for key in row.regions)]
    if not used:
        return []
    out = [
        '<h2 id="regions-head">Accuracy by input region</h2>',
        (
            '<p class="note">The elementwise results (reduction none) of each API, per region of the input '
            "(conformance/regions.py; bounds for float32 shown, each dtype its own): the largest error in ULPs over "
            "every dtype, the elements that missed the tolerance out of those there, and the worst element (ᶠ: accepted only "
            "through the absolute floor). Green: "
            "no element missed; otherwise the most severe verdict of the results with misses there.</p>"
        ),
        '<p class="note">' + " · ".join(
            f"<b>{esc(r)}</b>: {esc(regions.describe(r, 'logits', _float32()))}"
            + (f" (probabilities: {esc(regions.describe(r, 'probs', _float32()))})" if r == regions.SATURATION else "")
            for r in used
        ) + "</p>",
        '<div class="wrap"><table id="regions" class="accuracy"><thead><tr><th class="stick">run · API</th>',
    ]
    columns = [(q, r) for q in report.accuracy_quantities for r in used]
    out += [f"<th{_data(quantity=q)}>{esc(q)}<br>{esc(r)}</th>" for q, r in columns]
    out.append("</tr></thead><tbody>")
    for row in report.accuracy:
        if not row.regions:
            continue
        states = {c.state for c in row.regions.values()}
        out.append(
            f"<tr{_data(framework=row.run.framework, outcome=states)}>"
            f'<th class="stick api"><span class="run">{esc(row.run.label)}</span><br>{code(row.api)}</th>'
        )
        for q, r in columns:
            cell = row.regions.get((q, r))
            if cell is None:
                out.append(f'<td class="acc none"{_data(quantity=q)}>–</td>')
                continue
            title = f"{cell.missed} of {cell.elements} elements missed the tolerance; worst in {cell.result.id}"
            out.append(
                f'<td class="acc {cell.state}"{_data(quantity=q)} title="{esc(title)}"><b>{esc(_ulp_text(cell.worst))}'
                f"{'ᶠ' if cell.floor else ''}</b> <small>{cell.missed}/{cell.elements}</small><br><small>x = {esc(_short(cell.x))}, "
                f"y = {esc(_short(cell.target))} · {esc(cell.result.dtype)}</small></td>"
            )
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return out


def _float32():
    from conformance.dtypes import get_format

    return get_format("float32")


def _problems(report: Report) -> list[str]:
    out = ['<section id="problems">', f"<h2>Problems: {len(report.problems)} (fail, unexpected pass, error)</h2>"]
    if not report.problems:
        out += ["<p>No problems: no fail, unexpected pass or error.</p>", "</section>"]
        return out
    out.append('<p class="note">Each with why, its worst elements and a one-line reproducer.</p>')
    for n, (run, result) in enumerate(report.problems[:HTML_PROBLEMS]):
        attrs = _data(framework=run.framework, dtype=result.dtype, quantity=result.quantity, outcome="fail")
        out.append(
            f"<details{attrs}{' open' if n < OPEN_PROBLEMS else ''}><summary><b>{esc(run.label)}</b> · "
            f"<code>{esc(result.verdict)}</code> · {code(result.id)}</summary>"
            f"<pre>{linkify(failure_text(result))}</pre></details>"
        )
    if len(report.problems) > HTML_PROBLEMS:
        out.append(f'<p class="note">... and {len(report.problems) - HTML_PROBLEMS} more problems (see junit.xml)</p>')
    out.append("</section>")
    return out


def _diff_gate(report: Report) -> list[str]:
    out = ['<h2 id="diff">Regression gate: the diff against the baseline</h2>']
    if report.against is None:
        out.append(
            '<p class="note">No baseline given (<code>python -m conformance report RESULTS --against BASELINE</code>; '
            "the main job passes baselines/). <code>python -m conformance diff</code> is the gate itself.</p>"
        )
        return out
    diff = report.against
    verdict = "fails" if diff.regressed else "passes"
    out.append(
        f'<p class="{"gate bad" if diff.regressed else "gate"}"><b>The gate {verdict}</b> against '
        f"<code>{esc(report.against_name)}</code>: {esc(summary_line(diff))}</p>"
    )
    for title, lines in sections(diff, VERSION_CHANGES_LISTED):
        items = "".join(f"<li>{esc(line[2:].replace('`', ''))}</li>" for line in lines)
        out.append(f"<details><summary>{esc(title)}</summary><ul>{items}</ul></details>")
    return out


def _environment(report: Report) -> list[str]:
    rows: dict[str, dict[int, str]] = {}
    for run in report.runs:
        for name, text in environment_rows(run.run):
            rows.setdefault(name, {})[run.index] = text
    out = ['<h2 id="runs">Runs</h2>', '<div class="scroll"><table class="env">', "<tr><th></th>"]
    out += [f"<th>{esc(run.label)}</th>" for run in report.runs]
    out.append("</tr>")
    out.append("<tr><th>verdicts</th>" + "".join(_counts_cell(run.totals) for run in report.runs) + "</tr>")
    for name, texts in rows.items():
        out.append(
            f"<tr><th>{esc(name)}</th>"
            + "".join(f"<td>{esc(texts.get(run.index, '–'))}</td>" for run in report.runs)
            + "</tr>"
        )
    out.append("</table></div>")
    return out


def _matrix(report: Report) -> list[str]:
    files, others = shown_files(report.files)
    out = ['<h2 id="matrix">Verdicts: APIs × case files</h2>', _legend()]
    out.append('<div class="scroll"><table class="matrix"><tr><th>run</th><th>API</th>')
    out += [f'<th class="num">{esc(f)}</th>' for f in files]
    if others:
        out.append(f'<th class="num" title="{esc(", ".join(others))}">{len(others)} other files</th>')
    out.append('<th class="num">all</th></tr>')
    for run in report.runs:
        for i, api in enumerate(run.apis):
            cells = [_counts_cell(run.matrix[api].get(f)) for f in files]
            if others:
                rest = Counts()
                for f in others:
                    if f in run.matrix[api]:
                        rest.merge(run.matrix[api][f])
                cells.append(_counts_cell(rest))
            cells.append(_counts_cell(run.api_totals[api]))
            head = f'<td rowspan="{len(run.apis)}"><b>{esc(run.label)}</b></td>' if i == 0 else ""
            out.append(
                f'<tr{" class=group" if i == 0 else ""}>{head}<td class="api">{code(api)}</td>{"".join(cells)}</tr>'
            )
    out.append("</table></div>")
    if len(report.quantities) > 1:
        out.append("<h3>By quantity</h3>")
        out.append(
            '<p class="note">value: the loss; grad / grad_target: its gradients; the rest: metamorphic relations.</p>'
        )
        out.append('<div class="scroll"><table class="matrix"><tr><th>run</th><th>API</th>')
        out += [f'<th class="num">{esc(q)}</th>' for q in report.quantities]
        out.append("</tr>")
        for run in report.runs:
            for i, api in enumerate(run.apis):
                head = f'<td rowspan="{len(run.apis)}"><b>{esc(run.label)}</b></td>' if i == 0 else ""
                cells = "".join(_counts_cell(run.by_quantity[api].get(q)) for q in report.quantities)
                out.append(f'<tr{" class=group" if i == 0 else ""}>{head}<td class="api">{code(api)}</td>{cells}</tr>')
        out.append("</table></div>")
    return out


def _ranking(report: Report) -> list[str]:
    if not report.ranking:
        return []
    out = ['<h2 id="ranking">APIs ranked by forward error</h2>', f'<p class="note">{esc(RANKING_NOTE)}</p>']
    head = "".join(
        f"<th{'' if name in ('run', 'API') else ' class=num'}>{esc(name)}</th>" for name in RANKING_HEADER
    )
    out.append(f'<div class="scroll"><table class="ranking"><tr>{head}</tr>')
    for rank, row in enumerate(report.ranking, 1):
        cells = "".join(
            f'<td class="num{" n fail" if i == 5 and row.problems else ""}">{esc(text)}</td>'
            for i, text in enumerate(ranking_cells(row))
        )
        out.append(
            f"<tr><td class=num>{rank}</td><td>{esc(row.run.label)}</td><td class=api>{code(row.api)}</td>{cells}</tr>"
        )
    out.append("</table></div>")
    return out


def _versions(report: Report) -> list[str]:
    if not report.version_groups:
        return []
    out = [
        '<h2 id="versions">Versions side by side</h2>',
        ('<p class="note">One framework\'s runs next to each other: only the rows (API, case file) whose verdict '
        "counts differ between them, then what changed from each version to the next.</p>"),
    ]
    for framework, group in report.version_groups.items():
        out.append(f"<h3>{esc(framework)}</h3>")
        out.append('<div class="scroll"><table class="matrix"><tr><th>API</th><th>case file</th>')
        out += [f'<th class="num">{esc(run.label)}</th>' for run in group]
        out.append("<th>Δ</th></tr>")
        previous = None
        rows = [row for row in version_rows(group) if cells_differ(row[2])]
        if not rows:
            out.append('<p class="note">The same verdict counts in every API and case file.</p>')
        for api, f, cells in rows:
            name = code(api) if api != previous else ""
            group_class = ' class="group"' if api != previous else ""
            previous = api
            place = "<b>all</b>" if f == "all" else esc(f)
            delta = "Δ" if cells_differ(cells) else ""
            out.append(
                f"<tr{group_class}><td class=api>{name}</td><td>{place}</td>{''.join(map(_counts_cell, cells))}"
                f"<td class=delta>{delta}</td></tr>"
            )
        out.append("</table></div>")
        for old, new, changes in version_changes(group):
            out.append(f"<p><b>From {esc(old.label)} to {esc(new.label)}</b>: {esc(summary_line(changes))}</p>")
            for title, lines in sections(changes, VERSION_CHANGES_LISTED):
                items = "".join(f"<li>{esc(line[2:].replace('`', ''))}</li>" for line in lines)
                out.append(f"<details open><summary>{esc(title)}</summary><ul>{items}</ul></details>")
    return out


def _worst(report: Report) -> list[str]:
    out = ['<h2 id="worst">Conditioned results and the largest explained errors</h2>']
    if report.conditioned:
        out.append(
            f"<h3>Conditioned: {len(report.conditioned)} (past the tolerance, within the condition-aware bound)</h3>"
        )
        out.append(f'<p class="note">{esc(CONDITIONED_NOTE)}</p>')
        out.append(
            '<div class="scroll"><table><tr><th class="num">bound ratio</th><th class="num">condition</th>'
            '<th class="num">max ULP</th><th>run</th><th>API</th><th>result</th></tr>'
        )
        for run, result in report.conditioned[:HTML_CONDITIONED]:
            out.append(
                f"<tr><td class=num>{esc(_ulp(result.bound_ratio))}</td>"
                f"<td class=num>{esc(_ulp(result.condition))}</td><td class=num>{esc(_ulp(result.max_ulp))}</td>"
                f"<td>{esc(run.label)}</td><td class=api>{code(result.api)}</td>"
                f"<td class=wr><details><summary>{code(where(result))}</summary>"
                f"<pre>{linkify(failure_text(result))}</pre></details></td></tr>"
            )
        out.append("</table></div>")
        if len(report.conditioned) > HTML_CONDITIONED:
            out.append(
                f'<p class="note">... and {len(report.conditioned) - HTML_CONDITIONED} more conditioned results '
                "(see junit.xml)</p>"
            )
    if report.worst:
        out.append("<h3>Largest errors among known divergences and documented variants</h3>")
        out.append(
            '<p class="note">One row per run, API and divergence (or variant): its largest error in ULPs and the '
            "result that shows it (case · dtype · reduction).</p>"
        )
        out.append(
            '<div class="scroll"><table><tr><th class="num">max ULP</th><th>run</th><th>API</th><th>verdict</th>'
            '<th>divergence / variant</th><th class="num">results</th><th>dtypes</th><th>worst result</th>'
            "<th>source</th></tr>"
        )
        for g in report.worst[:HTML_WORST]:
            out.append(
                f"<tr><td class=num>{esc(_ulp(g.worst))}</td><td>{esc(g.run.label)}</td>"
                f"<td class=api>{code(g.api)}</td>"
                f"<td>{esc(g.verdict.replace('_', ' '))}</td><td>{esc(g.name) or '–'}</td>"
                f"<td class=num>{g.count}</td>"
                f"<td>{esc(', '.join(g.dtypes))}</td><td class=wr>{code(where(g.example))}</td>"
                f"<td class=src>{linkify(g.source)}</td></tr>"
            )
        out.append("</table></div>")
        if len(report.worst) > HTML_WORST:
            out.append(f'<p class="note">... and {len(report.worst) - HTML_WORST} more groups</p>')
    return out


def _mechanisms(report: Report) -> list[str]:
    """Each run's known divergences by mechanism, their figures computed from the results, the reason folded."""
    if not report.mechanisms:
        return []
    out = [
        '<h2 id="mechanisms">Known divergences by mechanism</h2>',
        f'<p class="note">{esc(MECHANISMS_NOTE)}</p>',
        (
            '<div class="scroll"><table><tr><th>mechanism</th><th>run</th><th class="num">results</th>'
            '<th class="num">elements</th><th class="num">worst ULP</th><th>where</th><th>source</th></tr>'
        ),
    ]
    for run, m in report.mechanisms:
        out.append(
            f"<tr><td class=wr><details><summary><b>{esc(m.id)}</b></summary>{esc(m.reason)}</details></td>"
            f"<td>{esc(run.label)}</td><td class=num>{esc(m.results_text())}</td><td class=num>{m.elements}</td>"
            f"<td class=num>{esc(_ulp(m.max_ulp))}</td><td class=wr>{esc(m.span_text())}</td>"
            f"<td class=src>{linkify(m.source)}</td></tr>"
        )
    out.append("</table></div>")
    return out


def _histograms(report: Report) -> list[str]:
    swatches = "".join(
        f'<span class="sw" style="background:{STATE_COLORS[s]}"></span>{esc(STATE_NAMES[s])}' for s in HIST_STATES
    )
    out = [
        '<h2 id="histograms">ULP error per API</h2>',
        (
            '<p class="note">Each result\'s largest error in ULPs against the exact value (the loss and its '
            "gradients; relations, unsupported and error results left out), binned, stacked by verdict.</p>"
        ),
        f'<p class="legend">{swatches}</p>',
    ]
    for run in report.runs:
        by_api: dict[str, list[Result]] = {}
        for r in run.results:
            by_api.setdefault(r.api, []).append(r)
        out.append(f"<h3>{esc(run.label)}</h3>")
        figures = []
        for i, api in enumerate(run.apis):
            counts = histogram_counts(by_api.get(api, []))
            n = sum(map(sum, counts.values()))
            if not n:
                continue
            label = f"{run.label} · {api}: ULP error histogram"
            figures.append(
                f'<figure class="hist"><figcaption>{code(api)} · {n} results</figcaption>'
                f"{histogram_svg(counts, f'h{run.index}-{i}', label)}</figure>"
            )
        out += (
            ['<div class="grid">', *figures, "</div>"]
            if figures
            else ['<p class="note">No result with an error in ULPs.</p>']
        )
    return out


def _sweeps(report: Report) -> list[str]:
    out = ['<h2 id="sweeps">Sweeps</h2>']
    if not report.sweeps:
        out.append('<p class="note">No sweep case in these results (a case whose results carry every element\'s '
                   "input, value and error, such as cases/logit_sweep.yaml).</p>")  # fmt: skip
        return out
    out.append(
        '<p class="note">Every element of each sweep case: left, the value each API returned over the exact value '
        "(grey); right, its error in ULPs (symlog axes; inf and NaN drawn at the dashed ceiling; the dotted line is "
        "the "
        "tolerance).</p>"
    )
    pairs: dict[tuple[int, str], None] = {}
    for rows in report.sweeps.values():
        for run, result in rows:
            pairs.setdefault((run.index, result.api))
    order = {run.index: {api: i for i, api in enumerate(run.apis)} for run in report.runs}
    ranked = sorted(pairs, key=lambda p: (p[0], order[p[0]].get(p[1], 0), p[1]))
    color_of = {pair: PALETTE[i % len(PALETTE)] for i, pair in enumerate(ranked)}
    for c, (case, rows) in enumerate(report.sweeps.items()):
        out.append(f'<h3 id="sweep-{c}">{esc(case)}</h3>')
        panels: dict[tuple[str, str], list[tuple[RunReport, Result]]] = {}
        for run, result in rows:
            panels.setdefault((result.quantity, result.dtype), []).append((run, result))
        for p, ((quantity, dtype), items) in enumerate(
            sorted(panels.items(), key=lambda kv: (quantity_order(kv[0][0]), kv[0][1]))
        ):
            items.sort(key=lambda rr: (rr[0].index, order[rr[0].index].get(rr[1].api, 0), rr[1].id))
            entries = [(run.label, result.api, result) for run, result in items]
            colors = [color_of[(run.index, result.api)] for run, result in items]
            logits = any(result.op != "bce" for _, result in items)
            label = f"{case} · {quantity} · {dtype}: values and ULP error versus the input"
            svg = sweep_svg(entries, colors, dtype, quantity, logits, f"s{c}-{p}", label)
            out.append(
                f'<figure class="sweep" data-case="{esc(case)}"><figcaption><b>{esc(case)}</b> · {esc(quantity)} · '
                f"{esc(dtype)} · {len(items)} results</figcaption>{svg}</figure>"
            )
    return out


SECTIONS = (  # (anchor, nav text): the page's order, most wanted first
    ("accuracy-head", "Accuracy"),
    ("regions-head", "By region"),
    ("problems", "Problems"),
    ("diff", "Diff gate"),
    ("worst", "Conditioned & explained"),
    ("mechanisms", "Known divergences"),
    ("ranking", "Ranking"),
    ("versions", "Versions"),
    ("matrix", "Matrix"),
    ("distribution-head", "ULP distribution"),
    ("sweeps", "Sweeps"),
    ("runs", "Runs"),
)


def render(report: Report) -> str:
    """The whole page."""
    from conformance import report_plots

    totals = report.totals.sentence()
    body = (
        _accuracy(report)
        + _regions(report)
        + _problems(report)
        + _diff_gate(report)
        + _worst(report)
        + _mechanisms(report)
        + _ranking(report)
        + _versions(report)
        + _matrix(report)
        + report_plots.ulp_distribution(report)
        + report_plots.sweep_sections(report)
        + _environment(report)
    )
    text = "\n".join(body)
    nav = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in SECTIONS if f'id="{anchor}"' in text)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>BCE conformance report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>BCE conformance report</h1>",
        f'<p class="lead">{report.result_count} results from {len(report.runs)} runs: {esc(totals)}.</p>',
        f"<nav>{nav}</nav>",
        *_filters(report),
        text,
        f"</main><script>{FILTER_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"
