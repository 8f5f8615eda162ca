"""conformance.report_plots: the sweep figures (PNG small multiples) and the ULP-distribution table, on
synthetic results (tests/test_report.py's ``sweep_results``, ``result``, ``run_of``); no framework."""

from __future__ import annotations

import base64
import html
import math
import re

import numpy as np
import pytest
from test_report import result, run_of, sweep_results

from conformance import report_plots
from conformance.report import build

CASE = "logit_sweep/sweep"


def _model(report, case=CASE, quantity="value"):
    (model,) = [m for m in report_plots.sweep_models(report) if m.case == case and m.quantity == quantity]
    return model


def _layers(ax) -> dict[str, int]:
    """gid -> points drawn in that layer of the axes."""
    out: dict[str, int] = {}
    for line in ax.get_lines():
        if line.get_gid():
            out[line.get_gid()] = out.get(line.get_gid(), 0) + len(line.get_xdata())
    return out


def _axes(fig) -> dict[str, object]:
    return {ax.get_label(): ax for ax in fig.axes}


def two_frameworks():
    """fa at float32 and float64, fb at float32 only: two APIs each."""
    return build(
        [
            run_of(sweep_results("fa", "1.0") + sweep_results("fa", "1.0", "float64"), "fa", "1.0"),
            run_of(sweep_results("fb", "2.0"), "fb", "2.0"),
        ]
    )


def test_png_bytes_are_the_same_across_renders_and_processes():
    report = two_frameworks()
    model = _model(report)
    first = report_plots.png(report_plots.sweep_figure(model))
    second = report_plots.png(report_plots.sweep_figure(model))
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second
    assert b"Software" not in first and b"tIME" not in first  # no tool name, no date
    # the section, drawn here and (where fork is the way) in worker processes: the same HTML
    models = report_plots.sweep_models(report)
    assert report_plots.render_figures(models) == [report_plots.figure_html(m) for m in models]


def test_one_panel_per_framework_api_and_dtype_and_a_reference_row_per_dtype():
    report = two_frameworks()
    model = _model(report)
    assert model.dtypes == ["float32", "float64"]
    assert model.rows == [
        ("fa", "fa.stable"),
        ("fa", "fa.hand_sigmoid+fa.hand_bce"),
        ("fb", "fb.stable"),
        ("fb", "fb.hand_sigmoid+fb.hand_bce"),
    ]
    fig = report_plots.sweep_figure(model)
    labels = set(_axes(fig))
    expected = {f"reference:{d}" for d in model.dtypes} | {
        f"error:{fw}:{api}:{d}" for fw, api in model.rows for d in model.dtypes
    }
    assert labels == expected and len(fig.axes) == (len(model.rows) + 1) * len(model.dtypes)
    axes = _axes(fig)
    # fb has no float64 result: its float64 panels say so and draw nothing
    empty = axes["error:fb:fb.stable:float64"]
    assert not _layers(empty) and [t.get_text() for t in empty.texts] == ["no result"]
    # the error panels share one y axis; each dtype column one x axis
    errors = [ax for name, ax in axes.items() if name.startswith("error:")]
    assert len({ax.get_ylim() for ax in errors}) == 1
    column = [ax for name, ax in axes.items() if name.endswith(":float32")]
    assert len({ax.get_xlim() for ax in column}) == 1
    # the reference row draws the exact value: a line per target
    reference = axes["reference:float32"]
    assert sorted(line.get_gid() for line in reference.get_lines()) == [
        "exact target 0",
        "exact target 0.5",
        "exact target 1",
    ]


def test_tolerance_band_and_inf_nan_layer_at_the_ceiling():
    report = two_frameworks()
    model = _model(report)
    fig = report_plots.sweep_figure(model)
    axes = _axes(fig)
    stable, hand = axes["error:fa:fa.stable:float32"], axes["error:fa:fa.hand_sigmoid+fa.hand_bce:float32"]
    # the band 0..max_ulp (tolerances.yaml: 4 for float32), one patch
    (band,) = [p for p in stable.patches if p.get_height() > 0]
    assert band.get_height() == 4.0
    hand_result = next(
        r for _, r in report.sweeps[CASE] if r.api == "fa.hand_sigmoid+fa.hand_bce" and r.dtype == "float32"
    )
    nonfinite = sum(not math.isfinite(u) for u in hand_result.elements["ulp"])
    assert nonfinite > 0  # by construction: the hand formula saturates
    assert _layers(hand)["inf-nan"] == nonfinite and "inf-nan" not in _layers(stable)
    (layer,) = [line for line in hand.get_lines() if line.get_gid() == "inf-nan"]
    ceiling = set(np.asarray(layer.get_ydata(), dtype=float))
    assert len(ceiling) == 1
    axis = hand.yaxis  # shared by every error panel: the labels the bottom panel shows
    labels = dict(zip(axis.get_major_locator().tick_values(0, 1), axis.get_major_formatter().seq))
    assert labels[ceiling.pop()] == "inf/NaN"
    # dense layers rasterized
    assert all(line.get_rasterized() for line in hand.get_lines() if line.get_gid())


