"""report.html: one self-contained page (inline CSS, PNG plots inline as data, a few lines of inline script
for the filters, nothing loaded from the network; it opens from file://), in the order a reader wants:
the accuracy table (the worst ULP error per run · API, dtype and quantity, coloured by the most severe
verdict, with where it occurs), the same per input region, the problems with their reproducers, the
regression gate (``report --against``), then the conditioned and explained errors, the mechanisms, the
ranking, the versions side by side, the verdict matrix, the ULP-error distribution and the sweep cases'
plots (``conformance.report_plots``), and the runs' environments last.

Filters by outcome, framework, dtype and quantity hide the elements whose ``data-*`` lists do not hold the
chosen value; the accuracy tables' header row and first column stay in view while scrolling. The same
results give the same bytes.
"""

from __future__ import annotations

import html
import re

from conformance.diff import sections, summary_line
from conformance.report import (
    CONDITIONED_NOTE,
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
    ranking_cells,
    shown_files,
    version_changes,
    version_rows,
    where,
)
from conformance.report_plots import STATE_COLORS
from conformance.summary import _ulp, failure_text

OPEN_PROBLEMS = 10  # the first problems are shown unfolded
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
    ("binades", "Per binade"),
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
        + report_plots.binade_sections(report)
        + _environment(report)
    )
    text = "\n".join(body)
    nav = "".join(f'<a href="#{anchor}">{esc(name)}</a>' for anchor, name in SECTIONS if f'id="{anchor}"' in text)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>BCE conformance report</title>",
        f"<style>{CSS}{report_plots.CSS}</style></head><body><main>",
        "<h1>BCE conformance report</h1>",
        f'<p class="lead">{report.result_count} results from {len(report.runs)} runs: {esc(totals)}.</p>',
        f"<nav>{nav}</nav>",
        *_filters(report),
        text,
        f"</main><script>{FILTER_SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"
