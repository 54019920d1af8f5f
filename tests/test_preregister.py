"""Pre-registration mode (issue 8): the design block, its errors, the record and the appendix.

The end-to-end test renders the appendix of a small design (2 modifiers, 6 groups, 3
replications, 2 chains x 200 draws) with real fits and the real renderer, and checks every
section of the appendix and that every page of the mock report is marked as simulated.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from hetreport.cli import main
from hetreport.errors import SpecError
from hetreport.spec import _rejoin_flow_priors, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
TW_DESIGN = ROOT / "examples" / "tomz-weeks" / "design.yml"

SMALL = """\
title: A small planned study
design:
  n: 400
  modifiers:
    female: {levels: {0: 0.5, 1: 0.5}}
    age: {levels: {1: 0.3, 2: 0.4, 3: 0.3}}
  controls:
    income: {mean: 50, sd: 10}
  outcome_sd: 1.0
  average_effect: 0.3
  heterogeneity_sd: 0.2
  replications: 3
  seed: 7
  sampler: {draws: 200, tune: 200, chains: 2}
outcome: y
treatment: treat
labels:
  levels:
    female: {0: men, 1: women}
    age: {1: young, 2: middle-aged, 3: old}
analyses:
  - name: people
    title: Who responds
    modifiers: [female, age]
    controls: [income]