def floor_result(verdict="exact", floor_accepted=3):
    """float32 logits: 10 elements, 3 of them a flushed subnormal (got 0, exact 1e-40: 1e40/2^-149 far past 4 ULP,
    within the floor 2^-126), 1 more off by 9 ULP (past the tolerance, not within the floor)."""
    x = [float(v) for v in np.linspace(-100, -80, 10)]
    want = [1e-40, 1e-40, 1e-40] + [1.0] * 7
    got = [0.0, 0.0, 0.0] + [1.0] * 6 + [1.0 + 9 * 2.0**-23]
    ulp = [1e-40 / 2.0**-149] * 3 + [0.0] * 6 + [9.0]
    return result(
        "dense/floor",
        "fw.api",
        verdict,
        max_ulp=max(ulp),
        floor_accepted=floor_accepted,
        elements={"x": x, "target": [0.0] * 10, "got": got, "want": want, "ulp": ulp},
    )


def test_floor_accepted_elements_have_their_own_layer():
    report = build([run_of([floor_result()])])
    model = _model(report, "dense/floor")
    layers = _layers(_axes(report_plots.sweep_figure(model))["error:fw:fw.api:float32"])
    assert layers["floor-accepted"] == 3  # the flushed subnormals, apart from the target's points
    assert layers["target 0"] == 7  # the 9-ULP element stays a target point: past the tolerance, not floored
    # a result without floor-accepted elements marks none, however large its errors
    report = build([run_of([floor_result(floor_accepted=0)])])
    layers = _layers(_axes(report_plots.sweep_figure(_model(report, "dense/floor")))["error:fw:fw.api:float32"])
    assert "floor-accepted" not in layers and layers["target 0"] == 10


def test_two_versions_of_a_framework_share_a_panel_and_the_differences_are_marked():
    old, new = sweep_results("jax", "0.6.2"), sweep_results("jax", "0.10.2")
    stable = next(r for r in new if r.api == "jax.stable")
    stable.elements["ulp"][5] = 7.5  # one element's error differs in the newer version
    report = build([run_of(old, "jax", "0.6.2"), run_of(new, "jax", "0.10.2")])
    model = _model(report)
    assert model.rows == [("jax", "jax.stable"), ("jax", "jax.hand_sigmoid+jax.hand_bce")]
    panel = model.panels[("jax", "jax.stable", "float32")]
    assert [s.run.label for s in panel.series] == [
        "jax 0.6.2",
        "jax 0.10.2",
    ]  # oldest first, the newest drawn in colour
    assert panel.differs.tolist() == [i == 5 for i in range(len(stable.elements["ulp"]))]
    fig = report_plots.sweep_figure(model)
    axes = _axes(fig)
    assert len(fig.axes) == 3  # one reference, one panel per API: not one per run
    layers = _layers(axes["error:jax:jax.stable:float32"])
    assert layers["differs"] == 1 and layers["older-version"] == 1
    assert "1 differ" in axes["error:jax:jax.stable:float32"].get_title(loc="right")
    same = axes["error:jax:jax.hand_sigmoid+jax.hand_bce:float32"]
    assert "differs" not in _layers(same) and "older-version" not in _layers(same)
    assert same.get_title(loc="right").endswith("0.6.2: same")


def test_many_targets_get_a_colour_map_and_a_colour_bar():
    targets = [i / 10 for i in range(11)]
    x = [float(v) for v in np.repeat(np.linspace(-5, 5, 8), len(targets))]
    t = targets * 8
    r = result(
        "dense/many",
        "fw.api",
        elements={"x": x, "target": t, "got": [1.0] * len(x), "want": [1.0] * len(x), "ulp": [0.5] * len(x)},
    )
    model = _model(build([run_of([r])]), "dense/many")
    assert len(model.targets) == 11
    fig = report_plots.sweep_figure(model)
    assert "colorbar" in _axes(fig)
    assert not [gid for ax in fig.axes for gid in _layers(ax) if gid.startswith("target ")]


