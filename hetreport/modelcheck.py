"""Which model the data prefer: PSIS-LOO of the hierarchical models (ArviZ ``loo``).

At fit time, for each analysis whose family has a closed-form pointwise density here
(gaussian, bernoulli), the log-likelihood of every row at every posterior draw is computed
from the draws of the group intercepts and slopes, the control coefficients and sigma
(the same linear predictor the posterior predictive check uses), and ArviZ's PSIS-LOO is run
on it. Only the per-row results are kept (elpd_loo_i, Pareto k_i) in the analysis record, so
the report can compare analyses of the same outcome on the same rows without refitting:

    elpd difference = sum_i (e1_i - e2_i),   SE = sqrt(N var_i(e1_i - e2_i))

which is what ``az.compare`` reports (tested against it).
"""

from __future__ import annotations

import hashlib

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import log_expit

#: Pareto k above this: the PSIS estimate for that row is unreliable (Vehtari et al. 2024)
K_THRESHOLD = 0.7
FAMILIES = ("gaussian", "bernoulli")
#: above this many draws x rows the pointwise log-likelihood (8 bytes each) is not computed
MAX_LOGLIK_CELLS = 60_000_000


def linear_predictor(posterior, adata, groups) -> np.ndarray:
    """eta (chain, draw, row): group intercept + group slope x treatment + controls (centred) x beta."""
    slope = "group_slope" if "group_slope" in posterior else "group_effect"
    alpha = posterior["group_intercept"].transpose("chain", "draw", "group").to_numpy()
    theta = posterior[slope].transpose("chain", "draw", "group").to_numpy()
    eta = alpha[..., groups.index] + theta[..., groups.index] * adata.t[None, None, :]
    if "beta" in posterior and adata.control_matrix.shape[1]:
        beta = posterior["beta"].transpose("chain", "draw", "control").to_numpy()
        Xc = adata.control_matrix - adata.control_matrix.mean(axis=0)
        eta = eta + beta @ Xc.T
    return eta


def pointwise_loglik(posterior, adata, groups) -> np.ndarray | None:
    """log p(y_i | draw) (chain, draw, row), or None for a family without a pointwise density here."""
    if adata.family not in FAMILIES:
        return None
    eta = linear_predictor(posterior, adata, groups)
    y = adata.y.astype(float)
    if adata.family == "gaussian":
        sigma = posterior["sigma"].transpose("chain", "draw").to_numpy()[..., None]
        return -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((y[None, None, :] - eta) / sigma) ** 2
    return np.where(y[None, None, :] > 0.5, log_expit(eta), log_expit(-eta))


def rows_fingerprint(adata) -> str:
    """Identifies the rows and outcome a LOO refers to (outcome name, family, y and treatment in row order)."""
    h = hashlib.sha256()
    h.update(f"{adata.outcome.name}|{adata.family}|{adata.n}|".encode())
    h.update(np.ascontiguousarray(adata.y, dtype=float).tobytes())
    h.update(np.ascontiguousarray(adata.t, dtype=float).tobytes())
    return h.hexdigest()


def loo_of(posterior, ll: np.ndarray) -> az.ELPDData:
    data = az.InferenceData(
        posterior=posterior,
        log_likelihood=xr.Dataset({"y": (("chain", "draw", "row"), ll)}, coords={"chain": posterior["chain"], "draw": posterior["draw"]}),
    )
    return az.loo(data, pointwise=True)


