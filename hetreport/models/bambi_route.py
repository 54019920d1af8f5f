"""``correlated: false``: bambi's model, with uncorrelated varying intercepts and slopes
(brms ``(1 + treat || m1*m2*…)``). Same design, priors and outputs as the correlated
route; group effects are summed from bambi's term draws per draw."""

from __future__ import annotations

import time

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from ..data import AnalysisData, code_key
from ..groups import Groups, terms
from .priors import ResolvedPriors


def _bprior(bmb, prior):
    return bmb.Prior(prior.dist_name, **prior.kwargs())


def build_bambi_model(adata: AnalysisData, groups: Groups, resolved: ResolvedPriors, mode: str):
    """The bambi Model (internal column names y, treat, m0.., x0..; controls centred)."""
    import bambi as bmb

    from .priors import control_prior_sds

    fam = adata.family
    frame = pd.DataFrame({"y": adata.y, "treat": adata.t})
    if fam == "ordinal":
        from .families import category_index

        frame["y"] = pd.Categorical(category_index(adata), categories=list(range(len(adata.categories))), ordered=True)
    if fam == "binomial":
        frame["trials"] = adata.trials.astype(int)
        frame["y"] = adata.y.astype(int)
    mod_names = {m: f"m{k}" for k, m in enumerate(groups.modifiers)}
    for m, safe in mod_names.items():
        frame[safe] = [code_key(v) for v in adata.frame[m]]
    X = adata.control_matrix
    xs = [f"x{k}" for k in range(X.shape[1])]
    for k, name in enumerate(xs):
        frame[name] = X[:, k] - X[:, k].mean()
    term_list = terms(groups.modifiers, mode)
    safe_terms = [":".join(mod_names[m] for m in tm) for tm in term_list]
    lhs = "p(y, trials)" if fam == "binomial" else "y"
    formula = f"{lhs} ~ 1" + "".join(f" + {x}" for x in xs) + " + treat" + "".join(f" + (1 + treat | {st})" for st in safe_terms)
    priors = {"treat": _bprior(bmb, resolved["b"])}
    if fam == "gaussian":
        priors["sigma"] = _bprior(bmb, resolved["sigma"])
    if fam == "negativebinomial":
        priors["alpha"] = _bprior(bmb, resolved["alpha"])
    if fam == "ordinal":
        import pymc as pm

        from .families import default_cutpoints

        cp = resolved["cutpoints"]
        priors["threshold"] = (
            bmb.Prior("Normal", mu=default_cutpoints(adata), sigma=2.5, transform=pm.distributions.transforms.ordered)
            if cp is None
            else bmb.Prior(cp.dist_name, **cp.kwargs(), transform=pm.distributions.transforms.ordered)
        )
    else:
        priors["Intercept"] = _bprior(bmb, resolved["intercept"])
    sds = control_prior_sds(resolved, adata)
    for k, name in enumerate(xs):
        priors[name] = bmb.Prior("Normal", mu=0.0, sigma=float(sds[k])) if sds is not None else _bprior(bmb, resolved["b"])
    for st in safe_terms:
        for part in ("1", "treat"):
            priors[f"{part}|{st}"] = bmb.Prior("Normal", mu=0.0, sigma=_bprior(bmb, resolved["sd"]))
    family = {"gaussian": "gaussian", "ordinal": "cumulative"}.get(fam, fam)
    model = bmb.Model(formula, frame, priors=priors, family=family, noncentered=True)
    return model, term_list, safe_terms, mod_names


