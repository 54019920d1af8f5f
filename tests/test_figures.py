"""Tests for hetreport.figures: data and mappings, not pixels.

Synthetic ``effects``/``draws`` below follow the contract exactly (one row per
method x group, modifier columns as ordered Categoricals of display labels,
non-estimable rows with NaN estimates, optional ``truth``).
"""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import plotnine
import pytest
from plotnine import theme_get

from hetreport import figures as F
from hetreport.errors import HetreportError

# --------------------------------------------------------------------------
# Synthetic data following the contract
# --------------------------------------------------------------------------

LEVELS5 = ["1 (low)", "2", "3", "4", "5 (high)"]
MODIFIERS_SMALL = {
    "white": ["Non-white", "White"],
    "male": ["Women", "Men"],
    "intl": LEVELS5,
}
MODIFIERS_PAPER = {**MODIFIERS_SMALL, "hawk": LEVELS5}
SHORT = {"intl": "Intl", "hawk": "Hawk"}
NAMES = {
    "white": "Race",
    "male": "Gender",
    "intl": "Internationalism",
    "hawk": "Hawkishness",
    "estimate": "Effect on support",
    "n": "Group size",
}
CONTRACT = [
    "analysis",
    "method",
    "group",
    "n",
    "n_treated",
    "n_control",
    "estimate",
    "std_error",
    "lower_90",
    "upper_90",
    "lower_95",
    "upper_95",
    "prob_positive",
    "estimable",
]