def loo_record(idata, adata, groups) -> dict | None:
    """The analysis's PSIS-LOO: totals, per-row elpd and Pareto k, and the rows it refers to."""
    if adata.family not in FAMILIES:
        return None
    size = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"] * adata.n
    if size > MAX_LOGLIK_CELLS:  # the draws x rows matrix would not fit comfortably in memory
        return {
            "skipped": f"PSIS-LOO not computed: {adata.n:,} rows x {size // adata.n:,} draws is more than "
            f"{MAX_LOGLIK_CELLS:,} log-likelihood values",
            "rows": rows_fingerprint(adata),
            "family": adata.family,
        }
    ll = pointwise_loglik(idata.posterior, adata, groups)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high Pareto k is reported, not warned about
        res = loo_of(idata.posterior, ll)
    k = np.asarray(res.pareto_k, dtype=float)
    return {
        "elpd_loo": float(res["elpd_loo"]),
        "se": float(res["se"]),
        "p_loo": float(res["p_loo"]),
        "n": int(adata.n),
        "n_draws": int(ll.shape[0] * ll.shape[1]),
        "k_threshold": K_THRESHOLD,
        "n_high_k": int((k > K_THRESHOLD).sum()),
        "max_k": float(np.nanmax(k)),
        "rows": rows_fingerprint(adata),
        "family": adata.family,
        "pointwise": np.asarray(res.loo_i, dtype=float).tolist(),
        "pareto_k": k.tolist(),
        "loglik_draws": ll.sum(axis=-1).tolist(),
    }  # (chain, draw): the likelihood power-scaled by the prior-sensitivity check


def compare_loo(analyses) -> list[dict]:
    """Every pair of analyses with a LOO on the same rows (same fingerprint): elpd difference (first - second),
    its SE, the per-analysis totals and Pareto k warnings. Sorted best first within each set of rows."""
    by_rows: dict[str, list] = {}
    for a in analyses:
        rec = a.hierarchical.loo
        if rec and "pointwise" in rec:
            by_rows.setdefault(rec["rows"], []).append((a, rec))
    out = []
    for members in by_rows.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: -m[1]["elpd_loo"])
        best, brec = members[0]
        for other, orec in members[1:]:
            d = np.asarray(brec["pointwise"]) - np.asarray(orec["pointwise"])
            out.append(
                {
                    "best": best,
                    "other": other,
                    "best_loo": brec,
                    "other_loo": orec,
                    "elpd_diff": float(d.sum()),
                    "se_diff": float(np.sqrt(len(d) * d.var())),
                    "n": len(d),
                }
            )
    return out


# --------------------------------------------------------------------------- prior sensitivity (power-scaling)

#: Kallioinen et al.'s threshold on the CJS-distance gradient: at or above it, a quantity is sensitive
PSENSE_THRESHOLD = 0.05


def log_density(prior, x: np.ndarray) -> np.ndarray:
    """log density of a hetreport prior at ``x`` (the PyMC parameterisation; lkj: the 2x2 correlation's marginal)."""
    from scipy import stats

    f, p = prior.family, prior.params
    if f == "normal":
        return stats.norm.logpdf(x, p[0], p[1])
    if f == "student_t":
        return stats.t.logpdf(x, p[0], p[1], p[2])
    if f == "cauchy":
        return stats.cauchy.logpdf(x, p[0], p[1])
    if f == "halfnormal":
        return stats.halfnorm.logpdf(x, scale=p[0])
    if f == "halfstudent_t":
        return np.where(x >= 0, np.log(2) + stats.t.logpdf(x, p[0], 0, p[1]), -np.inf)
    if f == "halfcauchy":
        return stats.halfcauchy.logpdf(x, scale=p[0])
    if f == "exponential":
        return stats.expon.logpdf(x, scale=1 / p[0])
    if f == "lkj":  # rho = 2 Beta(eta, eta) - 1
        return stats.beta.logpdf((x + 1) / 2, p[0], p[0]) - np.log(2)
    raise ValueError(f"no density for the prior family {f}")


def log_prior_draws(a) -> np.ndarray | None:
    """The joint log prior of the model's top-level parameters at every draw (chain, draw), from the priors the
    fit used (as recorded) and the saved posterior; None when a parameter's prior cannot be evaluated here
    (ordinal cutpoints, the uncorrelated bambi route)."""
    from .spec import Prior

    post = a.posterior.posterior
    used = dict(a.hierarchical.priors)
    if not used or a.hierarchical.correlated is False:
        return None

    def term(var: str, text: str, index=None) -> np.ndarray:
        x = post[var].transpose("chain", "draw", ...).to_numpy()
        if index is not None:
            x = x[..., index]
        lp = log_density(Prior.parse(text, var), x)
        return lp.reshape(lp.shape[0], lp.shape[1], -1).sum(axis=-1)

    total = np.zeros((post.sizes["chain"], post.sizes["draw"]))
    controls, predictors = [], []
    try:
        for key, text in used.items():
            if key == "Intercept":
                total += term("Intercept", text)
            elif key.endswith("(common slope)"):
                total += term("b_treat", text)
            elif "slope predictor" in key:
                predictors.append(text)
            elif key.startswith("group SDs"):
                total += term("sd_intercept", text) + term("sd_slope", text)
            elif key.startswith("intercept–slope correlation"):
                total += term("rho", text)
            elif key.startswith("sigma"):
                total += term("sigma", text)
            elif key.startswith("alpha (dispersion"):
                total += term("alpha", text)
            elif key.startswith("cutpoints"):
                return None
            else:
                controls.append(text)
        for k, text in enumerate(controls):
            total += term("beta", text, k)
        for k, text in enumerate(predictors):
            total += term("lambda", text, k) + term("gamma", text, k)
    except (KeyError, ValueError, IndexError):
        return None
    return total if np.isfinite(total).all() else None