sampler: {draws: 200, tune: 200, chains: 2, seed: 3}
report: {units: people}
"""


def small_raw() -> dict:
    return yaml.safe_load(SMALL)


def _error(raw: dict, tmp_path: Path | None = None) -> str:
    from hetreport.prereg.plan import resolve_plan

    with pytest.raises(SpecError) as info:
        spec = parse_spec(raw, base_dir=tmp_path or Path("."), source="design.yml")
        resolve_plan(spec)
    return str(info.value)


# --------------------------------------------------------------------------- the spec


def test_design_only_spec_parses_and_cannot_be_fitted():
    spec = parse_spec(small_raw(), source="design.yml")
    assert spec.data is None and spec.design.sizes == [400]
    with pytest.raises(SpecError, match="design:.*no 'data:'"):
        _ = spec.data_path


def test_shares_must_sum_to_one():
    raw = small_raw()
    raw["design"]["modifiers"]["age"] = {"levels": {1: 0.3, 2: 0.4, 3: 0.2}}
    msg = _error(raw)
    assert "design.modifiers.age.levels" in msg and "add up to 0.9" in msg and "add up to 1" in msg


def test_n_too_small_for_every_group_to_have_both_arms():
    raw = small_raw()
    raw["design"]["n"] = [400, 10]
    msg = _error(raw)
    assert "design.n[1]" in msg and "6 groups" in msg and "at least 12" in msg


def test_negative_heterogeneity_sd():
    raw = small_raw()
    raw["design"]["heterogeneity_sd"] = [0.1, -0.2]
    msg = _error(raw)
    assert "design.heterogeneity_sd[1]" in msg and "negative" in msg


def test_pilot_file_lacking_a_modifier(tmp_path):
    (tmp_path / "pilot.csv").write_text("female,y\n0,1.2\n1,0.3\n1,0.9\n0,2.0\n")
    raw = small_raw()
    raw["design"]["modifiers"] = {}
    raw["design"]["pilot"] = {"path": "pilot.csv"}
    raw["design"].pop("outcome_sd")
    msg = _error(raw, tmp_path)
    assert "design.pilot" in msg and "lacks the modifier 'age'" in msg and "design.modifiers.age" in msg


def test_pilot_gives_shares_and_outcome_scale(tmp_path):
    from hetreport.prereg.plan import resolve_plan

    (tmp_path / "pilot.csv").write_text("female,age,income,y\n0,1,40,1.0\n1,2,50,3.0\n1,3,60,1.0\n0,2,55,3.0\n")
    raw = small_raw()
    raw["design"]["modifiers"] = {}
    raw["design"]["controls"] = {}
    raw["design"]["pilot"] = {"path": "pilot.csv"}
    raw["design"].pop("outcome_sd")
    plan = resolve_plan(parse_spec(raw, base_dir=tmp_path, source="design.yml"))
    assert plan.variables["age"].shares == pytest.approx((0.25, 0.5, 0.25))
    assert plan.variables["age"].labels == ("young", "middle-aged", "old")
    assert plan.outcome_sd == pytest.approx(1.1547, abs=1e-3) and plan.outcome_sd_source == "the pilot file"


def test_data_and_design_together_are_ambiguous():
    raw = small_raw()
    raw["data"] = {"path": "data.csv"}
    msg = _error(raw)
    assert "design" in msg and "ambiguous" in msg and "--preregistration" in msg


def test_other_families_are_not_yet_supported():
    raw = small_raw()
    raw["family"] = "poisson"
    msg = _error(raw)
    assert msg.startswith("family:") and "not yet support" in msg and "'poisson'" in msg
    assert "supports gaussian and bernoulli" in msg


def test_cli_error_writes_nothing(tmp_path, capsys):
    raw = small_raw()
    raw["design"]["heterogeneity_sd"] = -1
    spec = tmp_path / "bad.yml"
    spec.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert main(["preregister", str(spec), "--out", str(out)]) == 2
    assert "heterogeneity_sd" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["bad.yml"]


def test_record_hash_stable_under_comments_and_key_order(tmp_path):
    text = TW_DESIGN.read_text()
    raw = yaml.safe_load(text)
    raw["priors"] = _rejoin_flow_priors(raw["priors"], "design.yml")  # the one-line flow form, as parse_spec reads it
    for a in raw["analyses"]:
        if "priors" in a:
            a["priors"] = _rejoin_flow_priors(a["priors"], "design.yml")
    shuffled = {k: raw[k] for k in reversed(list(raw))}
    shuffled["design"] = {k: raw["design"][k] for k in reversed(list(raw["design"]))}
    (tmp_path / "reordered.yml").write_text("# a comment\n" + yaml.safe_dump(shuffled, sort_keys=False).replace("\n", "  # note\n", 3))
    a, b = load_spec(TW_DESIGN), load_spec(tmp_path / "reordered.yml")
    assert a.spec_hash() == b.spec_hash()
    changed = dict(raw, design={**raw["design"], "average_effect": 0.2})
    (tmp_path / "changed.yml").write_text(yaml.safe_dump(changed))
    assert load_spec(tmp_path / "changed.yml").spec_hash() != a.spec_hash()  # the design is part of the registration


def test_tomz_weeks_design_groups_and_sizes():
    from hetreport.prereg.plan import expected_sizes, resolve_plan

    plan = resolve_plan(load_spec(TW_DESIGN))
    assert len(plan.analysis("respondents").groups) == 100 and len(plan.analysis("scenario").groups) == 32
    assert plan.simulated == ("respondents",) and plan.sizes == (1200,)
    sizes = expected_sizes(plan, "respondents", 1200)
    assert sizes["n"].sum() == pytest.approx(1200)
    assert sizes["share"].sum() == pytest.approx(1.0)
    # non-white women with the lowest internationalism and hawkishness: about one respondent expected
    g = sizes.set_index("group").loc["white=0|male=0|intl=1|hawk_r=1"]
    assert g["n"] == pytest.approx(1200 * 0.247 * 0.549 * 0.0875 * 0.0875, rel=1e-3) and bool(g["likely_small"])


def test_simulated_data_follow_the_planned_shares_and_truth():
    from hetreport.prereg.plan import resolve_plan, simulate_frame

    plan = resolve_plan(parse_spec(small_raw(), source="design.yml"))
    frame, truth = simulate_frame(plan, 20000, 0.2, 11)
    assert frame["age"].value_counts(normalize=True).sort_index().to_numpy() == pytest.approx([0.3, 0.4, 0.3], abs=0.02)
    assert frame["treat"].mean() == pytest.approx(0.5, abs=0.02)
    assert len(truth) == 6 and truth.std() > 0.05
    shares = plan.analysis("people").groups.set_index("group")["share"].reindex(truth.index)
    assert float((shares * truth).sum() / shares.sum()) == pytest.approx(0.3, abs=1e-12)  # the population average is the assumed one
    again, _ = simulate_frame(plan, 20000, 0.2, 11)
    assert again.equals(frame)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def appendix(tmp_path_factory):
    from hetreport.prereg import preregister

    d = tmp_path_factory.mktemp("prereg")
    spec = d / "design.yml"
    spec.write_text("# a comment that does not change the hash\n" + SMALL)
    done = preregister(spec, d / "out", workers=2)
    return d, done


@pytest.mark.slow
def test_appendix_has_every_section(appendix):
    from bs4 import BeautifulSoup
    from pypdf import PdfReader

    d, done = appendix
    html = BeautifulSoup(done["appendix"]["html"].read_text(), "html.parser")
    ids = {s.get("id") for s in html.find_all(["section", "h1", "h2", "div"]) if s.get("id")}
    for sec in (
        "sec-registration",
        "sec-plan",
        "sec-plan-design",
        "sec-plan-models",
        "sec-plan-estimands",
        "sec-plan-rules",
        "sec-priors",
        "sec-detect",
        "sec-mock",
        "sec-record",
    ):
        assert sec in ids, sec
    text = html.get_text(" ")
    assert "Expected group sizes at N = 400" in text and "P(arm < 5)" in text
    assert "y ~ 1 + income + treat + (1 + treat | female*age)" in text  # the brms formula
    assert "halfnormal" in text and "at least 95%" in text  # priors table, decision rule
    assert "These priors allow very large effects" in text  # the defaults put >10% of group effects beyond 2 SDs
    assert "Probability of detecting heterogeneity" in text or "P(detect)" in text
    # the detection table names each approach by the method registry's label (no list of its own)
    from hetreport import methods as registry

    table = next(t for t in html.find_all("table") if "P(detect)" in t.get_text(" "))
    col = [th.get_text(" ", strip=True) for th in table.find_all("th")].index("Approach")
    approaches = {tr.find_all("td")[col].get_text(" ", strip=True) for tr in table.find_all("tr") if tr.find_all("td")}
    assert approaches == {registry.label(registry.BASELINE), registry.label(registry.REFERENCE)}, approaches
    imgs = [i["src"] for i in html.find_all("img")]
    assert len(imgs) >= 5  # two prior figures, detection, width and RMSE per group
    pdf = "\n".join(p.extract_text() for p in PdfReader(done["appendix"]["pdf"]).pages)
    for title in (
        "Registration",
        "The planned analysis",
        "What the priors imply",
        "What the design can detect",
        "Mock report",
        "Registration record",
    ):
        assert title in pdf, title


@pytest.mark.slow
def test_mock_report_every_page_marked_simulated(appendix):
    from bs4 import BeautifulSoup
    from pypdf import PdfReader

    _, done = appendix
    pages = PdfReader(done["mock"]["pdf"]).pages
    assert len(pages) > 3
    for k, page in enumerate(pages):
        assert "SIMULATED DATA" in page.extract_text(), f"page {k + 1} is not marked"
    html = BeautifulSoup(done["mock"]["html"].read_text(), "html.parser")
    assert html.title.get_text().startswith("SIMULATED DATA — NOT RESULTS")
    banner = html.find(class_="hetreport-simulated")
    assert banner is not None and "position: sticky" in banner["style"]
    assert "Who responds" in html.get_text()  # it is the full study report


@pytest.mark.slow
def test_registration_record(appendix):
    d, done = appendix
    record = json.loads(done["record"].read_text())
    spec = load_spec(d / "design.yml")
    assert record["spec_hash"] == spec.spec_hash()
    assert record["spec"]["design"]["n"] == 400 and record["seeds"]["design"] == 7
    assert record["packages"]["pymc"] and record["created"][:4].isdigit()
    sim = (done["record"].parent / "simulation.csv").read_text()
    assert sim.count("\n") == 7  # header + 3 replications at the assumed SD + 3 at SD 0 (calibration)


@pytest.mark.slow
def test_simulation_runs_on_dask():
    from distributed import Client, LocalCluster

    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import per_cell, run_simulation

    raw = small_raw()
    raw["design"]["replications"] = 2
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        sim = run_simulation(plan, client=client)
    assert sim.where.startswith("Dask scheduler")
    assert list(sim.summary["status"]) == ["ok"] * 4  # 2 replications at SD 0 (calibration) and 2 at the assumed SD
    for _, cell in sim.summary.groupby("cell_index"):
        assert list(cell["compile"]) == ["density", "density"]  # the Gaussian model: nothing compiled per cell
    pc = per_cell(sim, plan)
    assert set(pc["method"]) == {"ols_full", "hierarchical"} and pc["replications"].tolist() == [2, 2, 2, 2]
    assert ((pc["coverage"] >= 0) & (pc["coverage"] <= 1)).all() and (pc["width"] > 0).all()


def test_detection_is_calibrated_against_the_null_cell():
    """The hierarchical rule: detected when the statistic exceeds the 95th percentile at SD 0 (5% false
    positives by construction); OLS: its Wald test, with the false-positive rate measured at SD 0."""
    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import SimulationResult, cells, per_cell

    raw = small_raw()
    raw["design"]["replications"] = 40
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    grid = cells(plan)
    assert [c.sd for c in grid][0] == 0 and grid[0].calibration and not grid[-1].calibration
    rng = np.random.default_rng(0)
    rows = []
    for c in grid:
        shift = 0.0 if c.sd == 0 else 0.3
        for r in range(40):
            rows.append(
                {
                    "cell_index": c.index,
                    "rep": r,
                    "status": "ok",
                    "sd_between_mean": 0.2 + shift + 0.05 * rng.standard_normal(),
                    "detect_ols": bool(rng.random() < (0.2 if c.sd == 0 else 0.9)),
                    "divergences": 0,
                }
            )
    sim = SimulationResult(
        pd.DataFrame(rows),
        pd.DataFrame(columns=["cell_index", "method", "group", "rep", "estimate", "truth", "lower_95", "upper_95", "n_g"]),
        1.0,
        "test",
    )
    pc = per_cell(sim, plan).set_index(["sd", "method"])
    null = sim.summary[sim.summary["cell_index"] == grid[0].index]["sd_between_mean"]
    thr = float(np.quantile(null, 0.95))
    assert pc.loc[(0.0, "hierarchical"), "threshold"] == pytest.approx(thr)
    assert pc.loc[(0.0, "hierarchical"), "detect"] == pytest.approx(np.mean(null > thr)) and pc.loc[(0.0, "hierarchical"), "detect"] <= 0.05
    alt = sim.summary[sim.summary["cell_index"] == grid[-1].index]
    assert pc.loc[(grid[-1].sd, "hierarchical"), "detect"] == pytest.approx(np.mean(alt["sd_between_mean"] > thr))
    assert pc.loc[(grid[-1].sd, "ols_full"), "false_positive"] == pytest.approx(pc.loc[(0.0, "ols_full"), "detect"])


# --------------------------------------------------------------------------- family bernoulli


def bernoulli_raw(**design) -> dict:
    """SMALL as a 0/1 outcome: family bernoulli, the base rate in place of the outcome's mean and SD."""
    raw = small_raw()
    raw["family"] = "bernoulli"
    raw["design"].pop("outcome_sd")
    raw["design"].update({"base_rate": 0.3, "average_effect": 0.1, "heterogeneity_sd": 0.1, **design})
    return raw


