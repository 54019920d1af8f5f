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
    data = az.InferenceData(posterior=posterior,
                            log_likelihood=xr.Dataset({"y": (("chain", "draw", "row"), ll)},
                                                      coords={"chain": posterior["chain"], "draw": posterior["draw"]}))
    return az.loo(data, pointwise=True)


def loo_record(idata, adata, groups) -> dict | None:
    """The analysis's PSIS-LOO: totals, per-row elpd and Pareto k, and the rows it refers to."""
    ll = pointwise_loglik(idata.posterior, adata, groups)
    if ll is None:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high Pareto k is reported, not warned about
        res = loo_of(idata.posterior, ll)
    k = np.asarray(res.pareto_k, dtype=float)
    return {"elpd_loo": float(res["elpd_loo"]), "se": float(res["se"]), "p_loo": float(res["p_loo"]), "n": int(adata.n),
            "n_draws": int(ll.shape[0] * ll.shape[1]), "k_threshold": K_THRESHOLD, "n_high_k": int((k > K_THRESHOLD).sum()),
            "max_k": float(np.nanmax(k)), "rows": rows_fingerprint(adata), "family": adata.family,
            "pointwise": np.asarray(res.loo_i, dtype=float).tolist(), "pareto_k": k.tolist()}


def compare_loo(analyses) -> list[dict]:
    """Every pair of analyses with a LOO on the same rows (same fingerprint): elpd difference (first - second),
    its SE, the per-analysis totals and Pareto k warnings. Sorted best first within each set of rows."""
    by_rows: dict[str, list] = {}
    for a in analyses:
        rec = (a.hierarchical or {}).get("loo")
        if rec:
            by_rows.setdefault(rec["rows"], []).append((a, rec))
    out = []
    for members in by_rows.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda m: -m[1]["elpd_loo"])
        best, brec = members[0]
        for other, orec in members[1:]:
            d = np.asarray(brec["pointwise"]) - np.asarray(orec["pointwise"])
            out.append({"best": best, "other": other, "best_loo": brec, "other_loo": orec,
                        "elpd_diff": float(d.sum()), "se_diff": float(np.sqrt(len(d) * d.var())), "n": len(d)})
    return out