def fit_bambi(adata: AnalysisData, groups: Groups, resolved: ResolvedPriors, sampler, mode: str, progress: bool):
    import bambi as bmb

    t0 = time.perf_counter()
    model, term_list, safe_terms, mod_names = build_bambi_model(adata, groups, resolved, mode)
    model.build()
    timings = {"build_s": time.perf_counter() - t0}
    if sampler.backend == "nutpie":
        import nutpie

        t0 = time.perf_counter()
        pm_model = model.backend.model
        # store the parameters and the term draws, not the per-unit linear predictor (bambi's 'mu' / 'p';
        # for the cumulative family its coordinates also confuse nutpie)
        keep = [v.name for v in pm_model.free_RVs] + [d.name for d in pm_model.deterministics if d.name not in ("mu", "p")]
        compiled = nutpie.compile_pymc_model(pm_model, var_names=keep)
        timings["compile_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        raw = nutpie.sample(
            compiled,
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            seed=sampler.seed,
            target_accept=sampler.target_accept,
            progress_bar=progress,
            save_warmup=False,
        )
        backend = f"bambi {bmb.__version__} model, nutpie {nutpie.__version__}"
    else:
        t0 = time.perf_counter()
        raw = model.fit(
            draws=sampler.draws,
            tune=sampler.tune,
            chains=sampler.chains,
            random_seed=sampler.seed,
            target_accept=sampler.target_accept,
            progressbar=progress,
        )
        import pymc as pm

        backend = f"bambi {bmb.__version__} model, PyMC {pm.__version__} NUTS"
    timings["sampling_s"] = time.perf_counter() - t0
    posterior = group_posterior(raw.posterior, adata, groups, term_list, safe_terms)
    idata = az.InferenceData(posterior=posterior, sample_stats=raw.sample_stats)
    return idata, timings, backend, [":".join(tm) for tm in term_list]


def group_posterior(post: xr.Dataset, adata: AnalysisData, groups: Groups, term_list, safe_terms) -> xr.Dataset:
    """Group effects from bambi's draws: the common slope plus, per draw, the slope of every
    term the group belongs to (and the same for intercepts); per-term SDs stacked by term."""
    G = groups.n_groups
    theta = np.repeat(post["treat"].to_numpy()[..., None], G, axis=-1)
    intercept = post["Intercept"].to_numpy() if "Intercept" in post else np.zeros_like(post["treat"].to_numpy())
    alpha = np.repeat(intercept[..., None], G, axis=-1)
    crossing = None
    sd_int, sd_slope = [], []
    for tm, st in zip(term_list, safe_terms):
        dim = f"{st}__factor_dim"
        keys = [":".join(code_key(v) for v in row) for row in groups.table[list(tm)].itertuples(index=False, name=None)]
        slope = post[f"treat|{st}"].sel({dim: keys}).to_numpy()
        theta = theta + slope
        alpha = alpha + post[f"1|{st}"].sel({dim: keys}).to_numpy()
        crossing = slope
        sd_int.append(post[f"1|{st}_sigma"].to_numpy())
        sd_slope.append(post[f"treat|{st}_sigma"].to_numpy())
    coords = {
        "chain": post["chain"].to_numpy(),
        "draw": post["draw"].to_numpy(),
        "group": groups.keys,
        "term": [":".join(tm) for tm in term_list],
    }
    data = {
        "b_treat": (("chain", "draw"), post["treat"].to_numpy()),
        "sd_intercept": (("chain", "draw", "term"), np.stack(sd_int, axis=-1)),
        "sd_slope": (("chain", "draw", "term"), np.stack(sd_slope, axis=-1)),
        # the link-scale slope; for the identity link it is the group's effect itself
        ("group_effect" if adata.family == "gaussian" else "group_slope"): (("chain", "draw", "group"), theta),
        "group_intercept": (("chain", "draw", "group"), alpha),
        "crossing_slope": (("chain", "draw", "group"), crossing),
    }
    if "Intercept" in post:
        data["Intercept"] = (("chain", "draw"), intercept)
    for var in ("sigma", "alpha"):
        if var in post:
            data[var] = (("chain", "draw"), post[var].to_numpy())
    if "threshold" in post:
        thr = post["threshold"]
        coords["cutpoint"] = [f"{k + 1}|{k + 2}" for k in range(thr.shape[-1])]
        data["cutpoints"] = (("chain", "draw", "cutpoint"), thr.to_numpy())
    if adata.control_matrix.shape[1]:
        coords["control"] = list(adata.control_columns)
        data["beta"] = (
            ("chain", "draw", "control"),
            np.stack([post[f"x{k}"].to_numpy() for k in range(adata.control_matrix.shape[1])], axis=-1),
        )
    return xr.Dataset(data, coords=coords)
