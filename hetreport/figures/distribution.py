"""Figure 2: the distribution of all group effects."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import pandas as pd
from plotnine import (
    aes,
    element_blank,
    geom_area,
    geom_hline,
    geom_line,
    geom_rug,
    geom_segment,
    geom_text,
    ggplot,
    labs,
    scale_x_continuous,
    scale_y_continuous,
    theme,
)

from hetreport.errors import DataError

from .checks import _caption, _finish, _name, _num, _require_columns
from .density import _grid_for, _kde_on_grid
from .text import _text_width_in
from .theme import _GROUP_LINE, _POOLED_FILL, figure_size

_ROLE_TITLES = {"smallest": "Smallest", "median": "Median", "largest": "Largest"}


_ANN_SIZE = 7.0  # points


_ANN_LINEHEIGHT = 1.2


_ANN_WRAP = 34


def _wrap_label(label: str, width: int, max_lines: int = 3) -> list[str]:
    """Wrap a group label preferably at ', ' (between modifiers); beyond
    ``max_lines`` the rest is cut with an ellipsis."""
    parts = [p for p in str(label).split(", ") if p]
    lines: list[str] = []
    cur = ""
    for k, part in enumerate(parts):
        piece = part + ("," if k < len(parts) - 1 else "")
        cand = f"{cur} {piece}" if cur else piece
        if len(cand) <= width or not cur:
            cur = cand
        else:
            lines.append(cur)
            cur = piece
    if cur:
        lines.append(cur)
    out: list[str] = []
    for ln in lines:  # a single part longer than the width
        out += textwrap.wrap(ln, width) or [ln]
    if len(out) > max_lines:
        out = out[:max_lines]
        out[-1] = out[-1][: width - 1].rstrip(" ,") + "\u2026"
    return out


def _annotation_text(a: Mapping[str, Any]) -> str:
    role = str(a.get("role", ""))
    title = _ROLE_TITLES.get(role, role.capitalize())
    head = f"{title}: {_num(a['estimate'])} ({_num(a['lower'])} to {_num(a['upper'])})"
    label = str(a.get("label", "") or "")
    lines = _wrap_label(label, max(_ANN_WRAP, len(head))) if label else []
    return "\n".join([head, *lines])


def _layout_annotations(
    xs: Sequence[float], widths: Sequence[float], x0: float, x1: float, gap: float
) -> list[tuple[float, float, int, str]]:
    """Place labels (all widths/xs in data units) above the density.

    Returns ``(box_left, box_right, tier, anchor)`` per label.  Each label
    sits on top of its own vertical line (``tier`` 0 is the lowest) and is
    centred on it (``"center"``), starts at it (``"left"``, text extends to
    the right) or ends at it (``"right"``); boxes are shifted to stay inside
    ``[x0, x1]``.  Rules, in order of priority: boxes in one tier never
    overlap (hard: giving every label its own tier always satisfies it); a
    label's text is not crossed by the line of a label in a higher tier
    (that line passes through the lower tier); few tiers; centred labels;
    labels close to their line.  All anchor x tier choices are searched for
    up to 4 labels; more labels get one tier each, left to right.
    """
    n = len(xs)
    if n == 0:
        return []

    def box(i: int, anchor: str) -> tuple[float, float]:
        x, w = xs[i], widths[i]
        lo = {"center": x - w / 2, "left": x, "right": x - w}[anchor]
        lo = min(max(lo, x0), x1 - w)
        return lo, lo + w

    if n > 4:
        order = np.argsort(xs, kind="stable")
        out: list[tuple[float, float, int, str]] = [None] * n  # type: ignore[list-item]
        for t, i in enumerate(order):
            lo, hi = box(int(i), "center")
            out[int(i)] = (lo, hi, t, "center")
        return out

    anchors = ("center", "left", "right")
    line_gap = gap / 2
    best, best_cost = None, math.inf
    for anch in product(anchors, repeat=n):
        boxes = [box(i, a) for i, a in enumerate(anch)]
        base = sum(a != "center" for a in anch) + sum(
            abs((b[0] + b[1]) / 2 - x) / max(w, 1e-12) * 0.5 for b, x, w in zip(boxes, xs, widths)
        )
        for tiers in product(range(n), repeat=n):
            used = len(set(tiers))
            if max(tiers) != used - 1:  # tiers must be 0..k without holes
                continue
            cost = 10.0 * used + base
            if cost >= best_cost:
                continue
            for i in range(n):
                for j in range(n):
                    if i == j:
                        continue
                    if j > i and tiers[i] == tiers[j] and (boxes[i][0] < boxes[j][1] + gap and boxes[j][0] < boxes[i][1] + gap):
                        cost = math.inf
                        break
                    if tiers[i] < tiers[j] and boxes[i][0] - line_gap < xs[j] < boxes[i][1] + line_gap:
                        cost += 100.0  # j's line would cross i's text
                if cost == math.inf:
                    break
            if cost < best_cost:
                best_cost, best = cost, [(b[0], b[1], t, a) for b, t, a in zip(boxes, tiers, anch)]
    assert best is not None  # one tier per label is always allowed
    return best


def _format_sigma(sigma_theta: Any) -> str | None:
    if sigma_theta is None:
        return None
    if isinstance(sigma_theta, Mapping):
        est = sigma_theta.get("estimate")
        lo, hi = sigma_theta.get("lower"), sigma_theta.get("upper")
    elif isinstance(sigma_theta, (tuple, list, np.ndarray)):
        est, lo, hi = (list(sigma_theta) + [None, None])[:3]
    else:
        est, lo, hi = sigma_theta, None, None
    s = r"$\sigma_\theta$ " + _num(float(est))
    if lo is not None and hi is not None:
        s += f" ({_num(float(lo))} to {_num(float(hi))})"
    return s


def plot_distribution(
    draws: pd.DataFrame,
    annotations: Sequence[Mapping[str, Any]] = (),
    *,
    sd_all: float | None = None,
    sigma_theta: float | Sequence[float] | Mapping[str, float] | None = None,
    names: Mapping[str, str] | None = None,
) -> ggplot:
    """Figure 2: the posterior distribution of all group effects.

    ``draws`` is long (``group``, ``draw``, ``value``).  The filled light-grey
    area is the density of all draws pooled over groups; with at most 30
    groups each group's posterior density is added as a thin line, otherwise a
    rug marks the group posterior medians.  Densities are computed here with a
    binned Gaussian KDE on a 1,024-point grid (Silverman bandwidth) using
    **all** draws -- no subsampling; 400,000 draws take well under a second.
    The x range covers the central 99.9% of draws (plus the annotated
    intervals); the extreme 0.1% of tails is cut from view.

    ``annotations``: dicts ``{"role", "label", "estimate", "lower",
    "upper"}``; each gets a vertical line and a label "Smallest: 0.05 (-0.12
    to 0.21)" + the wrapped group label, placed above the density so labels
    neither overlap one another nor leave the panel (layout computed for the
    figure's own ``figure_size``).  ``sd_all`` and ``sigma_theta`` (a number,
    an ``(estimate, lower, upper)`` triple or a dict with those keys) go in
    the subtitle when given.
    """
    what = "plot_distribution"
    _require_columns(draws, ["group", "value"], what)
    values = pd.to_numeric(draws["value"], errors="coerce").to_numpy(dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise DataError("no finite posterior draws to plot.", where=what)
    annotations = [dict(a) for a in (annotations or [])]
    for k, a in enumerate(annotations):
        miss = [key for key in ("role", "estimate", "lower", "upper") if key not in a]
        if miss:
            raise DataError(f"annotation is missing {', '.join(miss)}.", where=f"{what}.annotations[{k}]")

    extra = [float(a[k]) for a in annotations for k in ("estimate", "lower", "upper")]
    grid = _grid_for(values[finite], extra)
    x0, x1 = float(grid[0]), float(grid[-1])
    pooled = _kde_on_grid(values[finite], grid)
    curves = pd.DataFrame({"x": grid, "density": pooled})

    groups = draws.loc[finite, "group"]
    n_groups = int(groups.nunique())
    layers: list = []
    ymax = float(pooled.max())
    if n_groups <= 30:
        parts = []
        for g, v in pd.Series(values[finite], index=groups.to_numpy()).groupby(level=0, sort=False):
            d = _kde_on_grid(v.to_numpy(), grid)
            parts.append(pd.DataFrame({"x": grid, "density": d, "group": str(g)}))
        by_group = pd.concat(parts, ignore_index=True)
        ymax = max(ymax, float(by_group["density"].max()))
        layers.append(geom_line(aes("x", "density", group="group"), data=by_group, color=_GROUP_LINE, size=0.25, alpha=0.6))
        note = f"Thin lines: posterior density of each of the {n_groups} groups."
    else:
        med = (
            pd.DataFrame({"group": groups.to_numpy(), "value": values[finite]}).groupby("group", sort=False)["value"].median().reset_index()
        )
        layers.append(geom_rug(aes(x="value"), data=med, inherit_aes=False, sides="b", color=_GROUP_LINE, alpha=0.7, size=0.3, length=0.03))
        note = f"Rug: posterior medians of the {n_groups} groups."

    # ---- annotation layout (inches -> data units) -------------------------
    width, height = figure_size("distribution")
    subtitle_parts = []
    if sd_all is not None:
        subtitle_parts.append(f"SD of all draws {_num(float(sd_all))}")
    sig = _format_sigma(sigma_theta)
    if sig:
        subtitle_parts.append(sig)
    subtitle = "   \u00b7   ".join(subtitle_parts) or None
    # Panel size, slightly underestimated (measured: 5.96 x 3.34 in with a
    # subtitle), so the estimated label extents err on the safe side.
    panel_w = width - 0.7  # y axis text + title + margins
    panel_h = height - 1.0 - (0.18 if subtitle else 0.0)  # x axis, caption, subtitle
    texts = [_annotation_text(a) for a in annotations]
    widths_in = [_text_width_in(t, _ANN_SIZE) * 1.06 + 0.04 for t in texts]
    line_in = _ANN_SIZE * _ANN_LINEHEIGHT / 72.0
    xspan = x1 - x0
    xs = [float(a["estimate"]) for a in annotations]
    layout = _layout_annotations(
        xs,
        [w / panel_w * xspan for w in widths_in],
        x0 + 0.01 * xspan,
        x1 - 0.01 * xspan,
        gap=0.06 / panel_w * xspan,
    )
    n_tiers = 1 + max((t for _, _, t, _ in layout), default=-1)
    tier_h_in = [0.0] * n_tiers
    for t_txt, (_, _, t, _) in zip(texts, layout):
        tier_h_in[t] = max(tier_h_in[t], (t_txt.count("\n") + 1) * line_in + 0.08)
    label_frac = min(sum(tier_h_in) / panel_h, 0.6)
    y_top = ymax * 1.04 / (1 - label_frac) if n_tiers else ymax * 1.05
    per_in = y_top / panel_h  # data units per inch vertically
    base = ymax * 1.04
    tier_y = []
    for t in range(n_tiers):
        tier_y.append(base)
        base += tier_h_in[t] * per_in

    p = ggplot(curves, aes("x", "density")) + geom_area(fill=_POOLED_FILL, color="#8C8C8C", size=0.3, position="identity")
    for layer in layers:
        p += layer
    p += geom_hline(yintercept=0, color="#8C8C8C", size=0.3)
    if annotations:
        ann = pd.DataFrame(
            {
                "x_line": xs,
                "y_line": [tier_y[t] for _, _, t, _ in layout],
                "y_text": [tier_y[t] + 0.03 * per_in for _, _, t, _ in layout],
                "label": texts,
                "role": [str(a["role"]) for a in annotations],
                "tier": [t for _, _, t, _ in layout],
                "box_left": [lo for lo, _, _, _ in layout],
                "box_right": [hi for _, hi, _, _ in layout],
                "ha": [anc for *_, anc in layout],
            }
        )
        ann["x_text"] = np.select(
            [ann["ha"] == "left", ann["ha"] == "right"],
            [ann["box_left"], ann["box_right"]],
            (ann["box_left"] + ann["box_right"]) / 2,
        )
        p += geom_segment(
            aes(x="x_line", xend="x_line", y=0, yend="y_line"), data=ann, inherit_aes=False, color="black", size=0.5, linetype="solid"
        )
        # Anchor the text where the layout put its box: centred labels at the
        # box centre, labels extending right (left) from their line at the
        # box's left (right) edge.
        p += geom_text(
            aes(x="x_text", y="y_text", label="label", ha="ha"),
            data=ann,
            inherit_aes=False,
            va="bottom",
            size=_ANN_SIZE,
            lineheight=_ANN_LINEHEIGHT,
            color="#1A1A1A",
        )
    p += scale_x_continuous(limits=(x0, x1), expand=(0, 0))
    p += scale_y_continuous(limits=(0, y_top), expand=(0, 0))
    p += labs(
        x=_name(names, "estimate"),
        y="Posterior density",
        subtitle=subtitle,
        caption=_caption("Grey area: all posterior draws pooled over groups. " + note),
    )
    return _finish(p, (width, height)) + theme(panel_grid_major_y=element_blank())