def test_bernoulli_needs_a_base_rate():
    raw = bernoulli_raw()
    raw["design"].pop("base_rate")
    raw["design"]["outcome_sd"] = 0.5
    msg = _error(raw)
    assert msg.startswith("design.base_rate:") and "family is bernoulli" in msg and "share of 1s in the control arm" in msg


def test_base_rate_with_gaussian_is_an_error():
    raw = small_raw()
    raw["design"]["base_rate"] = 0.3
    msg = _error(raw)
    assert msg.startswith("design.base_rate:") and "family: bernoulli" in msg and "design.outcome_sd" in msg


def test_bernoulli_outcome_sd_and_mean_are_errors():
    msg = _error(bernoulli_raw(outcome_sd=0.5))
    assert msg.startswith("design.outcome_sd:") and "base_rate" in msg and "remove design.outcome_sd" in msg
    msg = _error(bernoulli_raw(outcome_mean=0.3))
    assert msg.startswith("design.outcome_mean:") and "remove design.outcome_mean" in msg


def test_bernoulli_average_effect_must_keep_the_probability_inside_0_1():
    msg = _error(bernoulli_raw(average_effect=0.75))
    assert msg.startswith("design.average_effect:") and "1.05" in msg and "difference in probability" in msg and "below 0.7" in msg
    msg = _error(bernoulli_raw(average_effect=-0.3))
    assert msg.startswith("design.average_effect:") and "between 0 and 1" in msg