def test_sweep_sections_order_attributes_and_size():
    exact = sweep_results("fa", "1.0", case="alpha/exact")[:1]  # the stable API only: exact everywhere
    diverging = sweep_results("fa", "1.0", case="beta/diverging")
    failing = sweep_results("fa", "1.0", case="gamma/failing")
    failing[1].verdict = "fail"
    other = sweep_results("fa", "1.0", case="delta/diverging")
    fb = sweep_results("fb", "2.0", "float64", case="beta/diverging")
    report = build([run_of(exact + diverging + failing + other, "fa", "1.0"), run_of(fb, "fb", "2.0")])
    out = report_plots.sweep_sections(report)
    assert out[0] == '<h2 id="sweeps">Sweeps</h2>' and "most informative first" in out[1]
    figures = [f for f in out if f.startswith("<figure")]
    ids = [re.search(r' id="([^"]+)"', f).group(1) for f in figures]
    # a problem first, then the known divergences (two in beta, one in delta), then the exact case
    assert ids == [
        "sweep-gamma-failing-value",
        "sweep-beta-diverging-value",
        "sweep-delta-diverging-value",
        "sweep-alpha-exact-value",
    ]
    both = figures[1]
    assert (
        'data-framework="fa fb"' in both and 'data-dtype="float32 float64"' in both and 'data-quantity="value"' in both
    )
    assert "known_divergence" in re.search(r'data-outcome="([^"]+)"', both).group(1)
    assert 'data-outcome="exact"' in figures[3]
    for f in figures:
        data = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', f).group(1))
        width, height = (int(v) for v in re.search(r'width="(\d+)" height="(\d+)"', f).groups())
        assert report_plots._png_size(data) == (width, height) and len(data) < 60_000
    assert f'<a href="#{ids[0]}">' in out[2]  # the links to each figure, in the same order


def test_no_sweeps():
    out = report_plots.sweep_sections(build([run_of([result()])]))
    assert out[0].startswith("<h2") and "No sweep case" in out[1] and len(out) == 2


# ---------------------------------------------------------------- the distribution table

# (max ULP, verdict, floor_accepted, dtype, quantity) and where the table counts it, by construction
SPEC = [
    (0.0, "exact", 0, "float32", "value", "0"),
    (0.5, "exact", 0, "float32", "grad", "≤0.5"),
    (0.5, "exact", 0, "float32", "value", "≤0.5"),
    (3.0, "acceptable", 0, "float32", "value", "≤4"),
    (50.0, "conditioned", 0, "float32", "value", "≤100"),
    (5e5, "known_divergence", 0, "float32", "value", "≤1e6"),
    (2e7, "known_divergence", 9, "float32", "value", ">1e6"),  # floor-accepted elements, yet diverging: its bin
    (math.inf, "fail", 0, "float32", "value", "inf/NaN"),
    (8e6, "exact", 12, "float32", "value", "floor-accepted"),  # exact only through the floor
    (8e6, "acceptable", 3, "float32", "grad", "floor-accepted"),
    (2.0, "exact", 4, "float32", "value", "≤4"),  # floor-accepted elements, its max within the tolerance: its bin
    (None, "error", 0, "float32", "value", None),  # no error measure: counted as a problem only
    (None, "unsupported", 0, "float32", "value", "left out"),
    (7.0, "exact", 0, "float32", "symmetry", "left out"),  # a relation, not an error against the exact value
    (20.0, "fail", 0, "float64", "value", "≤100"),
    (1e3, "exact", 0, "float64", "value", "≤1e3"),
]


def distribution_results():
    return [
        result(f"alpha/c{i}", "fw.api_a", verdict, max_ulp=ulp, floor_accepted=floor, dtype=dtype, quantity=quantity)
        for i, (ulp, verdict, floor, dtype, quantity, _) in enumerate(SPEC)
    ]


def _table_rows(html_text: str) -> dict[tuple[str, str], dict[str, str]]:
    header = re.search(r"<tr><th>run</th>(.*?)</tr>", html_text).group(1)
    names = [html.unescape(name) for name in re.findall(r"<th[^>]*>([^<]*)</th>", header)]
    rows = {}
    for attrs, body in re.findall(r"<tr([^>]*data-framework[^>]*)>(.*?)</tr>", html_text):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", body)
        dtype = re.search(r'data-dtype="([^"]+)"', attrs).group(1)
        framework = re.search(r'data-framework="([^"]+)"', attrs).group(1)
        rows[(framework, dtype)] = dict(zip(["run", *names], cells))
    return rows