def power_sense(quantities: dict[str, np.ndarray], log_prior: np.ndarray, log_lik: np.ndarray | None) -> list[dict]:
    """arviz-stats' power-scaling sensitivity (CJS distance gradient, PSIS weights) of each quantity (chain, draw)
    to the prior and, when the per-draw log-likelihood is known, to the likelihood; with the diagnosis."""
    import xarray as xr
    from arviz_stats import psense

    names = list(quantities)
    keys = [f"q{j}" for j in range(len(names))]
    dims = ("chain", "draw")
    tree = {
        "posterior": xr.Dataset({k: (dims, np.asarray(quantities[n], dtype=float)) for k, n in zip(keys, names)}),
        "log_prior": xr.Dataset({"lp": (dims, log_prior)}),
    }
    if log_lik is not None:
        tree["log_likelihood"] = xr.Dataset({"ll": (dims, log_lik)})
    dt = xr.DataTree.from_dict(tree)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = psense(dt, group="prior")
        lik = psense(dt, group="likelihood") if log_lik is not None else None
    out = []
    for k, n in zip(keys, names):
        p = float(prior[k])
        l_ = float(lik[k]) if lik is not None else np.nan
        if p >= PSENSE_THRESHOLD and np.isfinite(l_) and l_ >= PSENSE_THRESHOLD:
            diagnosis = "possible prior-data conflict"
        elif p >= PSENSE_THRESHOLD and (not np.isfinite(l_) or l_ < PSENSE_THRESHOLD):
            diagnosis = "sensitive to the prior" + (" (weak likelihood)" if np.isfinite(l_) else "")
        elif np.isfinite(l_) and l_ < PSENSE_THRESHOLD:
            diagnosis = "weak likelihood"
        else:
            diagnosis = "not sensitive to the prior"
        out.append({"quantity": n, "prior": p, "likelihood": l_, "diagnosis": diagnosis})
    return out


def sensitivity_of(a) -> list[dict] | None:
    """Power-scaling sensitivity of sigma_theta, the average effect and the extreme groups' effects."""
    lp = log_prior_draws(a)
    if lp is None:
        return None
    post = a.posterior.posterior
    ge = post["group_effect"].transpose("chain", "draw", "group")
    means = ge.mean(("chain", "draw")).to_numpy()
    labels = dict(zip(a.groups["group"], a.groups["group_label"]))
    gkeys = post["group"].to_numpy().tolist()
    lo, hi = int(np.argmin(means)), int(np.argmax(means))
    q = {}
    if "sigma_theta" in post:
        q["σθ"] = post["sigma_theta"].transpose("chain", "draw").to_numpy()
    if "average_effect" in post:
        q["Average effect"] = post["average_effect"].transpose("chain", "draw").to_numpy()
    q[f"Smallest group effect ({labels.get(gkeys[lo], gkeys[lo])})"] = ge.to_numpy()[..., lo]
    q[f"Largest group effect ({labels.get(gkeys[hi], gkeys[hi])})"] = ge.to_numpy()[..., hi]
    rec = a.hierarchical.loo or {}
    ll = np.asarray(rec["loglik_draws"], dtype=float) if rec.get("loglik_draws") else None
    if ll is not None and ll.shape != lp.shape:
        ll = None
    return power_sense(q, lp, ll)