def test_unsupported_family_per_analysis_is_registered_only():
    from hetreport.prereg.plan import resolve_plan

    raw = small_raw()
    raw["analyses"].append({"name": "counts", "modifiers": ["female"], "family": "poisson"})
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    assert plan.simulated == ("people",) and [a.name for a in plan.analyses] == ["people"]
    assert any("'counts'" in n and "gaussian and bernoulli" in n for n in plan.notes)


def test_per_analysis_bernoulli_without_base_rate_is_registered_only():
    """A gaussian spec (outcome_sd) with a logit analysis of the same outcome, as in the Tomz-Weeks design."""
    from hetreport.prereg.plan import resolve_plan

    raw = small_raw()
    raw["analyses"].append({"name": "people_logit", "modifiers": ["female", "age"], "family": "bernoulli"})
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    assert plan.simulated == ("people",) and plan.outcome_family == "gaussian"
    assert any("'people_logit'" in n and "design.base_rate" in n for n in plan.notes)
    raw["design"]["analyses"] = ["people_logit"]
    msg = _error(raw)
    assert msg.startswith("design.analyses[0]:") and "design.base_rate" in msg


def test_per_analysis_bernoulli_with_base_rate_is_simulated():
    from scipy.special import logit

    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import resolved_priors

    raw = small_raw()
    raw["design"].pop("outcome_sd")
    raw["design"].update({"base_rate": 0.3, "average_effect": 0.1})
    raw["analyses"].append({"name": "people_logit", "modifiers": ["female", "age"], "family": "bernoulli"})
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    assert plan.simulated == ("people", "people_logit") and plan.outcome_family == "bernoulli"
    assert [a.family for a in plan.analyses] == ["gaussian", "bernoulli"]
    q = 0.3 + 0.5 * 0.1  # the planned share of 1s
    # the linear probability model's defaults scale to the 0/1 outcome's SD; the logit model's are on the log-odds scale
    assert plan.outcome_sd == pytest.approx(np.sqrt(q * (1 - q)))
    lpm, logit_model = resolved_priors(plan, "people"), resolved_priors(plan, "people_logit")
    assert lpm["sigma"] is not None and lpm["b"].params[1] == pytest.approx(np.sqrt(q * (1 - q)), rel=1e-2)
    assert logit_model["sigma"] is None and logit_model["b"].params == (0.0, 1.0) and logit_model["sd"].params == (1.0,)
    assert logit_model["intercept"].params[0] == pytest.approx(logit(q), abs=1e-2) and logit_model["intercept"].params[1] == 2.5