def make_effects(modifiers=MODIFIERS_SMALL, *, truth=False, n_small=3, seed=1, methods=("ols_full", "hierarchical")) -> pd.DataFrame:
    """Long effects table: one row per method x group.

    The first ``n_small`` groups (in a shuffled order) have n < 10 and are not
    estimable by OLS (NaN estimate and intervals, estimable False).
    """
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(*modifiers.values()))
    G = len(combos)
    n = rng.integers(20, 160, size=G)
    small = rng.choice(G, size=n_small, replace=False)
    n[small] = rng.integers(3, 9, size=n_small)
    true = 0.10 + rng.normal(0, 0.06, size=G)
    rows = []
    for g, levels in enumerate(combos):
        parts = []
        for (col, _), lvl in zip(modifiers.items(), levels):
            parts.append(lvl if col not in SHORT else f"{SHORT[col]}: {lvl}")
        label = ", ".join(parts)
        se_ols = 0.9 / np.sqrt(n[g])
        est_ols = true[g] + rng.normal(0, se_ols)
        se_h = 0.6 * se_ols
        est_h = 0.10 + 0.45 * (est_ols - 0.10)
        for m in methods:
            if m == "hierarchical":
                est, se, ok = est_h, se_h, True
            else:
                est, se, ok = est_ols, se_ols, g not in small
            rec = dict(zip(modifiers, levels))
            rec.update(
                analysis="main",
                method=m,
                group=f"g{g:03d}",
                n=int(n[g]),
                n_treated=int(n[g] // 2),
                n_control=int(n[g] - n[g] // 2),
                estimate=est if ok else np.nan,
                std_error=se if ok else np.nan,
                lower_90=est - 1.645 * se if ok else np.nan,
                upper_90=est + 1.645 * se if ok else np.nan,
                lower_95=est - 1.96 * se if ok else np.nan,
                upper_95=est + 1.96 * se if ok else np.nan,
                prob_positive=0.7 if ok else np.nan,
                estimable=ok,
                group_label=label,
            )
            if truth:
                rec["truth"] = true[g]
            rows.append(rec)
    df = pd.DataFrame(rows)
    for col, lv in modifiers.items():
        df[col] = pd.Categorical(df[col], categories=lv, ordered=True)
    cols = ["analysis", "method", "group", *modifiers, *CONTRACT[3:], "group_label"]
    if truth:
        cols.append("truth")
    return df[cols]


def make_draws(effects: pd.DataFrame, n_draws: int = 1000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    h = effects.loc[effects["method"] == "hierarchical"]
    G = len(h)
    vals = rng.normal(h["estimate"].to_numpy()[:, None], h["std_error"].to_numpy()[:, None], size=(G, n_draws))
    return pd.DataFrame(
        {
            "group": np.repeat(h["group"].to_numpy(), n_draws),
            "draw": np.tile(np.arange(n_draws), G),
            "value": vals.ravel(),
        }
    )


def make_annotations(effects: pd.DataFrame) -> list[dict]:
    h = effects.loc[effects["method"] == "hierarchical"].sort_values("estimate").reset_index()
    picks = {"smallest": 0, "median": len(h) // 2, "largest": len(h) - 1}
    return [
        {
            "role": role,
            "label": h.loc[i, "group_label"],
            "estimate": h.loc[i, "estimate"],
            "lower": h.loc[i, "lower_95"],
            "upper": h.loc[i, "upper_95"],
        }
        for role, i in picks.items()
    ]


@pytest.fixture(scope="module")
def effects():
    return make_effects()


@pytest.fixture(scope="module")
def effects_truth():
    return make_effects(truth=True)


def input_data(p, i: int) -> pd.DataFrame:
    """The data a layer was given (its own, else the plot's)."""
    d = p.layers[i].geom.data
    return p.data if d is None else d


def all_text(fig) -> list[str]:
    """Every text string in a drawn figure (axes, ticks, strips, legends)."""
    out = []
    for t in fig.findobj(mpl.text.Text):
        s = t.get_text()
        if s:
            out.append(s)
    return out


# --------------------------------------------------------------------------
# Theme and global state
# --------------------------------------------------------------------------


def test_theme_is_complete_bw_subclass():
    th = F.theme_hetreport()
    assert isinstance(th, plotnine.theme_bw) and th.complete
    assert th.getp("legend_position") == "bottom"
    assert th.rcParams["svg.fonttype"] == "path"
    assert set(F.METHOD_LABELS) == set(F.METHOD_COLORS) == set(F.METHOD_SHAPES) == set(F.METHOD_LINETYPES)
    assert len(set(F.METHOD_SHAPES.values())) == len(F.METHOD_SHAPES)
    # one accent colour, the rest greys
    non_grey = [c for c in F.METHOD_COLORS.values() if len({c[1:3], c[3:5], c[5:7]}) > 1]
    assert len(non_grey) == 1


def _all_plots(eff):
    rng = np.random.default_rng(0)
    return {
        "comparison": F.plot_comparison(eff, "intl", names=NAMES),
        "shrinkage": F.plot_shrinkage(eff, names=NAMES),
        "distribution": F.plot_distribution(make_draws(eff, 200), make_annotations(eff), names=NAMES),
        "by_modifier": F.plot_by_modifier(eff, ["white", "intl"], names=NAMES),
        "heatmap": F.plot_heatmap(eff, "intl", "male", names=NAMES),
        "ppc": F.plot_ppc(rng.normal(size=50), rng.normal(size=(60, 50)), names=NAMES),
    }


def test_theme_applied_and_global_state_unchanged(effects):
    before_theme = theme_get()
    before_opt = plotnine.options.current_theme
    before_rc = dict(mpl.rcParams)
    plots = _all_plots(effects)
    for kind, p in plots.items():
        assert isinstance(p.theme, F.theme_hetreport), kind
        assert p.theme.getp("figure_size")[0] == F.PAGE_WIDTH, kind
        p.draw()
    assert plotnine.options.current_theme is before_opt
    assert theme_get() == before_theme
    changed = {k for k in before_rc if before_rc[k] != mpl.rcParams[k] and k != "backend"}
    assert not changed


# --------------------------------------------------------------------------
# Figure 1: comparison
# --------------------------------------------------------------------------


def test_comparison_drops_nan_rows_and_facets(effects):
    p = F.plot_comparison(effects, "intl", names=NAMES)
    n_groups = effects["group"].nunique()
    ols_ok = int(effects.query("method == 'ols_full'")["estimable"].sum())
    # layers: vline, then segment+point per method
    seg_ols, pt_ols = F.layer_data(p, 1), F.layer_data(p, 2)
    seg_h, pt_h = F.layer_data(p, 3), F.layer_data(p, 4)
    assert len(seg_ols) == len(pt_ols) == ols_ok < n_groups
    assert len(seg_h) == len(pt_h) == n_groups
    for d in (seg_ols, pt_ols, seg_h, pt_h):
        assert np.isfinite(d["x"]).all()
    assert not np.isclose(pt_ols["x"], 0).any()
    assert list(p.facet.vars) == ["intl"]
    assert input_data(p, 4)["intl"].nunique() == 5
    assert input_data(p, 4)["intl"].cat.categories[0] == "Internationalism: 1 (low)"
    cap = p.labels.get("caption", None) or ""
    assert cap == "Groups not estimable (shown without that marker): 3 by OLS, full interactions."
    fig = p.draw()
    texts = all_text(fig)
    assert "Effect on support" in texts and "estimate" not in texts
    assert "Internationalism: 5 (high)" in texts
    assert "OLS, full interactions" in texts and "Hierarchical (Bayesian)" in texts


def test_comparison_order_follows_hierarchical_estimate(effects):
    p = F.plot_comparison(effects, "intl", names=NAMES)
    pts = input_data(p, 4)  # hierarchical points, with the y categorical
    built = F.layer_data(p, 4)
    for panel, d in built.groupby("PANEL", observed=True):
        d = d.sort_values("y")
        est = d["x"].to_numpy()
        assert np.all(np.diff(est) >= 0), f"panel {panel} not ordered by estimate"
    # y categories are the group labels, grouped by facet level
    cats = list(pts["y"].cat.categories)
    assert set(cats) == set(effects["group_label"])
    h = effects.query("method == 'hierarchical'")
    first_level = h.loc[h["intl"] == "1 (low)"].sort_values("estimate")["group_label"].tolist()
    assert cats[: len(first_level)] == first_level


def test_comparison_dodges_methods_vertically(effects):
    p = F.plot_comparison(effects, "white")
    ols, hier = F.layer_data(p, 2), F.layer_data(p, 4)
    frac = lambda s: np.round(s - np.round(s), 3)  # noqa: E731
    assert set(frac(ols["y"])) == {0.2} and set(frac(hier["y"])) == {-0.2}
    texts = all_text(p.draw())
    assert "white: White" in texts  # no names: falls back to the column name
    assert "estimate" in texts


def test_comparison_truth_marker(effects_truth):
    p = F.plot_comparison(effects_truth, "intl", names=NAMES)
    truth = F.layer_data(p, 5)
    assert len(truth) == effects_truth["group"].nunique()
    assert np.allclose(np.sort(truth["x"]), np.sort(effects_truth.drop_duplicates("group")["truth"]))
    assert "True effect" in all_text(p.draw())


def test_comparison_bad_facet_message(effects):
    with pytest.raises(HetreportError, match="Did you mean 'intl'"):
        F.plot_comparison(effects, "intll")
    with pytest.raises(HetreportError, match="unknown method"):
        F.plot_comparison(effects, "intl", methods=("ols",))


def test_figure_size_grows_with_groups():
    h = [F.figure_size("comparison", g, 5)[1] for g in (10, 20, 40, 100, 200)]
    assert all(a < b for a, b in zip(h, h[1:]))
    assert all(F.figure_size(k, 100, 5)[0] == 6.5 for k in ("comparison", "shrinkage", "distribution", "by_modifier", "heatmap", "ppc"))
    # the paper's 100 groups: one column of five panels, ~0.1 in per group
    assert 12 <= F.figure_size("comparison", 100, 5)[1] <= 15
    with pytest.raises(HetreportError):
        F.figure_size("pie", 10, 1)


def test_comparison_100_groups_readable():
    """The paper's 100 groups: every y label drawn, none overlapping, >= 6 pt."""
    eff = make_effects(MODIFIERS_PAPER, truth=True, n_small=8)
    p = F.plot_comparison(eff, "hawk", names=NAMES)
    fig = p.draw()
    assert tuple(fig.get_size_inches()) == F.figure_size("comparison", 100, 5)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    panels = [ax for ax in fig.axes if ax.get_yticklabels()]
    assert len(panels) == 5
    n_labels = 0
    for ax in panels:
        labels = [t for t in ax.get_yticklabels() if t.get_text()]
        n_labels += len(labels)
        assert all(t.get_fontsize() >= 6 for t in labels)
        boxes = sorted((t.get_window_extent(r) for t in labels), key=lambda b: b.y0)
        assert all(a.y1 <= b.y0 + 0.5 for a, b in zip(boxes, boxes[1:]))
    assert n_labels == 100


def test_comparison_three_methods(effects):
    eff = make_effects(methods=("ols_full", "subgroup", "hierarchical"))
    p = F.plot_comparison(eff, "male", methods=("ols_full", "subgroup", "hierarchical"))
    offs = [np.round(F.layer_data(p, i)["y"] % 1, 2).unique().tolist() for i in (2, 4, 6)]
    assert offs == [[0.3], [0.0], [0.7]]  # top, middle, bottom of each row
    assert "Subgroup difference in means" in all_text(p.draw())


def test_comparison_legend_takes_two_rows_from_three_approaches():
    """One row of three labels overran the page width ("Bayesian causal fo..." was cut off); the figure's
    height already leaves room for the second row."""
    two = F.plot_comparison(make_effects(methods=("ols_full", "hierarchical")), "intl")
    three = F.plot_comparison(make_effects(methods=("ols_full", "hierarchical", "bcf")), "intl")
    assert getattr(two.guides.color, "nrow", None) is None
    assert [getattr(three.guides, a).nrow for a in ("color", "shape", "linetype")] == [2, 2, 2]


# --------------------------------------------------------------------------
# Shrinkage
# --------------------------------------------------------------------------


def test_shrinkage(effects):
    p = F.plot_shrinkage(effects, names=NAMES)
    seg, pts = F.layer_data(p, 1), F.layer_data(p, 2)
    h = effects.query("method == 'hierarchical'")
    ols_ok = int(effects.query("method == 'ols_full'")["estimable"].sum())
    assert len(seg) == ols_ok
    assert len(pts) == ols_ok + len(h)
    assert (pts["x"] == 2).sum() == len(h) and (pts["x"] == 1).sum() == ols_ok
    mean = np.average(h["estimate"], weights=h["n"])
    assert np.isclose(F.layer_data(p, 0)["yintercept"].iloc[0], mean)
    texts = all_text(p.draw())
    assert "Group size" in texts and "Effect on support" in texts
    assert "OLS, full interactions" in texts and "Hierarchical" in texts


# --------------------------------------------------------------------------
# Figure 2: distribution
# --------------------------------------------------------------------------


def _boxes_in_axes(fig):
    """Window extents of the annotation texts and of the panel."""
    ax = fig.axes[0]
    fig.canvas.draw()  # runs plotnine's layout engine: final positions
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in ax.texts if t.get_text()]
    return ax.get_window_extent(r), boxes


def _check_no_overlap(fig, n):
    panel, boxes = _boxes_in_axes(fig)
    assert len(boxes) == n
    for b in boxes:  # inside the panel
        assert b.x0 >= panel.x0 - 1 and b.x1 <= panel.x1 + 1
        assert b.y0 >= panel.y0 - 1 and b.y1 <= panel.y1 + 1
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)


def test_distribution_pooled_groups_and_annotations(effects):
    draws = make_draws(effects)
    ann = make_annotations(effects)
    p = F.plot_distribution(draws, ann, sd_all=0.1312, sigma_theta=(0.041, 0.0, 0.1), names=NAMES)
    pooled = F.layer_data(p, 0)
    area = np.trapezoid(pooled["y"], pooled["x"])
    assert 0.97 < area <= 1.001
    lines = F.layer_data(p, 1)
    assert lines["group"].nunique() == effects["group"].nunique()  # <= 30 groups: one line each
    seg = F.layer_data(p, 3)
    assert np.allclose(sorted(seg["x"]), sorted(a["estimate"] for a in ann))
    labels = input_data(p, 4)["label"].tolist()
    assert [s.split(":")[0] for s in labels] == ["Smallest", "Median", "Largest"]
    assert all(re.match(r"(Smallest|Median|Largest): \S+ \(\S+ to \S+\)\n", s) for s in labels)
    assert labels[0].split("\n", 1)[1].replace("\n", " ") == ann[0]["label"]
    sub = p.labels.get("subtitle", None)
    assert "SD of all draws 0.13" in sub and "0.04 (0.00 to 0.10)" in sub
    fig = p.draw()
    _check_no_overlap(fig, 3)
    assert "Effect on support" in all_text(fig)


def test_distribution_crowded_annotations_do_not_overlap(effects):
    """Estimates close together and long labels force stacked tiers."""
    draws = make_draws(effects, n_draws=400)
    long = "Non-white, Women, Internationalism: 5 (high), Hawkishness: 1 (low)"
    ann = [
        {"role": "smallest", "label": long, "estimate": 0.08, "lower": -0.1, "upper": 0.2},
        {"role": "median", "label": long, "estimate": 0.10, "lower": -0.05, "upper": 0.25},
        {"role": "largest", "label": long, "estimate": 0.12, "lower": 0.0, "upper": 0.3},
    ]
    p = F.plot_distribution(draws, ann)
    lay = input_data(p, 4)
    assert lay["tier"].nunique() == 2  # smallest/largest side by side, median above
    for _, low in lay.iterrows():  # no line runs up through a lower label
        higher = lay.loc[lay["tier"] > low["tier"], "x_line"]
        assert not ((higher > low["box_left"]) & (higher < low["box_right"])).any()
    _check_no_overlap(p.draw(), 3)
    # extremes at the panel edges stay inside it
    xs = draws["value"]
    ann2 = [
        {"role": "smallest", "label": long, "estimate": xs.min(), "lower": xs.min(), "upper": 0},
        {"role": "largest", "label": long, "estimate": xs.max(), "lower": 0, "upper": xs.max()},
    ]
    _check_no_overlap(F.plot_distribution(draws, ann2).draw(), 2)


def test_distribution_many_groups_uses_rug():
    # (speed goals live in benchmarks/, not in timed tests; layer_data draws the whole figure)
    eff = make_effects(MODIFIERS_PAPER, n_small=0)
    draws = make_draws(eff, n_draws=4000)  # 400,000 rows
    p = F.plot_distribution(draws, make_annotations(eff))
    rug = F.layer_data(p, 1)
    assert len(rug) == 100
    med = draws.groupby("group")["value"].median()
    assert np.allclose(np.sort(rug["x"]), np.sort(med))


def test_annotation_layout_rules():
    xs, ws = [0.0, 0.05, 0.1], [0.4, 0.4, 0.4]
    lay = F._layout_annotations(xs, ws, -1, 1, gap=0.01)
    for (l1, r1, t1, _), (l2, r2, t2, _) in itertools.combinations(lay, 2):
        if t1 == t2:
            assert r1 + 0.01 <= l2 or r2 + 0.01 <= l1
    for _i, (l, r, t, _) in enumerate(lay):
        assert -1 <= l and r <= 1
        for j, x in enumerate(xs):  # lines of higher labels never cross text
            if lay[j][2] > t:
                assert not (l - 0.01 < x < r + 0.01)
    # well separated labels share one tier
    lay = F._layout_annotations([-0.8, 0.0, 0.8], [0.3] * 3, -1, 1, gap=0.01)
    assert {t for *_, t, _ in lay} == {0}


# --------------------------------------------------------------------------
# Figure 3: by modifier
# --------------------------------------------------------------------------


def test_by_modifier_long_format_and_facets(effects):
    mods = ["white", "male", "intl"]
    p = F.plot_by_modifier(effects, mods, names=NAMES)
    data = p.data
    G = effects["group"].nunique()
    assert len(data) == 3 * G
    assert list(data["modifier"].cat.categories) == ["Race", "Gender", "Internationalism"]
    assert list(p.facet.cols) == ["modifier"]
    box = F.layer_data(p, 1)
    assert len(box) == 2 + 2 + 5
    pts1, pts2 = F.layer_data(p, 2), F.layer_data(p, 2)
    assert np.allclose(pts1["x"], pts2["x"])  # jitter has a fixed seed
    assert np.allclose(pts1["y"], data["estimate"])  # no vertical jitter
    texts = all_text(p.draw())
    assert "Internationalism" in texts and "1 (low)" in texts and "5 (high)" in texts
    assert "intl" not in texts
    assert not any("\x1f" in t for t in texts)


def test_by_modifier_ols_skips_nan(effects):
    p = F.plot_by_modifier(effects, ["intl"], method="ols_full")
    ok = int(effects.query("method == 'ols_full'")["estimable"].sum())
    assert len(p.data) == ok and np.isfinite(p.data["estimate"]).all()


# --------------------------------------------------------------------------
# Heatmap
# --------------------------------------------------------------------------


def test_heatmap_weighted_cells(effects):
    p = F.plot_heatmap(effects, "intl", "male", facet="white", names=NAMES)
    cells = p.data
    assert len(cells) == 5 * 2 * 2
    assert "n-weighted mean" not in (p.labels.get("subtitle", None) or "")  # one group per cell here
    p2 = F.plot_heatmap(effects, "intl", "male", names=NAMES)
    c2 = p2.data
    h = effects.query("method == 'hierarchical'")
    one = h.loc[(h["intl"] == "3") & (h["male"] == "Men")]
    row = c2.loc[(c2["intl"] == "3") & (c2["male"] == "Men")].iloc[0]
    assert np.isclose(row["value"], np.average(one["estimate"], weights=one["n"]))
    assert row["label"] == F._num(row["value"])
    assert "n-weighted mean" in p2.labels.get("subtitle", None) and "Race" in p2.labels.get("subtitle", None)
    texts = all_text(p.draw())
    assert "Race: White" in texts and "Internationalism" in texts and "Gender" in texts


def test_heatmap_diverging_when_values_span_zero(effects):
    eff = effects.copy()
    eff["estimate"] = eff["estimate"] - 0.1
    p = F.plot_heatmap(eff, "intl", "male", facet="white")
    fill = next(s for s in p.scales if "fill" in s.aesthetics)
    lo, hi = fill.limits
    assert np.isclose(lo, -hi) and lo < 0
    assert isinstance(fill, plotnine.scale_fill_gradient2)


def test_heatmap_ols_nan_cells_dropped():
    eff = make_effects(n_small=0)
    eff.loc[(eff["method"] == "ols_full") & (eff["group"] == "g000"), ["estimate", "lower_95", "upper_95"]] = np.nan
    eff.loc[(eff["method"] == "ols_full") & (eff["group"] == "g000"), "estimable"] = False
    p = F.plot_heatmap(eff, "intl", "male", facet="white", method="ols_full")
    assert len(p.data) == 19 and np.isfinite(p.data["value"]).all()
    p.draw()


# --------------------------------------------------------------------------
# PPC
# --------------------------------------------------------------------------


def test_ppc_continuous_and_binary():
    rng = np.random.default_rng(3)
    y = pd.Series(rng.normal(size=300), name="support")
    y_rep = rng.normal(size=(200, 300))
    p = F.plot_ppc(y, y_rep, names={"support": "Support for the policy"})
    reps, obs = F.layer_data(p, 0), F.layer_data(p, 1)
    assert reps["group"].nunique() == 50 and obs["group"].nunique() == 1
    assert "Support for the policy" in all_text(p.draw())

    yb = rng.integers(0, 2, size=300)
    yb_rep = rng.integers(0, 2, size=(400, 300))
    pb = F.plot_ppc(yb, yb_rep)
    bars, rng_ = F.layer_data(pb, 0), F.layer_data(pb, 1)
    assert len(bars) == 2 and np.isclose(bars["y"].sum(), 1)
    assert (rng_["ymin"] <= rng_["y"]).all() and (rng_["y"] <= rng_["ymax"]).all()
    with pytest.raises(HetreportError, match="shape"):
        F.plot_ppc(yb, yb_rep[:, :10])


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def _png_dpi(path: Path) -> float:
    data = path.read_bytes()
    i = data.find(b"pHYs")
    ppx, _, unit = struct.unpack(">IIB", data[i + 4 : i + 13])
    assert unit == 1
    return ppx * 0.0254


def test_save_figure_png_and_svg(tmp_path, effects):
    p = F.plot_by_modifier(effects, ["white", "intl"], names=NAMES)
    with mpl.rc_context({"svg.fonttype": "none"}):  # a global setting we must not need nor change
        png, svg = F.save_figure(p, tmp_path / "sub" / "fig3", 6.5, 3.0)
        assert mpl.rcParams["svg.fonttype"] == "none"
    assert png == tmp_path / "sub" / "fig3.png" and png.exists()
    assert _png_dpi(png) >= 199.5
    w, h = struct.unpack(">II", png.read_bytes()[16:24])
    assert (w, h) == (1300, 600)
    text = svg.read_text()
    assert "<text" not in text  # glyphs are paths: no fonts needed
    external = re.findall(r'(?:href|src)="(?:https?:)?//|url\((?:https?:)?//|@import|@font-face', text)
    assert not external
    # no DOCTYPE/DTD link, no metadata URLs: "http" only in XML namespace names
    assert "<!DOCTYPE" not in text and "<metadata" not in text
    no_ns = re.sub(r'xmlns(?::\w+)?="[^"]*"', "", text)
    assert "http" not in no_ns
    assert text.count("http") <= 2  # xmlns and xmlns:xlink
    import xml.etree.ElementTree as ET

    assert ET.fromstring(text.encode()).tag == "{http://www.w3.org/2000/svg}svg"
    # reproducible: a second save gives byte-identical files
    png2, svg2 = F.save_figure(p, tmp_path / "again" / "fig3", 6.5, 3.0)
    assert svg2.read_bytes() == svg.read_bytes() and png2.read_bytes() == png.read_bytes()


def test_save_figure_leaves_plot_and_globals_alone(tmp_path, effects):
    p = F.plot_shrinkage(effects)
    size_before = p.theme.getp("figure_size")
    before_theme, before_rc = theme_get(), dict(mpl.rcParams)
    F.save_figure(p, tmp_path / "s", 4, 3)
    assert p.theme.getp("figure_size") == size_before
    assert theme_get() == before_theme and plotnine.options.current_theme is None
    assert {k for k in before_rc if before_rc[k] != mpl.rcParams[k] and k != "backend"} == set()


# --------------------------------------------------------------------------
# Small pieces
# --------------------------------------------------------------------------


def test_number_format_uses_typographic_minus():
    assert F._num(-0.123) == "\u22120.12"
    assert F._num(-0.001) == "0.00"  # no "-0.00"
    text = F._annotation_text({"role": "smallest", "label": "White, Men", "estimate": -0.05, "lower": -0.12, "upper": 0.21})
    assert text == "Smallest: \u22120.05 (\u22120.12 to 0.21)\nWhite, Men"


def test_long_labels_wrap_at_commas():
    lines = F._wrap_label("Non-white, Women, Internationalism: 5 (high), Hawkishness: 1 (low)", 34)
    assert lines == ["Non-white, Women,", "Internationalism: 5 (high),", "Hawkishness: 1 (low)"]
    lines = F._wrap_label("a, " * 40 + "b", 10)
    assert len(lines) == 3 and all(len(x) <= 10 for x in lines)
    assert lines[-1].endswith("\u2026")


def test_kde_matches_scipy():
    from scipy.stats import gaussian_kde

    x = np.random.default_rng(0).normal(size=5000)
    grid = np.linspace(-4, 4, 1024)
    bw = F._bandwidth(x)
    ours = F._kde_on_grid(x, grid, bw)
    ref = gaussian_kde(x, bw_method=bw / x.std(ddof=1))(grid)
    assert np.max(np.abs(ours - ref)) < 0.01


def test_contract_violations_are_reported(effects):
    two = pd.concat([effects, effects.assign(analysis="other")], ignore_index=True)
    with pytest.raises(HetreportError, match="several analyses"):
        F.plot_by_modifier(two, ["intl"])
    with pytest.raises(HetreportError, match="duplicate method x group"):
        F.plot_shrinkage(pd.concat([effects, effects.iloc[:1]], ignore_index=True))
    with pytest.raises(HetreportError, match="different modifiers"):
        F.plot_heatmap(effects, "intl", "intl")


def test_distribution_ignores_missing_draws(effects):
    draws = make_draws(effects, 200)
    draws.loc[::7, "value"] = np.nan
    pooled = F.layer_data(F.plot_distribution(draws, []), 0)
    assert np.isfinite(pooled["y"]).all()


def test_missing_columns_are_reported(effects):
    with pytest.raises(HetreportError, match="missing column"):
        F.plot_comparison(effects.drop(columns="lower_95"), "intl")
    with pytest.raises(HetreportError, match="group"):
        F.plot_distribution(pd.DataFrame({"value": [1.0]}), [])


# --------------------------------------------------------------------------
# Fitting labels to the page: wrapping, abbreviation, layout, page limits
# --------------------------------------------------------------------------

# The Tomz-Weeks survey's modifiers: long level labels.
TW = {
    "race": ["non-white", "white"],
    "gender": ["women", "men"],
    "intl": [
        "lowest internationalism",
        "low internationalism",
        "middling internationalism",
        "high internationalism",
        "highest internationalism",
    ],
    "hawk": ["least hawkish", "somewhat dovish", "middling hawkishness", "somewhat hawkish", "most hawkish"],
}
TW_NAMES = {
    "race": "Race",
    "gender": "Gender",
    "intl": "Internationalism",
    "hawk": "Militant assertiveness",
    "estimate": "Effect of alliance on support",
}
# The scenario analysis: short labels, four modifiers.
SCEN = {
    "regime": ["autocracy", "democracy"],
    "stakes": ["high stakes", "low stakes"],
    "costs": ["costly", "not costly"],
    "region": ["Africa", "Asia", "Eastern Europe", "South America"],
}
MAX_FIG_H = 9.0  # a figure plus caption on an A4/letter page at 6.5 in wide


def make_tw_effects(**kw):
    """Effects of the paper's 100 groups with group labels 'non-white, women, ...'."""
    eff = make_effects(TW, **kw)
    h = eff.drop_duplicates("group").set_index("group")
    label = h[list(TW)].astype(str).agg(", ".join, axis=1)
    eff["group_label"] = eff["group"].map(label)
    return eff


@pytest.fixture(scope="module")
def tw():
    return make_tw_effects(truth=True, n_small=8)


def tick_labels(p, axis: str = "x") -> list[list[str]]:
    """The tick labels the plot's scales produce, per panel (after building)."""
    from copy import deepcopy

    from plotnine._utils.context import plot_context

    q = deepcopy(p)
    with plot_context(q):
        q._setup()
        q._build()
        q.layout.setup_panel_params(q.coordinates)
    return [list(getattr(pp, axis).labels) for pp in q.layout.panel_params]


def _drawn(p):
    fig = p.draw()
    fig.canvas.draw()
    return fig, fig.canvas.get_renderer()


def assert_ticks_apart_and_inside(p, axis: str = "x"):
    """Drawn tick labels of all panels: none overlaps another, all inside the figure.

    Labels rotated 45 degrees are parallel bands: two of them are apart when
    the distance between their centres across the text direction is at least
    half the sum of their thicknesses (lines x line height)."""
    fig, r = _drawn(p)
    fig_box = fig.bbox
    texts = []
    for ax in fig.axes:
        labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
        texts += [t for t in labels if t.get_text() and t.get_visible()]
    assert texts
    boxes = [t.get_window_extent(r) for t in texts]
    for b in boxes:
        assert b.x0 >= fig_box.x0 - 0.5 and b.x1 <= fig_box.x1 + 0.5, b
        assert b.y0 >= fig_box.y0 - 0.5 and b.y1 <= fig_box.y1 + 0.5, b
    for (ta, a), (tb, b) in itertools.combinations(zip(texts, boxes), 2):
        overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
        overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
        if overlap_w <= 0.5 or overlap_h <= 0.5:
            continue
        assert ta.get_rotation() == tb.get_rotation() == 45, (ta.get_text(), tb.get_text(), a, b)
        across = abs(((b.x0 + b.x1) - (a.x0 + a.x1)) / 2 * -np.sqrt(0.5) + ((b.y0 + b.y1) - (a.y0 + a.y1)) / 2 * np.sqrt(0.5))
        px = fig.dpi / 72 * ta.get_fontsize()
        thick = [(t.get_text().count("\n") * t._linespacing + 1) * px for t in (ta, tb)]
        assert across >= sum(thick) / 2 - 0.5, (ta.get_text(), tb.get_text())
    return fig, r


def assert_strips_fit(fig, r):
    """Strip titles: inside their panel's width and apart from each other."""
    from plotnine._mpl.text import StripText

    strips = [t.get_window_extent(r) for t in fig.findobj(StripText) if t.get_text()]
    panels = [ax.get_window_extent(r) for ax in fig.axes]
    assert strips
    for s in strips:
        assert any(s.x0 >= pb.x0 - 0.5 and s.x1 <= pb.x1 + 0.5 for pb in panels), s
    for a, b in itertools.combinations(strips, 2):
        assert not a.overlaps(b), (a, b)


def test_wrap_to_width_breaks_at_spaces_only():
    size = F._TICK_PT
    assert F._wrap_to_width("middling hawkishness", 0.6, size) == "middling\nhawkishness"
    assert F._wrap_to_width("middling hawkishness", 5.0, size) == "middling hawkishness"
    assert F._wrap_to_width("internationalism", 0.1, size) == "internationalism"  # never split a word
    text = "level number 7 of a rather verbose question wording"
    for width in (0.0, 0.3, 0.8, 1.5, 10.0):
        out = F._wrap_to_width(text, width, size)
        assert out.replace("\n", " ") == text
        assert out.count("\n") + 1 <= 3
    # three lines as even as possible when the width cannot be met
    narrow = F._wrap_to_width(text, 0.0, size)
    assert np.isclose(F._text_width_in(narrow, size), F._min_wrap_width(text, size))
    assert F._min_wrap_width(text, size, max_lines=2) > F._min_wrap_width(text, size, max_lines=3)


def test_wrap_strip_breaks_after_colon_first():
    s = "Stakes, Costs: high stakes, not costly"
    assert F._wrap_strip(s, 5.0) == s
    assert F._wrap_strip(s, 2.0) == "Stakes, Costs:\nhigh stakes, not costly"
    out = F._wrap_strip("Race, Gender: non-white, women", 1.0)
    assert out.split("\n")[0] == "Race, Gender:" and out.replace("\n", " ") == "Race, Gender: non-white, women"


def test_short_levels_drop_a_word_repeated_from_the_title():
    assert F._short_levels(TW["intl"], "Internationalism") == ["lowest", "low", "middling", "high", "highest"]
    assert F._short_levels(SCEN["stakes"], "Stakes") == ["high", "low"]
    assert F._short_levels(TW["hawk"], "Militant assertiveness") == TW["hawk"]  # no shared word
    assert F._short_levels(SCEN["costs"], "Costs") == SCEN["costs"]  # 'costly' alone has one word
    assert F._short_levels(["low x", "x"], "X") == ["low x", "x"]  # would leave an empty label
    assert F._short_levels(["1 (low)", "2"], "Intl") == ["1 (low)", "2"]


def test_by_modifier_tw_tick_labels_wrapped_and_page_sized(tw):
    mods = list(TW)
    p = F.plot_by_modifier(tw, mods, names=TW_NAMES)
    lay = F._by_modifier_layout([F._short_levels(TW[m], TW_NAMES[m]) for m in mods], [TW_NAMES[m] for m in mods])
    # 5 long levels of two modifiers do not fit one row: a 2 x 2 grid
    assert lay["ncol"] == 2 and not lay["rotate"]
    w, h = p.theme.getp("figure_size")
    assert (w, h) == lay["size"] and w == F.PAGE_WIDTH and h <= MAX_FIG_H
    labels = tick_labels(p)
    assert labels[2] == ["lowest", "low", "middling", "high", "highest"]
    hawk = labels[3]
    assert [t.replace("\n", " ") for t in hawk] == TW["hawk"]  # only line breaks added
    assert all(t.count("\n") <= 2 for t in hawk) and "middling\nhawkishness" in hawk
    # neighbours fit their slots (slot = panel width / (levels + 0.2))
    slot = lay["widths"][3] / (5 + 2 * F._DISCRETE_PAD - 1)
    assert F._slot_need(hawk, lay["tick_size"]) <= slot + 1e-9
    assert lay["tick_size"] >= 6
    fig, r = assert_ticks_apart_and_inside(p)
    assert_strips_fit(fig, r)


def test_by_modifier_one_row_keeps_two_level_panels_narrow():
    eff = make_effects(SCEN, n_small=0)
    names = {"regime": "Regime", "stakes": "Stakes", "costs": "Costs", "region": "Region"}
    p = F.plot_by_modifier(eff, list(SCEN), names=names)
    assert list(p.facet.cols) == ["modifier"]  # one row
    ratios = p.facet.space["x"]
    assert max(ratios[:3]) < ratios[3]  # the 4-level panel is the widest
    assert all(r_ < 0.65 * ratios[3] for r_ in ratios[:3])
    labels = tick_labels(p)
    assert labels[1] == ["high", "low"]  # "stakes" is in the strip
    assert labels[3][2] in ("Eastern Europe", "Eastern\nEurope")
    assert p.theme.getp("figure_size")[1] <= 4
    assert_ticks_apart_and_inside(p)


def test_by_modifier_unabbreviated_labels_rotate_rather_than_grow(tw):
    p = F.plot_by_modifier(tw, list(TW), names=TW_NAMES, abbreviate=False)
    assert p.theme.getp("figure_size")[1] <= MAX_FIG_H
    assert tick_labels(p)[2][0].replace("\n", " ") == "lowest internationalism"
    assert p.theme.themeables["axis_text_x"].properties.get("rotation") == 45
    assert_ticks_apart_and_inside(p)


def test_by_modifier_many_modifiers_in_rows():
    mods = {**TW, "a": ["alpha one", "beta two", "gamma three"], "b": ["x", "y"]}
    eff = make_effects(mods, n_small=0)
    p = F.plot_by_modifier(eff, list(mods))
    assert p.facet.__class__.__name__ == "facet_wrap"
    assert p.theme.getp("figure_size")[1] <= MAX_FIG_H
    assert_ticks_apart_and_inside(p)


def _tw_heat(eff):
    """The builder's heatmap input: facet = the combination of the other modifiers."""
    heat = eff.copy()
    combo = heat[["race", "gender"]].astype(str).agg(", ".join, axis=1)
    order = [f"{r_}, {g}" for r_ in TW["race"] for g in TW["gender"]]
    heat["__facet"] = pd.Categorical(combo, categories=order, ordered=True)
    return heat, {**TW_NAMES, "__facet": "Race, Gender"}


def test_heatmap_tw_facets_two_columns_and_fitted_labels(tw):
    heat, names = _tw_heat(tw)
    p = F.plot_heatmap(heat, "intl", "hawk", facet="__facet", names=names)
    assert p.facet._ncol == 2
    w, h = p.theme.getp("figure_size")
    assert w == F.PAGE_WIDTH and h <= MAX_FIG_H
    strips = list(p.data["__facet"].cat.categories)
    assert strips[0].replace("\n", " ") == "Race, Gender: non-white, women"
    x = tick_labels(p, "x")
    assert x[0] == ["lowest", "low", "middling", "high", "highest"]
    y = tick_labels(p, "y")[0]
    assert [t.replace("\n", " ") for t in y] == TW["hawk"]
    assert all(t.count("\n") <= 1 for t in y)
    # every tile keeps its number, in a tile wide enough for it
    assert len(F.layer_data(p, 1)) == 100
    lay = F._heatmap_layout(F._short_levels(TW["intl"], "Internationalism"), TW["hawk"], strips)
    assert lay["tile"][0] >= F._text_width_in("\u22120.00", lay["value_size"]) + 0.06
    fig, r = assert_ticks_apart_and_inside(p)
    assert_strips_fit(fig, r)
    assert_ticks_apart_and_inside(p, "y")


def test_heatmap_long_x_labels_wrap_or_rotate():
    heat = make_effects(SCEN, n_small=0)
    names = {"regime": "Regime", "stakes": "Stakes", "costs": "Costs", "region": "Region"}
    p = F.plot_heatmap(heat, "region", "regime", facet="stakes", names=names)
    assert tick_labels(p)[0][2] == "Eastern\nEurope"
    assert_ticks_apart_and_inside(p)
    verbose = {"q": [f"level number {i} of a rather verbose question wording" for i in range(8)], "r": ["a", "b"]}
    p = F.plot_heatmap(make_effects(verbose, n_small=0), "q", "r")
    assert p.theme.themeables["axis_text_x"].properties.get("rotation") == 45
    assert all(t.count("\n") <= 2 for t in tick_labels(p)[0])
    assert_ticks_apart_and_inside(p)


def test_heatmap_subtitle_stays_inside_the_figure(effects):
    p = F.plot_heatmap(effects, "intl", "male", names=NAMES)  # cells pool groups: subtitle
    sub = p.labels.get("subtitle", None)
    assert sub and F._text_width_in(sub, F._SUBTITLE_PT) <= F.PAGE_WIDTH - 0.25
    fig, r = _drawn(p)
    for t in fig.findobj(mpl.text.Text):
        if t.get_text() == sub:
            b = t.get_window_extent(r)
            assert b.x0 >= 0 and b.x1 <= fig.bbox.x1


def test_comparison_facet_levels_draws_a_part_on_the_full_scale(tw):
    full = F.plot_comparison(tw, "race", names=TW_NAMES)
    part = F.plot_comparison(tw, "race", names=TW_NAMES, facet_levels=["white"])
    h = tw.query("method == 'hierarchical'")
    assert set(F.layer_data(part, 4)["y"].round().astype(int)) <= set(range(1, 51))
    assert len(F.layer_data(part, 4)) == (h["race"] == "white").sum() == 50
    assert input_data(part, 4)["race"].cat.categories.tolist() == ["Race: white"]
    # the parts share the x range of the whole figure
    xs = next(s for s in part.scales if "x" in s.aesthetics)
    lo = min(tw["lower_95"].min(), tw["truth"].min(), 0)
    hi = max(tw["upper_95"].max(), tw["truth"].max(), 0)
    assert np.allclose(xs.limits, (lo, hi))
    # y labels leave out the level the strip shows; rows stay keyed by the full label
    ticks = tick_labels(part, "y")[0]
    assert len(ticks) == 50 and not any("white" in t for t in ticks)
    assert all(t.count(", ") == 2 for t in ticks)
    assert set(input_data(part, 4)["y"].cat.categories) == set(h.loc[h["race"] == "white", "group_label"])
    assert part.theme.getp("figure_size")[1] <= MAX_FIG_H < full.theme.getp("figure_size")[1]
    fig, r = _drawn(part)
    for ax in fig.axes:  # nothing clipped on the left or right
        for t in ax.get_yticklabels():
            if t.get_text():
                b = t.get_window_extent(r)
                assert b.x0 >= 0 and b.x1 <= fig.bbox.x1
    with pytest.raises(HetreportError, match="Did you mean 'white'"):
        F.plot_comparison(tw, "race", facet_levels=["whit"])
    kept = F.plot_comparison(tw, "race", facet_levels=["white"], drop_facet_level=False)
    assert all(t.startswith("white, ") for t in tick_labels(kept, "y")[0])


def test_comparison_labels_kept_whole_when_the_level_is_ambiguous(effects):
    eff = effects.copy()
    eff["group_label"] = "same"  # no part equals the facet level
    ticks = tick_labels(F.plot_comparison(eff, "white"), "y")
    assert all(t.startswith("same") for panel in ticks for t in panel)


def test_comparison_facet_chunks_fit_the_page(tw):
    parts = F.comparison_facet_chunks(tw, "race")
    assert parts == [["non-white"], ["white"]]  # 100 groups: 2 figures of 50 rows
    five = F.comparison_facet_chunks(tw, "hawk")
    assert [lv for part in five for lv in part] == TW["hawk"] and len(five) == 2
    for part in parts + five:
        col = "race" if part[0] in TW["race"] else "hawk"
        h = F.plot_comparison(tw, col, facet_levels=part).theme.getp("figure_size")[1]
        assert h <= MAX_FIG_H
    # a study that fits in one figure stays one part
    small = make_effects(SCEN, n_small=0)
    assert F.comparison_facet_chunks(small, "regime") == [["autocracy", "democracy"]]
    assert F.figure_size("comparison", 32, 2)[1] <= MAX_FIG_H


def test_heatmap_subtitle_lists_only_modifiers_not_contract_columns(effects):
    """The table as the pipeline writes it carries median, df, p_value, note, flag (and link columns):
    the subtitle's "other modifiers" are modifiers only."""
    full = effects.assign(median=effects["estimate"], df=30.0, p_value=0.5, note="", flag="", link_estimate=effects["estimate"])
    p = F.plot_heatmap(full, "intl", "male", names=NAMES)
    sub = p.labels.get("subtitle", None).replace("\n", " ")
    assert "(which differ in Race)" in sub
    for col in ("median", "df", "p_value", "note", "flag", "link_estimate"):
        assert col not in sub


def test_figure_styles_come_from_the_method_registry():
    from hetreport import methods as registry

    for name, m in registry.REGISTRY.items():
        assert (F.METHOD_LABELS[name], F.METHOD_COLORS[name], F.METHOD_SHAPES[name], F.METHOD_LINETYPES[name]) == (
            m.label,
            m.color,
            m.shape,
            m.linetype,
        )


def test_comparison_draws_the_registry_figure_methods_present(effects):
    """Without ``methods=``, the figure draws every method the registry marks in_figure that the
    table holds (and no other): a subgroup row in the table is not drawn."""
    extra = effects[effects["method"] == "ols_full"].assign(method="subgroup")
    p = F.plot_comparison(pd.concat([effects, extra], ignore_index=True), "white", names=NAMES)
    drawn = {str(v) for i in range(1, len(p.layers)) for v in input_data(p, i)["method_label"].unique()}
    assert drawn == {F.METHOD_LABELS["ols_full"], F.METHOD_LABELS["hierarchical"]}


def test_figures_validate_the_effects_contract(effects):
    bad = effects.copy()
    bad.loc[bad.index[0], "method"] = "forest"
    with pytest.raises(HetreportError, match="unknown method"):
        F.plot_comparison(bad, "white", names=NAMES)
    back = effects.copy()
    i = back.index[back["estimable"]][0]
    back.loc[i, ["lower_95", "upper_95"]] = [1.0, -1.0]
    with pytest.raises(HetreportError, match="runs backwards"):
        F.plot_heatmap(back, "intl", "male", names=NAMES)