def test_distribution_counts_equal_the_construction():
    report = build([run_of(distribution_results())])
    html_text = "\n".join(report_plots.ulp_distribution(report))
    assert '<table id="distribution"' in html_text and "<img" not in html_text
    rows = _table_rows(html_text)
    assert set(rows) == {("fw", "float32"), ("fw", "float64")}
    for dtype in ("float32", "float64"):
        row = rows[("fw", dtype)]
        spec = [s for s in SPEC if s[3] == dtype and s[5] != "left out"]
        for label in (*report_plots.BIN_LABELS, "floor-accepted"):
            assert int(row[label]) == sum(s[5] == label for s in spec), (dtype, label)
        assert int(row["problems"]) == sum(s[1] in ("fail", "error") for s in spec)
        assert int(row["results"]) == len(spec)
    # the floor-only results sit apart, not in the >1e6 bin
    assert rows[("fw", "float32")]["floor-accepted"] == "2" and rows[("fw", "float32")][">1e6"] == "1"


def test_distribution_marks_problems_and_heats_by_share():
    html_text = "\n".join(report_plots.ulp_distribution(build([run_of(distribution_results())])))
    row = re.search(r'<tr[^>]*data-dtype="float64"[^>]*>(.*?)</tr>', html_text).group(1)
    cells = re.findall(r"<td([^>]*)>(.*?)</td>", row)[3:]  # after run, API, dtype
    by_label = dict(zip((*report_plots.BIN_LABELS, "floor-accepted", "problems", "results"), cells))
    assert "prob" in by_label["≤100"][0] and "prob" not in by_label["≤1e3"][0]  # the fail's bin outlined
    assert "fail" in by_label["problems"][0] and by_label["problems"][1] == "1"
    # two results, one per bin: the same shade; an empty bin none
    assert re.search(r"rgba\([^)]*\)", by_label["≤100"][0]).group(0) == re.search(
        r"rgba\([^)]*\)", by_label["≤1e3"][0]
    ).group(0)
    assert "background" not in by_label["0"][0]
    # the hue says where: blue within the tolerance, orange past it, red for inf/NaN, teal for floor-accepted
    row = re.search(r'<tr[^>]*data-dtype="float32"[^>]*>(.*?)</tr>', html_text).group(1)
    cells = dict(zip((*report_plots.BIN_LABELS, "floor-accepted"), re.findall(r"<td([^>]*)>", row)[3:]))
    hues = {
        label: re.search(r"rgba\((\d+,\d+,\d+)", cells[label]).group(1)
        for label in ("≤4", "≤16", ">1e6", "inf/NaN", "floor-accepted")
        if label in cells and "rgba" in cells[label]
    }
    assert hues == {"≤4": "21,101,192", ">1e6": "239,108,0", "inf/NaN": "198,40,40", "floor-accepted": "0,131,143"}


@pytest.mark.parametrize(
    "value, label", [(0.0, "0"), (0.5, "≤0.5"), (4.0, "≤4"), (4.1, "≤16"), (2e6, ">1e6"), (math.nan, "inf/NaN")]
)
def test_ulp_bin(value, label):
    assert report_plots.BIN_LABELS[report_plots.ulp_bin(value)] == label


def test_figures_drawn_once_per_results_files_code_and_libraries(tmp_path, monkeypatch):
    """The report's figures are kept in the cache, keyed by the bytes of the results files read (and the code and
    libraries): the same files give the same figures without drawing; a changed file, or an entry that does not
    prove itself, draws them again."""
    from conformance import cache

    monkeypatch.setenv("CONFORMANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONFORMANCE_CACHE_KEY", str(tmp_path / "key"))
    monkeypatch.setattr(cache, "_warned", set())  # (one warning of a kind per process)
    report = two_frameworks()
    models = report_plots.sweep_models(report)
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for n, path in enumerate(files):
        path.write_text(f"results {n}\n", encoding="utf-8")
    report.inputs = files
    drawn = []
    original = report_plots.render_figures
    monkeypatch.setattr(report_plots, "render_figures", lambda m: drawn.append(len(m)) or original(m))
    first = report_plots.cached_figures(report, models)
    assert drawn == [len(models)] and first == original(models)
    assert report_plots.cached_figures(report, models) == first and drawn == [len(models)]  # kept: not drawn
    files[1].write_text("results 1, changed\n", encoding="utf-8")
    assert report_plots.cached_figures(report, models) == first and len(drawn) == 2  # another key: drawn
    # an entry whose bytes were replaced does not prove itself: drawn again, never shown
    key = cache.outputs_key(report_plots.FIGURES_KIND, files, report_plots._libraries())
    entry = cache.path_of(tmp_path / "cache", key)
    data = dict(np.load(entry))
    data["data"] = np.frombuffer(b'["<figure>forged</figure>"]', dtype=np.uint8)
    np.savez(entry, **data)  # (its name ends in .npz: written in place)
    with pytest.warns(cache.CacheWarning):
        assert report_plots.cached_figures(report, models) == first
    assert len(drawn) == 3
    report.inputs = []  # not read from files: drawn every time
    report_plots.cached_figures(report, models)
    assert len(drawn) == 4