def test_planned_scale_is_a_typed_record_and_gives_the_closed_form_defaults():
    """The data the prior defaults see in a design (no data yet): a frozen PlannedScale, whose gaussian defaults are
    the closed form in the planned outcome mean m and SD s (intercept N(m, 2.5 s), b N(0, s), sd HN(s), sigma HN(2 s))."""
    import dataclasses

    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import PlannedScale, _planned_scale, resolved_priors

    plan = resolve_plan(parse_spec(small_raw(), source="design.yml"))
    scale = _planned_scale(plan)
    assert isinstance(scale, PlannedScale) and dataclasses.is_dataclass(scale)
    with pytest.raises(dataclasses.FrozenInstanceError):
        scale.family = "bernoulli"
    m, s = plan.outcome_mean, plan.outcome_sd
    pri = resolved_priors(plan, "people")
    r = lambda x: float(f"{x:.3g}")  # noqa: E731  (resolve_priors rounds to 3 significant digits)
    assert pri["intercept"].params == pytest.approx((r(m), r(2.5 * s)), rel=1e-2)
    assert pri["b"].params == pytest.approx((0.0, r(s)), rel=1e-2)
    assert pri["sd"].params == pytest.approx((r(s),), rel=1e-2) and pri["sigma"].params == pytest.approx((r(2 * s),), rel=1e-2)


