"""Shared fixtures: small real data sets pushed through the real spec -> data -> groups path,
and session-scoped small hierarchical fits (few draws, two chains), as bambi's tests do."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hetreport.data import load_data, prepare_analysis
from hetreport.groups import build_groups
from hetreport.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TW_DATA = next(
    (
        p
        for p in [
            REPO / "examples" / "tomz-weeks" / "data" / "2017-04-YouGov-extracted.dta",
            SHARED / "tomz-weeks-2021" / "2017-04-YouGov-extracted.dta",
        ]
        if p.exists()
    ),
    None,
)

SMALL_SAMPLER = {"draws": 300, "tune": 400, "chains": 2, "seed": 7}


def make_spec(tmp_path: Path, frame: pd.DataFrame, modifiers, controls=(), **extra):
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    analysis = {"name": "a", "modifiers": list(modifiers), "controls": list(controls)}
    analysis.update(extra.pop("analysis", {}))
    raw = {
        "title": "Test study",
        "data": {"path": str(path)},
        "outcome": "y",
        "treatment": "treat",
        "analyses": [analysis],
        "sampler": SMALL_SAMPLER,
    }
    raw.update(extra)
    return parse_spec(raw, base_dir=tmp_path)


def make_analysis(tmp_path: Path, frame: pd.DataFrame, modifiers, controls=(), **extra):
    spec = make_spec(tmp_path, frame, modifiers, controls, **extra)
    ds = load_data(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = prepare_analysis(spec, ds, spec.analyses[0])
        groups = build_groups(adata, spec.report.min_arm)
    return spec, adata, groups


def random_frame(n=400, seed=0, levels=(2, 3), controls=True):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"treat": rng.integers(0, 2, n)})
    effect = 0.3
    for k, L in enumerate(levels):
        frame[f"m{k + 1}"] = rng.integers(0, L, n)
        effect = effect + 0.2 * frame[f"m{k + 1}"]
    frame["x1"] = rng.normal(size=n)
    frame["x2"] = rng.integers(1, 4, n)
    frame["y"] = 1.0 + effect * frame["treat"] + (0.5 * frame["x1"] if controls else 0) + rng.normal(0, 1, n)
    return frame


@pytest.fixture
def frame():
    return random_frame()


EVIL = "<script>alert(1)</script> {{ 7*7 }} $x$ @fig-x *bold*"


@pytest.fixture(scope="session")
def small_study(tmp_path_factory):
    """A small simulated study with a known truth and hostile labels, fitted once per session."""
    from hetreport.api import fit
    from hetreport.simstudy.paper import simulate_study

    d = tmp_path_factory.mktemp("study")
    sim = simulate_study(n=800, sd=0.25, probs=(0.4, 0.5, 0.6), coef_mean=0.0, seed=5)
    sim.data.to_csv(d / "sim.csv", index=False)
    (d / "spec.yml").write_text(
        "title: Small simulated study\n"
        "data: {path: sim.csv}\n"
        "outcome: y\ntreatment: treat\n"
        "labels:\n"
        "  variables: {m1: First modifier, m2: Second modifier, m3: Third modifier, y: Outcome, treat: Treatment}\n"
        "  levels:\n"
        f"    m1: {{0: 'plain', 1: '{EVIL}'}}\n"
        "analyses:\n  - name: sim\n    modifiers: [m1, m2, m3]\n"
        "report: {truth: true_effect}\n"
        "sampler: {draws: 300, tune: 400, chains: 2, seed: 3}\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = fit(d / "spec.yml")
    return d, results