def test_bernoulli_simulated_frame_base_rate_and_truth():
    """Control share = base rate; each group's truth is the realised difference in probability (large N)."""
    from hetreport.groups import group_key
    from hetreport.prereg.plan import resolve_plan, simulate_frame

    plan = resolve_plan(parse_spec(bernoulli_raw(), source="design.yml"))
    assert plan.outcome_family == "bernoulli" and plan.base_rate == 0.3 and plan.outcome_sd_source == "design.base_rate"
    frame, truth = simulate_frame(plan, 300_000, 0.1, 11)
    assert set(frame["y"].unique()) == {0.0, 1.0}
    assert frame.loc[frame["treat"] == 0, "y"].mean() == pytest.approx(0.3, abs=0.005)
    frame["group"] = [group_key(("female", "age"), r) for r in frame[["female", "age"]].itertuples(index=False, name=None)]
    means = frame.groupby(["group", "treat"])["y"].mean().unstack()
    empirical = (means[1] - means[0]).reindex(truth.index)
    assert np.abs(empirical - truth).max() < 0.015  # SE of a difference of two shares of ~25,000 units each: about 0.004
    assert truth.std() > 0.02  # heterogeneous


def test_bernoulli_truth_is_the_clipped_difference():
    from hetreport.prereg.plan import P_MAX, P_MIN, resolve_plan, simulate_frame, true_effects

    plan = resolve_plan(parse_spec(bernoulli_raw(base_rate=0.05, average_effect=-0.02, heterogeneity_sd=0.2), source="design.yml"))
    assert any("clips" in n for n in plan.notes)
    frame, truth = simulate_frame(plan, 2000, 0.2, 5)
    raw_truth = true_effects(plan, "people", 0.2, np.random.default_rng([5, 2]))
    assert (raw_truth < P_MIN - 0.05).any()  # some unclipped effects would give a negative probability
    assert np.allclose(truth, np.clip(0.05 + raw_truth, P_MIN, P_MAX) - 0.05)
    assert (0.05 + truth >= P_MIN - 1e-12).all() and (0.05 + truth <= P_MAX + 1e-12).all()


def test_bernoulli_prior_predictive_on_the_probability_scale():
    from hetreport.prereg.appendix import prior_predictive
    from hetreport.prereg.plan import resolve_plan

    plan = resolve_plan(parse_spec(bernoulli_raw(), source="design.yml"))
    pp = prior_predictive(plan, "people", draws=300)
    ge = pp["group_effect"]
    assert pp["family"] == "bernoulli" and ge.shape == (300, 6)
    assert (ge > -1).all() and (ge < 1).all() and (ge >= -0.3).all() and (ge <= 0.7).all()  # at the base rate 0.3
    assert ge.std() > 0.1  # wide: the log-odds priors allow large effects
    assert (pp["sigma_theta"] > 0).all() and np.median(pp["sigma_theta"]) == pytest.approx(0.674, rel=0.25)  # halfnormal(1), log-odds


@pytest.fixture(scope="module")
def bernoulli_appendix(tmp_path_factory):
    from hetreport.prereg import preregister

    d = tmp_path_factory.mktemp("prereg-bernoulli")
    spec = d / "design.yml"
    spec.write_text(yaml.safe_dump(bernoulli_raw(), sort_keys=False))
    done = preregister(spec, d / "out", workers=2, formats=["html"])
    return d, done


@pytest.mark.slow
def test_bernoulli_appendix_detection_and_mock_report(bernoulli_appendix):
    from bs4 import BeautifulSoup

    d, done = bernoulli_appendix
    html = BeautifulSoup(done["appendix"]["html"].read_text(), "html.parser")
    text = html.get_text(" ")
    assert "people (bernoulli)" in text  # rows of the detection table
    assert "base rate" in text and "difference in the probability of" in text and "log-odds scale" in text
    table = next(t for t in html.find_all("table") if "P(detect)" in t.get_text())
    rows = [r.get_text(" ") for r in table.find_all("tr") if "people (bernoulli)" in r.get_text()]
    assert len(rows) == 4  # SD 0 and 0.1, OLS and hierarchical
    mock = BeautifulSoup(done["mock"]["html"].read_text(), "html.parser")
    assert "Who responds" in mock.get_text() and mock.title.get_text().startswith("SIMULATED DATA")
    summary = pd.read_csv(d / "out" / "simulation.csv")
    assert (summary["status"] == "ok").all() and len(summary) == 6 and set(summary["family"]) == {"bernoulli"}
    assert set(summary["link_scale"]) == {"log-odds"}
    groups = pd.read_csv(d / "out" / "simulation_groups.csv")
    hier = groups[groups["method"] == "hierarchical"]
    assert (hier["estimate"].abs() < 1).all() and ((hier["lower_95"] >= -1) & (hier["upper_95"] <= 1)).all()
    assert abs((hier["estimate"] - hier["truth"]).mean()) < 0.05  # near the truth on average (probability scale)
    assert np.sqrt(((hier["estimate"] - hier["truth"]) ** 2).mean()) < 0.15


def test_priors_that_allow_effects_beyond_two_outcome_sds_are_called_out():
    """The default priors (scaled to the outcome's SD) put many group effects beyond two SDs; narrow group-SD
    priors do not. The appendix's note follows this rule."""
    import warnings

    from hetreport.prereg.appendix import prior_predictive, priors_too_wide
    from hetreport.prereg.plan import resolve_plan

    raw = small_raw()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = prior_predictive(resolve_plan(parse_spec(raw, source="design.yml")), "people")
        raw["priors"] = {"sd": "halfnormal(0.1)", "b": "normal(0, 0.3)"}
        narrow = prior_predictive(resolve_plan(parse_spec(raw, source="design.yml")), "people")
    assert priors_too_wide(wide["group_effect"], 1.0) and not priors_too_wide(narrow["group_effect"], 1.0)
    assert priors_too_wide(np.r_[np.zeros(85), np.full(15, 2.5)], 1.0) and not priors_too_wide(np.r_[np.zeros(95), np.full(5, 2.5)], 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gaussian", "bernoulli"])
def test_a_swapped_replication_equals_a_fresh_compile(family):
    """Compile once per cell: replication 1 run on the cell's compiled model with its data swapped in gives
    the same draws as compiling its own model."""
    from hetreport.prereg.plan import resolve_plan
    from hetreport.prereg.simulate import cells, run_replication
    from hetreport.simstudy.engine import WorkerCache

    raw = bernoulli_raw() if family == "bernoulli" else small_raw()
    raw["design"]["sampler"] = {"draws": 100, "tune": 100, "chains": 1}
    plan = resolve_plan(parse_spec(raw, source="design.yml"))
    cell = cells(plan)[-1]
    cache = WorkerCache()
    graph = family == "gaussian"  # a Gaussian model samples the compiled density by default; the graph route is tested here
    assert run_replication(plan, cell, 0, cache, graph=graph)["summary"]["compile"] == "compile"
    swapped = run_replication(plan, cell, 1, cache, graph=graph)
    fresh = run_replication(plan, cell, 1, WorkerCache(), force_compile=True, graph=graph)
    assert swapped["summary"]["compile"] == "swap" and fresh["summary"]["compile"] == "compile"
    a = pd.DataFrame(swapped["groups"]).sort_values(["method", "group"])
    b = pd.DataFrame(fresh["groups"]).sort_values(["method", "group"])
    np.testing.assert_allclose(a["estimate"], b["estimate"], rtol=1e-10)
    np.testing.assert_allclose(a["upper_95"], b["upper_95"], rtol=1e-10)
